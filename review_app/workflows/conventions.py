"""Which input convention a model really expects, measured before any mining.

A model with ``Rescaling(1/255)`` inside, fed 0-1 floats, scores near chance without raising
anything: every label looks wrong and every example looks hard. So before mining, the first
labelled images are classified under each candidate convention (scaling 0-1, 0-255 or -1..1,
plain or inverted, and for a colour model RGB or BGR channel order) and the accuracies compared:

- when the spec was given (a spec file or ``--scale``) and another convention is far better,
  mining stops with one line naming it;
- when the spec was only detected from the model's input shape, the best convention is taken,
  said, and recorded in the run's spec, which every later command (suggest, serve, retrain)
  reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hardcase.miner.spec import CHANNEL_ORDERS, SCALES, PreprocessingSpec

if TYPE_CHECKING:
    from hardcase.models.classifier import KerasClassifier

#: Labelled images the check classifies under each convention.
CHECK_IMAGES = 512
#: Conventions within this accuracy of the best count as tied; the tie goes to the one that
#: changes the fewest fields of the current spec (a model that tolerates 0-255 inputs for 0-1
#: is not therefore a 0-255 model).
TIE = 0.02
#: How much more accurate another convention must be to override a given spec (or to replace
#: a detected one): well above the noise of a few hundred images.
DECISIVE_GAIN = 0.2


class ConventionError(ValueError):
    """The given spec's convention is far worse than another: the user should look at it."""


@dataclass(frozen=True)
class ConventionCheck:
    """The accuracy of each input convention on the checked images, and the one chosen."""

    spec: PreprocessingSpec
    accuracies: dict[str, float]
    n_images: int
    changed: bool

    def summary(self) -> str:
        """One line: the chosen convention and its accuracy against the others."""
        chosen = self.accuracies[self.spec.convention]
        others = ", ".join(f"{name} {acc:.3f}" for name, acc in self.accuracies.items() if name != self.spec.convention)
        verb = "detected" if self.changed else "checked"
        return (f"input convention {verb}: {self.spec.convention} (accuracy {chosen:.3f} on the first "
                f"{self.n_images} labelled images; {others})")


def candidate_specs(spec: PreprocessingSpec) -> list[PreprocessingSpec]:
    """``spec`` under every scaling, inversion and (3 channels) channel order, ``spec`` itself first.

    Returns
    -------
    list of PreprocessingSpec
        6 for a grayscale spec, 12 for a colour one.
    """
    orders = CHANNEL_ORDERS if spec.channels == 3 else (spec.channel_order,)
    variants = [spec.with_overrides(scale=scale, invert=invert, channel_order=order)
                for scale in SCALES for invert in (False, True) for order in orders]
    return [spec, *(v for v in variants if v != spec)]


def _changed_fields(variant: PreprocessingSpec, current: PreprocessingSpec) -> int:
    return ((variant.scale != current.scale) + (variant.invert != current.invert)
            + (variant.channel_order != current.channel_order))


def _remedy(best: PreprocessingSpec, current: PreprocessingSpec) -> str:
    """What the user passes (or writes in the spec file) to read the model through ``best``."""
    flags = f"pass --scale {best.scale}" + (" --invert" if best.invert else "")
    if best.channel_order != current.channel_order:
        return f'{flags} and set "channel_order": "{best.channel_order}" in the model\'s .spec.json'
    return f"{flags} (or fix the model's .spec.json)"


def check_convention(
    classifier: KerasClassifier, images: np.ndarray, labels: np.ndarray, *, spec_given: bool, where: str = "the data"
) -> ConventionCheck:
    """Measure each input convention on labelled images and choose one.

    Parameters
    ----------
    classifier
        The model read through its current spec.
    images : np.ndarray, shape (n, H, W, C)
        Labelled images as stored (uint8 or 0-1 / 0-255 floats).
    labels : np.ndarray, int, shape (n,)
        Their classes (indices into the model's class names; all >= 0).
    spec_given
        Whether the user gave the spec (a spec file or flags); else it was detected.
    where
        Names the data in messages.

    Returns
    -------
    ConventionCheck

    Raises
    ------
    ConventionError
        The spec was given and another convention is at least :data:`DECISIVE_GAIN` more accurate.
    """
    current = classifier.spec
    accuracies = {}
    for variant in candidate_specs(current):
        predicted = classifier.with_spec(variant).predict_proba(images).argmax(axis=1)
        accuracies[variant.convention] = float(np.mean(predicted == labels))
    top = max(accuracies.values())
    tied = [variant for variant in candidate_specs(current) if accuracies[variant.convention] >= top - TIE]
    best = min(tied, key=lambda variant: _changed_fields(variant, current))
    gain = accuracies[best.convention] - accuracies[current.convention]
    if gain < DECISIVE_GAIN:
        return ConventionCheck(current, accuracies, len(labels), changed=False)
    if spec_given:
        raise ConventionError(
            f"the model's spec says its input is {current.convention}, which classifies the first {len(labels)} "
            f"labelled images of {where} with accuracy {accuracies[current.convention]:.3f}, but {best.convention} "
            f"gives {accuracies[best.convention]:.3f}: {_remedy(best, current)}"
        )
    return ConventionCheck(best, accuracies, len(labels), changed=True)
