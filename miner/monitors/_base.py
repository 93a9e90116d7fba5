"""What every monitor shares: the result of one signal on one window, the fit/score contract,
the reference split and the threshold calibration on bootstrap windows of the reference.

Thresholds come from the reference itself: a monitor computes its statistic on ``n_bootstrap``
windows of ``window_size`` rows drawn (with replacement) from the *calibration* part of the
reference, which none of its fitted parts saw, and alerts past the ``1 - alpha`` quantile of
those statistics. ``alpha`` is small (a stream of hundreds of windows should raise no false
alert), smaller than ``1 / n_bootstrap``, so the quantile is taken from a normal fit to the
bootstrap statistics (mean + z * sd, z widened by Cornish-Fisher when the alert-side tail is
long), and never inside the bootstrap range: the threshold is at least the most extreme
bootstrap value plus a tenth of a standard deviation. Statistics of pairs of rows (silhouette,
MMD) use windows of distinct rows with the finite-population correction of their spread.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps
from sklearn.exceptions import NotFittedError

from hardcase.miner._validation import (
    check_fraction,
    check_positive_int,
)

__all__ = [
    "NotFittedError",
    "SignalResult",
    "Threshold",
    "bootstrap_windows",
    "calibrate_threshold",
    "finite_population_factor",
    "reference_split",
]

#: Alert when the statistic is above (``"above"``) or below (``"below"``) its threshold.
SIDES = ("above", "below")


@dataclass(frozen=True)
class Threshold:
    """A threshold calibrated on bootstrap windows of the reference.

    Attributes
    ----------
    value : float
        Alert past this value.
    side : str
        ``"above"`` (alert when the statistic exceeds ``value``) or ``"below"``.
    center, spread : float
        Mean and standard deviation of the statistic over the bootstrap windows: how far past
        the threshold a window is reads in units of ``spread``.
    alpha : float
        The per-window false-alert rate the threshold was set for.
    """

    value: float
    side: str
    center: float
    spread: float
    alpha: float

    def passed(self, statistic: float) -> bool:
        if not math.isfinite(statistic):
            return True
        return statistic > self.value if self.side == "above" else statistic < self.value

    def excess(self, statistic: float) -> float:
        """How far past the threshold (positive = past it), in the statistic's units."""
        if not math.isfinite(statistic):
            return math.inf
        return statistic - self.value if self.side == "above" else self.value - statistic

    def severity(self, statistic: float) -> float:
        """How far from the reference's mean, toward the alert side, in reference standard deviations."""
        if not math.isfinite(statistic):
            return math.inf
        sign = 1.0 if self.side == "above" else -1.0
        return sign * (statistic - self.center) / max(self.spread, 1e-12)

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "side": self.side, "center": self.center, "spread": self.spread,
                "alpha": self.alpha}


def calibrate_threshold(null_statistics, *, side: str, alpha: float, spread_factor: float = 1.0) -> Threshold:
    """The alert threshold of a statistic from its values on bootstrap windows of the reference.

    Parameters
    ----------
    null_statistics : array_like, shape (B,)
        The statistic on B reference windows (non-finite values are dropped).
    side : str
        ``"above"`` or ``"below"``: which side alerts.
    alpha : float
        Per-window false-alert rate, in (0, 1).
    spread_factor : float
        Multiplies the bootstrap standard deviation (>= 1): windows drawn *without* replacement
        from a calibration part of N rows vary less than independent windows do, by the finite
        population correction; ``spread_factor = sqrt((N - 1) / (N - n))`` undoes it
        (:func:`finite_population_factor`).

    Returns
    -------
    Threshold
        ``mean +- z * sd`` with ``z = z(1 - alpha)`` widened by the Cornish-Fisher term
        ``skew * (z^2 - 1) / 6`` when the statistic's alert-side tail is long (skewness > 0 toward
        that side, capped at 2), and at least a tenth of a standard deviation beyond the most
        extreme bootstrap value.
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    alpha = check_fraction(alpha, name="alpha")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    values = np.asarray(null_statistics, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2:
        raise ValueError(f"need at least 2 finite bootstrap statistics to calibrate, got {values.size}")
    if not (math.isfinite(spread_factor) and spread_factor >= 1.0):
        raise ValueError(f"spread_factor must be a finite number >= 1, got {spread_factor!r}")
    center, spread = float(values.mean()), float(values.std(ddof=1)) * float(spread_factor)
    z = float(sps.norm.isf(alpha))
    # a statistic with a long tail on its alert side (a share near 0 or 1, a maximum over
    # classes) is past the normal quantile more often than alpha: widen by Cornish-Fisher's
    # skewness term; a short tail never narrows the threshold
    oriented = values if side == "above" else -values
    skew = float(sps.skew(oriented, bias=False)) if values.size >= 3 and spread > 0 else 0.0
    z += max(0.0, min(skew, 2.0)) * (z * z - 1.0) / 6.0 if math.isfinite(skew) else 0.0
    if side == "above":
        value = max(center + z * spread, float(values.max()) + 0.1 * spread)
    else:
        value = min(center - z * spread, float(values.min()) - 0.1 * spread)
    return Threshold(value=value, side=side, center=center, spread=spread, alpha=alpha)


def reference_split(n: int, *, calibration_share: float, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``0 .. n-1`` into the rows a monitor fits on and the rows it calibrates thresholds on.

    The same ``n``, share and seed give the same split, so every monitor of a
    :class:`~hardcase.miner.monitors.WindowMonitor` sees the same parts.

    Returns
    -------
    fit_rows, calibration_rows : np.ndarray, int64, sorted
    """
    calibration_share = check_fraction(calibration_share, name="calibration_share")
    if not 0.0 < calibration_share < 1.0:
        raise ValueError(f"calibration_share must be in (0, 1), got {calibration_share}")
    if n < 4:
        raise ValueError(f"the reference needs at least 4 rows, got {n}")
    order = np.random.default_rng(random_state).permutation(n)
    n_cal = min(n - 2, max(2, int(round(calibration_share * n))))
    return np.sort(order[n_cal:]), np.sort(order[:n_cal])


def bootstrap_windows(n: int, *, window_size: int, n_windows: int, random_state: int,
                      replace: bool = True) -> np.ndarray:
    """Row indices of ``n_windows`` windows of ``window_size`` rows drawn from ``0 .. n-1``.

    With ``replace=False`` each window holds distinct rows (a random subset of an i.i.d. sample
    is itself an i.i.d. sample: what statistics on pairs of rows - silhouettes, MMD - need, as a
    duplicated row sits at distance 0 from its copy); when ``n < window_size`` rows must repeat
    and the draw falls back to replacement.
    """
    rng = np.random.default_rng(random_state)
    if replace or n < window_size:
        return rng.integers(0, n, size=(n_windows, window_size))
    return np.stack([rng.choice(n, size=window_size, replace=False) for _ in range(n_windows)])


def finite_population_factor(n: int, window_size: int) -> float:
    """``sqrt((n - 1) / (n - window_size))``: how much more independent windows of ``window_size``
    rows vary than windows drawn without replacement from the same ``n`` rows (1 when
    ``n <= window_size``, where :func:`bootstrap_windows` draws with replacement)."""
    if n <= window_size:
        return 1.0
    return float(math.sqrt((n - 1) / (n - window_size)))


@dataclass(frozen=True)
class SignalResult:
    """One signal on one window: the statistic, its threshold, the alert and the classes that moved.

    Attributes
    ----------
    signal : str
        E.g. ``"label_shift"``, ``"confidence"``, ``"accuracy"``, ``"cluster_health"``,
        ``"embedding_drift"``, ``"ood"``, ``"integrity"``.
    statistic : float
    threshold : Threshold
    alert : bool
    p_value : float or None
        When the signal is a test (label shift, drift).
    per_class : dict or None
        Class index -> the signal's per-class value on this window (e.g. mean confidence).
    classes_moved : tuple of int
        The classes that moved past their own bar, most moved first (empty when none did).
    detail : dict
        Signal-specific values, JSON-able.
    message : str
        One sentence saying what moved, for an alert.
    """

    signal: str
    statistic: float
    threshold: Threshold
    alert: bool
    p_value: float | None = None
    per_class: dict[int, float] | None = None
    classes_moved: tuple[int, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    @property
    def excess(self) -> float:
        """How far past the threshold (positive = past it), in the statistic's units."""
        return self.threshold.excess(self.statistic)

    @property
    def severity(self) -> float:
        """How far from the reference's mean toward the alert side, in reference standard deviations."""
        return self.threshold.severity(self.statistic)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (non-finite floats become None)."""
        return _jsonable({
            "signal": self.signal, "statistic": self.statistic, "threshold": self.threshold.to_dict(),
            "alert": self.alert, "excess": self.excess, "severity": self.severity, "p_value": self.p_value,
            "per_class": None if self.per_class is None else {str(k): v for k, v in self.per_class.items()},
            "classes_moved": list(self.classes_moved), "detail": self.detail, "message": self.message,
        })


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def class_counts(pred: np.ndarray, k: int) -> np.ndarray:
    """How many rows of ``pred`` (n,) fall in each of the ``k`` classes, as floats (K,)."""
    return np.bincount(pred, minlength=k).astype(np.float64)


@contextmanager
def quiet_runtime_warnings():
    """Silence numpy's RuntimeWarnings (an empty class's nanmean, a window of constant images):
    the monitors turn those cases into NaN values on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


class Monitor:
    """The estimator contract: ``__init__`` stores settings, ``fit`` learns (attributes ending in
    ``_``) and returns self, ``score`` reads one window and returns ``(values, SignalResult)``."""

    #: The learned attribute whose presence means "fitted".
    _fitted_attribute = "threshold_"

    def _check_fitted(self) -> None:
        if not hasattr(self, self._fitted_attribute):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(reference...) before score(window...)"
            )

    def _check_settings(self) -> None:
        check_positive_int(self.window_size, name="window_size")
        check_positive_int(self.n_bootstrap, name="n_bootstrap")
        if self.n_bootstrap < 2:
            raise ValueError(f"n_bootstrap must be >= 2, got {self.n_bootstrap}")
        alpha = check_fraction(self.alpha, name="alpha")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")

    def get_params(self) -> dict[str, Any]:
        """The settings given to ``__init__`` (scikit-learn style)."""
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"
