"""Monitors of the model's embeddings (N, D), in a space fitted once on the reference.

Every monitor here projects embeddings with a PCA fitted on the fit part of the reference
(``sklearn.decomposition.PCA``, ``n_components`` dimensions), so windows compare in one space.

- :class:`ClusterHealthMonitor`: silhouette (``sklearn.metrics.silhouette_score`` /
  ``silhouette_samples``) of the embeddings grouped by predicted class, overall and per class;
- :class:`EmbeddingDriftMonitor`: a two-sample test of the window against the reference: the
  maximum mean discrepancy (MMD, Gaussian kernel, median-heuristic bandwidth) with a
  permutation p-value, or KS per PCA component with Bonferroni;
- :class:`OODMonitor`: the share of samples less likely than the reference's 1st percentile:
  distance to the k-th nearest reference embedding (``sklearn.neighbors.NearestNeighbors``) or
  log-likelihood under a ``sklearn.mixture.GaussianMixture``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps
from sklearn.decomposition import PCA
from sklearn.metrics import pairwise_distances, silhouette_samples
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors

from hardcase.miner._validation import (
    check_choice,
    check_embeddings,
    check_fraction,
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
    finite_population_factor,
    quiet_runtime_warnings,
    reference_split,
)
from hardcase.miner.monitors.outputs import MIN_CLASS_COUNT

__all__ = ["ClusterHealthMonitor", "EmbeddingDriftMonitor", "OODMonitor"]


def _fit_space(embeddings: np.ndarray, n_components: int, random_state: int) -> PCA:
    n, d = embeddings.shape
    dims = max(1, min(int(n_components), d, n - 1))
    return PCA(n_components=dims, random_state=random_state).fit(embeddings)


def _check_window(embeddings, pred_probs, d: int) -> tuple[np.ndarray, np.ndarray | None]:
    emb = check_embeddings(embeddings)
    if emb.shape[1] != d:
        raise ValueError(f"embeddings have D={emb.shape[1]} columns but the monitor was fitted on D={d}")
    if emb.shape[0] == 0:
        raise ValueError("embeddings has no rows; a window needs at least one")
    if pred_probs is None:
        return emb, None
    probs = check_pred_probs(pred_probs)
    if probs.shape[0] != emb.shape[0]:
        raise ValueError(f"pred_probs has {probs.shape[0]} rows but embeddings has {emb.shape[0]}")
    return emb, probs


class _EmbeddingMonitor(Monitor):
    def _prepare_fit(self, embeddings, pred_probs=None):
        self._check_settings()
        check_positive_int(self.n_components, name="n_components")
        emb = check_embeddings(embeddings)
        n = emb.shape[0]
        probs = None
        if pred_probs is not None:
            probs = check_pred_probs(pred_probs)
            if probs.shape[0] != n:
                raise ValueError(f"pred_probs has {probs.shape[0]} rows but embeddings has {n}")
        fit_rows, cal_rows = reference_split(n, calibration_share=self.calibration_share,
                                             random_state=self.random_state)
        self.n_features_in_ = emb.shape[1]
        self.space_ = _fit_space(emb[fit_rows], self.n_components, self.random_state)
        projected = self.space_.transform(emb).astype(np.float64)
        return projected, probs, fit_rows, cal_rows


class ClusterHealthMonitor(_EmbeddingMonitor):
    """Silhouette of the embeddings grouped by predicted class: are the class clusters blurring?

    Statistic: the window's mean silhouette (Euclidean, in the reference PCA space, labels =
    predicted classes), alerting *below* its bootstrap threshold. The bootstrap windows hold
    distinct rows of the calibration part (a duplicated row sits at distance 0 from its copy
    and would make the reference look tighter than any real window), with the finite-population
    correction of the spread. Per class: the mean silhouette of the samples predicted as that
    class, with its own bootstrap threshold at ``alpha / K``; the classes moved are those past
    their own threshold, furthest first. A window predicting a single class has no silhouette:
    the statistic is then -1 (the worst).

    Parameters
    ----------
    n_components : int
        PCA dimensions (at most D and the fit rows - 1).
    Others as :class:`~hardcase.miner.monitors.LabelShiftMonitor`.
    """

    def __init__(self, *, n_components: int = 30, window_size: int = 300, n_bootstrap: int = 200,
                 alpha: float = 0.001, calibration_share: float = 0.5, random_state: int = 0) -> None:
        self.n_components = n_components
        self.window_size = window_size
        self.n_bootstrap = n_bootstrap
        self.alpha = alpha
        self.calibration_share = calibration_share
        self.random_state = random_state

    def fit(self, embeddings, pred_probs) -> ClusterHealthMonitor:
        """Learn ``space_`` (the PCA), ``class_mean_`` / ``class_sd_`` (K,) and ``threshold_``."""
        z, probs, _, cal_rows = self._prepare_fit(embeddings, pred_probs)
        k = probs.shape[1]
        self.n_classes_ = k
        pred = probs.argmax(axis=1)
        windows = bootstrap_windows(len(cal_rows), window_size=self.window_size, n_windows=self.n_bootstrap,
                                    random_state=self.random_state + 5, replace=False)
        factor = finite_population_factor(len(cal_rows), self.window_size)
        overall, per_class = [], []
        for w in windows:
            rows = cal_rows[w]
            s, c = self._silhouette(z[rows], pred[rows])
            overall.append(s)
            per_class.append(c)
        per_class = np.array(per_class)
        with np.errstate(invalid="ignore"), quiet_runtime_warnings():
            self.class_mean_ = np.nanmean(per_class, axis=0)
        self.class_thresholds_ = []
        for c in range(k):
            column = per_class[:, c]
            ok = np.isfinite(column)
            self.class_thresholds_.append(calibrate_threshold(column[ok], side="below", alpha=self.alpha / k,
                                                              spread_factor=factor) if ok.sum() >= 10 else None)
        self.reference_silhouette_ = float(np.mean(overall))
        self.threshold_ = calibrate_threshold(overall, side="below", alpha=self.alpha, spread_factor=factor)
        return self

    def _silhouette(self, z: np.ndarray, pred: np.ndarray) -> tuple[float, np.ndarray]:
        k = self.n_classes_
        per_class = np.full(k, np.nan)
        labels = np.unique(pred)
        if labels.size < 2 or labels.size >= len(pred):
            return -1.0, per_class
        # duplicated rows (bootstrap draws) are fine: silhouette needs only distances
        values = silhouette_samples(z, pred, metric="euclidean")
        counts = class_counts(pred, k)
        sums = np.bincount(pred, weights=values, minlength=k)
        ok = counts >= MIN_CLASS_COUNT
        per_class[ok] = sums[ok] / counts[ok]
        return float(values.mean()), per_class

    def score(self, embeddings, pred_probs) -> tuple[np.ndarray, SignalResult]:
        """Per-sample silhouette (N,; NaN when undefined) and the result (``statistic`` = mean silhouette)."""
        self._check_fitted()
        emb, probs = _check_window(embeddings, pred_probs, self.n_features_in_)
        z = self.space_.transform(emb).astype(np.float64)
        pred = probs.argmax(axis=1)
        labels = np.unique(pred)
        if 2 <= labels.size < len(pred):
            values = silhouette_samples(z, pred, metric="euclidean")
        else:
            values = np.full(len(pred), np.nan)
        statistic, per_class = self._silhouette(z, pred)
        past = np.full(self.n_classes_, np.nan)
        for c, threshold in enumerate(self.class_thresholds_):
            if threshold is not None and np.isfinite(per_class[c]) and threshold.passed(per_class[c]):
                past[c] = threshold.severity(per_class[c])
        order = np.argsort(-np.nan_to_num(past, nan=-np.inf), kind="stable")
        moved = [int(c) for c in order if np.isfinite(past[c])]
        drop = np.array([t.severity(v) if t is not None and np.isfinite(v) else np.nan
                         for t, v in zip(self.class_thresholds_, per_class, strict=True)])
        alert = self.threshold_.passed(statistic)
        message = ""
        if alert:
            message = f"class clusters blurred: silhouette {statistic:.3f} where the reference has {self.reference_silhouette_:.3f}"
            if moved:
                message += "; most in class " + ", ".join(
                    f"{c} ({per_class[c]:.3f}, reference {self.class_mean_[c]:.3f})" for c in moved[:3])
        return values, SignalResult(
            signal="cluster_health", statistic=statistic, threshold=self.threshold_, alert=alert,
            per_class={c: float(per_class[c]) for c in range(self.n_classes_)}, classes_moved=tuple(moved),
            detail={"reference_silhouette": self.reference_silhouette_, "drop_z": drop.tolist(),
                    "n_components": int(self.space_.n_components_)},
            message=message,
        )


DRIFT_METHODS = ("mmd", "ks")


class EmbeddingDriftMonitor(_EmbeddingMonitor):
    """A two-sample test of a window's embeddings against the reference's, in the reference PCA space.

    ``"mmd"``: the unbiased squared maximum mean discrepancy with a Gaussian kernel whose
    bandwidth is the median pairwise distance of the reference (median heuristic); the p-value
    is a permutation test (``n_permutations``) of the window against ``reference_size``
    reference rows. ``"ks"``: ``scipy.stats.ks_2samp`` per PCA component; the statistic is the
    Bonferroni p-value ``min(1, D * min p)``. Either way the alert threshold on the statistic
    comes from bootstrap windows (distinct rows, finite-population corrected) of the
    calibration part of the reference (above for MMD; below for the KS p-value, calibrated on
    ``-log10 p``), not from the test's nominal level.

    Parameters
    ----------
    method : str
        ``"mmd"`` (default) or ``"ks"``.
    n_components : int
        PCA dimensions.
    reference_size : int
        Reference (fit-part) rows the window is compared with.
    n_permutations : int
        Permutations of the MMD p-value (0 skips it).
    Others as :class:`~hardcase.miner.monitors.LabelShiftMonitor`.
    """

    _fitted_attribute = "threshold_"

    def __init__(self, *, method: str = "mmd", n_components: int = 20, reference_size: int = 500,
                 n_permutations: int = 200, window_size: int = 300, n_bootstrap: int = 200, alpha: float = 0.001,
                 calibration_share: float = 0.5, random_state: int = 0) -> None:
        self.method = method
        self.n_components = n_components
        self.reference_size = reference_size
        self.n_permutations = n_permutations
        self.window_size = window_size
        self.n_bootstrap = n_bootstrap
        self.alpha = alpha
        self.calibration_share = calibration_share
        self.random_state = random_state

    def fit(self, embeddings) -> EmbeddingDriftMonitor:
        """Learn ``space_``, ``reference_`` (projected reference rows), ``bandwidth_`` and ``threshold_``."""
        check_choice(self.method, name="method", choices=DRIFT_METHODS)
        size = check_positive_int(self.reference_size, name="reference_size")
        z, _, fit_rows, cal_rows = self._prepare_fit(embeddings)
        rng = np.random.default_rng(self.random_state + 6)
        keep = fit_rows if len(fit_rows) <= size else np.sort(rng.choice(fit_rows, size=size, replace=False))
        self.reference_ = z[keep]
        distances = pairwise_distances(self.reference_)
        self.bandwidth_ = float(np.median(distances[np.triu_indices_from(distances, k=1)]))
        self._k_rr = self._kernel(self.reference_, self.reference_)
        windows = bootstrap_windows(len(cal_rows), window_size=self.window_size, n_windows=self.n_bootstrap,
                                    random_state=self.random_state + 7, replace=False)
        null = np.array([self._statistic(z[cal_rows[w]])[0] for w in windows])
        factor = finite_population_factor(len(cal_rows), self.window_size)
        if self.method == "mmd":
            self.threshold_ = calibrate_threshold(null, side="above", alpha=self.alpha, spread_factor=factor)
        else:
            # p-values span orders of magnitude: calibrate on -log10 p, alert below its threshold
            log_null = -np.log10(np.maximum(null, 1e-300))
            log_threshold = calibrate_threshold(log_null, side="above", alpha=self.alpha, spread_factor=factor)
            self.threshold_ = Threshold(value=float(10.0 ** -log_threshold.value), side="below",
                                        center=float(np.median(null)), spread=float(null.std(ddof=1)),
                                        alpha=float(self.alpha))
        return self

    def _kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = pairwise_distances(a, b, metric="sqeuclidean")
        return np.exp(-d2 / (2.0 * self.bandwidth_ ** 2))

    @staticmethod
    def _mmd2(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
        m, n = k_xx.shape[0], k_yy.shape[0]
        xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
        yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
        return float(xx + yy - 2.0 * k_xy.mean())

    def _statistic(self, z: np.ndarray) -> tuple[float, dict]:
        if self.method == "ks":
            p = np.array([sps.ks_2samp(self.reference_[:, j], z[:, j]).pvalue for j in range(z.shape[1])])
            return float(min(1.0, p.size * p.min())), {"component_p": p.tolist()}
        if len(z) < 2:
            return float("nan"), {}
        return self._mmd2(self._kernel(z, z), self._k_rr, self._kernel(z, self.reference_)), {}

    def _permutation_p(self, z: np.ndarray, observed: float) -> float:
        joint = np.concatenate([z, self.reference_])
        kernel = self._kernel(joint, joint)
        m = len(z)
        rng = np.random.default_rng(self.random_state + 8)
        beyond = 0
        for _ in range(self.n_permutations):
            order = rng.permutation(len(joint))
            x, y = order[:m], order[m:]
            value = self._mmd2(kernel[np.ix_(x, x)], kernel[np.ix_(y, y)], kernel[np.ix_(x, y)])
            beyond += value >= observed
        return (beyond + 1) / (self.n_permutations + 1)

    def score(self, embeddings) -> tuple[np.ndarray, SignalResult]:
        """The window's projected mean shift (n_components,) and the result.

        ``statistic``: MMD squared (``"mmd"``) or the Bonferroni KS p-value (``"ks"``);
        ``p_value``: the permutation p-value (``"mmd"``; None with ``n_permutations=0``) or the
        Bonferroni p-value (``"ks"``).
        """
        self._check_fitted()
        emb, _ = _check_window(embeddings, None, self.n_features_in_)
        z = self.space_.transform(emb).astype(np.float64)
        statistic, detail = self._statistic(z)
        if self.method == "ks":
            p_value = statistic
        else:
            p_value = self._permutation_p(z, statistic) if self.n_permutations > 0 and len(z) >= 2 else None
        alert = self.threshold_.passed(statistic)
        detail.update(method=self.method, bandwidth=self.bandwidth_)
        message = ""
        if alert:
            what = f"MMD² {statistic:.4f}" if self.method == "mmd" else f"KS Bonferroni p {statistic:.2g}"
            message = f"embeddings drifted from the reference ({what}, threshold {self.threshold_.value:.4g})"
        shift = z.mean(axis=0) - self.reference_.mean(axis=0)
        return shift, SignalResult(signal="embedding_drift", statistic=statistic, threshold=self.threshold_,
                                   alert=alert, p_value=p_value, detail=detail, message=message)


OOD_METHODS = ("knn", "gmm")


class OODMonitor(_EmbeddingMonitor):
    """The share of a window's samples unlike anything in the reference.

    A sample's OOD score (the values :meth:`score` returns, one per sample; **higher = more out
    of distribution**) is its Euclidean distance to the ``k``-th nearest fit-part reference
    embedding (``"knn"``) or minus its log-likelihood under a ``GaussianMixture`` of
    ``n_mixture`` components (``"gmm"``), both in the reference PCA space fitted on the fit
    part. The cutoff ``cutoff_`` is the ``m``-th largest score of the *calibration* part (rows
    the space and the density never saw), ``m = ceil(quantile * N_cal)``, so about ``quantile``
    of new reference-like samples pass it. The statistic is the window's share past the cutoff.

    Its threshold is exact and distribution-free: the chance that a new reference-like sample
    scores above the ``m``-th largest of ``N_cal`` scores is Beta(m, N_cal - m + 1)
    distributed (order statistics), so the count past the cutoff in a window of n such samples
    is beta-binomial, and the alert fires past its ``1 - alpha`` quantile (a normal fit to
    bootstrap shares would understate this skewed tail). Per class: the share among the
    samples predicted as each class; a class moved when its count is beyond the beta-binomial
    ``alpha / K`` tail of its own number of predictions.

    Parameters
    ----------
    method : str
        ``"knn"`` (default) or ``"gmm"``.
    k : int
        Neighbours (``"knn"``).
    n_mixture : int
        Mixture components (``"gmm"``; full covariances).
    quantile : float
        Share of reference-like samples expected past the cutoff (default 0.01).
    Others as :class:`ClusterHealthMonitor`.
    """

    def __init__(self, *, method: str = "knn", k: int = 5, n_mixture: int = 10, quantile: float = 0.01,
                 n_components: int = 20, window_size: int = 300, n_bootstrap: int = 200, alpha: float = 0.001,
                 calibration_share: float = 0.5, random_state: int = 0) -> None:
        self.method = method
        self.k = k
        self.n_mixture = n_mixture
        self.quantile = quantile
        self.n_components = n_components
        self.window_size = window_size
        self.n_bootstrap = n_bootstrap
        self.alpha = alpha
        self.calibration_share = calibration_share
        self.random_state = random_state

    def fit(self, embeddings, pred_probs=None) -> OODMonitor:
        """Learn ``space_``, the density (``neighbors_`` or ``mixture_``), ``cutoff_`` and ``threshold_``."""
        check_choice(self.method, name="method", choices=OOD_METHODS)
        check_positive_int(self.k, name="k")
        check_positive_int(self.n_mixture, name="n_mixture")
        check_fraction(self.quantile, name="quantile")
        z, probs, fit_rows, cal_rows = self._prepare_fit(embeddings, pred_probs)
        if self.method == "knn":
            self.neighbors_ = NearestNeighbors(n_neighbors=min(self.k, len(fit_rows))).fit(z[fit_rows])
        else:
            self.mixture_ = GaussianMixture(n_components=min(self.n_mixture, len(fit_rows)), covariance_type="full",
                                            reg_covar=1e-4, random_state=self.random_state).fit(z[fit_rows])
        cal_scores = np.sort(self._ood_scores(z[cal_rows]))
        n_cal = len(cal_scores)
        m = int(min(n_cal, max(1, math.ceil(float(self.quantile) * n_cal))))
        self.cutoff_ = float(cal_scores[n_cal - m])
        self.n_classes_ = probs.shape[1] if probs is not None else None
        #: Beta parameters of the chance that a reference-like sample scores above ``cutoff_``
        self.exceedance_ = (float(m), float(n_cal - m + 1))
        self.reference_rate_ = m / (n_cal + 1.0)
        self.threshold_ = self._threshold(self.window_size, self.alpha)
        return self

    def _threshold(self, n: int, alpha: float) -> Threshold:
        a, b = self.exceedance_
        null = sps.betabinom(int(n), a, b)
        count = float(null.isf(alpha))  # P(count > count) <= alpha
        return Threshold(value=count / n, side="above", center=float(null.mean()) / n,
                         spread=float(null.std()) / n, alpha=float(alpha))

    def _ood_scores(self, z: np.ndarray) -> np.ndarray:
        if self.method == "knn":
            distances, _ = self.neighbors_.kneighbors(z)
            return distances[:, -1]
        return -self.mixture_.score_samples(z)

    def score(self, embeddings, pred_probs=None) -> tuple[np.ndarray, SignalResult]:
        """Per-sample OOD scores (N,) and the result (``statistic`` = the share past ``cutoff_``).

        The scores: the distance to the ``k``-th nearest reference embedding (``"knn"``) or the
        negative log-likelihood under the mixture (``"gmm"``), in the reference PCA space;
        higher = more out of distribution; above ``cutoff_`` = out of distribution.
        """
        self._check_fitted()
        emb, probs = _check_window(embeddings, pred_probs, self.n_features_in_)
        z = self.space_.transform(emb).astype(np.float64)
        scores = self._ood_scores(z)
        past = scores > self.cutoff_
        statistic = float(past.mean())
        threshold = self.threshold_ if len(scores) == self.window_size else self._threshold(len(scores), self.alpha)
        per_class, moved = None, []
        if probs is not None:
            k = probs.shape[1]
            pred = probs.argmax(axis=1)
            counts = class_counts(pred, k)
            hits = np.bincount(pred, weights=past.astype(np.float64), minlength=k)
            with np.errstate(invalid="ignore", divide="ignore"):
                shares = hits / counts
            a, b = self.exceedance_
            with np.errstate(invalid="ignore", divide="ignore"):
                tail = np.where(hits > 0, sps.betabinom.sf(hits - 1, counts.astype(np.int64), a, b), 1.0)
            order = np.argsort(tail, kind="stable")
            moved = [int(c) for c in order if counts[c] >= MIN_CLASS_COUNT and tail[c] < self.alpha / k]
            per_class = {c: float(shares[c]) for c in range(k)}
        alert = threshold.passed(statistic)
        message = ""
        if alert:
            message = (f"{100 * statistic:.1f}% of the window is unlike the reference "
                       f"(reference {100 * self.reference_rate_:.1f}%)")
            if moved:
                message += "; most in class " + ", ".join(f"{c} ({100 * per_class[c]:.0f}%)" for c in moved[:3])
        return scores, SignalResult(
            signal="ood", statistic=statistic, threshold=threshold, alert=alert, per_class=per_class,
            classes_moved=tuple(moved), detail={"method": self.method, "cutoff": self.cutoff_,
                                                "reference_rate": self.reference_rate_},
            message=message,
        )
