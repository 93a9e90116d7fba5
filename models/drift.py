"""The model side of a drift alert's root cause: does ONE shared transform explain the window?

A camera that moved shows first in the images themselves. :func:`fit_camera_motion` asks which
camera motion (a perspective tilt of some strength toward some direction, a rotation, a zoom),
applied to the reference's mean image, reproduces the window's mean image: warping is linear in
the pixel values, so the warped mean is the mean of the warped images, and the fit costs one
small warp per candidate motion. The share of the window's squared difference from the
reference it removes (``explained_share``) is compared with what the same fit explains between
two halves of undisturbed reference data (the chance level). This forward fit names the motion
itself; undoing it through the model (below) does not: the transform that makes a tilted
digit most confident to the model is often not the geometric inverse (a 0.35 tilt toward 30
degrees is "restored" best by a tilt toward 60), and a weak early tilt leaves few
low-confidence samples to restore.

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

:func:`explain_window` tries the camera motion first, then the shared restoring transform.

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

__all__ = ["CameraFit", "SharedTransformFit", "camera_grid", "default_grid", "explain_window", "fit_camera_motion",
           "fit_shared_transform", "low_confidence_rows"]


def camera_grid(*, directions: int = 24, strengths=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35),
                rotations=(5.0, 10.0, 15.0, 20.0, 30.0, 45.0), scales=(0.8, 0.9, 1.1, 1.25)) -> list[Transform]:
    """Camera motions :func:`fit_camera_motion` tries: tilts (strength x direction), rotations
    both ways, and zooms."""
    grid = [Transform()]
    grid += [Transform(perspective=s, direction=360.0 * j / directions) for s in strengths for j in range(directions)]
    grid += [Transform(rotate=sign * a) for a in rotations for sign in (-1.0, 1.0)]
    grid += [Transform(scale=z) for z in scales]
    return grid


@dataclass(frozen=True)
class CameraFit:
    """The camera motion that best turns the reference's mean image into the window's.

    Attributes
    ----------
    transform : Transform
        The motion (applied to reference images, it reproduces the window's).
    explained_share : float
        ``1 - d(motion) / d(identity)``, d the mean squared difference between the warped
        reference mean image and the window's mean image: 0 when nothing moved, near 1 when
        the motion accounts for all of it.
    null_share : float
        The largest share the same fit explains between a reference subsample of the window's
        size and the rest of the reference (over a few draws): the chance level.
    ranking : list of (Transform, float)
        The best motions with their explained shares, best first (five).
    """

    transform: Transform
    explained_share: float
    null_share: float
    ranking: list


def _mean_image(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    return images.astype(np.float64).mean(axis=0).astype(np.float32)


def _explained(reference_mean: np.ndarray, window_mean: np.ndarray, grid: list[Transform]) -> list[tuple]:
    identity = float(np.mean((reference_mean - window_mean) ** 2))
    out = []
    for t in grid:
        moved = reference_mean if t.is_identity else apply_transform(reference_mean, t)
        d = float(np.mean((moved - window_mean) ** 2))
        out.append((t, 1.0 - d / identity if identity > 0 else 0.0))
    return sorted(out, key=lambda item: -item[1])


def _refined(best: Transform) -> list[Transform]:
    if best.perspective:
        return [Transform(perspective=float(np.clip(best.perspective + ds, 0.02, MAX_PERSPECTIVE)),
                          direction=(best.direction + dd) % 360.0)
                for dd in (-7.5, -3.75, 0.0, 3.75, 7.5) for ds in (-0.025, 0.0, 0.025)]
    if best.rotate:
        return [Transform(rotate=float(np.clip(best.rotate + dr, -180.0, 180.0))) for dr in (-2.5, 0.0, 2.5)]
    return [best]


def fit_camera_motion(reference_images, window_images, *, grid: list[Transform] | None = None, null_draws: int = 5,
                      random_state: int = 0) -> CameraFit:
    """The camera motion that, applied to the reference, reproduces the window's images.

    Parameters
    ----------
    reference_images : np.ndarray, shape (N, H, W[, C])
        Undisturbed images as the model takes them (uint8 or float pixels).
    window_images : np.ndarray, shape (n, H, W[, C])
        The window's images, the same size.
    grid : list of Transform, optional
        Default :func:`camera_grid`; the best tilt or rotation is refined once.
    null_draws : int
        Reference subsamples of the window's size fitted against the rest for ``null_share``.
    random_state : int

    Returns
    -------
    CameraFit
    """
    reference_images, window_images = np.asarray(reference_images), np.asarray(window_images)
    if reference_images.shape[1:] != window_images.shape[1:] or len(window_images) == 0 or len(reference_images) < 4:
        raise ValueError(f"reference images {reference_images.shape} and window images {window_images.shape} must "
                         "share their image shape, and neither may be (nearly) empty")
    grid = list(grid) if grid is not None else camera_grid()
    reference_mean = _mean_image(reference_images)
    ranking = _explained(reference_mean, _mean_image(window_images), grid)
    extra = [t for t in _refined(ranking[0][0]) if t not in grid]
    if extra:
        ranking = sorted(ranking + _explained(reference_mean, _mean_image(window_images), extra),
                         key=lambda item: -item[1])
    rng = np.random.default_rng(random_state)
    size = min(len(window_images), len(reference_images) // 2)
    null = 0.0
    for _ in range(null_draws):
        rows = rng.permutation(len(reference_images))
        part, rest = rows[:size], rows[size:]
        null = max(null, _explained(_mean_image(reference_images[rest]), _mean_image(reference_images[part]),
                                    grid)[0][1])
    best, share = ranking[0]
    return CameraFit(transform=best, explained_share=float(share), null_share=float(null), ranking=ranking[:5])


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


def _motion(t: Transform) -> dict[str, float]:
    """A camera motion fitted forward (:func:`fit_camera_motion`) as the camera dict."""
    if t.perspective:
        return {"perspective": float(t.perspective), "direction": float(t.direction % 360.0)}
    if t.rotate:
        return {"rotate": float(t.rotate)}
    return {"scale": float(t.scale)}


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
    min_explained: float = 0.5,
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
    min_explained : float
        Smallest share of the window's mean-image change a camera motion must reproduce
        (:func:`fit_camera_motion`) to be named.
    margin : float
        How much more than the chance level the camera motion must explain, or the restoring
        transform restore.
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
    if reference_images is not None:
        camera_fit = fit_camera_motion(reference_images, images)
        motion = camera_fit.transform
        if (not motion.is_identity and camera_fit.explained_share >= min_explained
                and camera_fit.explained_share >= camera_fit.null_share + margin):
            camera = _motion(motion)
            message = (f"{motion.describe()} applied to the reference reproduces "
                       f"{100 * camera_fit.explained_share:.0f}% of how the window's images moved (chance "
                       f"{100 * camera_fit.null_share:.0f}%): {_describe_camera(camera)}")
            return RootCause(kind="transform", message=message, transform=motion.to_dict(), camera=camera,
                             null_share=camera_fit.null_share, n_samples=int(len(images)),
                             detail={"explained_share": camera_fit.explained_share, "method": "camera motion",
                                     "runners_up": [(t.to_dict(), share) for t, share in camera_fit.ranking[1:4]]})
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
        # the same search on as many of the reference's own least confident samples: the best of
        # ~180 transforms on a few dozen hard digits restores some by chance, more the fewer they are
        null_rows = low_confidence_rows(reference_probs, bars, max_rows=int(rows.size))
        if null_rows.size:
            null = fit_shared_transform(classifier, np.asarray(reference_images)[null_rows], bars=bars, grid=grid)
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
