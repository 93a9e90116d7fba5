"""The model side of a drift alert's root cause: does ONE shared transform explain the window?

A camera that moved disturbs every image the same way, so one transform undoes most of it;
new kinds of data do not share one. :func:`fit_shared_transform` takes the window's
low-confidence samples and evaluates a small grid of shared transforms on all of them at once
(the transform search's coarse stage, :mod:`hardcase.models.transform_search`, as one transform
for every image instead of one per image): perspective tilts (strength x direction, with the
zoom-out a strong tilt needs: a tilted digit is magnified on one side), rotations, and zooms;
the best is refined once (direction +-half a step, strength +-0.05). A sample is *restored*
when the model's confidence in its new prediction reaches the reference's mean confidence for
that class. The transform restoring the most samples wins (ties: the higher mean confidence).

:func:`explain_window` turns that into a :class:`~hardcase.miner.monitors.RootCause`: first the
statistical causes that need no model (an environment change; a pipeline-grade input change:
dtype, shape, NaNs, range, blank images, a gross intensity or contrast change:
:func:`~hardcase.miner.monitors.statistical_cause`), then ``transform`` when the best shared
transform restores at least ``min_restored`` of the samples and clearly more (``margin``) than
the same grid restores of the reference's own low-confidence samples (the chance level); when
none does, ``pipeline`` if the input statistics moved all the same (a soft integrity alert),
else ``rare``. A small contrast move never outranks a transform that restores the window: a
tilting camera lowers the contrast a little.

A tilt "toward d" (:class:`~hardcase.miner.transform.Transform`) magnifies the edge facing d;
a camera that tilted toward d is undone by a tilt toward d + 180 with a zoom-out, so the
camera's direction is reported as the restoring direction + 180 degrees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hardcase.miner.monitors import RootCause, WindowMonitor, WindowReport, statistical_cause
from hardcase.miner.protocols import Classifier
from hardcase.models.transforms import MAX_PERSPECTIVE, Transform, apply_transform

__all__ = ["SharedTransformFit", "default_grid", "explain_window", "fit_shared_transform", "low_confidence_rows"]


def default_grid(*, directions: int = 12, strengths=(0.15, 0.25, 0.35), scales=(1.0, 0.85, 0.7),
                 rotations=(-30.0, -20.0, -10.0, 10.0, 20.0, 30.0)) -> list[Transform]:
    """The shared transforms tried first: identity, zooms, tilts (x zooms) and rotations (x zooms)."""
    grid = [Transform(scale=s) for s in scales]
    for strength in strengths:
        for j in range(directions):
            for s in scales:
                grid.append(Transform(perspective=strength, direction=360.0 * j / directions, scale=s))
    for angle in rotations:
        for s in scales:
            grid.append(Transform(rotate=angle, scale=s))
    return list(dict.fromkeys(grid))


@dataclass(frozen=True)
class SharedTransformFit:
    """The shared transform that restores most of a set of images.

    Attributes
    ----------
    transform : Transform
    restored_share : float
        Share of the images whose prediction becomes confident under it.
    identity_share : float
        The same share without any transform.
    mean_confidence : float
        Mean confidence of the transformed images.
    ranking : list of (Transform, float)
        Every transform evaluated with its restored share, best first.
    """

    transform: Transform
    restored_share: float
    identity_share: float
    mean_confidence: float
    ranking: list


def _apply_stacked(images: np.ndarray, transform: Transform) -> np.ndarray:
    """``apply_transform`` on every image at once, stacked along channels (as the transform search does)."""
    b, h, w, c = images.shape
    stacked = np.ascontiguousarray(images.transpose(1, 2, 0, 3).reshape(h, w, b * c))
    out = apply_transform(stacked, transform)
    return np.ascontiguousarray(out.reshape(h, w, b, c).transpose(2, 0, 1, 3))


def _evaluate(classifier: Classifier, images: np.ndarray, transforms: list[Transform], bars: np.ndarray,
              batch_size: int) -> dict[Transform, tuple[float, float]]:
    out = {}
    for t in transforms:
        moved = _apply_stacked(images, t)
        probs = classifier.predict_proba(moved, batch_size=batch_size)
        conf, pred = probs.max(axis=1), probs.argmax(axis=1)
        out[t] = (float(np.mean(conf >= bars[pred])), float(conf.mean()))
    return out


def _refine(best: Transform) -> list[Transform]:
    out = []
    if best.perspective:
        for dd in (-15.0, -7.5, 0.0, 7.5, 15.0):
            for ds in (-0.05, 0.0, 0.05):
                strength = float(np.clip(best.perspective + ds, 0.05, MAX_PERSPECTIVE))
                for sc in (best.scale * 0.92, best.scale, min(4.0, best.scale * 1.08)):
                    out.append(Transform(perspective=strength, direction=(best.direction + dd) % 360.0,
                                         scale=float(np.clip(sc, 0.25, 4.0))))
    elif best.rotate:
        for dr in (-5.0, 0.0, 5.0):
            for sc in (best.scale * 0.92, best.scale, min(4.0, best.scale * 1.08)):
                out.append(Transform(rotate=float(np.clip(best.rotate + dr, -180, 180)), scale=float(np.clip(sc, 0.25, 4.0))))
    return out


def fit_shared_transform(classifier: Classifier, images, *, bars, grid: list[Transform] | None = None,
                         refine: bool = True, batch_size: int = 1024) -> SharedTransformFit:
    """The one transform of ``grid`` (refined once) that makes the most of ``images`` confident.

    Parameters
    ----------
    classifier : hardcase.miner.protocols.Classifier
    images : np.ndarray, uint8, shape (M, H, W, C)
        As the model takes them.
    bars : np.ndarray, shape (K,)
        A prediction of class k is confident at ``bars[k]`` or more (e.g.
        ``WindowMonitor.confident_thresholds_``).
    grid : list of Transform, optional
        Default :func:`default_grid`.
    refine : bool
        Refine the best tilt or rotation once.
    batch_size : int

    Returns
    -------
    SharedTransformFit
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty uint8 array (M, H, W, C), got {images.dtype} {images.shape}")
    bars = np.asarray(bars, dtype=np.float64)
    if bars.shape != (classifier.n_classes,):
        raise ValueError(f"bars must have shape (K,) = ({classifier.n_classes},), got {bars.shape}")
    grid = list(grid) if grid is not None else default_grid()
    identity = Transform()
    results = _evaluate(classifier, images, [identity, *[t for t in grid if t != identity]], bars, batch_size)

    def key(t):
        share, conf = results[t]
        return (share, conf)

    best = max(results, key=key)
    if refine:
        extra = [t for t in _refine(best) if t not in results]
        results.update(_evaluate(classifier, images, extra, bars, batch_size))
        best = max(results, key=key)
    ranking = sorted(((t, results[t][0]) for t in results), key=lambda item: -item[1])
    return SharedTransformFit(transform=best, restored_share=results[best][0], identity_share=results[identity][0],
                              mean_confidence=results[best][1], ranking=ranking)


def low_confidence_rows(pred_probs, bars, *, max_rows: int = 64) -> np.ndarray:
    """Rows whose confidence is below their predicted class's bar, the least confident first (at most ``max_rows``)."""
    probs = np.asarray(pred_probs, dtype=np.float64)
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    rows = np.flatnonzero(conf < np.asarray(bars)[pred])
    return rows[np.argsort(conf[rows], kind="stable")][:max_rows]


def _camera(t: Transform) -> dict[str, float]:
    if t.perspective:
        return {"perspective": float(t.perspective), "direction": float((t.direction + 180.0) % 360.0),
                "scale": float(1.0 / t.scale)}
    if t.rotate:
        return {"rotate": float(-t.rotate)}
    return {"scale": float(1.0 / t.scale)}


def _describe_camera(camera: dict[str, float]) -> str:
    if "perspective" in camera:
        return f"the camera tilted about {camera['perspective']:.2f} toward {camera['direction']:.0f}°"
    if "rotate" in camera:
        return f"the camera rotated about {camera['rotate']:+.0f}°"
    return f"the image scale changed by about {camera['scale']:.2f}"


def explain_window(
    classifier: Classifier,
    report: WindowReport,
    images,
    pred_probs,
    *,
    monitor: WindowMonitor,
    reference_images=None,
    reference_probs=None,
    max_samples: int = 64,
    min_restored: float = 0.3,
    margin: float = 0.15,
    grid: list[Transform] | None = None,
) -> RootCause:
    """The root cause of an alerting window.

    Parameters
    ----------
    classifier : hardcase.miner.protocols.Classifier
    report : WindowReport
        The window's report (:meth:`WindowMonitor.score`).
    images : np.ndarray, uint8, shape (n, H, W, C)
        The window's images as the model took them.
    pred_probs : np.ndarray, shape (n, K)
        The model's outputs on them.
    monitor : WindowMonitor
        The fitted monitor (its ``confident_thresholds_`` are the bars).
    reference_images, reference_probs : np.ndarray, optional
        Held-out reference images and outputs: the grid's restored share on their own
        low-confidence samples is the chance level (``null_share``); without them it is 0.
    max_samples : int
        Low-confidence samples examined (the least confident).
    min_restored : float
        Smallest restored share (above the identity's) that names a transform.
    margin : float
        How much more than the chance level the transform must restore.
    grid : list of Transform, optional

    Returns
    -------
    RootCause
        ``environment`` / ``pipeline`` (:func:`statistical_cause`), ``transform``, ``pipeline``
        (soft input moves and no transform), ``rare``, or ``none`` when the window raised no
        alert, or has no low-confidence sample and its inputs did not move.
    """
    cause = statistical_cause(report)
    if cause is not None:
        return cause
    if not report.alert:
        return RootCause(kind="none", message="the window raised no alert: nothing to explain")
    bars = monitor.confident_thresholds_
    rows = low_confidence_rows(pred_probs, bars, max_rows=max_samples)
    soft = statistical_cause(report, soft=True)
    if rows.size == 0:
        if soft is not None:
            return soft
        return RootCause(kind="none", message="no low-confidence samples in the window")
    fit = fit_shared_transform(classifier, np.asarray(images)[rows], bars=bars, grid=grid)
    null_share = 0.0
    if reference_images is not None and reference_probs is not None:
        null_rows = low_confidence_rows(reference_probs, bars, max_rows=max_samples)
        if null_rows.size:
            null = fit_shared_transform(classifier, np.asarray(reference_images)[null_rows], bars=bars, grid=grid,
                                        refine=False)
            null_share = null.restored_share - null.identity_share
    gain = fit.restored_share - fit.identity_share
    detail = {"identity_share": fit.identity_share, "gain": gain, "mean_confidence": fit.mean_confidence,
              "runners_up": [(t.to_dict(), share) for t, share in fit.ranking[1:4]]}
    if gain >= min_restored and gain >= null_share + margin and not fit.transform.is_identity:
        camera = _camera(fit.transform)
        message = (f"{fit.transform.describe()} restores {100 * fit.restored_share:.0f}% of the {rows.size} "
                   f"low-confidence samples (chance {100 * null_share:.0f}%): {_describe_camera(camera)}")
        return RootCause(kind="transform", message=message, transform=fit.transform.to_dict(), camera=camera,
                         restored_share=fit.restored_share, null_share=null_share, n_samples=int(rows.size),
                         detail=detail)
    if soft is not None:
        # the input statistics moved and no shared transform explains the window: a pipeline change
        return RootCause(kind="pipeline", message=(
            f"{soft.message}; no shared transform restores the {rows.size} low-confidence samples (best: "
            f"{fit.transform.describe()}, {100 * fit.restored_share:.0f}%; chance {100 * null_share:.0f}%)"),
            transform=fit.transform.to_dict(), restored_share=fit.restored_share, null_share=null_share,
            n_samples=int(rows.size), detail=detail | soft.detail)
    message = (f"no shared transform restores the {rows.size} low-confidence samples (best: "
               f"{fit.transform.describe()}, {100 * fit.restored_share:.0f}%; chance {100 * null_share:.0f}%): "
               f"new kinds of data")
    return RootCause(kind="rare", message=message, transform=fit.transform.to_dict(), restored_share=fit.restored_share,
                     null_share=null_share, n_samples=int(rows.size), detail=detail)
