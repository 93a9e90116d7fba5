"""Input integrity: the cheap checks on raw images that catch a pipeline change before statistics do.

Per window: the image shape and dtype, NaN / inf values, the value range, the mean intensity
and contrast (per-image standard deviation, averaged), and the share of constant (blank)
images, each against the reference images. Shape, dtype, non-finite values and values outside
the reference's range are hard checks (any failure alerts); mean intensity, contrast and the
constant share are compared in bootstrap standard deviations of the reference windows, and
the statistic is the largest such distance, alerting above its bootstrap threshold.
"""

from __future__ import annotations

import numpy as np

from hardcase.miner._validation import _as_array
from hardcase.miner.monitors._base import (
    Monitor,
    SignalResult,
    bootstrap_windows,
    calibrate_threshold,
)

__all__ = ["InputIntegrityMonitor", "image_statistics"]

#: The soft checks, in the order the statistic's components are reported.
SOFT_CHECKS = ("mean_intensity", "contrast", "constant_share")


def image_statistics(images) -> dict[str, np.ndarray]:
    """Per-image mean, standard deviation, whether constant, and count of non-finite values.

    Parameters
    ----------
    images : array_like, numeric, shape (N, ...)
        Raw images as they arrive (any dtype, any units).

    Returns
    -------
    dict of np.ndarray, each shape (N,)
        ``mean``, ``std`` (NaN-ignoring), ``constant`` (bool) and ``nonfinite`` (counts).
    """
    arr = _as_array(images, "images")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"images must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise ValueError(f"images must have shape (N, H, W[, C]), got shape {arr.shape}")
    flat = arr.reshape(len(arr), -1).astype(np.float64)
    finite = np.isfinite(flat)
    nonfinite = (~finite).sum(axis=1)
    clean = np.where(finite, flat, np.nan)
    with np.errstate(invalid="ignore"), _quiet():
        mean = np.nanmean(clean, axis=1)
        std = np.nanstd(clean, axis=1)
    return {"mean": mean, "std": std, "constant": ~(np.nan_to_num(std) > 0), "nonfinite": nonfinite}


class _quiet:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


class InputIntegrityMonitor(Monitor):
    """Shape, dtype, NaNs, value range, mean intensity, contrast and blank images of a window.

    Parameters
    ----------
    range_tolerance : float
        Share of the reference's value range a window's values may exceed it by.
    window_size, n_bootstrap, alpha, random_state
        As :class:`~hardcase.miner.monitors.LabelShiftMonitor` (the bootstrap windows are drawn
        from all reference images: nothing here is fitted beyond their statistics).
    """

    def __init__(self, *, range_tolerance: float = 0.01, window_size: int = 300, n_bootstrap: int = 200,
                 alpha: float = 0.001, random_state: int = 0) -> None:
        self.range_tolerance = range_tolerance
        self.window_size = window_size
        self.n_bootstrap = n_bootstrap
        self.alpha = alpha
        self.random_state = random_state

    def fit(self, images) -> InputIntegrityMonitor:
        """Learn ``image_shape_``, ``dtype_``, ``value_range_``, ``center_`` / ``spread_`` of the soft
        checks (3,) and ``threshold_`` from reference images (N, H, W[, C])."""
        self._check_settings()
        arr = _as_array(images, "images")
        stats = image_statistics(arr)
        if len(arr) < 2:
            raise ValueError(f"the reference needs at least 2 images, got {len(arr)}")
        self.image_shape_ = tuple(int(s) for s in arr.shape[1:])
        self.dtype_ = str(arr.dtype)
        finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
        self.value_range_ = (float(finite.min()), float(finite.max()))
        windows = bootstrap_windows(len(arr), window_size=self.window_size, n_windows=self.n_bootstrap,
                                    random_state=self.random_state + 10)
        soft = np.array([self._soft(stats, w) for w in windows])
        self.center_ = soft.mean(axis=0)
        # a constant share of exactly 0 in every window gets the spread of one image in a window
        floor = np.array([1e-6 * max(1.0, abs(self.center_[0])), 1e-6 * max(1.0, abs(self.center_[1])),
                          1.0 / self.window_size])
        self.spread_ = np.maximum(soft.std(axis=0, ddof=1), floor)
        null = np.abs((soft - self.center_) / self.spread_).max(axis=1)
        self.threshold_ = calibrate_threshold(null, side="above", alpha=self.alpha)
        return self

    @staticmethod
    def _soft(stats: dict[str, np.ndarray], rows) -> np.ndarray:
        with _quiet():
            return np.array([np.nanmean(stats["mean"][rows]), np.nanmean(stats["std"][rows]),
                             float(np.mean(stats["constant"][rows]))])

    def score(self, images) -> tuple[np.ndarray, SignalResult]:
        """Per-image mean intensity (N,) and the result; ``detail["failed"]`` lists the failed checks."""
        self._check_fitted()
        arr = _as_array(images, "images")
        stats = image_statistics(arr)
        if len(arr) == 0:
            raise ValueError("images has no rows; a window needs at least one")
        soft = self._soft(stats, slice(None))
        z = (soft - self.center_) / self.spread_
        statistic = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else float("inf")
        failed: dict[str, str] = {}
        shape = tuple(int(s) for s in arr.shape[1:])
        if shape != self.image_shape_:
            failed["shape"] = f"image shape {shape} where the reference has {self.image_shape_}"
        if str(arr.dtype) != self.dtype_:
            failed["dtype"] = f"dtype {arr.dtype} where the reference has {self.dtype_}"
        n_bad = int((stats["nonfinite"] > 0).sum())
        if n_bad:
            failed["nonfinite"] = f"{n_bad} of {len(arr)} images hold NaN or inf values"
        finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
        low, high = self.value_range_
        slack = self.range_tolerance * max(high - low, 1e-12)
        if finite.size and (float(finite.min()) < low - slack or float(finite.max()) > high + slack):
            failed["value_range"] = (f"values {float(finite.min()):.3g}..{float(finite.max()):.3g} where the "
                                     f"reference has {low:.3g}..{high:.3g}")
        names = {"mean_intensity": "mean intensity", "contrast": "contrast", "constant_share": "share of blank images"}
        for j, check in enumerate(SOFT_CHECKS):
            if not np.isfinite(z[j]) or abs(z[j]) > self.threshold_.value:
                failed[check] = f"{names[check]} {soft[j]:.3g} where the reference has {self.center_[j]:.3g}"
        alert = bool(failed) or self.threshold_.passed(statistic)
        message = "input integrity: " + "; ".join(failed.values()) if failed else ""
        return stats["mean"], SignalResult(
            signal="integrity", statistic=statistic, threshold=self.threshold_, alert=alert,
            detail={"failed": failed, "mean_intensity": soft[0], "contrast": soft[1], "constant_share": soft[2],
                    "reference": dict(zip(SOFT_CHECKS, self.center_.tolist(), strict=True)),
                    "z": dict(zip(SOFT_CHECKS, z.tolist(), strict=True)), "shape": list(shape),
                    "dtype": str(arr.dtype), "nonfinite_images": n_bad,
                    "value_range": [float(finite.min()), float(finite.max())] if finite.size else None},
            message=message,
        )
