"""From reviewers' decisions to a typed training plan, and retraining with it (Keras side).

A :class:`TrainingPlan` is built from the decided rows of a fix list (``final_cause``,
``final_label``, ``transform``) and holds one optional fix per cause family:

- ``augment`` (:class:`AugmentFix`): rotation / perspective / scale / shift ranges covering
  the confirmed transforms (a high quantile of their magnitudes, so a few overshooting ones do
  not set the range), turned into the albumentations pipeline the review sliders use and
  applied to augmented copies trained on beside the clean originals;
- ``imbalance`` (:class:`ImbalanceFix`): for the confirmed classes, from the training counts
  (``r = median count / class count``, at least 1, capped), class weights ``sqrt(r)``,
  oversampling, both, or a lowered decision threshold (:func:`imbalance_fix`); by default both
  (weight ``sqrt(r)`` and every image ``round(sqrt(r))`` times), the method that measured best;
- ``mislabel`` (:class:`MislabelFix`): the confirmed relabels, applied to the training data
  where the sample is in it and used to correct evaluation labels (matched by content hash);
- ``rare`` (:class:`RareFix`): the confirmed rare samples added to the training data with
  their labels, oversampled, and listed for "collect more like these".

The plan is plain data (``to_dict`` / ``from_dict``, JSON) and is saved beside the retrained
model, so every model says what it was trained with.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import albumentations as A
import cv2
import numpy as np

from hardcase.miner.vocabulary import CAUSES
from hardcase.models.transforms import MAX_PERSPECTIVE, TiltPerspective, random_affine_ops

#: The fix families of a plan, one per cause, in the (alphabetical) order plans print and ablate them.
FAMILIES: tuple[str, ...] = tuple(sorted(CAUSES))
PLAN_VERSION = 4
MAX_CLASS_WEIGHT = 10.0
#: What an imbalance fix may do (:func:`imbalance_fix`).
IMBALANCE_METHODS = ("weights", "oversample", "both", "threshold")
#: The imbalance method plans use unless told otherwise: measured against the other three by
#: ``bench/close_loop.py --imbalance-options`` (the cut class's recall and held-out accuracy).
DEFAULT_IMBALANCE = "both"
DEFAULT_ROTATE = 15.0
DEFAULT_PERSPECTIVE = 0.1
AUGMENT_QUANTILE = 0.9
AUGMENT_MARGIN = 1.1


class PlanError(ValueError):
    """A fix list or plan that cannot be turned into training (unknown class, bad row)."""


# --------------------------------------------------------------------------- plan types


@dataclass(frozen=True)
class AugmentFix:
    """Random geometric augmentation covering the transforms reviewers confirmed.

    ``rotate_limit`` degrees (rotations drawn from ±limit), ``perspective_limit`` (tilt
    strength, and the corner jitter of a general perspective warp, from [0, limit]) and
    ``scale_limit`` (zoom from 1 ± limit), ``shift_limit`` (translation as a share of the
    image size, from ±limit on each axis), ``shear_limit`` degrees (horizontal shear from
    ±limit) and ``aspect_limit`` (the width alone scaled by 1/(1 + limit) .. 1 + limit, a
    stretch either way). Each limit is a high quantile (``quantile``) of the
    confirmed magnitudes of that operation times a margin, so one overshooting slider or
    search result does not widen the range for every image.

    ``copies`` augmented copies of every training image are trained on *alongside* the clean
    originals (the originals are never disturbed, so clean accuracy holds); ``copies=0``
    augments the originals in place (plan version 1). ``p`` is the probability each operation
    applies to an augmented image. ``observed`` holds the largest and the quantile confirmed
    magnitude per operation, ``n_decisions`` how many augment decisions the ranges come from
    and ``n_without_transform`` how many carried no slider transform (defaults used when none
    did).
    """

    rotate_limit: float = 0.0
    perspective_limit: float = 0.0
    scale_limit: float = 0.0
    shift_limit: float = 0.0
    shear_limit: float = 0.0
    aspect_limit: float = 0.0
    p: float = 1.0
    copies: int = 1
    quantile: float = 1.0
    observed: dict[str, float] = field(default_factory=dict)
    n_decisions: int = 0
    n_without_transform: int = 0

    def pipeline(self, fill: float = 0):
        """The albumentations ``Compose`` applied to an augmented image.

        The slider's operations (``TiltPerspective``, ``Affine``, see
        :func:`hardcase.models.transforms.random_affine_ops`); the perspective family is
        one of the slider's one-edge tilt and albumentations' four-corner ``Perspective`` of
        the same strength, since a real camera moves every corner, not only one edge.

        Parameters
        ----------
        fill : float
            The pixel value uncovered borders get.

        Returns
        -------
        albumentations.Compose
            Applied to one image (H, W) or (H, W, C), uint8.
        """
        ops = []
        if self.perspective_limit > 0:
            strength = (0.0, self.perspective_limit)
            ops.append(A.OneOf([
                TiltPerspective(strength=strength, fill=fill, p=1.0),
                A.Perspective(scale=strength, keep_size=True, border_mode=cv2.BORDER_CONSTANT, fill=fill, p=1.0),
            ], p=self.p))
        ops += random_affine_ops(rotate_limit=self.rotate_limit, scale_limit=self.scale_limit,
                                 shift_limit=self.shift_limit, shear_limit=self.shear_limit,
                                 aspect_limit=self.aspect_limit, p=self.p, fill=fill)
        return A.Compose(ops)

    def describe(self) -> str:
        """One line: the albumentations operations with their ranges, where they apply, and from what."""
        ops = []
        if self.perspective_limit > 0:
            ops.append(f"OneOf(TiltPerspective(strength=(0, {self.perspective_limit:.3f}), direction=any), "
                       f"Perspective(scale=(0, {self.perspective_limit:.3f})))")
        if any(limit > 0 for limit in (self.rotate_limit, self.scale_limit, self.shift_limit, self.shear_limit)):
            ops.append(
                f"Affine(rotate=(-{self.rotate_limit:.0f}, {self.rotate_limit:.0f}), "
                f"scale=({1 - self.scale_limit:.2f}, {1 + self.scale_limit:.2f})"
                + (f", translate=±{self.shift_limit:.2f}" if self.shift_limit > 0 else "")
                + (f", shear=±{self.shear_limit:.0f}" if self.shear_limit > 0 else "")
                + ")"
            )
        if self.aspect_limit > 0:
            ops.append(f"Affine(scale_x=({1 / (1 + self.aspect_limit):.2f}, {1 + self.aspect_limit:.2f}))")
        where = (f"on {self.copies} augmented cop{'y' if self.copies == 1 else 'ies'} of each image beside the "
                 "clean originals" if self.copies else "on the originals in place")
        return (f"{' + '.join(ops) or 'no-op'}, p={self.p} {where} "
                f"(from {self.n_decisions} decisions, q{100 * self.quantile:.0f} of the confirmed magnitudes)")


@dataclass(frozen=True)
class ImbalanceFix:
    """What retraining does for the classes reviewers confirmed as under-represented.

    One of :data:`IMBALANCE_METHODS` (:func:`imbalance_fix`), and only the fields it fills
    apply: ``class_weight`` (loss weights), ``oversample`` (each training image of the class
    repeated), ``logit_offset`` (added to the class's output logit after training, i.e. its
    decision threshold lowered: the probabilities are multiplied by ``exp(offset)`` and
    renormalised). Plans before version 4 hold class weights only (``method="weights"``).

    Attributes
    ----------
    classes : list of str
        The confirmed classes, in the model's class order.
    class_weight : dict of str to float
        Loss weight per confirmed class (:func:`class_weights`); other classes weigh 1. Empty
        when the method uses none.
    train_counts : dict of str to int
        Training images per class name, the weights come from.
    median_count : float
        The median of ``train_counts``.
    n_decisions : int
        Imbalance decisions behind the fix.
    method : str
        ``weights``, ``oversample``, ``both`` (weights and oversampling) or ``threshold``.
    oversample : dict of str to int
        Times each training image of a confirmed class appears (1: as is). Empty when the
        method oversamples nothing.
    logit_offset : dict of str to float
        Added to a confirmed class's output logit (the output layer's bias) after training.
        Empty when the method moves no threshold.
    """

    classes: list[str]
    class_weight: dict[str, float]
    train_counts: dict[str, int]
    median_count: float
    n_decisions: int = 0
    method: str = "weights"
    oversample: dict[str, int] = field(default_factory=dict)
    logit_offset: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: per confirmed class its training count and what the method does to it."""
        parts = []
        for name in self.classes:
            what = []
            if name in self.class_weight:
                what.append(f"weight x{self.class_weight[name]:.2f}")
            if name in self.oversample:
                what.append(f"oversampled x{self.oversample[name]}")
            if name in self.logit_offset:
                what.append(f"logit {self.logit_offset[name]:+.2f} (probability x{math.exp(self.logit_offset[name]):.2f})")
            parts.append(f"{name}: {', '.join(what) or 'nothing'} ({self.train_counts.get(name, 0)} images)")
        return f"{self.method}: {'; '.join(parts)} (median class {self.median_count:.0f} images)"


@dataclass(frozen=True)
class Relabel:
    """One confirmed relabel of a sample of the mined data set.

    Attributes
    ----------
    source_index : int
        The sample's row in the mined data set.
    old_label : str or None
        Its given label (None when it had none).
    new_label : str
        The label reviewers confirmed.
    sample_id : int, optional
        The store's sample id.
    content_hash : str, optional
        The image's content hash: matches the same image in evaluation sets.
    train_index : int, optional
        The row of the training data holding the same image; None when it is not there.
    """

    source_index: int
    old_label: str | None
    new_label: str
    sample_id: int | None = None
    content_hash: str | None = None
    train_index: int | None = None


@dataclass(frozen=True)
class MislabelFix:
    """The confirmed relabels (:class:`Relabel`): applied to training data, used to correct evaluation labels."""

    relabels: list[Relabel]

    @property
    def n_in_training(self) -> int:
        """How many of the relabelled samples are in the training data."""
        return sum(r.train_index is not None for r in self.relabels)

    def describe(self) -> str:
        """One line: how many relabels, how many in training, the most common moves."""
        moves = Counter(f"{r.old_label}->{r.new_label}" for r in self.relabels)
        top = ", ".join(f"{k} x{v}" for k, v in moves.most_common(5))
        return (f"{len(self.relabels)} relabels ({self.n_in_training} in the training data, "
                f"the rest correct evaluation labels): {top}")


@dataclass(frozen=True)
class RareSample:
    """One confirmed rare sample of the mined data set: its row, label and store id."""

    source_index: int
    label: str
    sample_id: int | None = None
    neighbours: list[int] = field(default_factory=list)
    """Source indices of the nearest mined samples (embedding space), for data collection."""
    uri: str | None = None
    """Where the sample comes from (its file, or ``<file>#<row>`` for arrays; None in plans made before)."""
    neighbour_uris: list[str] = field(default_factory=list)
    """Where each of ``neighbours`` comes from, in the same order."""


@dataclass(frozen=True)
class RareFix:
    """Confirmed rare samples (:class:`RareSample`) of the mined data set, added to training ``oversample`` times each."""

    samples: list[RareSample]
    oversample: int = 5

    def collect_more(self) -> list[dict[str, Any]]:
        """The "collect more like these" list: ids, uris, labels and nearest neighbours (indices and uris)."""
        return [asdict(sample) for sample in self.samples]

    def describe(self) -> str:
        """One line: how many rare samples, their oversampling and classes."""
        by_class = Counter(s.label for s in self.samples)
        classes = ", ".join(f"{k} x{v}" for k, v in sorted(by_class.items()))
        return f"add {len(self.samples)} rare samples x{self.oversample} ({classes}); collect more like them"


@dataclass(frozen=True)
class TrainingPlan:
    """What a retrain applies, by cause family; JSON-serialisable.

    Attributes
    ----------
    class_names : list of str
        The model's classes, in output order (labels in the fixes are these names).
    augment, imbalance, mislabel, rare
        One fix per family (:data:`FAMILIES`), None when reviewers confirmed none.
    provenance : dict
        Where the decisions came from.
    """

    class_names: list[str]
    augment: AugmentFix | None = None
    imbalance: ImbalanceFix | None = None
    mislabel: MislabelFix | None = None
    rare: RareFix | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    """Where the decisions came from: run, fix file, mined data uri, decision counts."""

    @property
    def families(self) -> list[str]:
        """The families with a fix, in :data:`FAMILIES` order."""
        return [name for name in FAMILIES if getattr(self, name) is not None]

    @property
    def is_empty(self) -> bool:
        """Whether the plan holds no fix (retraining it trains as is)."""
        return not self.families

    def only(self, *families: str) -> TrainingPlan:
        """The same plan with only the given fix families (ablation)."""
        unknown = set(families) - set(FAMILIES)
        if unknown:
            raise PlanError(f"unknown fix families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
        return replace(self, **{name: getattr(self, name) if name in families else None for name in FAMILIES})

    def describe(self) -> str:
        """Several lines: each family's fix (or ``-``) and the decision counts."""
        lines = ["training plan:"]
        for name in FAMILIES:
            fix = getattr(self, name)
            lines.append(f"  {name:9s} {fix.describe() if fix is not None else '-'}")
        counts = self.provenance.get("decisions")
        if counts:
            lines.append("  decisions " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data with ``version``; the augment fix also says its albumentations
        pipeline and the rare fix its "collect more" list (both ignored by :meth:`from_dict`)."""
        data: dict[str, Any] = {"version": PLAN_VERSION, "class_names": list(self.class_names)}
        for name in FAMILIES:
            fix = getattr(self, name)
            data[name] = None if fix is None else asdict(fix)
        if self.augment is not None:
            data["augment"]["albumentations"] = self.augment.describe()
        if self.rare is not None:
            data["rare"]["collect_more"] = self.rare.collect_more()
        data["provenance"] = self.provenance
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingPlan:
        """The plan of :meth:`to_dict` data, of this or an earlier plan version.

        Raises
        ------
        PlanError
            An unsupported version.
        """
        version = data.get("version")
        if version not in (1, 2, 3, PLAN_VERSION):
            raise PlanError(f"unsupported plan version {version!r} (expected {PLAN_VERSION})")
        augment = imbalance = mislabel = rare = None
        if data.get("augment"):
            fields = {k: v for k, v in data["augment"].items() if k != "albumentations"}
            if version == 1:  # version 1 augmented the originals in place, from the largest magnitudes
                fields.setdefault("copies", 0)
                fields.setdefault("quantile", 1.0)
            augment = AugmentFix(**fields)
        if data.get("imbalance"):
            imbalance = ImbalanceFix(**data["imbalance"])
        if data.get("mislabel"):
            mislabel = MislabelFix(relabels=[Relabel(**r) for r in data["mislabel"]["relabels"]])
        if data.get("rare"):
            rare = RareFix(samples=[RareSample(**s) for s in data["rare"]["samples"]],
                           oversample=int(data["rare"]["oversample"]))
        return cls(class_names=list(data["class_names"]), augment=augment, imbalance=imbalance,
                   mislabel=mislabel, rare=rare, provenance=dict(data.get("provenance") or {}))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the plan as JSON (atomically, creating the folder); returns ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainingPlan:
        """Read a plan written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def plan_path_for(model_path: str | os.PathLike) -> Path:
    """Where a retrained model's plan is kept: ``<model>.plan.json`` (like ``.spec.json``).

    Parameters
    ----------
    model_path : str or PathLike
        A model file or SavedModel directory.

    Returns
    -------
    Path
    """
    model_path = Path(model_path)
    if model_path.is_dir():
        return model_path.parent / f"{model_path.name}.plan.json"
    return model_path.with_suffix(".plan.json")


# --------------------------------------------------------------------------- building a plan


def _ceil_to(value: float, step: float) -> float:
    return math.ceil(value / step - 1e-9) * step


def _magnitude_limit(values: Sequence[float], quantile: float, margin: float) -> tuple[float, float, float]:
    """(largest, quantile, limit = quantile x margin) of the nonzero magnitudes; zeros when none."""
    values = [v for v in values if v > 0]
    if not values:
        return 0.0, 0.0, 0.0
    high = float(np.quantile(values, quantile))
    return float(max(values)), high, high * margin


def _stretch(aspect: float) -> float:
    """How far a width/height ratio is from 1, either way: max(aspect, 1/aspect) - 1."""
    return max(aspect, 1.0 / aspect) - 1.0 if aspect > 0 else 0.0


def augment_ranges(transforms: Sequence[Mapping[str, Any] | None], *, margin: float = AUGMENT_MARGIN,
                   quantile: float = AUGMENT_QUANTILE, p: float = 1.0, copies: int = 1) -> AugmentFix:
    """Ranges covering the confirmed transforms' magnitudes, robust to a few overshooting ones.

    For each operation, the ``quantile`` (linear interpolation) of the nonzero confirmed
    magnitudes times ``margin``: rotation |rotate| rounded up to 5 degrees (max 180),
    perspective strength (max ``MAX_PERSPECTIVE``), scale |scale - 1| (max 0.75), shift the
    larger of |shift_x|, |shift_y| (max 0.5), shear |shear| rounded up to a degree (max 45),
    stretch max(aspect, 1/aspect) - 1 (max 1). With a few
    decisions the quantile is close to the largest; with many, the largest few (a slider
    dragged past the point where the label came back, a search that overshot) no longer set
    the range. Decisions without a transform fall back to ±15° and a 0.1 tilt when no decision
    carries one.

    Parameters
    ----------
    transforms : sequence of dict or None
        One per augment decision: ``Transform.to_dict()`` fields (missing ones are the
        identity's), or None for a decision without a transform.
    margin : float
        Factor on the quantile.
    quantile : float
        In [0.5, 1].
    p : float
        Probability each operation applies to an augmented image.
    copies : int
        Augmented copies per training image (0: augment the originals in place).

    Returns
    -------
    AugmentFix

    Raises
    ------
    PlanError
        ``quantile`` outside [0.5, 1].
    """
    if not 0.5 <= quantile <= 1.0:
        raise PlanError(f"augment quantile must be in [0.5, 1], got {quantile}")
    magnitudes: dict[str, list[float]] = {"rotate": [], "perspective": [], "scale": [], "shift": [], "shear": [],
                                          "aspect": []}
    missing = 0
    for transform in transforms:
        transform = transform or {}
        values = {
            "rotate": abs(float(transform.get("rotate", 0.0))),
            "perspective": abs(float(transform.get("perspective", 0.0))),
            "scale": abs(float(transform.get("scale", 1.0)) - 1.0),
            "shift": max(abs(float(transform.get("shift_x", 0.0))), abs(float(transform.get("shift_y", 0.0)))),
            "shear": abs(float(transform.get("shear", 0.0))),
            "aspect": _stretch(float(transform.get("aspect", 1.0))),
        }
        if not any(values.values()):
            missing += 1
            continue
        for name, value in values.items():
            magnitudes[name].append(value)
    limits = {name: _magnitude_limit(values, quantile, margin) for name, values in magnitudes.items()}
    observed = {name: largest for name, (largest, _, _) in limits.items()}
    observed.update({f"{name}_q": round(high, 4) for name, (_, high, _) in limits.items()})
    rotate, perspective, scale, shift, shear, aspect = (
        limits[name][2] for name in ("rotate", "perspective", "scale", "shift", "shear", "aspect"))
    if missing == len(transforms):
        rotate, perspective = DEFAULT_ROTATE, DEFAULT_PERSPECTIVE
    return AugmentFix(
        rotate_limit=min(180.0, _ceil_to(rotate, 5.0)) if rotate else 0.0,
        perspective_limit=round(min(MAX_PERSPECTIVE, perspective), 4) if perspective else 0.0,
        scale_limit=round(min(0.75, scale), 4) if scale else 0.0,
        shift_limit=round(min(0.5, shift), 4) if shift else 0.0,
        shear_limit=min(45.0, float(math.ceil(shear - 1e-9))) if shear else 0.0,
        aspect_limit=round(min(1.0, aspect), 4) if aspect else 0.0,
        p=p,
        copies=int(copies),
        quantile=quantile,
        observed=observed,
        n_decisions=len(transforms),
        n_without_transform=missing,
    )


def class_weights(train_counts: Mapping[str, int], classes: Iterable[str], *,
                  cap: float = MAX_CLASS_WEIGHT) -> tuple[dict[str, float], float]:
    """``sqrt(median count / count)`` (at least 1, at most ``cap``) per confirmed class; returns (weights, median).

    The square root of the inverse frequency, not the frequency ratio itself: a class with a
    tenth of the median count weighs about 3.2, not 10. Full inverse-frequency weights make the
    rare class's few images dominate their neighbourhood and break correct predictions of the
    other classes (prediction flips); the square root is the usual gentler compromise. A class
    with no training image gets ``cap``.

    Parameters
    ----------
    train_counts : mapping of str to int
        Training images per class name (every class: the median is over them).
    classes : iterable of str
        The confirmed classes to weigh.
    cap : float

    Returns
    -------
    weights : dict of str to float
        Per confirmed class, rounded to 4 decimals.
    median : float
    """
    counts = np.array([train_counts.get(name, 0) for name in train_counts], dtype=float)
    median = float(np.median(counts)) if counts.size else 0.0
    weights = {}
    for name in classes:
        count = train_counts.get(name, 0)
        weight = cap if count == 0 else min(cap, max(1.0, math.sqrt(median / count)))
        weights[name] = round(float(weight), 4)
    return weights, median


def _check_imbalance_method(method: str) -> None:
    if method not in IMBALANCE_METHODS:
        raise PlanError(f"unknown imbalance method {method!r}; known: {', '.join(IMBALANCE_METHODS)}")


def imbalance_fix(train_counts: Mapping[str, int], classes: Sequence[str], *, method: str = DEFAULT_IMBALANCE,
                  n_decisions: int = 0, cap: float = MAX_CLASS_WEIGHT) -> ImbalanceFix:
    """The imbalance fix of one method for the confirmed classes, from the training counts.

    With ``r = median count / class count`` (at least 1, at most ``cap``):

    - ``weights``: loss weight ``sqrt(r)`` (:func:`class_weights`);
    - ``oversample``: each image of the class repeated ``round(r)`` times (random oversampling
      to the median class);
    - ``both``: weight ``sqrt(r)`` and images repeated ``round(sqrt(r))`` times (together about
      ``r``, as full oversampling, with half the repetition);
    - ``threshold``: ``log(r)`` added to the class's output logit after training (post-hoc
      logit adjustment by the training prior: the decision the model would make had the class
      been as frequent as the median one).

    A class with no training image gets weight ``cap`` and offset ``log(cap)`` (nothing to
    repeat).

    Parameters
    ----------
    train_counts : mapping of str to int
        Training images per class name (every class: the median is over them).
    classes : sequence of str
        The confirmed classes.
    method : str
        One of :data:`IMBALANCE_METHODS`.
    n_decisions : int
        Imbalance decisions behind the fix.
    cap : float
        The largest ratio ``r`` used.

    Returns
    -------
    ImbalanceFix

    Raises
    ------
    PlanError
        An unknown ``method``.
    """
    _check_imbalance_method(method)
    weights, median = class_weights(train_counts, classes, cap=cap)
    ratio = {name: cap if train_counts.get(name, 0) == 0 else min(cap, max(1.0, median / train_counts[name]))
             for name in classes}
    class_weight, oversample, logit_offset = {}, {}, {}
    if method in ("weights", "both"):
        class_weight = weights
    if method == "oversample":
        oversample = {name: int(round(r)) for name, r in ratio.items()}
    if method == "both":
        oversample = {name: int(round(math.sqrt(r))) for name, r in ratio.items()}
    if method == "threshold":
        logit_offset = {name: round(math.log(r), 4) for name, r in ratio.items()}
    return ImbalanceFix(classes=list(classes), class_weight=class_weight, train_counts=dict(train_counts),
                        median_count=median, n_decisions=int(n_decisions), method=method, oversample=oversample,
                        logit_offset=logit_offset)


def _label_of(row: Mapping[str, Any]) -> str | None:
    return row.get("final_label") or row.get("given_label")


def build_plan(
    fixes: Sequence[Mapping[str, Any]],
    *,
    class_names: Sequence[str],
    train_labels: np.ndarray,
    pool_hashes: Mapping[int, str] | None = None,
    train_index_of_hash: Mapping[str, int] | None = None,
    neighbours: Mapping[int, list[int]] | None = None,
    uris: Mapping[int, str] | None = None,
    rare_oversample: int = 5,
    augment_p: float = 1.0,
    augment_copies: int = 1,
    imbalance_method: str = DEFAULT_IMBALANCE,
    provenance: Mapping[str, Any] | None = None,
) -> TrainingPlan:
    """A plan from fix-list rows (dicts with the ``FIX_COLUMNS``).

    Parameters
    ----------
    fixes
        Decided rows; only ``final_cause`` in ``FAMILIES`` are used (``not_a_failure`` and
        ``skip`` are counted but produce no fix).
    class_names
        The model's classes, in output order; labels in the rows are class names.
    train_labels
        Integer labels of the training data (for the class counts).
    pool_hashes
        ``source_index -> content hash`` of the mined samples in the fix list.
    train_index_of_hash
        ``content hash -> training row``: which mined samples are in the training data.
    neighbours
        ``source_index -> nearest mined source indices`` for the rare "collect more" list.
    uris
        ``source_index -> uri`` (``DataSource.row_uris``) of the rare samples and their
        neighbours, so the "collect more" list names files, not only rows.
    rare_oversample
        Times each rare sample is added.
    augment_p, augment_copies
        ``p`` and ``copies`` of the augment fix (:func:`augment_ranges`).
    imbalance_method
        What the imbalance fix does (:func:`imbalance_fix`, one of :data:`IMBALANCE_METHODS`).
    provenance
        Added to the plan's provenance beside the decision counts.

    Returns
    -------
    TrainingPlan

    Raises
    ------
    PlanError
        A mislabel, rare or imbalance row whose label is not a class of the model, a row
        without ``source_index``, or an unknown ``imbalance_method``.
    """
    _check_imbalance_method(imbalance_method)
    names = list(class_names)
    known = set(names)
    pool_hashes = pool_hashes or {}
    train_index_of_hash = train_index_of_hash or {}
    neighbours = neighbours or {}
    uris = uris or {}
    decisions = Counter(str(row.get("final_cause")) for row in fixes)
    by_cause: dict[str, list[Mapping[str, Any]]] = {name: [] for name in FAMILIES}
    for number, row in enumerate(fixes):
        cause = row.get("final_cause")
        if cause not in by_cause:
            continue
        label = _label_of(row)
        if cause in ("mislabel", "rare", "imbalance") and label not in known:
            raise PlanError(f"fix row {number} (source_index {row.get('source_index')}): "
                            f"label {label!r} is not a class of the model {names}")
        if row.get("source_index") is None:
            raise PlanError(f"fix row {number}: no source_index")
        by_cause[cause].append(row)

    augment = None
    if by_cause["augment"]:
        augment = augment_ranges([row.get("transform") for row in by_cause["augment"]], p=augment_p,
                                 copies=augment_copies)

    imbalance = None
    if by_cause["imbalance"]:
        labels = np.asarray(train_labels, dtype=np.int64)
        counts = {name: int(np.sum(labels == k)) for k, name in enumerate(names)}
        classes = sorted({_label_of(row) for row in by_cause["imbalance"]}, key=names.index)
        imbalance = imbalance_fix(counts, classes, method=imbalance_method, n_decisions=len(by_cause["imbalance"]))

    mislabel = None
    if by_cause["mislabel"]:
        relabels = []
        for row in by_cause["mislabel"]:
            index = int(row["source_index"])
            digest = pool_hashes.get(index)
            relabels.append(Relabel(
                source_index=index, old_label=row.get("given_label"), new_label=str(row["final_label"]),
                sample_id=row.get("sample_id"), content_hash=digest,
                train_index=train_index_of_hash.get(digest) if digest else None,
            ))
        mislabel = MislabelFix(relabels=relabels)

    rare = None
    if by_cause["rare"]:
        samples = []
        for row in by_cause["rare"]:
            index = int(row["source_index"])
            near = [int(n) for n in neighbours.get(index, [])]
            samples.append(RareSample(source_index=index, label=str(_label_of(row)), sample_id=row.get("sample_id"),
                                      neighbours=near, uri=uris.get(index) or row.get("uri"),
                                      neighbour_uris=[uris[n] for n in near if n in uris]))
        rare = RareFix(samples=samples, oversample=int(rare_oversample))

    meta = {"decisions": dict(decisions), "n_rows": len(fixes), **(provenance or {})}
    return TrainingPlan(class_names=names, augment=augment, imbalance=imbalance, mislabel=mislabel,
                        rare=rare, provenance=meta)


# --------------------------------------------------------------------------- applying a plan


@dataclass
class TrainingSet:
    """Training inputs after a plan: images, labels, per-sample weights, the pipeline.

    Attributes
    ----------
    images : np.ndarray, uint8, shape (N', H, W, C)
    labels : np.ndarray, int64, shape (N',)
    sample_weight : np.ndarray, float32, shape (N',), or None
    pipeline : albumentations.Compose or None
    n_relabelled : int
        Training labels the plan changed.
    n_added : int
        Rows added for rare samples (oversampling included).
    augment_mask : np.ndarray, bool, shape (N',), or None
        The rows the pipeline disturbs (the augmented copies); None means every row when
        there is a pipeline.
    n_augmented_copies : int
        Rows added as augmented copies.
    n_oversampled : int
        Rows added by the imbalance fix's oversampling (before the augmented copies).
    logit_offset : np.ndarray, float32, shape (K,), or None
        Added to the trained model's output logits (:func:`adjust_decision_thresholds`).
    notes : list of str
        What was done, for the report.
    """

    images: np.ndarray
    labels: np.ndarray
    sample_weight: np.ndarray | None
    pipeline: Any
    n_relabelled: int = 0
    n_added: int = 0
    augment_mask: np.ndarray | None = None
    n_augmented_copies: int = 0
    n_oversampled: int = 0
    logit_offset: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def apply_plan(plan: TrainingPlan, images: np.ndarray, labels: np.ndarray, *,
               rare_images: np.ndarray | None = None) -> TrainingSet:
    """Training data with the plan applied.

    ``rare_images`` holds the images of ``plan.rare.samples`` in order (read from the mined
    data set). Relabels change ``labels`` at their ``train_index``; the imbalance fix repeats
    the rows of its oversampled classes (rare samples included) and turns class weights into
    per-sample weights (so they combine with oversampling); its logit offsets are returned for
    :func:`retrain` to apply after training. With an augment fix of ``copies``
    k > 0 the images (rare ones included) are followed by k copies of themselves that the
    pipeline disturbs, and the originals stay clean (``augment_mask``).

    Parameters
    ----------
    plan : TrainingPlan
    images : np.ndarray, uint8, shape (N, H, W, C)
    labels : np.ndarray, int, shape (N,)
    rare_images : np.ndarray, uint8, shape (R, H, W, C), optional
        Required when the plan has rare samples (R of them).

    Returns
    -------
    TrainingSet

    Raises
    ------
    PlanError
        The rare images do not match the plan's rare samples.
    """
    index = {name: k for k, name in enumerate(plan.class_names)}
    labels = np.asarray(labels, dtype=np.int64).copy()
    notes: list[str] = []
    n_relabelled = 0
    if plan.mislabel is not None:
        for relabel in plan.mislabel.relabels:
            if relabel.train_index is not None:
                labels[relabel.train_index] = index[relabel.new_label]
                n_relabelled += 1
        notes.append(f"relabelled {n_relabelled} training images")
    n_added = 0
    if plan.rare is not None and plan.rare.samples:
        if rare_images is None or len(rare_images) != len(plan.rare.samples):
            raise PlanError(f"the plan adds {len(plan.rare.samples)} rare samples but "
                            f"{0 if rare_images is None else len(rare_images)} images were given")
        extra = np.repeat(np.asarray(rare_images, dtype=images.dtype), plan.rare.oversample, axis=0)
        extra_labels = np.repeat([index[s.label] for s in plan.rare.samples], plan.rare.oversample)
        images = np.concatenate([images, extra])
        labels = np.concatenate([labels, extra_labels.astype(np.int64)])
        n_added = len(extra)
        notes.append(f"added {len(plan.rare.samples)} rare samples x{plan.rare.oversample}")
    sample_weight = None
    logit_offset = None
    n_oversampled = 0
    if plan.imbalance is not None and plan.imbalance.oversample:
        times = np.ones(len(plan.class_names), dtype=np.int64)
        for name, factor in plan.imbalance.oversample.items():
            times[index[name]] = max(1, int(factor))
        rows = np.repeat(np.arange(len(labels)), times[labels])
        n_oversampled = len(rows) - len(labels)
        images, labels = images[rows], labels[rows]
        notes.append("oversampled " + ", ".join(f"{k} x{v}" for k, v in plan.imbalance.oversample.items())
                     + f" ({n_oversampled} rows added)")
    if plan.imbalance is not None and plan.imbalance.class_weight:
        table = np.ones(len(plan.class_names), dtype=np.float32)
        for name, weight in plan.imbalance.class_weight.items():
            table[index[name]] = weight
        sample_weight = table[labels]
        notes.append("class weights " + ", ".join(f"{k} x{v:.2f}" for k, v in plan.imbalance.class_weight.items()))
    if plan.imbalance is not None and plan.imbalance.logit_offset:
        logit_offset = np.zeros(len(plan.class_names), dtype=np.float32)
        for name, offset in plan.imbalance.logit_offset.items():
            logit_offset[index[name]] = offset
        notes.append("decision thresholds after training: logit " + ", ".join(
            f"{k} {v:+.2f}" for k, v in plan.imbalance.logit_offset.items()))
    pipeline = plan.augment.pipeline() if plan.augment is not None else None
    augment_mask = None
    n_copies = 0
    if pipeline is not None:
        notes.append(f"augment {plan.augment.describe()}")
        copies = int(plan.augment.copies)
        if copies > 0:
            n = len(images)
            images = np.concatenate([images] * (copies + 1))
            labels = np.concatenate([labels] * (copies + 1))
            if sample_weight is not None:
                sample_weight = np.concatenate([sample_weight] * (copies + 1))
            augment_mask = np.repeat(np.arange(copies + 1) > 0, n)
            n_copies = n * copies
    return TrainingSet(images=images, labels=labels, sample_weight=sample_weight, pipeline=pipeline,
                       n_relabelled=n_relabelled, n_added=n_added, augment_mask=augment_mask,
                       n_augmented_copies=n_copies, n_oversampled=n_oversampled, logit_offset=logit_offset,
                       notes=notes)


def corrected_labels(plan: TrainingPlan, labels: np.ndarray, hashes: Sequence[str]) -> tuple[np.ndarray, int]:
    """Evaluation labels with the plan's relabels applied where an image's hash matches.

    Parameters
    ----------
    plan : TrainingPlan
    labels : np.ndarray, int, shape (N,)
    hashes : sequence of str, length N
        Content hashes of the evaluation images.

    Returns
    -------
    labels : np.ndarray, int64, shape (N,)
        A corrected copy.
    changed : int
        Labels that changed.
    """
    labels = np.asarray(labels, dtype=np.int64).copy()
    if plan.mislabel is None:
        return labels, 0
    index = {name: k for k, name in enumerate(plan.class_names)}
    new_by_hash = {r.content_hash: index[r.new_label] for r in plan.mislabel.relabels if r.content_hash}
    changed = 0
    for row, digest in enumerate(hashes):
        if digest in new_by_hash and labels[row] != new_by_hash[digest]:
            labels[row] = new_by_hash[digest]
            changed += 1
    return labels, changed


def fresh_model(model):
    """The same architecture with freshly initialised weights (``keras.models.clone_model``).

    Raises
    ------
    PlanError
        The model cannot be cloned (e.g. a subclassed model).
    """
    import keras

    try:
        return keras.models.clone_model(model)
    except Exception as exc:
        raise PlanError(f"cannot rebuild model {model.name!r} for retraining: {exc}") from None


def retrain(plan: TrainingPlan, model, images: np.ndarray, labels: np.ndarray, spec, *,
            rare_images: np.ndarray | None = None, epochs: int = 8, batch_size: int = 64, seed: int = 0,
            from_scratch: bool = True, progress: str | None = None):
    """Train a copy of ``model`` (fresh weights unless ``from_scratch=False``) with the plan.

    The same plan, data and seed give the same model.

    Parameters
    ----------
    plan : TrainingPlan
    model : keras.Model
        The model to retrain (left as it is).
    images : np.ndarray, uint8, shape (N, H, W, C)
    labels : np.ndarray, int, shape (N,)
    spec : PreprocessingSpec
    rare_images : np.ndarray, uint8, optional
        As for :func:`apply_plan`.
    epochs, batch_size, seed : int
        As for :func:`~hardcase.models.training.train_classifier`.
    from_scratch : bool
        False starts from ``model``'s weights.
    progress : str, optional
        A progress bar over the training steps with this description (None: silent).

    Returns
    -------
    new_model : keras.Model
    training_set : TrainingSet
    """
    import keras

    from hardcase.models.training import train_classifier

    data = apply_plan(plan, images, labels, rare_images=rare_images)
    keras.utils.set_random_seed(seed)
    new = fresh_model(model)
    if not from_scratch:
        new.set_weights(model.get_weights())
    train_classifier(new, data.images, data.labels, spec, epochs=epochs, batch_size=batch_size, seed=seed,
                     pipeline=data.pipeline, sample_weight=data.sample_weight, augment_mask=data.augment_mask,
                     progress=progress)
    if data.logit_offset is not None:
        adjust_decision_thresholds(new, data.logit_offset)
    return new, data


def adjust_decision_thresholds(model, logit_offset: np.ndarray) -> None:
    """Add ``logit_offset`` to the model's output logits, in place (the output layer's bias).

    Adding ``b_k`` to class k's logit multiplies its softmax probability by ``exp(b_k)`` before
    renormalising: its decision threshold moves, the features stay. The output must be a
    ``Dense`` layer with a bias and a softmax or linear activation, or a softmax layer right
    after one.

    Parameters
    ----------
    model : keras.Model
        Changed in place (saved with the change).
    logit_offset : np.ndarray, float, shape (K,)

    Raises
    ------
    PlanError
        No such output layer, or K is not its width.
    """
    offset = np.asarray(logit_offset, dtype=np.float32)
    layer = output_bias_layer(model)
    if offset.shape != (layer.units,):
        raise PlanError(f"logit_offset has shape {offset.shape}, the output layer has {layer.units} units")
    layer.bias.assign(np.asarray(layer.bias) + offset)


def output_bias_layer(model):
    """The ``Dense`` layer whose bias holds the model's output logits (see :func:`adjust_decision_thresholds`).

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    keras.layers.Dense

    Raises
    ------
    PlanError
        The output is not such a layer (nor a softmax right after a linear one).
    """
    import keras

    layer = model.layers[-1]
    if isinstance(layer, (keras.layers.Softmax, keras.layers.Activation)) and len(model.layers) > 1:
        layer = model.layers[-2]
        linear_only = True
    else:
        linear_only = False
    activation = getattr(getattr(layer, "activation", None), "__name__", None)
    allowed = ("linear",) if linear_only else ("linear", "softmax")
    if not isinstance(layer, keras.layers.Dense) or not layer.use_bias or activation not in allowed:
        raise PlanError(f"model {model.name!r}: moving decision thresholds needs a Dense output layer with a bias "
                        f"(softmax or linear), found {type(layer).__name__} ({activation}); use another imbalance "
                        f"method ({', '.join(m for m in IMBALANCE_METHODS if m != 'threshold')})")
    return layer


# --------------------------------------------------------------------------- metrics


def predict_labels(model, spec, images: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
    """Arg-max predictions of a Keras model.

    Parameters
    ----------
    model : keras.Model
    spec : PreprocessingSpec
        Scales the images (and orders their channels); the model's input may be flat.
    images : np.ndarray, uint8, shape (N, H, W, C)
    batch_size : int

    Returns
    -------
    np.ndarray, int, shape (N,)
    """
    from hardcase.models.classifier import model_layout

    out = []
    for start in range(0, len(images), batch_size):
        x = model_layout(model, spec.prepare(np.asarray(images[start:start + batch_size])))
        out.append(np.asarray(model(x, training=False)).argmax(axis=1))
    return np.concatenate(out) if out else np.empty(0, np.int64)


def accuracy_and_recall(pred: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy and per-class recall over the samples with a known label.

    Parameters
    ----------
    pred : np.ndarray, int, shape (N,)
    labels : np.ndarray, int, shape (N,)
        -1 = unknown (left out).
    class_names : sequence of str
        K names; recall is keyed by them.

    Returns
    -------
    dict
        ``n`` (known labels), ``accuracy`` (None without any) and ``recall`` (name -> float,
        None for a class with no sample).
    """
    known = labels >= 0
    pred, labels = pred[known], labels[known]
    recall = {}
    for k, name in enumerate(class_names):
        members = labels == k
        recall[name] = float(np.mean(pred[members] == k)) if members.any() else None
    return {"n": int(known.sum()), "accuracy": float(np.mean(pred == labels)) if len(labels) else None,
            "recall": recall}


def prediction_flips(before: np.ndarray, after: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    """Samples right before and wrong after (``broken``), the reverse (``fixed``), any change.

    Parameters
    ----------
    before, after : np.ndarray, int, shape (N,)
        Predictions of the old and the new model.
    labels : np.ndarray, int, shape (N,)
        -1 = unknown (counted only in ``changed``).

    Returns
    -------
    dict of str to int
        ``fixed``, ``broken`` and ``changed``.
    """
    known = labels >= 0
    right_before = (before == labels) & known
    right_after = (after == labels) & known
    return {
        "fixed": int(np.sum(~right_before & right_after & known)),
        "broken": int(np.sum(right_before & ~right_after)),
        "changed": int(np.sum(before != after)),
    }
