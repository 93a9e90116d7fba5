"""Production monitoring over time: signals on windows of a deployed classifier's inputs and outputs.

Monitors are estimators (scikit-learn style): ``__init__`` stores settings, ``fit(reference...)``
learns attributes ending in ``_`` and returns self, ``score(window...)`` returns
``(values, SignalResult)``; scoring an unfitted monitor raises ``sklearn.exceptions.NotFittedError``.
Alert thresholds come from bootstrap windows of the reference itself (:mod:`._base`).

- :class:`LabelShiftMonitor`, :class:`ConfidenceMonitor`, :class:`AccuracyEstimator`,
  :class:`KSOutputTest` (``pred_probs``);
- :class:`ClusterHealthMonitor`, :class:`EmbeddingDriftMonitor`, :class:`OODMonitor` (embeddings);
- :class:`InputIntegrityMonitor` (raw images);
- :func:`environment_record`, :func:`environment_changes`;
- :class:`WindowMonitor` (all of them) -> :class:`WindowReport` (``to_dict()``);
- :class:`RootCause`, :func:`statistical_cause` (the model-side fit is
  :func:`hardcase.models.drift.explain_window`).
"""

from hardcase.miner.monitors._base import (
    NotFittedError,
    SignalResult,
    Threshold,
    bootstrap_windows,
    calibrate_threshold,
    reference_split,
)
from hardcase.miner.monitors.embedding import (
    ClusterHealthMonitor,
    EmbeddingDriftMonitor,
    OODMonitor,
)
from hardcase.miner.monitors.environment import environment_changes, environment_record
from hardcase.miner.monitors.integrity import InputIntegrityMonitor, image_statistics
from hardcase.miner.monitors.outputs import (
    AccuracyEstimator,
    ConfidenceMonitor,
    KSOutputTest,
    LabelShiftMonitor,
)
from hardcase.miner.monitors.rootcause import ROOT_CAUSES, RootCause, statistical_cause
from hardcase.miner.monitors.window import SIGNALS, WindowMonitor, WindowReport

__all__ = [
    "ROOT_CAUSES",
    "SIGNALS",
    "AccuracyEstimator",
    "ClusterHealthMonitor",
    "ConfidenceMonitor",
    "EmbeddingDriftMonitor",
    "InputIntegrityMonitor",
    "KSOutputTest",
    "LabelShiftMonitor",
    "NotFittedError",
    "OODMonitor",
    "RootCause",
    "SignalResult",
    "Threshold",
    "WindowMonitor",
    "WindowReport",
    "bootstrap_windows",
    "calibrate_threshold",
    "environment_changes",
    "environment_record",
    "image_statistics",
    "reference_split",
    "statistical_cause",
]
