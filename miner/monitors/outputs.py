"""Monitors of the model's outputs ``pred_probs`` (N, K): no labels, no embeddings.

- :class:`LabelShiftMonitor`: the predicted-class distribution and its chi-square distance from
  the reference's (label shift);
- :class:`ConfidenceMonitor`: confidence per predicted class against the reference's (a rank
  test per class); the classes whose confidence dropped most clearly are the canaries;
- :class:`AccuracyEstimator`: accuracy without labels, calibrated on labelled reference data:
  ATC (Average Thresholded Confidence, Garg et al. 2022: the share of samples whose score -
  negative entropy, or max probability for ``"atc_mc"`` - exceeds the threshold that gives the
  reference's accuracy) or CBPE (NannyML: the mean calibrated probability of the predicted
  class, each class calibrated one-vs-rest by an isotonic regression); with an interval from the
  reference's own errors;
- :class:`KSOutputTest`: "Failing Loudly" (Rabanser et al. 2019) BBSD: a Kolmogorov-Smirnov
  test per output column against the reference, Bonferroni-corrected, at a fixed level - no
  calibration on the reference (the benchmark's anchor).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps
from sklearn.isotonic import IsotonicRegression

from hardcase.miner._validation import (
    check_choice,
    check_labels,
    check_positive_int,
    check_pred_probs,
)
from hardcase.miner.monitors._base import (
    Monitor,
    SignalResult,
    Threshold,
    bootstrap_windows,
    calibrate_threshold,
    class_counts,
    reference_split,
)

__all__ = ["AccuracyEstimator", "ConfidenceMonitor", "KSOutputTest", "LabelShiftMonitor"]

#: A class needs this many predictions in a window for its per-class statistics to count.
MIN_CLASS_COUNT = 5





class LabelShiftMonitor(Monitor):
    """The predicted-class distribution of a window against the reference's (label shift).

    Statistic: Pearson's chi-square of the window's predicted-class counts against the
    reference shares (smoothed by half a count per class), alerting above its bootstrap
    threshold; the p-value is the chi-square distribution's (``scipy.stats.chisquare``).
    Classes moved: standardized residuals ``(observed - expected) / sqrt(expected)`` beyond
    ``z(1 - alpha / 2K)``, largest first.

    Parameters
    ----------
    window_size, n_bootstrap : int
        Rows per bootstrap window (the window size scored) and bootstrap windows.
    alpha : float
        Per-window false-alert rate.
    calibration_share : float
        Share of the reference held out of the fit for the bootstrap windows.
    random_state : int
    """

    def __init__(self, *, window_size: int = 300, n_bootstrap: int = 200, alpha: float = 0.001,
                 calibration_share: float = 0.5, random_state: int = 0) -> None:
        self.window_size = window_size
        self.n_bootstrap = n_bootstrap
        self.alpha = alpha
        self.calibration_share = calibration_share
        self.random_state = random_state

    def fit(self, pred_probs) -> LabelShiftMonitor:
        """Learn ``reference_share_`` (K,) and ``threshold_`` from reference ``pred_probs`` (N, K)."""
        self._check_settings()
        probs = check_pred_probs(pred_probs)
        n, k = probs.shape
        fit_rows, cal_rows = reference_split(n, calibration_share=self.calibration_share,
                                             random_state=self.random_state)
        pred = probs.argmax(axis=1)
        counts = class_counts(pred[fit_rows], k) + 0.5
        self.n_classes_ = k
        self.reference_share_ = counts / counts.sum()
        windows = bootstrap_windows(len(cal_rows), window_size=self.window_size, n_windows=self.n_bootstrap,
                                    random_state=self.random_state + 1)
        cal_pred = pred[cal_rows]
        null = [self._chi2(class_counts(cal_pred[w], k))[0] for w in windows]
        self.threshold_ = calibrate_threshold(null, side="above", alpha=self.alpha)
        return self

    def _chi2(self, counts: np.ndarray) -> tuple[float, float, np.ndarray]:
        expected = self.reference_share_ * counts.sum()
        statistic, p_value = sps.chisquare(counts, expected)
        return float(statistic), float(p_value), (counts - expected) / np.sqrt(expected)

    def score(self, pred_probs) -> tuple[np.ndarray, SignalResult]:
        """The window's predicted-class shares (K,) and the label-shift result."""
        self._check_fitted()
        probs = check_pred_probs(pred_probs)
        _check_k(probs, self.n_classes_)
        k = self.n_classes_
        counts = class_counts(probs.argmax(axis=1), k)
        if counts.sum() == 0:
            raise ValueError("pred_probs has no rows; a window needs at least one")
        statistic, p_value, residual = self._chi2(counts)
        bar = float(sps.norm.isf(self.alpha / (2 * k)))
        moved = [int(c) for c in np.argsort(-np.abs(residual), kind="stable") if abs(residual[c]) > bar]
        alert = self.threshold_.passed(statistic)
        share = counts / counts.sum()
        message = ""
        if alert:
            top = moved[:3] or [int(np.argmax(np.abs(residual)))]
            parts = [f"class {c} {100 * share[c]:.0f}% of predictions (reference {100 * self.reference_share_[c]:.0f}%)"
                     for c in top]
            message = "predicted-class distribution shifted: " + ", ".join(parts)
        return share, SignalResult(
            signal="label_shift", statistic=statistic, threshold=self.threshold_, alert=alert, p_value=p_value,
            per_class={c: float(share[c]) for c in range(k)}, classes_moved=tuple(moved),
            detail={"reference_share": self.reference_share_.tolist(), "residual": residual.tolist()},
            message=message,
        )


def _check_k(probs: np.ndarray, k: int) -> None:
    if probs.shape[1] != k:
        raise ValueError(f"pred_probs has {probs.shape[1]} columns but the monitor was fitted on K={k}")


class ConfidenceMonitor(Monitor):
    """Confidence (max probability) per predicted class; the classes that dropped first.

    Per class with at least ``MIN_CLASS_COUNT`` predictions in the window, a one-sided
    Mann-Whitney U test (``scipy.stats.mannwhitneyu``, ties corrected) asks whether the window's
    confidences of that class are lower than the fit part's; the statistic is
    ``-log10(min(1, K' * min_k p_k))`` (Bonferroni over the K' classes tested), alerting above
    its threshold calibrated on bootstrap windows of the calibration part (as every signal).
    A rank test, because a class's confidences are skewed (most near 1, a few low): the mean of
    30 of them swings with one unsure sample, and a threshold on a z of means, extrapolated from
    200 bootstrap windows to a per-window rate of 1/4000, let undisturbed windows alert. The
    canaries (``classes_moved``) are the classes whose own Bonferroni p-value is past the
    threshold, lowest p first.

    Parameters
    ----------
    As :class:`LabelShiftMonitor`.
    """

    def __init__(self, *, window_size: int = 300, n_bootstrap: int = 200, alpha: float = 0.001,
                 calibration_share: float = 0.5, random_state: int = 0) -> None:
        self.window_size = window_size
        self.n_bootstrap = n_bootstrap
        self.alpha = alpha
        self.calibration_share = calibration_share
        self.random_state = random_state

    def fit(self, pred_probs) -> ConfidenceMonitor:
        """Learn ``class_mean_`` (K,: the fit part's mean confidence per predicted class, NaN for a
        class never predicted), ``mean_confidence_``, ``reference_confidence_`` (the fit part's
        confidences per class, a list of K arrays) and ``threshold_`` (on the statistic)."""
        self._check_settings()
        probs = check_pred_probs(pred_probs)
        n, k = probs.shape
        fit_rows, cal_rows = reference_split(n, calibration_share=self.calibration_share,
                                             random_state=self.random_state)
        conf, pred = probs.max(axis=1), probs.argmax(axis=1)
        self.n_classes_ = k
        self.reference_confidence_ = [np.sort(conf[fit_rows][pred[fit_rows] == c]) for c in range(k)]
        self.class_mean_ = np.array([v.mean() if v.size else np.nan for v in self.reference_confidence_])
        self.mean_confidence_ = float(conf[fit_rows].mean())
        windows = bootstrap_windows(len(cal_rows), window_size=self.window_size, n_windows=self.n_bootstrap,
                                    random_state=self.random_state + 2)
        null = [self._test(conf[cal_rows][w], pred[cal_rows][w])[0] for w in windows]
        self.threshold_ = calibrate_threshold(null, side="above", alpha=self.alpha)
        return self

    def _test(self, conf: np.ndarray, pred: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(statistic, per-class Bonferroni -log10 p (K,; NaN when untested), window mean per class)."""
        k = self.n_classes_
        counts = class_counts(pred, k)
        with np.errstate(invalid="ignore", divide="ignore"):
            window_mean = np.bincount(pred, weights=conf, minlength=k) / counts
        p = np.full(k, np.nan)
        for c in range(k):
            reference = self.reference_confidence_[c]
            if counts[c] >= MIN_CLASS_COUNT and reference.size >= MIN_CLASS_COUNT:
                p[c] = sps.mannwhitneyu(conf[pred == c], reference, alternative="less", method="asymptotic").pvalue
        tested = int(np.isfinite(p).sum())
        if tested == 0:
            return 0.0, p, window_mean
        log_p = -np.log10(np.clip(np.minimum(1.0, p * tested), 1e-300, 1.0))
        return float(np.nanmax(log_p)), log_p, window_mean

    def score(self, pred_probs) -> tuple[np.ndarray, SignalResult]:
        """Mean confidence per predicted class (K,; NaN for a class not predicted) and the result."""
        self._check_fitted()
        probs = check_pred_probs(pred_probs)
        _check_k(probs, self.n_classes_)
        if probs.shape[0] == 0:
            raise ValueError("pred_probs has no rows; a window needs at least one")
        conf, pred = probs.max(axis=1), probs.argmax(axis=1)
        statistic, log_p, window_mean = self._test(conf, pred)
        past = np.where(np.isfinite(log_p) & (log_p > self.threshold_.value), log_p, np.nan)
        order = np.argsort(-np.nan_to_num(past, nan=-np.inf), kind="stable")
        moved = [int(c) for c in order if np.isfinite(past[c])]
        alert = self.threshold_.passed(statistic)
        message = ""
        if alert:
            top = moved[:3] or [int(np.nanargmax(log_p))]
            parts = [f"class {c} {window_mean[c]:.3f} (reference {self.class_mean_[c]:.3f}, "
                     f"p = {10 ** -log_p[c]:.1g})" for c in top]
            message = "confidence dropped: " + ", ".join(parts)
        return window_mean, SignalResult(
            signal="confidence", statistic=statistic, threshold=self.threshold_, alert=alert,
            p_value=float(10 ** -statistic),
            per_class={c: float(window_mean[c]) for c in range(self.n_classes_)}, classes_moved=tuple(moved),
            detail={"mean_confidence": float(conf.mean()), "reference_mean_confidence": self.mean_confidence_,
                    "class_log10_p": log_p.tolist(), "reference_class_mean": self.class_mean_.tolist()},
            message=message,
        )


ACCURACY_METHODS = ("atc", "atc_mc", "cbpe")


def _entropy_score(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs, 1e-12, 1.0)
    return (p * np.log(p)).sum(axis=1)  # negative entropy: higher = more confident


class AccuracyEstimator(Monitor):
    """Accuracy of a window without its labels, calibrated on labelled reference data.

    Methods:

    ``"atc"`` / ``"atc_mc"``
        Average Thresholded Confidence (Garg et al., ICLR 2022): on the fit part of the
        reference, the threshold ``t`` on a per-sample score - negative entropy (``"atc"``,
        the paper's ATC-NE) or max probability (``"atc_mc"``) - such that the share of samples
        scoring above ``t`` equals the reference accuracy; a window's estimate is its share
        above ``t``.
    ``"cbpe"`` (default of :class:`~hardcase.miner.monitors.WindowMonitor`)
        Confidence-based performance estimation (NannyML's CBPE for accuracy): each class's
        probability calibrated one-vs-rest by an isotonic regression
        (``sklearn.isotonic.IsotonicRegression``) of "the sample is of class k" on ``p_k``, the
        calibrated vector normalized to sum to 1; a sample's chance of being right is its
        calibrated probability of the predicted class, the estimate the window's mean.

    The interval is for the window's true accuracy: the estimate plus the ``(1 - interval) / 2``
    and ``(1 + interval) / 2`` quantiles of ``truth - estimate`` over the bootstrap windows of
    the calibration part (which hold both the estimate's error and the window's sampling
    noise), scaled by ``sqrt(window_size / n)`` for a window of another size, and widened to
    hold a percentile bootstrap of the window's own per-sample estimates. The alert fires
    when the estimate falls below the bootstrap threshold of the reference's estimates; the
    classes moved are those whose estimated accuracy fell most below their own reference
    estimate (by more than ``class_drop``, at least ``MIN_CLASS_COUNT`` predictions).

    Parameters
    ----------
    method : str
        ``"atc"`` (default), ``"atc_mc"`` or ``"cbpe"``.
    interval : float
        Coverage of the interval, e.g. 0.95.
    class_drop : float
        A class moved when its estimated accuracy is this much below its reference estimate.
    Others as :class:`LabelShiftMonitor`.
    """

    def __init__(self, *, method: str = "atc", interval: float = 0.95, class_drop: float = 0.1,
                 window_size: int = 300, n_bootstrap: int = 200, alpha: float = 0.001,
                 calibration_share: float = 0.5, random_state: int = 0) -> None:
        self.method = method
        self.interval = interval
        self.class_drop = class_drop
        self.window_size = window_size
        self.n_bootstrap = n_bootstrap
        self.alpha = alpha
        self.calibration_share = calibration_share
        self.random_state = random_state

    def fit(self, pred_probs, labels) -> AccuracyEstimator:
        """Learn the ATC threshold ``atc_threshold_`` or the per-class ``calibrators_``, and ``threshold_``.

        ``labels`` (N,) are the reference's true classes (no unknown labels).
        """
        self._check_settings()
        check_choice(self.method, name="method", choices=ACCURACY_METHODS)
        if not 0.0 < float(self.interval) < 1.0:
            raise ValueError(f"interval must be in (0, 1), got {self.interval!r}")
        probs = check_pred_probs(pred_probs)
        n, k = probs.shape
        labels = check_labels(labels, n=n, n_classes=k, allow_unknown=False)
        fit_rows, cal_rows = reference_split(n, calibration_share=self.calibration_share,
                                             random_state=self.random_state)
        self.n_classes_ = k
        correct = (probs.argmax(axis=1) == labels).astype(np.float64)
        self._fit_estimator(probs[fit_rows], labels[fit_rows])
        self.reference_accuracy_ = float(correct[cal_rows].mean())
        per_sample = self._per_sample(probs[cal_rows])
        windows = bootstrap_windows(len(cal_rows), window_size=self.window_size, n_windows=self.n_bootstrap,
                                    random_state=self.random_state + 3)
        estimates = per_sample[windows].mean(axis=1)
        truths = correct[cal_rows][windows].mean(axis=1)
        #: mean absolute error of the estimate on the reference's bootstrap windows
        self.calibration_error_ = float(np.abs(estimates - truths).mean())
        tail = (1.0 - float(self.interval)) / 2
        #: quantiles of (true - estimated accuracy) on the reference's bootstrap windows
        self.error_quantiles_ = tuple(float(v) for v in np.quantile(truths - estimates, [tail, 1.0 - tail]))
        cal_pred = probs[cal_rows].argmax(axis=1)
        counts = class_counts(cal_pred, k)
        with np.errstate(invalid="ignore", divide="ignore"):
            #: estimated accuracy per predicted class on the calibration part (K,)
            self.class_estimate_ = np.bincount(cal_pred, weights=per_sample, minlength=k) / counts
        self.threshold_ = calibrate_threshold(estimates, side="below", alpha=self.alpha)
        # the errors, interval and threshold above come from an estimator that never saw the
        # calibration part; the estimate itself is then fitted on the whole reference (twice
        # the data: the drift benchmark's mean error drops from 3.8 to 2.4 points for CBPE)
        self._fit_estimator(probs, labels)
        return self

    def _fit_estimator(self, probs: np.ndarray, labels: np.ndarray) -> None:
        if self.method == "cbpe":
            # one isotonic calibration per class, one-vs-rest (as NannyML's CBPE): the chance a
            # sample is of class k given p_k
            self.calibrators_ = []
            for c in range(probs.shape[1]):
                calibrator = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
                calibrator.fit(probs[:, c], (labels == c).astype(np.float64))
                self.calibrators_.append(calibrator)
        else:
            scores = self._scores(probs)
            accuracy = float((probs.argmax(axis=1) == labels).mean())
            self.atc_threshold_ = float(np.quantile(scores, 1.0 - accuracy)) if accuracy < 1 else float(scores.min() - 1e-9)

    def _scores(self, probs: np.ndarray) -> np.ndarray:
        return _entropy_score(probs) if self.method == "atc" else probs.max(axis=1)

    def _per_sample(self, probs: np.ndarray) -> np.ndarray:
        if self.method == "cbpe":
            # the calibrated vector normalized to sum to 1; a sample is right with its
            # calibrated probability of the predicted class
            calibrated = np.column_stack([cal.predict(probs[:, c]) for c, cal in enumerate(self.calibrators_)])
            total = calibrated.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                chosen = calibrated[np.arange(len(probs)), probs.argmax(axis=1)] / total
            return np.where(total > 0, chosen, 0.0)
        return (self._scores(probs) > self.atc_threshold_).astype(np.float64)

    def score(self, pred_probs, labels=None) -> tuple[np.ndarray, SignalResult]:
        """Per-sample estimated correctness (N,) and the result (``statistic`` = estimated accuracy).

        ``labels`` (N,), optional (-1 = unknown): the true accuracy on the labelled rows goes to
        ``detail["true_accuracy"]`` (and the estimate's error to ``detail["error"]``).
        """
        self._check_fitted()
        probs = check_pred_probs(pred_probs)
        _check_k(probs, self.n_classes_)
        n = probs.shape[0]
        if n == 0:
            raise ValueError("pred_probs has no rows; a window needs at least one")
        values = self._per_sample(probs)
        estimate = float(values.mean())
        low, high = self._interval(values, estimate)
        pred = probs.argmax(axis=1)
        counts = class_counts(pred, self.n_classes_)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = np.bincount(pred, weights=values, minlength=self.n_classes_) / counts
        detail = {"method": self.method, "estimate": estimate, "interval": [low, high],
                  "reference_accuracy": self.reference_accuracy_, "calibration_error": self.calibration_error_}
        if labels is not None:
            labels = check_labels(labels, n=n, n_classes=self.n_classes_)
            known = labels >= 0
            if known.any():
                truth = float((pred[known] == labels[known]).mean())
                detail["true_accuracy"] = truth
                detail["error"] = estimate - truth
        alert = self.threshold_.passed(estimate)
        drops = self.class_estimate_ - per_class
        drops[(counts < MIN_CLASS_COUNT) | ~np.isfinite(drops)] = np.nan
        order = np.argsort(-np.nan_to_num(drops, nan=-np.inf), kind="stable")
        moved = [int(c) for c in order if np.isfinite(drops[c]) and drops[c] > self.class_drop]
        message = ""
        if alert:
            message = (f"estimated accuracy {100 * estimate:.1f}% ({100 * low:.0f}-{100 * high:.0f}%) where the "
                       f"reference has {100 * self.reference_accuracy_:.1f}%")
            if moved:
                message += "; most lost in class " + ", ".join(
                    f"{c} ({100 * per_class[c]:.0f}%, reference {100 * self.class_estimate_[c]:.0f}%)" for c in moved[:3])
        return values, SignalResult(
            signal="accuracy", statistic=estimate, threshold=self.threshold_, alert=alert,
            per_class={c: float(per_class[c]) for c in range(self.n_classes_)}, classes_moved=tuple(moved),
            detail=detail, message=message,
        )

    def _interval(self, values: np.ndarray, estimate: float) -> tuple[float, float]:
        n = len(values)
        scale = math.sqrt(self.window_size / n)
        low, high = estimate + scale * self.error_quantiles_[0], estimate + scale * self.error_quantiles_[1]
        rng = np.random.default_rng(self.random_state + 4)
        resampled = values[rng.integers(0, n, size=(500, n))].mean(axis=1)
        tail = (1.0 - float(self.interval)) / 2
        b_low, b_high = (float(v) for v in np.quantile(resampled, [tail, 1.0 - tail]))
        return max(0.0, min(low, b_low)), min(1.0, max(high, b_high))


class KSOutputTest(Monitor):
    """Failing Loudly's BBSD test: KS per output column against the reference, Bonferroni, fixed level.

    Each of the K columns of ``pred_probs`` is compared with the reference's by
    ``scipy.stats.ks_2samp``; the window's p-value is ``min(1, K * min p)`` and the alert fires
    when it is below ``alpha`` (0.05 in the paper). No bootstrap calibration by default: the
    level is the test's own, which assumes the reference and the stream come from one
    distribution (a stream from a slightly different population than the reference alerts far
    more often than ``alpha``). With ``calibrate=True`` the reference is split as the other
    monitors split it and the threshold on the Bonferroni p-value comes from bootstrap windows
    of the calibration part at the per-window false-alert rate ``alpha`` (the same test at a
    calibrated level, for comparisons at equal false-alert rates).

    Parameters
    ----------
    alpha : float
        The test level (default 0.05), or the per-window false-alert rate with ``calibrate``.
    reference_size : int
        Reference rows kept (a seeded draw; all when fewer).
    calibrate : bool
        Calibrate the threshold on bootstrap windows of the reference.
    window_size, n_bootstrap, calibration_share
        As :class:`LabelShiftMonitor` (used with ``calibrate``).
    random_state : int
    """

    _fitted_attribute = "reference_"

    def __init__(self, *, alpha: float = 0.05, reference_size: int = 1000, calibrate: bool = False,
                 window_size: int = 300, n_bootstrap: int = 200, calibration_share: float = 0.5,
                 random_state: int = 0) -> None:
        self.alpha = alpha
        self.reference_size = reference_size
        self.calibrate = calibrate
        self.window_size = window_size
        self.n_bootstrap = n_bootstrap
        self.calibration_share = calibration_share
        self.random_state = random_state

    def fit(self, pred_probs) -> KSOutputTest:
        """Keep ``reference_`` (the reference outputs) and ``threshold_`` (fixed, or calibrated)."""
        probs = check_pred_probs(pred_probs)
        size = check_positive_int(self.reference_size, name="reference_size")
        if self.calibrate:
            self._check_settings()
        elif not 0.0 < float(self.alpha) < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")
        rows = np.arange(len(probs))
        cal_rows = None
        if self.calibrate:
            rows, cal_rows = reference_split(len(probs), calibration_share=self.calibration_share,
                                             random_state=self.random_state)
        if len(rows) > size:
            rows = np.sort(np.random.default_rng(self.random_state).choice(rows, size=size, replace=False))
        self.reference_ = probs[rows]
        if self.calibrate:
            windows = bootstrap_windows(len(cal_rows), window_size=self.window_size, n_windows=self.n_bootstrap,
                                        random_state=self.random_state + 11, replace=False)
            null = [self._test(probs[cal_rows[w]])[1] for w in windows]
            # p-values span orders of magnitude: calibrate on -log10 p (above)
            log_threshold = calibrate_threshold(-np.log10(np.maximum(null, 1e-300)), side="above", alpha=self.alpha)
            value = float(10.0 ** -log_threshold.value)
            self.threshold_ = Threshold(value=value, side="below", center=float(np.median(null)),
                                        spread=float(np.std(null)), alpha=float(self.alpha))
        else:
            self.threshold_ = Threshold(value=float(self.alpha), side="below", center=0.5, spread=0.29,
                                        alpha=float(self.alpha))
        return self

    def _test(self, probs: np.ndarray) -> tuple[np.ndarray, float]:
        k = probs.shape[1]
        p = np.array([sps.ks_2samp(self.reference_[:, c], probs[:, c]).pvalue for c in range(k)])
        return p, float(min(1.0, k * p.min()))

    def score(self, pred_probs) -> tuple[np.ndarray, SignalResult]:
        """Per-column KS p-values (K,) and the result (``statistic`` = the Bonferroni p-value)."""
        self._check_fitted()
        probs = check_pred_probs(pred_probs)
        _check_k(probs, self.reference_.shape[1])
        if probs.shape[0] == 0:
            raise ValueError("pred_probs has no rows; a window needs at least one")
        k = probs.shape[1]
        p, bonferroni = self._test(probs)
        alert = self.threshold_.passed(bonferroni)
        return p, SignalResult(
            signal="ks_outputs", statistic=bonferroni, threshold=self.threshold_, alert=alert, p_value=bonferroni,
            per_class={c: float(p[c]) for c in range(k)},
            classes_moved=tuple(int(c) for c in np.argsort(p, kind="stable") if p[c] * k < self.threshold_.value),
            message=(f"outputs drifted (KS, Bonferroni p = {bonferroni:.2g}, threshold {self.threshold_.value:.2g})"
                     if alert else ""),
        )
