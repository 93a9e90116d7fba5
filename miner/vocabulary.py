"""The words hardcase's layers share: causes, decisions, roles, run statuses, score fields, metrics.

One definition each, read by the miner, the database schema (whose CHECK constraints are built
from these tuples), the store, the workflows and the app. This module imports nothing, so the
store can depend on it without depending on numpy or the rest of the miner.
"""

from __future__ import annotations

__all__ = [
    "CAUSES",
    "DECISIONS",
    "LABEL_SCORE_FIELDS",
    "METRICS",
    "MONITOR_SIGNALS",
    "NOT_A_FAILURE",
    "ROLES",
    "ROOT_CAUSES",
    "RUN_STATUSES",
    "SCORE_FIELDS",
    "SKIP",
    "SUGGESTED_CAUSES",
    "UNCLEAR",
]

CAUSES: tuple[str, ...] = ("augment", "rare", "imbalance", "mislabel")
"""Causes of a hard example that hardcase can suggest, a reviewer can confirm and retraining fixes."""

NOT_A_FAILURE = "not_a_failure"
"""A reviewer's answer: the model is right, or the example is not worth fixing."""

SKIP = "skip"
"""A reviewer's answer: no decision, come back later."""

DECISIONS: tuple[str, ...] = (*CAUSES, NOT_A_FAILURE, SKIP)
"""Everything a reviewer may answer for a candidate."""

UNCLEAR = "unclear"
"""What cause suggestion says when no cause's evidence holds."""

SUGGESTED_CAUSES: tuple[str, ...] = (*CAUSES, UNCLEAR)
"""Everything cause suggestion may say of a candidate."""

ROLES: tuple[str, ...] = ("annotator", "engineer", "lead")
"""User roles of the review app, least privileged first."""

RUN_STATUSES: tuple[str, ...] = ("running", "scored", "done", "failed")
"""Stages of a mining run: scoring (``running``), every row scored and the candidates selected
(``scored``: cause suggestion comes next), finished (``done``), or stopped by an error
(``failed``, with its reason); a run started again continues from the stage it reached."""

SCORE_FIELDS: tuple[str, ...] = (
    "predicted_label",
    "confidence",
    "margin",
    "entropy",
    "self_confidence",
    "normalized_margin",
    "loss",
    "label_quality_score",
    "hardness_score",
)
"""Per-sample scores of :func:`hardcase.miner.scores.compute_scores`, in export order."""

LABEL_SCORE_FIELDS: tuple[str, ...] = ("self_confidence", "normalized_margin", "loss", "label_quality_score")
"""The scores that need a given label (NaN / NULL where it is unknown); the others always exist."""

METRICS: tuple[str, ...] = ("cosine", "euclidean")
"""Distances between embeddings that selection and cause suggestion accept."""

MONITOR_SIGNALS: tuple[str, ...] = (
    "integrity",
    "confidence",
    "cluster_health",
    "accuracy",
    "ood",
    "label_shift",
    "embedding_drift",
    "output_drift",
)
"""Signals of production monitoring (:mod:`hardcase.miner.monitors`), per-class canary signals first."""

ROOT_CAUSES: tuple[str, ...] = ("environment", "pipeline", "transform", "rare", "none")
"""What explains an alerting monitoring window: a library or the model file changed
(``environment``); the input statistics moved, a units or pipeline change (``pipeline``); one
shared geometric transform restores the low-confidence samples, a camera that moved
(``transform``); none does, new kinds of data (``rare``); nothing to explain (``none``)."""
