"""The exhaustive transform grid: the baseline ``bench/faults.py`` measures the transform search against.

Not part of the product: the search (:func:`hardcase.models.transform_search.search_transforms`)
evaluates about 50 transforms per candidate, coarse to fine and guided; this grid tries every
rotation in ``GRID_ANGLES`` and every tilt in ``GRID_STRENGTHS x GRID_DIRECTIONS`` (286
transforms with the identity) and keeps the one giving the target the highest probability,
with no restoration tests. Transforms are applied and evaluated the search's batched way
(:class:`hardcase.models.transform_search.TransformEvaluator`).

Import it from a bench script or test with the repository's ``bench`` folder on ``sys.path``::

    sys.path.insert(0, str(REPO / "bench"))
    from exhaustive_grid import exhaustive_grid
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hardcase.miner.protocols import Classifier
from hardcase.models.transform_search import TransformEvaluator, check_search_inputs
from hardcase.models.transforms import Transform

__all__ = ["GRID_ANGLES", "GRID_DIRECTIONS", "GRID_STRENGTHS", "GridResult", "exhaustive_grid"]

#: 29 rotations every 5 degrees, -70..70 (the identity among them).
GRID_ANGLES = tuple(float(a) for a in range(-70, 71, 5))
#: 16 tilt strengths from 0.02 to 0.32.
GRID_STRENGTHS = tuple(float(s) for s in np.round(np.linspace(0.02, 0.32, 16), 4))
#: Tilt directions, evenly spaced over 360 degrees (16 x 16 = 256 warps, 257 with the identity).
GRID_DIRECTIONS = 16


@dataclass(frozen=True)
class GridResult:
    """The exhaustive grid's best transform per image (highest target probability).

    Attributes
    ----------
    transform : tuple of dict, length M
        The best transform of each image (``Transform.to_dict()``).
    after : np.ndarray, float64, shape (M,)
        The target's probability under it.
    predicted_after : np.ndarray, int64, shape (M,)
        The model's prediction under it.
    seconds : float
        Wall time of the whole grid.
    model_seconds : float
        Of which in the model.
    evaluations : int
        Model evaluations (M x the number of grid transforms).
    """

    transform: tuple
    after: np.ndarray
    predicted_after: np.ndarray
    seconds: float
    model_seconds: float
    evaluations: int


def exhaustive_grid(
    classifier: Classifier,
    images,
    targets,
    *,
    angles=GRID_ANGLES,
    strengths=GRID_STRENGTHS,
    directions: int = GRID_DIRECTIONS,
    chunk_size: int = 64,
    batch_size: int = 2048,
) -> GridResult:
    """Every rotation in ``angles`` and every tilt in ``strengths x directions`` (plus identity).

    Parameters
    ----------
    classifier : hardcase.miner.protocols.Classifier
    images : np.ndarray, uint8, shape (M, H, W, C)
    targets : np.ndarray, int, shape (M,)
        The class whose probability each image's best transform maximizes.
    angles : sequence of float
        Rotations in degrees (0 is skipped: the identity is always tried).
    strengths : sequence of float
        Tilt strengths.
    directions : int
        Tilt directions, evenly spaced over 360 degrees.
    chunk_size : int
        Images evaluated together.
    batch_size : int
        Largest model batch.

    Returns
    -------
    GridResult
        Ties go to the earlier transform: identity, rotations, then tilts.
    """
    images, targets, _ = check_search_inputs(classifier, images, targets, None)
    grid = [Transform()] + [Transform(rotate=float(a)) for a in angles if a != 0]
    grid += [Transform(perspective=float(s), direction=float(d * 360.0 / directions))
             for s in strengths for d in range(directions)]
    started = time.perf_counter()
    ev = TransformEvaluator(classifier, images, targets, None, batch_size)
    chosen, after, predicted = [], [], []
    for start in range(0, len(images), chunk_size):
        rows = range(start, min(start + chunk_size, len(images)))
        ev.run([(i, t) for i in rows for t in grid])
        for i in rows:
            best = max(grid, key=lambda t: ev.results[i][t].p_target)
            result = ev.results[i][best]
            chosen.append(best.to_dict())
            after.append(result.p_target)
            predicted.append(result.predicted)
            ev.results[i] = {}
    return GridResult(
        transform=tuple(chosen), after=np.array(after), predicted_after=np.array(predicted, dtype=np.int64),
        seconds=time.perf_counter() - started, model_seconds=ev.model_seconds, evaluations=ev.n_evaluated,
    )
