"""Input integrity: the cheap checks on raw images that catch a pipeline change before statistics do.

Per window: the image shape and dtype, NaN / inf values, the value range, the mean intensity
and contrast (per-image standard deviation, averaged), and the share of constant (blank)
images, each against the reference images; with the model's outputs, also the mean intensity
and contrast of the images predicted as each class (a canary: one class's inputs changing
moves its own statistics long before the window's). Shape, dtype, non-finite values and
values outside the reference's range are hard checks (any failure alerts); the soft checks
are compared in standard errors, and the statistic is the largest such distance, alerting
above its bootstrap threshold.

A failure is *pipeline-grade* (``detail["pipeline"]``: what
:func:`~hardcase.miner.monitors.statistical_cause` names a units or pipeline change) when a
hard check fails, the share of blank images moved, or the window's mean intensity or contrast
changed by more than ``gross_change`` of the reference's (0-1 floats where 0-255 bytes were,
inverted images). A small move of intensity or contrast alone is evidence, not a cause: a
tilting camera also lowers the contrast a little.
"""

from __future__ import annotations

import math

import numpy as np

from hardcase.miner._validation import _as_array, check_fraction, check_pred_probs
from hardcase.miner.monitors._base import (
    Monitor,
    SignalResult,
    bootstrap_windows,
    calibrate_threshold,
    quiet_runtime_warnings,
)
from hardcase.miner.monitors.outputs import MIN_CLASS_COUNT

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
    with np.errstate(invalid="ignore"), quiet_runtime_warnings():
        mean = np.nanmean(clean, axis=1)
        std = np.nanstd(clean, axis=1)
    return {"mean": mean, "std": std, "constant": ~(np.nan_to_num(std) > 0), "nonfinite": nonfinite}


class InputIntegrityMonitor(Monitor):
    """Shape, dtype, NaNs, value range, mean intensity, contrast and blank images of a window.

    Parameters
    ----------
    range_tolerance : float
        Share of the reference's value range a window's values may exceed it by.
    gross_change : float
        A relative change of the mean intensity or contrast beyond this is pipeline-grade.
    window_size, n_bootstrap, alpha, random_state
        As :class:`~hardcase.miner.monitors.LabelShiftMonitor` (the bootstrap windows are drawn
        from all reference images: nothing here is fitted beyond their statistics).
    """

    def __init__(self, *, range_tolerance: float = 0.01, gross_change: float = 0.5, window_size: int = 300,
                 n_bootstrap: int = 200, alpha: float = 0.001, random_state: int = 0) -> None:
        self.range_tolerance = range_tolerance
        self.gross_change = gross_change
        self.window_size = window_size
        self.n_bootstrap = n_bootstrap
        self.alpha = alpha
        self.random_state = random_state

    def fit(self, images, pred_probs=None) -> InputIntegrityMonitor:
        """Learn ``image_shape_``, ``dtype_``, ``value_range_``, ``center_`` / ``spread_`` of the soft
        checks (3,), with ``pred_probs`` (N, K) the per-class ``class_center_`` / ``class_sd_``
        (K, 2: mean intensity, contrast), and ``threshold_``, from reference images (N, H, W[, C])."""
        self._check_settings()
        check_fraction(self.range_tolerance, name="range_tolerance")
        if not (isinstance(self.gross_change, (int, float)) and self.gross_change > 0):
            raise ValueError(f"gross_change must be a positive number, got {self.gross_change!r}")
        arr = _as_array(images, "images")
        stats = image_statistics(arr)
        if len(arr) < 2:
            raise ValueError(f"the reference needs at least 2 images, got {len(arr)}")
        self.image_shape_ = tuple(int(s) for s in arr.shape[1:])
        self.dtype_ = str(arr.dtype)
        finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
        self.value_range_ = (float(finite.min()), float(finite.max()))
        self.n_classes_ = None
        if pred_probs is not None:
            probs = check_pred_probs(pred_probs)
            if probs.shape[0] != len(arr):
                raise ValueError(f"pred_probs has {probs.shape[0]} rows but images has {len(arr)}")
            k = probs.shape[1]
            pred = probs.argmax(axis=1)
            self.n_classes_ = k
            self.class_center_ = np.full((k, 2), np.nan)
            self.class_sd_ = np.full((k, 2), np.nan)
            self.class_count_ = np.bincount(pred, minlength=k)
            for c in range(k):
                rows = pred == c
                if rows.sum() >= 2:
                    values = np.column_stack([stats["mean"][rows], stats["std"][rows]])
                    self.class_center_[c] = np.nanmean(values, axis=0)
                    self.class_sd_[c] = np.maximum(np.nanstd(values, axis=0, ddof=1), 1e-6)
        windows = bootstrap_windows(len(arr), window_size=self.window_size, n_windows=self.n_bootstrap,
                                    random_state=self.random_state + 10)
        soft = np.array([self._soft(stats, w) for w in windows])
        self.center_ = soft.mean(axis=0)
        # a constant share of exactly 0 in every window gets the spread of one image in a window
        floor = np.array([1e-6 * max(1.0, abs(self.center_[0])), 1e-6 * max(1.0, abs(self.center_[1])),
                          1.0 / self.window_size])
        self.spread_ = np.maximum(soft.std(axis=0, ddof=1), floor)
        null = []
        for w, values in zip(windows, soft, strict=True):
            z = np.abs((values - self.center_) / self.spread_)
            class_z = self._class_z(stats, w, pred if pred_probs is not None else None)
            null.append(max(float(z.max()), float(np.nanmax(np.abs(class_z))) if np.isfinite(class_z).any() else 0.0))
        self.threshold_ = calibrate_threshold(null, side="above", alpha=self.alpha)
        return self

    @staticmethod
    def _soft(stats: dict[str, np.ndarray], rows) -> np.ndarray:
        with quiet_runtime_warnings():
            return np.array([np.nanmean(stats["mean"][rows]), np.nanmean(stats["std"][rows]),
                             float(np.mean(stats["constant"][rows]))])

    def _class_z(self, stats: dict[str, np.ndarray], rows, pred) -> np.ndarray:
        """(K, 2) standard errors of each class's mean intensity and contrast from the reference's
        (two-sample: the window's and the reference's class means both vary); NaN when unknown."""
        if self.n_classes_ is None or pred is None:
            return np.full((1, 2), np.nan)
        k = self.n_classes_
        p = pred[rows]
        values = np.column_stack([stats["mean"][rows], stats["std"][rows]])
        counts = np.bincount(p, minlength=k).astype(np.float64)
        out = np.full((k, 2), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"), quiet_runtime_warnings():
            for j in range(2):
                sums = np.bincount(p, weights=np.nan_to_num(values[:, j]), minlength=k)
                se = self.class_sd_[:, j] * np.sqrt(1.0 / counts + 1.0 / np.maximum(self.class_count_, 1))
                out[:, j] = (sums / counts - self.class_center_[:, j]) / se
        out[(counts < MIN_CLASS_COUNT) | (self.class_count_ < MIN_CLASS_COUNT)] = np.nan
        return out

    def score(self, images, pred_probs=None) -> tuple[np.ndarray, SignalResult]:
        """Per-image mean intensity (N,) and the result.

        ``detail["failed"]`` maps each failed check to a sentence; ``detail["pipeline"]`` lists
        the pipeline-grade ones. With ``pred_probs`` (N, K) and a monitor fitted with them, the
        classes whose images' mean intensity or contrast moved past the threshold are
        ``classes_moved``, furthest first.
        """
        self._check_fitted()
        arr = _as_array(images, "images")
        if arr.ndim >= 1 and len(arr) == 0:
            raise ValueError("images has no rows; a window needs at least one")
        stats = image_statistics(arr)
        pred = None
        if pred_probs is not None and self.n_classes_ is not None:
            probs = check_pred_probs(pred_probs)
            if probs.shape != (len(arr), self.n_classes_):
                raise ValueError(f"pred_probs has shape {probs.shape} but images has {len(arr)} rows and the "
                                 f"monitor was fitted on K={self.n_classes_}")
            pred = probs.argmax(axis=1)
        soft = self._soft(stats, slice(None))
        z = (soft - self.center_) / self.spread_
        class_z = self._class_z(stats, np.arange(len(arr)), pred)
        statistic = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else float("inf")
        if np.isfinite(class_z).any():
            statistic = max(statistic, float(np.nanmax(np.abs(class_z))))
        failed: dict[str, str] = {}
        pipeline: list[str] = []
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
        pipeline += list(failed)
        names = {"mean_intensity": "mean intensity", "contrast": "contrast", "constant_share": "share of blank images"}
        for j, check in enumerate(SOFT_CHECKS):
            if not np.isfinite(z[j]) or abs(z[j]) > self.threshold_.value:
                failed[check] = (f"{names[check]} {soft[j]:.3g} where the reference has {self.center_[j]:.3g} "
                                 f"({z[j]:+.1f} sd)")
                relative = abs(soft[j] - self.center_[j]) / max(abs(self.center_[j]), 1e-12)
                if check == "constant_share" or not np.isfinite(z[j]) or relative > self.gross_change:
                    pipeline.append(check)
        moved: list[int] = []
        if np.isfinite(class_z).any():
            worst = np.nanmax(np.abs(np.nan_to_num(class_z, nan=0.0)), axis=1)
            order = np.argsort(-worst, kind="stable")
            moved = [int(c) for c in order if worst[c] > self.threshold_.value]
            if moved:
                parts = []
                for c in moved[:3]:
                    j = int(np.nanargmax(np.abs(np.nan_to_num(class_z[c], nan=0.0))))
                    window_value = self.class_center_[c, j] + class_z[c, j] * self.class_sd_[c, j] * math.sqrt(
                        1.0 / max(int((pred == c).sum()), 1) + 1.0 / max(int(self.class_count_[c]), 1))
                    parts.append(f"class {c} {('mean intensity', 'contrast')[j]} {window_value:.3g} where the "
                                 f"reference has {self.class_center_[c, j]:.3g} ({class_z[c, j]:+.1f} standard errors)")
                failed["class_statistics"] = "; ".join(parts)
        alert = bool(failed) or self.threshold_.passed(statistic)
        message = "input integrity: " + "; ".join(failed.values()) if failed else ""
        return stats["mean"], SignalResult(
            signal="integrity", statistic=statistic, threshold=self.threshold_, alert=alert,
            classes_moved=tuple(moved),
            per_class=None if not np.isfinite(class_z).any() else
            {c: float(np.nan_to_num(class_z[c, 1], nan=0.0)) for c in range(len(class_z))},
            detail={"failed": failed, "pipeline": pipeline, "mean_intensity": soft[0], "contrast": soft[1],
                    "constant_share": soft[2],
                    "reference": dict(zip(SOFT_CHECKS, self.center_.tolist(), strict=True)),
                    "z": dict(zip(SOFT_CHECKS, z.tolist(), strict=True)),
                    "class_z": class_z.tolist() if np.isfinite(class_z).any() else None, "shape": list(shape),
                    "dtype": str(arr.dtype), "nonfinite_images": n_bad,
                    "value_range": [float(finite.min()), float(finite.max())] if finite.size else None},
            message=message,
        )
