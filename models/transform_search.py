"""Batched transform search: the smallest convincing geometric fix for a misclassified image.

For each candidate image and a target class (its given label, or its prediction when the
label is unknown) the search looks for a rotation (-90..90 degrees), a perspective un-warp
(tilt strength x direction, :class:`hardcase.models.transforms.Transform`), a zoom and shift, or a
combination of them, under which the model predicts the target again. Every transform is
applied with :func:`hardcase.models.transforms.apply_transform` - the albumentations operations of the
review sliders and of retraining - and all transforms of a stage go through the model in one
batch (a transform shared by many candidates is applied to all of them at once, stacked along
the channel axis, which gives exactly the per-image result).

Coarse to fine and guided, not a grid: 29 shared coarse transforms (identity, 12 rotations
every 15 degrees, 8 tilt directions, 2 scales, 6 horizontal shears every 15 degrees), then per
candidate a refinement of its best rotation (+-5, then +-2.5 degrees), of its best tilt
(strength, then direction) and of its best shear (+-7.5 degrees); then,
given the reference images' typical centroid and spread per class (:class:`ClassMoments`), a
*moment fit*: the zoom and shift that give the image - as it is, after each coarse tilt and
after its best rotation - its target class's typical centroid and spread, with the best fitted
tilt refined again and the best fit corrected once on its own result (a hard perspective warp
enlarges and moves a digit as much as it tilts it); then combinations of the best rotation, tilt, scale and shear, then a stability check of the best
restoration (and of the runner-up when it fails): about 50 model evaluations per candidate,
against 286 for an exhaustive grid of 29 angles and 257 perspective warps (the benchmark
baseline ``bench/exhaustive_grid.py``, built on :class:`TransformEvaluator`).

When does a transform *restore* the target? Maximizing the target's probability alone
"fixes" many images that are hard for other reasons (a mislabeled 3 rotated until it reads
as an 8). A restoration must pass four tests, each calibrated on data, not on constants:

1. the model predicts the target, with at least the target's confident threshold ``t_c``
   (cleanlab's per-class threshold, estimated on the pool);
2. the transformed image's embedding is a *typical* member of the target class among the
   training embeddings: its conformal typicality p-value (:mod:`hardcase.miner.causes`) is at least
   ``alpha`` - a rotated 3 that the model calls 8 is not a typical 8;
3. the prediction is stable: rotating the restored image by a further +-5 degrees keeps it;
4. optionally, the restoration is more convincing than what the same search achieves on
   clean reference images steered toward a wrong class (:func:`calibrate_null`): its
   statistic ``p_target x typicality`` must exceed the cut that best separates those false
   fixes from the search's restorations of the same references warped by its own kind of
   transform (at most the ``1 - alpha`` quantile of the false fixes).

The suggested transform is the most typical restoring one (ties: the smaller); the smallest
restoring transform is reported beside it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from hardcase.miner.causes import DEFAULT_ALPHA, ClassDensity, TransformEvidence, class_typicality
from hardcase.miner.protocols import Classifier
from hardcase.models.transforms import (
    MAX_PERSPECTIVE,
    MAX_SHEAR,
    MAX_SHIFT,
    Transform,
    applied_shift,
    apply_transform,
    snap_shift,
)

#: Relative difference in normalized distance below which two restoring transforms count as
#: equally typical (and the smaller one is suggested).
TYPICALITY_TIE = 0.2

__all__ = [
    "ClassMoments",
    "Evaluation",
    "NullCalibration",
    "RestorationVerdict",
    "SearchSpace",
    "TransformEvaluator",
    "calibrate_null",
    "check_search_inputs",
    "class_moments",
    "family_of",
    "image_moments",
    "judge_restorations",
    "null_reference_rows",
    "own_warps",
    "search_transforms",
]


@dataclass(frozen=True)
class SearchSpace:
    """The parameters a search explores.

    Attributes
    ----------
    max_rotation : float
        Rotations lie in [-max_rotation, max_rotation] degrees.
    coarse_rotation_step : float
        Spacing of the shared coarse rotations.
    fine_rotation_steps : tuple of float
        Successive refinements around the best rotation (each evaluates +-step).
    tilt_strengths : tuple of float
        Coarse tilt strengths (share of the image size, <= MAX_PERSPECTIVE).
    tilt_directions : int
        Coarse tilt directions, evenly spaced over 360 degrees.
    fine_tilt_strength : float
        Strength refinement (+-) around the best tilt; directions are refined by half the
        coarse spacing.
    scales : tuple of float
        Scale factors tried (small changes only).
    max_shear, shear_step : float
        Horizontal shears every ``shear_step`` degrees within ``+-max_shear`` (a slanted
        hand, a skewed scan), refined by half a step around the best; 0 = no shears.
    combine : bool
        Also try the best rotation, tilt, scale and shear together.
    stability_rotation : float
        Extra rotation (+-) under which a restoration must keep the target.
    fit_scales : tuple of float
        The (min, max) zoom a moment fit may propose (see :class:`ClassMoments`).
    max_shift : float
        The largest shift (share of the image size, per axis) a moment fit may propose.
    """

    max_rotation: float = 90.0
    coarse_rotation_step: float = 15.0
    fine_rotation_steps: tuple[float, ...] = (5.0, 2.5)
    tilt_strengths: tuple[float, ...] = (0.15,)
    tilt_directions: int = 8
    fine_tilt_strength: float = 0.07
    scales: tuple[float, ...] = (0.8, 1.25)
    max_shear: float = MAX_SHEAR
    shear_step: float = 15.0
    combine: bool = True
    stability_rotation: float = 5.0
    fit_scales: tuple[float, float] = (0.6, 1.6)
    max_shift: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.max_rotation <= 175:
            raise ValueError(f"max_rotation must be in (0, 175], got {self.max_rotation}")
        if self.coarse_rotation_step <= 0:
            raise ValueError(f"coarse_rotation_step must be > 0, got {self.coarse_rotation_step}")
        for strength in self.tilt_strengths:
            if not 0 < strength <= MAX_PERSPECTIVE:
                raise ValueError(f"tilt strengths must be in (0, {MAX_PERSPECTIVE}], got {strength}")
        if self.tilt_directions < 1:
            raise ValueError(f"tilt_directions must be >= 1, got {self.tilt_directions}")
        for scale in (*self.scales, *self.fit_scales):
            if not 0.25 <= scale <= 4:
                raise ValueError(f"scales must be in [0.25, 4], got {scale}")
        if len(self.fit_scales) != 2 or self.fit_scales[0] > self.fit_scales[1]:
            raise ValueError(f"fit_scales must be (min, max), got {self.fit_scales}")
        if not 0 <= self.max_shift <= MAX_SHIFT:
            raise ValueError(f"max_shift must be in [0, {MAX_SHIFT}], got {self.max_shift}")
        if not 0 <= self.max_shear <= MAX_SHEAR:
            raise ValueError(f"max_shear must be in [0, {MAX_SHEAR}], got {self.max_shear}")
        if self.shear_step <= 0:
            raise ValueError(f"shear_step must be > 0, got {self.shear_step}")

    def coarse(self) -> list[Transform]:
        """Identity first, then the shared coarse transforms: rotations, tilts, scales, shears."""
        steps = int(math.floor(self.max_rotation / self.coarse_rotation_step + 1e-9))
        angles = [s * self.coarse_rotation_step for s in range(-steps, steps + 1) if s != 0]
        out = [Transform()]
        out += [Transform(rotate=float(a)) for a in angles]
        spacing = 360.0 / self.tilt_directions
        out += [
            Transform(perspective=float(s), direction=float(d * spacing))
            for s in self.tilt_strengths
            for d in range(self.tilt_directions)
        ]
        out += [Transform(scale=float(s)) for s in self.scales]
        shears = int(math.floor(self.max_shear / self.shear_step + 1e-9))
        out += [Transform(shear=float(s * self.shear_step)) for s in range(-shears, shears + 1) if s != 0]
        return out


@functools.lru_cache(maxsize=1 << 16)
def family_of(transform: Transform) -> str:
    """The family of a transform, the way cause evidence names it.

    Returns
    -------
    str
        ``rotate``, ``perspective``, ``scale``, ``shift`` or ``skew`` (stretch or shear) when
        the transform does only that, ``combined`` when it does several, ``none`` for the
        identity.
    """
    used = [
        name
        for name, on in (
            ("rotate", transform.rotate != 0),
            ("perspective", transform.perspective != 0),
            ("scale", transform.scale != 1),
            ("shift", transform.shifts),
            ("skew", transform.skews),
        )
        if on
    ]
    if not used:
        return "none"
    return used[0] if len(used) == 1 else "combined"


@functools.lru_cache(maxsize=1 << 16)
def _magnitude(transform: Transform, space: SearchSpace) -> float:
    """Size of a transform: each parameter as a share of its search range, summed."""
    scale_range = max(abs(math.log(s)) for s in (*space.scales, *space.fit_scales))
    return (
        abs(transform.rotate) / space.max_rotation
        + transform.perspective / MAX_PERSPECTIVE
        + abs(math.log(transform.scale)) / max(scale_range, 1e-9)
        + (abs(transform.shift_x) + abs(transform.shift_y)) / max(space.max_shift, 1e-9)
        + abs(transform.shear) / MAX_SHEAR
    )


def _wrap(direction: float) -> float:
    return float(direction % 360.0)


def _with_rotation(transform: Transform, delta: float) -> Transform:
    return dataclasses.replace(transform, rotate=max(-180.0, min(180.0, transform.rotate + delta)))


def _jittered(transform: Transform, space: SearchSpace) -> tuple[Transform, Transform]:
    """``transform`` with the stability rotation added either way (test 3 of the module docstring)."""
    return (_with_rotation(transform, -space.stability_rotation), _with_rotation(transform, space.stability_rotation))


def _is_stable(results: dict[Transform, Evaluation], transform: Transform, target: int, space: SearchSpace) -> bool:
    """Whether both jittered versions of ``transform`` (already evaluated) still predict ``target``."""
    return all(results[t].predicted == target for t in _jittered(transform, space))


# ---------------------------------------------------------------------------- evaluation


class Evaluation(NamedTuple):
    """What the model makes of one candidate image under one transform.

    Attributes
    ----------
    p_target : float
        The model's probability of the candidate's target class.
    predicted : int
        The class the model predicts.
    typicality : float
        The conformal typicality p-value of the transformed image's embedding for the target
        class (:func:`hardcase.miner.causes.class_typicality`); NaN without a density.
    distance : float
        Its normalized distance to the target class's training embeddings (smaller = more
        typical); NaN without a density.
    """

    p_target: float
    predicted: int
    typicality: float
    distance: float


class TransformEvaluator:
    """Runs (candidate, transform) requests through albumentations and the model, in batches.

    A transform shared by several requested candidates is applied to all of them at once;
    every result is kept in :attr:`results` and a request already evaluated is not run again.

    Parameters
    ----------
    classifier : hardcase.miner.protocols.Classifier
        With an embedding when ``density`` is given.
    images : np.ndarray, uint8, shape (M, H, W, C)
        The candidates (as checked by :func:`check_search_inputs`).
    targets : np.ndarray, int64, shape (M,)
        The class each candidate should be restored to.
    density : ClassDensity or None
        Training-embedding density for :attr:`Evaluation.typicality`; None leaves it NaN.
    batch_size : int
        Largest model batch.

    Attributes
    ----------
    results : list of dict
        Per candidate (index into ``images``): ``{Transform: Evaluation}`` of every transform
        evaluated on it; the caller may empty a candidate's dict once it is decided.
    model_seconds, transform_seconds : float
        Time spent in the model and in applying transforms.
    n_evaluated : int
        Model evaluations run (one per image and transform).
    """

    def __init__(self, classifier: Classifier, images: np.ndarray, targets: np.ndarray,
                 density: ClassDensity | None, batch_size: int) -> None:
        self.classifier = classifier
        self.images = images
        self.targets = targets
        self.density = density
        self.batch_size = batch_size
        self.model_seconds = 0.0
        self.transform_seconds = 0.0
        self.n_evaluated = 0
        self.results: list[dict[Transform, Evaluation]] = [dict() for _ in range(len(images))]

    def run(self, requests: list[tuple[int, Transform]]) -> None:
        """Evaluate every ``(candidate index, transform)`` request not evaluated yet; results go to :attr:`results`."""
        todo = [(i, t) for i, t in dict.fromkeys(requests) if t not in self.results[i]]
        if not todo:
            return
        started = time.perf_counter()
        by_transform: dict[Transform, list[int]] = defaultdict(list)
        for i, t in todo:
            by_transform[t].append(i)
        order: list[tuple[int, Transform]] = []
        parts = []
        for t, rows in by_transform.items():
            parts.append(_apply_stacked(self.images[rows], t))
            order.extend((i, t) for i in rows)
        batch = np.concatenate(parts)
        self.transform_seconds += time.perf_counter() - started
        probs, embs = [], []
        started = time.perf_counter()
        for start in range(0, len(batch), self.batch_size):
            p, e = self.classifier.predict_and_embed_batch(batch[start : start + self.batch_size],
                                                           batch_label="transform search")
            probs.append(p)
            embs.append(e)
        self.model_seconds += time.perf_counter() - started
        probs = np.concatenate(probs)
        rows = np.array([i for i, _ in order])
        targets = self.targets[rows]
        p_target = probs[np.arange(len(rows)), targets]
        predicted = probs.argmax(axis=1)
        if self.density is not None and embs[0] is not None:
            emb = np.concatenate(embs).astype(np.float32)
            # small per-class products between model calls: BLAS threads only spin against
            # the model's own thread pool (10x slower on 2 busy cores)
            with threadpool_limits(limits=1, user_api="blas"):
                typicality = class_typicality(emb, targets, density=self.density)
            typ, dist = typicality.pvalue, typicality.distance
        else:
            typ = dist = np.full(len(rows), np.nan)
        for j, (i, t) in enumerate(order):
            self.results[i][t] = Evaluation(p_target=float(p_target[j]), predicted=int(predicted[j]),
                                            typicality=float(typ[j]), distance=float(dist[j]))
        self.n_evaluated += len(order)


def _apply_stacked(images: np.ndarray, transform: Transform) -> np.ndarray:
    """``apply_transform`` on every image at once (stacked along channels): (B, H, W, C)."""
    b, h, w, c = images.shape
    stacked = np.ascontiguousarray(images.transpose(1, 2, 0, 3).reshape(h, w, b * c))
    out = apply_transform(stacked, transform)
    return np.ascontiguousarray(out.reshape(h, w, b, c).transpose(2, 0, 1, 3))


# ---------------------------------------------------------------------------- moment fits


def image_moments(images) -> np.ndarray:
    """Where each image's intensity mass lies and how far it spreads.

    Parameters
    ----------
    images : np.ndarray, shape (M, H, W) or (M, H, W, C)

    Returns
    -------
    np.ndarray, float64, shape (M, 3)
        Centroid x and y as shares of the width and height, and the spread (root mean
        squared distance of the mass from its centroid) as a share of ``sqrt(H * W)``.
        An all-zero image gets the centre and NaN spread.
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 4:
        x = x.mean(axis=3)
    if x.ndim != 3:
        raise ValueError(f"images must have shape (M, H, W[, C]), got {np.shape(images)}")
    _, h, w = x.shape
    mass = x.sum(axis=(1, 2))
    safe = np.where(mass > 0, mass, 1.0)
    col, row = x.sum(axis=1), x.sum(axis=2)  # (M, W), (M, H)
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    cx, cy = col @ xs / safe, row @ ys / safe
    var = (col @ xs**2 + row @ ys**2) / safe - cx**2 - cy**2
    spread = np.sqrt(np.clip(var, 0.0, None)) / math.sqrt(h * w)
    empty = mass <= 0
    cx[empty], cy[empty], spread[empty] = (w - 1) / 2, (h - 1) / 2, np.nan
    return np.stack([(cx + 0.5) / w, (cy + 0.5) / h, spread], axis=1)


@dataclass(frozen=True)
class ClassMoments:
    """The typical centroid and spread of each class's reference images.

    A moment fit proposes the zoom and shift that give a candidate the typical centroid
    and spread of its target class: the guided part of the search, for images that a
    warp enlarged or moved off-centre. The references are data (e.g. the training images),
    so the proposal is whatever is typical there.

    Attributes
    ----------
    centroid : np.ndarray, shape (K, 2)
        Median centroid (x, y) as shares of the width and height.
    spread : np.ndarray, shape (K,)
        Median spread (see :func:`image_moments`).
    """

    centroid: np.ndarray
    spread: np.ndarray


def class_moments(moments, labels, *, n_classes: int) -> ClassMoments:
    """Per-class medians of :func:`image_moments` rows; classes without images get the overall median.

    Parameters
    ----------
    moments : np.ndarray, shape (T, 3)
        :func:`image_moments` of reference images.
    labels : np.ndarray, int, shape (T,)
        -1 = unknown (used for the overall median only).
    n_classes : int
        K.

    Returns
    -------
    ClassMoments
        With ``centroid`` (K, 2) and ``spread`` (K,).

    Raises
    ------
    ValueError
        Shapes that do not fit, or no reference image with any intensity.
    """
    moments = np.asarray(moments, dtype=np.float64)
    labels = np.asarray(labels)
    if moments.ndim != 2 or moments.shape[1] != 3:
        raise ValueError(f"moments must have shape (T, 3), got {moments.shape}")
    if labels.shape != (len(moments),):
        raise ValueError(f"labels must have shape (T,) = ({len(moments)},), got {labels.shape}")
    valid = np.isfinite(moments[:, 2])
    if not valid.any():
        raise ValueError("no reference image has any intensity: cannot estimate class moments")
    overall = np.median(moments[valid], axis=0)
    table = np.tile(overall, (n_classes, 1))
    for c in range(n_classes):
        members = valid & (labels == c)
        if members.any():
            table[c] = np.median(moments[members], axis=0)
    return ClassMoments(centroid=table[:, :2].copy(), spread=table[:, 2].copy())


def _fit_to_class(t: Transform, m: np.ndarray, target: int, moments: ClassMoments, space: SearchSpace,
                  shape: tuple[int, int]) -> Transform:
    """``t`` with the zoom and shift that move the moments ``m`` of its result (one
    :func:`image_moments` row) to the target class's typical centroid and spread.

    A zoom by ``factor`` about the centre moves a point to ``centre + factor * (point - centre)``
    and scales the shift ``t`` already applies (whole pixels); the new shift adds what is missing.
    A result without spread keeps ``t``'s zoom.
    """
    height, width = shape
    low, high = space.fit_scales
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = float(np.clip(t.scale * moments.spread[target] / m[2], low, high))
    if not math.isfinite(scale):
        scale = t.scale
    factor = scale / t.scale
    shift_x = factor * applied_shift(t.shift_x, width) + moments.centroid[target, 0] - (0.5 + factor * (m[0] - 0.5))
    shift_y = factor * applied_shift(t.shift_y, height) + moments.centroid[target, 1] - (0.5 + factor * (m[1] - 0.5))
    limit = space.max_shift
    return dataclasses.replace(
        t,
        scale=round(scale, 3),
        shift_x=snap_shift(float(np.clip(shift_x, -limit, limit)), width),
        shift_y=snap_shift(float(np.clip(shift_y, -limit, limit)), height),
    )


def _fitted(ev: TransformEvaluator, bases: list[tuple[int, Transform]], moments: ClassMoments,
            space: SearchSpace) -> list[tuple[int, Transform]]:
    """Each base transform (rotation and/or tilt) completed by the zoom and shift that give
    the transformed image its target class's typical centroid and spread (:func:`_fit_to_class`;
    a base shared by many candidates is applied to all of them at once)."""
    by_base: dict[Transform, list[int]] = defaultdict(list)
    for i, t in dict.fromkeys(bases):
        by_base[t].append(i)
    out = []
    for base, rows in by_base.items():
        m = image_moments(_apply_stacked(ev.images[rows], base))
        out += [(i, _fit_to_class(base, m[j], int(ev.targets[i]), moments, space, ev.images.shape[1:3]))
                for j, i in enumerate(rows)]
    return out


# ---------------------------------------------------------------------------- decisions


def _restores(result: Evaluation, target: int, threshold: float, alpha: float) -> bool:
    """Tests 1 and 2 of the module docstring: the target predicted, confidently, and typical of it."""
    typ = result.typicality
    return result.predicted == target and result.p_target >= threshold and (not math.isfinite(typ) or typ >= alpha)


def _statistic(result: Evaluation) -> float:
    """How convincing a restoration is: ``p_target x typicality p-value``."""
    typ = result.typicality
    return result.p_target * (typ if math.isfinite(typ) else 1.0)


def _rank_key(result: Evaluation, target: int, threshold: float, alpha: float, magnitude: float):
    """Sort key, best first: restoring before not; then most typical (smallest normalized
    distance to the target class), else highest target probability; then the smaller transform."""
    p, dist = result.p_target, result.distance
    if _restores(result, target, threshold, alpha):
        return (0, dist if math.isfinite(dist) else -p, magnitude)
    return (1, -p, magnitude)


@dataclass(frozen=True)
class NullCalibration:
    """What the search does on clean reference images steered toward a wrong class, and on
    the same references warped by a transform of its own space and steered back.

    Attributes
    ----------
    rate : float
        Share of reference images the search "restores" to the wrong target.
    statistic : np.ndarray, shape (n,)
        ``p_target x typicality`` of each reference's best false restoration (0 when none).
    alpha : float
        Level of the null quantile (the threshold without a positive calibration).
    restored : np.ndarray, shape (m,)
        ``p_target x typicality`` of the search's restoration of each warped reference the
        model got wrong (0 when the search did not restore it): what a real restoration
        reaches with this model and data. Empty without a positive calibration.
    stats : dict
        The calibration searches' timing (as ``TransformEvidence.stats``).
    """

    rate: float
    statistic: np.ndarray
    alpha: float
    restored: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stats: dict = field(default_factory=dict)

    @property
    def quantile(self) -> float:
        """The ``1 - alpha`` quantile of the null statistic (conformal: the ceil((n+1)(1-alpha))-th value)."""
        n = len(self.statistic)
        if n == 0:
            return 0.0
        rank = math.ceil((n + 1) * (1 - self.alpha))
        if rank > n:
            return float("inf")
        return float(np.sort(self.statistic)[rank - 1])

    @property
    def threshold(self) -> float:
        """The statistic a restoration must exceed.

        With a positive calibration, the cut that makes the fewest errors over both
        calibrations, each weighted by its size (Youden's J: false fixes above it plus real
        restorations at or below it), where that is below the null's ``1 - alpha`` quantile:
        with a model and data where false fixes are common (look-alike classes), a level-alpha
        test would also reject most real restorations. Without one, the quantile.
        """
        quantile = self.quantile
        null, real = np.sort(self.statistic), np.sort(self.restored)
        if not len(null) or not len(real):
            return quantile
        cuts = np.unique(np.concatenate([[0.0], null, real]))
        false_fixes = 1.0 - np.searchsorted(null, cuts, side="right") / len(null)
        missed = np.searchsorted(real, cuts, side="right") / len(real)
        best = float(cuts[int(np.argmin(false_fixes + missed))])  # the lowest of equal cuts
        return min(best, quantile)


@dataclass(frozen=True)
class _Decision:
    """The search's decision on one candidate: one row of :class:`~hardcase.miner.causes.TransformEvidence`."""

    target: int
    family: str
    transform: dict
    """The suggested transform (``Transform.to_dict()``)."""
    before: float
    """The target's probability on the image as it is."""
    after: float
    """The target's probability after the suggested transform."""
    predicted_after: int
    typicality: float
    stable: bool
    restores: bool
    smallest: dict | None
    """The smallest restoring transform (``to_dict()``), or None."""


def _search_chunk(ev: TransformEvaluator, rows: np.ndarray, thresholds: np.ndarray, alpha: float,
                  space: SearchSpace, null: NullCalibration | None, moments: ClassMoments | None) -> list[_Decision]:
    res, tgt = ev.results, ev.targets

    def key(i: int, t: Transform):
        target = int(tgt[i])
        return _rank_key(res[i][t], target, float(thresholds[target]), alpha, _magnitude(t, space))

    def best_of(i: int, family: str) -> Transform | None:
        members = [t for t in res[i] if family_of(t) == family]
        return min(members, key=lambda t: key(i, t)) if members else None

    ev.run([(int(i), t) for i in rows for t in space.coarse()])
    # refine the best rotation, coarse to fine
    for step in space.fine_rotation_steps:
        requests = []
        for i in map(int, rows):
            b = best_of(i, "rotate")
            if b is not None:
                requests += [
                    (i, Transform(rotate=float(b.rotate + d)))
                    for d in (-step, step)
                    if abs(b.rotate + d) <= space.max_rotation and b.rotate + d != 0
                ]
        ev.run(requests)
    # refine the best tilt: strength, then direction by half the coarse spacing
    half = 180.0 / space.tilt_directions
    requests = []
    for i in map(int, rows):
        b = best_of(i, "perspective")
        if b is None:
            continue
        for strength in (b.perspective - space.fine_tilt_strength, b.perspective + space.fine_tilt_strength):
            if 0 < strength <= MAX_PERSPECTIVE:
                requests.append((i, Transform(perspective=round(float(strength), 4), direction=b.direction)))
        requests += [(i, Transform(perspective=b.perspective, direction=_wrap(b.direction + d))) for d in (-half, half)]
    ev.run(requests)
    # refine the best shear by half a step either way
    if space.max_shear:
        requests = []
        for i in map(int, rows):
            b = best_of(i, "skew")
            if b is not None:
                requests += [(i, Transform(shear=float(b.shear + d))) for d in (-space.shear_step / 2, space.shear_step / 2)
                             if abs(b.shear + d) <= space.max_shear and b.shear + d != 0]
        ev.run(requests)
    # guided: moment fits (zoom and shift to the target class's typical centroid and spread)
    # on the image as it is, after each coarse tilt and after the best rotation; then the
    # best fitted tilt refined like the plain one
    if moments is not None:
        tilts = [t for t in space.coarse() if t.perspective]
        bases = []
        for i in map(int, rows):
            best_rotation = best_of(i, "rotate")
            bases += [(i, Transform())] + [(i, t) for t in tilts]
            if best_rotation is not None:
                bases.append((i, best_rotation))
        fitted = _fitted(ev, bases, moments, space)
        ev.run(fitted)
        fitted_by_row: dict[int, list[Transform]] = defaultdict(list)
        for i, t in fitted:
            fitted_by_row[i].append(t)
        bases = []
        for i in map(int, rows):
            tilted = [t for t in fitted_by_row[i] if t.perspective and not t.rotate]
            if not tilted:
                continue
            b = min(tilted, key=lambda t: key(i, t))
            for strength in (b.perspective - space.fine_tilt_strength, b.perspective + space.fine_tilt_strength):
                if 0 < strength <= MAX_PERSPECTIVE:
                    bases.append((i, Transform(perspective=round(float(strength), 4), direction=b.direction)))
            bases += [(i, Transform(perspective=b.perspective, direction=_wrap(b.direction + d))) for d in (-half, half)]
        refined = _fitted(ev, bases, moments, space)
        ev.run(refined)
        for i, t in refined:
            fitted_by_row[i].append(t)
        # one correction of the best fit: its zoom and shift re-measured on its own result
        best_fits = [(i, min(ts, key=lambda t, i=i: key(i, t))) for i, ts in fitted_by_row.items() if ts]
        ev.run(_refitted(ev, best_fits, moments, space))
    # combine the best rotation, tilt and scale
    if space.combine:
        requests = []
        for i in map(int, rows):
            parts = [b for b in (best_of(i, f) for f in ("rotate", "perspective", "scale", "skew")) if b is not None]
            combos = [(parts[a], parts[b]) for a in range(len(parts)) for b in range(a + 1, len(parts))]
            if len(parts) >= 3:
                combos.append(tuple(parts))
            requests += [(i, _combine(combo)) for combo in combos]
        ev.run(requests)

    # the best restoration of each candidate, and its stability (the runner-up when it fails)
    def is_stable(i: int, t: Transform) -> bool:
        return _is_stable(res[i], t, int(tgt[i]), space)

    shortlist: dict[int, list[Transform]] = {}
    for i in map(int, rows):
        target = int(tgt[i])
        thr = float(thresholds[target])
        if _restores(res[i][Transform()], target, thr, alpha):
            shortlist[i] = []  # already predicted confidently and typical: nothing to restore
            continue
        restoring = sorted((t for t in res[i] if not t.is_identity and _restores(res[i][t], target, thr, alpha)),
                           key=lambda t: key(i, t))
        shortlist[i] = restoring[:2]
    ev.run([(i, t) for i, ts in shortlist.items() if ts for t in _jittered(ts[0], space)])
    ev.run([(i, t) for i, ts in shortlist.items() if len(ts) > 1 and not is_stable(i, ts[0])
            for t in _jittered(ts[1], space)])

    null_threshold = null.threshold if null is not None else -math.inf
    out = []
    for i in map(int, rows):
        target = int(tgt[i])
        thr = float(thresholds[target])
        identity = res[i][Transform()]
        already = _restores(identity, target, thr, alpha)
        stable = [t for t in shortlist[i] if all(j in res[i] for j in _jittered(t, space)) and is_stable(i, t)]
        if stable:
            # typicality differences within TYPICALITY_TIE are noise: among those, the smallest fix
            best = res[i][stable[0]].distance
            near = [t for t in stable if math.isfinite(best) and res[i][t].distance <= best * (1 + TYPICALITY_TIE)]
            chosen, steady = min(near or stable[:1], key=lambda t: _magnitude(t, space)), True
            decisive = stable[0]  # whether anything restores is judged on the most typical fix
        elif shortlist[i]:
            chosen, steady = shortlist[i][0], False
        elif already:
            chosen, steady = Transform(), True
        else:  # nothing restores: the transform giving the target the highest probability
            chosen, steady = min((t for t in res[i] if not t.is_identity), key=lambda t: key(i, t)), False
        restores = bool(stable) and _statistic(res[i][decisive]) > null_threshold
        restoring = [t for t in res[i] if not t.is_identity and _restores(res[i][t], target, thr, alpha)]
        smallest = None if already or not restoring else min(
            restoring, key=lambda t: (_magnitude(t, space), -res[i][t].p_target))
        result = res[i][chosen]
        out.append(_Decision(
            target=target,
            family=family_of(chosen),
            transform=chosen.to_dict(),
            before=identity.p_target,
            after=result.p_target,
            predicted_after=result.predicted,
            typicality=result.typicality,
            stable=steady,
            restores=restores,
            smallest=smallest.to_dict() if smallest is not None else None,
        ))
    return out


def _refitted(ev: TransformEvaluator, fits: list[tuple[int, Transform]], moments: ClassMoments,
              space: SearchSpace) -> list[tuple[int, Transform]]:
    """Each fitted transform corrected once: :func:`_fit_to_class` measured on its own result
    (the zoom and shift it still lacks, folded into it); a result without spread is left out."""
    out = []
    for i, t in fits:
        m = image_moments(apply_transform(ev.images[i], t)[None])[0]
        if np.isfinite(m[2]) and m[2] > 0:
            out.append((i, _fit_to_class(t, m, int(ev.targets[i]), moments, space, ev.images.shape[1:3])))
    return out


def _combine(parts) -> Transform:
    """One transform doing each part (a rotation, a tilt, a scale, a shear) together."""
    tilt = next((x for x in parts if x.perspective), None)
    return Transform(
        rotate=float(sum(x.rotate for x in parts)),
        perspective=tilt.perspective if tilt else 0.0,
        direction=tilt.direction if tilt else 0.0,
        scale=float(math.prod(x.scale for x in parts)),
        shear=float(max(-MAX_SHEAR, min(MAX_SHEAR, sum(x.shear for x in parts)))),
    )


def check_search_inputs(
    classifier: Classifier, images, targets, thresholds=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inputs of a search, checked and in the form it uses.

    Parameters
    ----------
    classifier : hardcase.miner.protocols.Classifier
        Gives K (``n_classes``).
    images : np.ndarray, uint8, shape (M, H, W, C) or (M, H, W)
    targets : np.ndarray, int, shape (M,)
        Class indices in 0 .. K-1.
    thresholds : np.ndarray, shape (K,), optional
        Default 0.5 for every class.

    Returns
    -------
    images : np.ndarray, uint8, shape (M, H, W, C)
    targets : np.ndarray, int64, shape (M,)
    thresholds : np.ndarray, float64, shape (K,)

    Raises
    ------
    TypeError
        Images not uint8, or targets not integers.
    ValueError
        A shape that does not fit, or a target outside 0 .. K-1 (the message names it).
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images must have shape (M, H, W, C), got {images.shape}")
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8 as stored and shown, got dtype {images.dtype}")
    targets = np.asarray(targets)
    if targets.shape != (images.shape[0],):
        raise ValueError(f"targets must have shape (M,) = ({images.shape[0]},), got {targets.shape}")
    if targets.dtype.kind not in "iu":
        raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
    k = classifier.n_classes
    bad = np.flatnonzero((targets < 0) | (targets >= k))
    if bad.size:
        raise ValueError(f"targets has value {int(targets[bad[0]])} at index {int(bad[0])}; classes are 0..{k - 1}")
    if thresholds is None:
        thresholds = np.full(k, 0.5)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.shape != (k,):
        raise ValueError(f"thresholds must have shape (K,) = ({k},), got {thresholds.shape}")
    return images, targets.astype(np.int64), thresholds


def search_transforms(
    classifier: Classifier,
    images,
    targets,
    *,
    density: ClassDensity | None,
    thresholds=None,
    alpha: float = DEFAULT_ALPHA,
    space: SearchSpace | None = None,
    null: NullCalibration | None = None,
    moments: ClassMoments | None = None,
    chunk_size: int = 64,
    batch_size: int = 2048,
    progress=None,
) -> TransformEvidence:
    """Search a restoring transform for every image (see the module docstring).

    Parameters
    ----------
    classifier : hardcase.miner.protocols.Classifier
        With an embedding when ``density`` is given.
    images : np.ndarray, uint8, shape (M, H, W, C)
    targets : np.ndarray, int, shape (M,)
        The class to restore for each image: its given label, or its prediction.
    density : ClassDensity or None
        Training-embedding density (:func:`miner.causes.fit_class_density`) for the
        typicality test; None skips that test (not recommended).
    thresholds : np.ndarray, shape (K,), optional
        Per-class confident thresholds (:func:`miner.scores.confident_thresholds` with
        ``unknown_labels="as_predicted"``); default 0.5.
    alpha : float
        Significance level of the typicality test (and of the null quantile).
    space : SearchSpace, optional
    null : NullCalibration, optional
        From :func:`calibrate_null`; restorations must beat its threshold.
    moments : ClassMoments, optional
        The reference images' typical centroid and spread per class
        (:func:`class_moments`); enables the guided moment-fit stage.
    chunk_size : int
        Candidates searched together (their transforms share albumentations calls and
        model batches).
    batch_size : int
        Largest model batch.
    progress : callable, optional
        Called with the number of candidates finished after each chunk.

    Returns
    -------
    TransformEvidence
        With ``stats``: ``seconds``, ``model_seconds``, ``transform_seconds``,
        ``evaluations`` (model evaluations) and ``per_candidate``.
    """
    images, targets, thresholds = check_search_inputs(classifier, images, targets, thresholds)
    space = space or SearchSpace()
    started = time.perf_counter()
    ev = TransformEvaluator(classifier, images, targets, density, batch_size)
    decisions: list[_Decision] = []
    for start in range(0, len(images), chunk_size):
        rows = np.arange(start, min(start + chunk_size, len(images)))
        decisions += _search_chunk(ev, rows, thresholds, alpha, space, null, moments)
        for i in rows:  # free the per-candidate cache once decided
            ev.results[int(i)] = {}
        if progress is not None:
            progress(len(rows))
    seconds = time.perf_counter() - started
    m = len(images)
    stats = {
        "seconds": seconds,
        "model_seconds": ev.model_seconds,
        "transform_seconds": ev.transform_seconds,
        "evaluations": ev.n_evaluated,
        "per_candidate": ev.n_evaluated / m if m else 0.0,
    }
    return TransformEvidence(
        target=np.array([d.target for d in decisions], dtype=np.int64),
        family=np.array([d.family for d in decisions], dtype=object).astype(str) if m else np.zeros(0, dtype=str),
        transform=tuple(d.transform for d in decisions),
        before=np.array([d.before for d in decisions], dtype=np.float64),
        after=np.array([d.after for d in decisions], dtype=np.float64),
        predicted_after=np.array([d.predicted_after for d in decisions], dtype=np.int64),
        typicality=np.array([d.typicality for d in decisions], dtype=np.float64),
        stable=np.array([d.stable for d in decisions], dtype=bool),
        restores=np.array([d.restores for d in decisions], dtype=bool),
        smallest=tuple(d.smallest for d in decisions),
        null_rate=null.rate if null is not None else None,
        null_threshold=null.threshold if null is not None else None,
        stats=stats,
    )


@dataclass(frozen=True)
class RestorationVerdict:
    """How the search's restoration tests judge images that are already restored.

    Every array has shape (M,).

    Attributes
    ----------
    after : float64
        The model's probability of the target.
    predicted : int64
        The model's prediction.
    typicality : float64
        The typicality p-value for the target class (NaN without a density).
    confident_typical : bool
        Tests 1 and 2 of the module docstring: predicted as the target at or above its
        confident threshold, and typical of it.
    stable : bool
        Test 3: the prediction survives the extra rotation either way.
    restores : bool
        All tests, with the null threshold (test 4) when one is given.
    """

    after: np.ndarray
    predicted: np.ndarray
    typicality: np.ndarray
    confident_typical: np.ndarray
    stable: np.ndarray
    restores: np.ndarray


def judge_restorations(
    classifier: Classifier,
    images,
    targets,
    *,
    density: ClassDensity | None,
    thresholds=None,
    alpha: float = DEFAULT_ALPHA,
    null_threshold: float | None = None,
    space: SearchSpace | None = None,
    batch_size: int = 2048,
) -> RestorationVerdict:
    """The search's restoration tests on images restored some other way (by hand, or by an oracle).

    The same tests, in the same code, as :func:`search_transforms` applies to its own best
    transform; the stability rotation turns the restored image itself (the search adds it to
    its transform instead). E.g. a benchmark that knows the exact inverse of a warp asks how
    often even that would count as a restoration.

    Parameters
    ----------
    classifier : hardcase.miner.protocols.Classifier
    images : np.ndarray, uint8, shape (M, H, W, C)
        The restored images.
    targets : np.ndarray, int, shape (M,)
    density, thresholds, alpha, space, batch_size
        As for :func:`search_transforms`.
    null_threshold : float, optional
        ``NullCalibration.threshold`` of a calibration; None skips test 4.

    Returns
    -------
    RestorationVerdict
    """
    images, targets, thresholds = check_search_inputs(classifier, images, targets, thresholds)
    space = space or SearchSpace()
    ev = TransformEvaluator(classifier, images, targets, density, batch_size)
    as_is = Transform()
    ev.run([(i, t) for i in range(len(images)) for t in (as_is, *_jittered(as_is, space))])
    results = [r[as_is] for r in ev.results]
    confident_typical = np.array([_restores(r, int(c), float(thresholds[c]), alpha) for r, c in zip(results, targets)],
                                 dtype=bool)
    stable = np.array([_is_stable(r, as_is, int(c), space) for r, c in zip(ev.results, targets)], dtype=bool)
    limit = -math.inf if null_threshold is None else float(null_threshold)
    beats_null = np.array([_statistic(r) > limit for r in results], dtype=bool)
    return RestorationVerdict(
        after=np.array([r.p_target for r in results], dtype=np.float64),
        predicted=np.array([r.predicted for r in results], dtype=np.int64),
        typicality=np.array([r.typicality for r in results], dtype=np.float64),
        confident_typical=confident_typical,
        stable=stable,
        restores=confident_typical & stable & beats_null,
    )


def null_reference_rows(probs, labels, thresholds, *, n: int, seed: int = 0) -> np.ndarray:
    """Up to ``n`` rows (seeded draw, sorted) that the model predicts as their label at or
    above the label's confident threshold: the clean references of :func:`calibrate_null`.

    Parameters
    ----------
    probs : np.ndarray, shape (T, K)
    labels : np.ndarray, int, shape (T,)
        -1 = unknown (never chosen).
    thresholds : np.ndarray, shape (K,)
        Per-class confident thresholds.
    n : int
    seed : int

    Returns
    -------
    np.ndarray, int64, shape (min(n, number of such rows),)
        Row indices, ascending.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    safe = np.clip(labels, 0, None)
    clean = np.flatnonzero(
        (labels >= 0) & (probs.argmax(axis=1) == labels) & (probs[np.arange(len(labels)), safe] >= thresholds[safe])
    )
    if clean.size == 0:
        return clean.astype(np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(clean, size=min(n, clean.size), replace=False)).astype(np.int64)


def calibrate_null(
    classifier: Classifier,
    images,
    probs,
    labels,
    *,
    density: ClassDensity | None,
    thresholds=None,
    alpha: float = DEFAULT_ALPHA,
    space: SearchSpace | None = None,
    moments: ClassMoments | None = None,
    n: int = 64,
    seed: int = 0,
    batch_size: int = 2048,
) -> NullCalibration:
    """Run the search on clean reference images toward a class they are *not*, and on the
    same images warped by the search's own kind of transform back toward their label.

    References are up to ``n`` images (seeded draw) that the model predicts as their label
    at or above the label's confident threshold; each is steered toward its second most
    probable class, the wrong class the search finds easiest to reach. The share it
    "restores" is the search's false-fix rate, and the distribution of the restoration
    statistic is the null a real restoration has to beat. Each reference is also warped
    (:func:`own_warps`); those the model then gets wrong are searched back to their label,
    and the statistic of those restorations is what a real one reaches. The threshold is the
    cut that best separates the two (:attr:`NullCalibration.threshold`), never above the
    null's ``1 - alpha`` quantile.

    Parameters
    ----------
    classifier : hardcase.miner.protocols.Classifier
    images : np.ndarray, uint8, shape (T, H, W, C)
        E.g. training images.
    probs : np.ndarray, shape (T, K)
        The model's probabilities on them.
    labels : np.ndarray, int, shape (T,)
    density, thresholds, alpha, space, moments, batch_size
        As for :func:`search_transforms` (``alpha`` is also the level of the null quantile).
    n : int
        Most reference images (:func:`null_reference_rows`).
    seed : int
        Seed of their draw.

    Returns
    -------
    NullCalibration
        Rate 0 and no statistic when no image qualifies as a reference.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if not (len(images) == len(probs) == len(labels)):
        raise ValueError(f"images, probs and labels have {len(images)}, {len(probs)}, {len(labels)} rows")
    thr = np.full(probs.shape[1], 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    chosen = null_reference_rows(probs, labels, thr, n=n, seed=seed)
    if chosen.size == 0:
        return NullCalibration(rate=0.0, statistic=np.zeros(0), alpha=alpha)
    space = space or SearchSpace()
    second = np.argsort(-probs[chosen], axis=1)[:, 1]
    evidence = search_transforms(classifier, images[chosen], second, density=density, thresholds=thr,
                                 alpha=alpha, space=space, moments=moments, batch_size=batch_size)
    statistic = _restoration_statistics(evidence)
    # the positive side: the same references warped by a transform of the search's own space;
    # those the model then gets wrong are searched back toward their label
    warps = own_warps(len(chosen), space, seed=seed)
    warped = np.stack([apply_transform(image, warp) for image, warp in zip(images[chosen], warps)])
    failed = np.flatnonzero(classifier.predict_proba(warped).argmax(axis=1) != labels[chosen])
    restored = np.zeros(0)
    stats = dict(evidence.stats)
    if failed.size:
        back = search_transforms(classifier, warped[failed], labels[chosen][failed], density=density, thresholds=thr,
                                 alpha=alpha, space=space, moments=moments, batch_size=batch_size)
        restored = _restoration_statistics(back)
        stats = {key: stats[key] + back.stats[key] for key in ("seconds", "model_seconds", "transform_seconds",
                                                               "evaluations")}
        stats["per_candidate"] = stats["evaluations"] / (len(chosen) + failed.size)
    return NullCalibration(rate=float(evidence.restores.mean()), statistic=statistic, alpha=alpha,
                           restored=restored, stats=stats)


def _restoration_statistics(evidence: TransformEvidence) -> np.ndarray:
    """``p_target x typicality`` (:func:`_statistic`) of each searched image's suggested
    transform where it restores the target, else 0: what a calibration search reached."""
    return np.where(evidence.restores, evidence.after * np.nan_to_num(evidence.typicality, nan=1.0), 0.0)


def own_warps(n: int, space: SearchSpace, *, seed: int = 0) -> list[Transform]:
    """``n`` seeded transforms of the search's own families, one family each in turn: a rotation
    of one coarse step up to ``max_rotation`` either way, a tilt of up to the largest coarse
    strength in any direction, a shear of one shear step up to ``max_shear`` either way (the
    positive side of :func:`calibrate_null`: failures the search should be able to undo).

    Returns
    -------
    list of Transform
    """
    rng = np.random.default_rng(seed)
    families = ["rotate", "perspective"] + (["shear"] if space.max_shear >= space.shear_step else [])
    out = []
    for i in range(n):
        family = families[i % len(families)]
        sign = float(rng.choice([-1.0, 1.0]))
        if family == "rotate":
            out.append(Transform(rotate=sign * float(rng.uniform(space.coarse_rotation_step, space.max_rotation))))
        elif family == "perspective":
            out.append(Transform(perspective=float(rng.uniform(0.5, 1.0) * max(space.tilt_strengths)),
                                 direction=float(rng.uniform(0.0, 360.0))))
        else:
            out.append(Transform(shear=sign * float(rng.uniform(space.shear_step, space.max_shear))))
    return out
