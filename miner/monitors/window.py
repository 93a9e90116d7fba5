"""One monitor for every signal: fitted once on the reference, scoring a window into one report.

:class:`WindowMonitor` fits each signal's monitor on the same reference (the same fit /
calibration split) with the per-window false-alert rate ``alpha`` shared among the signals
(Bonferroni), and :meth:`WindowMonitor.score` returns a :class:`WindowReport`: every signal's
result, which alerted and how far past its threshold, the classes that moved first, the
estimated accuracy with its interval, and the environment. ``report.to_dict()`` is JSON-able.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sklearn.decomposition import PCA

from hardcase.miner._validation import (
    check_embeddings,
    check_fraction,
    check_positive_int,
    check_pred_probs,
)
from hardcase.miner.monitors._base import Monitor, SignalResult, _jsonable
from hardcase.miner.monitors.embedding import (
    ClusterHealthMonitor,
    EmbeddingDriftMonitor,
    OODMonitor,
)
from hardcase.miner.monitors.environment import environment_changes
from hardcase.miner.monitors.integrity import InputIntegrityMonitor
from hardcase.miner.monitors.outputs import (
    AccuracyEstimator,
    ConfidenceMonitor,
    KSOutputTest,
    LabelShiftMonitor,
)
from hardcase.miner.monitors.rootcause import RootCause
from hardcase.miner.vocabulary import MONITOR_SIGNALS

__all__ = ["SIGNALS", "WindowMonitor", "WindowReport"]

#: Every signal, in the order classes are taken from for ``classes_moved`` (per-class canary
#: signals first).
SIGNALS = MONITOR_SIGNALS


@dataclass(frozen=True)
class WindowReport:
    """Every signal of one window.

    Attributes
    ----------
    window : Any
        The caller's window id (index, timestamp...), or None.
    n : int
        Samples in the window.
    signals : dict of str -> SignalResult
    alert : bool
        Whether any signal alerted.
    alerts : tuple of str
        The alerting signals, most severe first.
    classes_moved : tuple of int
        The classes that moved, first those of alerting signals (canary signals first), then
        those of the others.
    estimated_accuracy : float or None
    accuracy_interval : (float, float) or None
    true_accuracy : float or None
        When labels were given.
    environment : dict or None
    environment_changes : dict
        ``{key: [reference value, window value]}``.
    class_names : tuple of str
    root_cause : RootCause or None
        Set by :meth:`with_root_cause`.
    """

    window: Any
    n: int
    signals: dict[str, SignalResult]
    alert: bool
    alerts: tuple[str, ...]
    classes_moved: tuple[int, ...]
    estimated_accuracy: float | None = None
    accuracy_interval: tuple[float, float] | None = None
    true_accuracy: float | None = None
    environment: dict[str, Any] | None = None
    environment_changes: dict[str, list] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    root_cause: RootCause | None = None

    def class_name(self, k: int) -> str:
        return self.class_names[k] if k < len(self.class_names) else str(k)

    def messages(self) -> list[str]:
        """One line per alert: the signal, how far past its threshold, and the classes that moved."""
        lines = []
        for name in self.alerts:
            result = self.signals[name]
            excess, spread = result.excess, result.threshold.spread
            if math.isfinite(excess):
                far = f"past its threshold {result.threshold.value:.4g} by {abs(excess):.3g}"
                if spread > 0:
                    far += f" ({abs(excess) / spread:.1f} reference sd)"
            else:
                far = "statistic undefined"
            if not result.threshold.passed(result.statistic):
                far = f"within its threshold {result.threshold.value:.4g}, alerting on a failed check"
            line = f"[{name}] {result.message or 'past its threshold'} (statistic {result.statistic:.4g}, {far})"
            if result.classes_moved:
                line += "; classes first: " + ", ".join(self.class_name(c) for c in result.classes_moved[:3])
            lines.append(line)
        if self.environment_changes:
            lines.append("[environment] " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in self.environment_changes.items()))
        return lines

    def with_root_cause(self, cause: RootCause | None) -> WindowReport:
        return replace(self, root_cause=cause)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of everything (non-finite floats become None)."""
        return _jsonable({
            "window": self.window, "n": self.n, "alert": self.alert, "alerts": list(self.alerts),
            "classes_moved": list(self.classes_moved),
            "classes_moved_names": [self.class_name(c) for c in self.classes_moved],
            "estimated_accuracy": self.estimated_accuracy, "accuracy_interval": self.accuracy_interval,
            "true_accuracy": self.true_accuracy, "environment": self.environment,
            "environment_changes": self.environment_changes, "class_names": list(self.class_names),
            "messages": self.messages(),
            "signals": {name: result.to_dict() for name, result in self.signals.items()},
            "root_cause": self.root_cause.to_dict() if self.root_cause is not None else None,
        })


class WindowMonitor(Monitor):
    """Every monitoring signal, fitted on one reference, scoring windows into :class:`WindowReport`.

    Parameters
    ----------
    window_size : int
        The window size scored (the bootstrap windows' size).
    alpha : float
        Per-window false-alert rate of the whole monitor, split evenly among the signals fitted.
    n_bootstrap : int
        Bootstrap windows per signal.
    calibration_share : float
        Share of the reference held out of every fit for the thresholds.
    n_components : int
        PCA dimensions of the embedding space.
    accuracy_method : str
        ``"cbpe"`` (default: the drift benchmark's most accurate), ``"atc"`` or ``"atc_mc"``
        (:class:`AccuracyEstimator`).
    drift_method : str
        ``"mmd"`` or ``"ks"`` (:class:`EmbeddingDriftMonitor`).
    ood_method : str
        ``"knn"`` or ``"gmm"`` (:class:`OODMonitor`).
    n_permutations : int
        Permutations of the MMD p-value.
    signals : sequence of str, optional
        A subset of :data:`SIGNALS`; default every signal the reference's data allows (the
        embedding signals need embeddings, accuracy needs labels, integrity needs images).
    class_names : sequence of str, optional
    random_state : int
    """

    _fitted_attribute = "monitors_"

    def __init__(self, *, window_size: int = 300, alpha: float = 0.002, n_bootstrap: int = 200,
                 calibration_share: float = 0.5, n_components: int = 20, accuracy_method: str = "cbpe",
                 drift_method: str = "mmd", ood_method: str = "knn", n_permutations: int = 100,
                 signals=None, class_names=None, random_state: int = 0) -> None:
        self.window_size = window_size
        self.alpha = alpha
        self.n_bootstrap = n_bootstrap
        self.calibration_share = calibration_share
        self.n_components = n_components
        self.accuracy_method = accuracy_method
        self.drift_method = drift_method
        self.ood_method = ood_method
        self.n_permutations = n_permutations
        self.signals = signals
        self.class_names = class_names
        self.random_state = random_state

    def fit(self, pred_probs, embeddings=None, *, labels=None, images=None, environment=None) -> WindowMonitor:
        """Fit every signal on the reference.

        Parameters
        ----------
        pred_probs : array_like, shape (N, K)
            The model's outputs on held-out reference data (not its training data: a model is
            more confident on what it was trained on, and every window would look drifted).
        embeddings : array_like, shape (N, D), optional
        labels : array_like, shape (N,), optional
            True classes: needed for the accuracy estimate.
        images : array_like, shape (N, H, W[, C]), optional
            The raw reference images, as windows will arrive: needed for the integrity checks.
        environment : dict, optional
            :func:`~hardcase.miner.monitors.environment_record` of the reference run.

        Returns
        -------
        self
            With ``monitors_`` (signal -> fitted monitor), ``signals_`` (the fitted signals),
            ``n_classes_``, ``class_names_``, ``environment_``, ``confident_thresholds_`` and
            ``projection_`` (the 2-D PCA of the reference embeddings behind :meth:`project`;
            None without embeddings).
        """
        check_positive_int(self.window_size, name="window_size")
        check_fraction(self.alpha, name="alpha")
        probs = check_pred_probs(pred_probs)
        n, k = probs.shape
        available = {"confidence", "label_shift", "output_drift"}
        if embeddings is not None:
            available |= {"cluster_health", "embedding_drift", "ood"}
        if labels is not None:
            available.add("accuracy")
        if images is not None:
            available.add("integrity")
        wanted = tuple(SIGNALS) if self.signals is None else tuple(self.signals)
        unknown = [s for s in wanted if s not in SIGNALS]
        if unknown:
            raise ValueError(f"signals has unknown names {unknown}; known: {', '.join(SIGNALS)}")
        missing = [s for s in wanted if s not in available] if self.signals is not None else []
        if missing:
            raise ValueError(f"signals {missing} need data fit() was not given (embeddings, labels or images)")
        chosen = tuple(s for s in SIGNALS if s in wanted and s in available)
        if self.class_names is not None and len(self.class_names) != k:
            raise ValueError(f"class_names has {len(self.class_names)} names but pred_probs has K={k} columns")
        alpha = self.alpha / len(chosen)
        common = {"window_size": self.window_size, "n_bootstrap": self.n_bootstrap, "alpha": alpha,
                  "random_state": self.random_state}
        split = {"calibration_share": self.calibration_share}
        monitors: dict[str, Monitor] = {}
        for name in chosen:
            if name == "confidence":
                monitors[name] = ConfidenceMonitor(**common, **split).fit(probs)
            elif name == "label_shift":
                monitors[name] = LabelShiftMonitor(**common, **split).fit(probs)
            elif name == "output_drift":
                monitors[name] = KSOutputTest(calibrate=True, **common, **split).fit(probs)
            elif name == "accuracy":
                monitors[name] = AccuracyEstimator(method=self.accuracy_method, **common, **split).fit(probs, labels)
            elif name == "cluster_health":
                monitors[name] = ClusterHealthMonitor(n_components=self.n_components, **common, **split).fit(
                    embeddings, probs)
            elif name == "embedding_drift":
                monitors[name] = EmbeddingDriftMonitor(method=self.drift_method, n_components=self.n_components,
                                                       n_permutations=self.n_permutations, **common, **split).fit(
                    embeddings)
            elif name == "ood":
                monitors[name] = OODMonitor(method=self.ood_method, n_components=self.n_components, **common,
                                            **split).fit(embeddings, probs)
            elif name == "integrity":
                monitors[name] = InputIntegrityMonitor(**common).fit(images, probs)
        self.n_classes_ = k
        self.class_names_ = tuple(self.class_names) if self.class_names is not None else tuple(str(c) for c in range(k))
        self.environment_ = dict(environment) if environment else None
        self.signals_ = chosen
        # reference confidence per predicted class: the bar a restored prediction must reach
        self.confident_thresholds_ = np.nan_to_num(monitors["confidence"].class_mean_, nan=0.5) \
            if "confidence" in monitors else np.full(k, 0.5)
        self.projection_ = None
        if embeddings is not None:
            emb = check_embeddings(embeddings, n=n, n_name="pred_probs")
            self.projection_ = PCA(n_components=min(2, emb.shape[1], n), random_state=self.random_state).fit(emb)
        self.monitors_ = monitors
        return self

    def project(self, embeddings) -> np.ndarray:
        """The 2-D map of embeddings: ``projection_`` (a PCA to 2 dimensions fitted once on the
        reference embeddings), so every window lands in the same plane.

        Parameters
        ----------
        embeddings : array_like, shape (n, D)

        Returns
        -------
        np.ndarray, shape (n, 2), float64
            (A reference with one embedding dimension gives a second column of zeros.)
        """
        self._check_fitted()
        if self.projection_ is None:
            raise ValueError("this WindowMonitor was fitted without embeddings; fit(..., embeddings) to project them")
        emb = check_embeddings(embeddings)
        d = self.projection_.n_features_in_
        if emb.shape[1] != d:
            raise ValueError(f"embeddings have D={emb.shape[1]} columns but the monitor was fitted on D={d}")
        out = np.zeros((emb.shape[0], 2))
        if emb.shape[0]:
            xy = self.projection_.transform(emb)
            out[:, : xy.shape[1]] = xy
        return out

    def score(self, pred_probs, embeddings=None, *, images=None, labels=None, environment=None,
              window=None) -> WindowReport:
        """Score one window (every fitted signal whose data is given).

        Parameters
        ----------
        pred_probs : array_like, shape (n, K)
        embeddings : array_like, shape (n, D), optional
        images : array_like, shape (n, H, W[, C]), optional
            Raw images as they arrived (before any conversion), for the integrity checks.
        labels : array_like, shape (n,), optional
            True classes where known (-1 = unknown): ``true_accuracy`` and the estimate's error.
        environment : dict, optional
            This window's :func:`~hardcase.miner.monitors.environment_record`.
        window : any, optional
            The caller's window id, kept in the report.
        """
        self._check_fitted()
        probs = check_pred_probs(pred_probs)
        if probs.shape[0] == 0:
            raise ValueError("pred_probs has no rows; a window needs at least one")
        results: dict[str, SignalResult] = {}
        for name, monitor in self.monitors_.items():
            if name in ("confidence", "label_shift"):
                _, results[name] = monitor.score(probs)
            elif name == "output_drift":
                results[name] = replace(monitor.score(probs)[1], signal=name)
            elif name == "accuracy":
                _, results[name] = monitor.score(probs, labels)
            elif name in ("cluster_health", "ood") and embeddings is not None:
                _, results[name] = monitor.score(embeddings, probs)
            elif name == "embedding_drift" and embeddings is not None:
                _, results[name] = monitor.score(embeddings)
            elif name == "integrity" and images is not None:
                _, results[name] = monitor.score(images, probs if len(images) == len(probs) else None)
        def rank(name: str) -> float:
            result = results[name]  # a failed hard check (within the threshold) is the most definite
            return math.inf if not result.threshold.passed(result.statistic) else result.severity

        alerts = tuple(sorted((n for n, r in results.items() if r.alert), key=lambda n: -rank(n)))
        moved: list[int] = []
        for alerting in (True, False):
            for name in SIGNALS:
                if name in results and results[name].alert == alerting:
                    moved += [c for c in results[name].classes_moved if c not in moved]
        accuracy = results.get("accuracy")
        true_accuracy = None
        if labels is not None:
            from hardcase.miner._validation import check_labels

            known = check_labels(labels, n=probs.shape[0], n_classes=self.n_classes_)
            if (known >= 0).any():
                true_accuracy = float((probs.argmax(axis=1)[known >= 0] == known[known >= 0]).mean())
        changes = environment_changes(self.environment_, environment)
        return WindowReport(
            window=window, n=int(probs.shape[0]), signals=results, alert=bool(alerts) or bool(changes), alerts=alerts,
            classes_moved=tuple(moved),
            estimated_accuracy=accuracy.statistic if accuracy is not None else None,
            accuracy_interval=tuple(accuracy.detail["interval"]) if accuracy is not None else None,
            true_accuracy=true_accuracy, environment=environment, environment_changes=changes,
            class_names=self.class_names_,
        )
