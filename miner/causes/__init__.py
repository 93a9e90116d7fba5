"""Why is a hard example hard? Evidence for four causes and one suggested cause per example.

Vocabulary as in :mod:`hardcase.miner.scores`: N pool examples, K classes, ``pred_probs``
(N, K), ``labels`` (N,) with ``-1`` for an unknown label; ``embeddings`` (N, D) from the
model's embedding layer; ``train_embeddings`` (T, D) and ``train_labels`` (T,) of the
training data. The rooms, each importable on its own; this package re-exports their public
names:

- :mod:`~hardcase.miner.causes.neighbours`: exact kNN in bounded memory, neighbour label votes;
- :mod:`~hardcase.miner.causes.density`: each class's kNN density of the training embeddings
  and the conformal typicality p-value of a query;
- :mod:`~hardcase.miner.causes.label_issues`: label quality and ranking that also ask the
  embedding space;
- :mod:`~hardcase.miner.causes.imbalance`: training shares, pool recall, significance tests;
- :mod:`~hardcase.miner.causes.rules`: the four cause rules, their priority, the evidence and
  its sentences (:func:`suggest_causes`).

Every decision threshold is a significance level or a threshold estimated from the data
(per-class confident thresholds from the pool, the leave-one-out distances from the training
set); nothing is tuned to one data set. Public functions validate their inputs once and raise
``TypeError``/``ValueError`` naming the argument; private ``_compute_*`` helpers assume valid
input. Only numpy is used.
"""

from __future__ import annotations

from hardcase.miner.causes._common import DEFAULT_ALPHA, DEFAULT_K
from hardcase.miner.causes.density import (
    ClassDensity,
    Typicality,
    class_typicality,
    fit_class_density,
)
from hardcase.miner.causes.imbalance import ClassImbalance, class_imbalance
from hardcase.miner.causes.label_issues import neighbour_label_quality_score, rank_label_issues
from hardcase.miner.causes.neighbours import (
    Neighbours,
    nearest_neighbours,
    neighbour_votes,
    pool_neighbour_votes,
)
from hardcase.miner.causes.rules import (
    RULE_ORDER,
    SUGGESTED,
    CauseSuggestions,
    TransformEvidence,
    describe_transform,
    suggest_causes,
)
from hardcase.miner.vocabulary import METRICS

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_K",
    "METRICS",
    "RULE_ORDER",
    "SUGGESTED",
    "CauseSuggestions",
    "ClassDensity",
    "ClassImbalance",
    "Neighbours",
    "TransformEvidence",
    "Typicality",
    "class_imbalance",
    "class_typicality",
    "describe_transform",
    "fit_class_density",
    "nearest_neighbours",
    "neighbour_label_quality_score",
    "neighbour_votes",
    "pool_neighbour_votes",
    "rank_label_issues",
    "suggest_causes",
]
