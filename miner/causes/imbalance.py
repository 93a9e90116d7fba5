"""Class imbalance evidence: training shares, pool recall and where examples are pushed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hardcase.miner._validation import check_labels, check_pred_probs
from hardcase.miner.causes._common import DEFAULT_ALPHA, _check_alpha

__all__ = ["ClassImbalance", "class_imbalance"]


def _normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


@dataclass(frozen=True)
class ClassImbalance:
    """Per-class imbalance evidence; every array has shape (K,).

    Attributes
    ----------
    train_count, train_share
        Training examples of the class and their share (NaN shares without training labels).
    fair_share : float
        ``1 / K``.
    under_represented_pvalue
        One-sided p-value of a count this low if every class had the fair share (binomial,
        normal approximation with continuity correction).
    given_count, predicted_count
        Pool examples labelled c, and labelled pool examples predicted c.
    recall
        Share of the pool examples labelled c that the model predicts as c.
    recall_others
        The same share over all other labelled pool examples.
    predicted_vs_given
        ``predicted_count / given_count``: below 1 = the model under-predicts c.
    under_predicted_pvalue
        One-sided two-proportion z-test of ``recall < recall_others``.
    pushed_into
        The class that pool examples labelled c are most often mispredicted as (-1: none).
    under_represented, under_predicted, imbalanced : bool
        The tests at level ``alpha / K`` (Bonferroni over the classes); ``imbalanced`` needs
        both (only under-prediction when no training labels are given).
    """

    train_count: np.ndarray
    train_share: np.ndarray
    fair_share: float
    under_represented_pvalue: np.ndarray
    given_count: np.ndarray
    predicted_count: np.ndarray
    recall: np.ndarray
    recall_others: np.ndarray
    predicted_vs_given: np.ndarray
    under_predicted_pvalue: np.ndarray
    pushed_into: np.ndarray
    under_represented: np.ndarray
    under_predicted: np.ndarray
    imbalanced: np.ndarray


def _compute_imbalance(labels, pred_probs, train_labels, alpha: float) -> ClassImbalance:
    n_classes = pred_probs.shape[1]
    level = alpha / n_classes
    fair = 1.0 / n_classes
    pred = pred_probs.argmax(axis=1)
    known = labels >= 0
    given = labels[known]
    predicted = pred[known]
    given_count = np.bincount(given, minlength=n_classes)
    predicted_count = np.bincount(predicted, minlength=n_classes)
    correct = np.bincount(given[given == predicted], minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = correct / given_count
        others_total = given_count.sum() - given_count
        recall_others = (correct.sum() - correct) / others_total
        predicted_vs_given = predicted_count / given_count
    under_pred_p = np.ones(n_classes)
    for c in range(n_classes):
        n_c, n_o = given_count[c], others_total[c]
        if n_c == 0 or n_o == 0:
            continue
        pooled = correct.sum() / given_count.sum()
        var = pooled * (1 - pooled) * (1.0 / n_c + 1.0 / n_o)
        if var <= 0:
            continue
        under_pred_p[c] = _normal_cdf((recall[c] - recall_others[c]) / math.sqrt(var))
    wrong = given != predicted
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (given[wrong], predicted[wrong]), 1)
    pushed = np.where(confusion.sum(axis=1) > 0, confusion.argmax(axis=1), -1)

    if train_labels is not None:
        counted = train_labels[train_labels >= 0]
        total = counted.size
        train_count = np.bincount(counted, minlength=n_classes)
        train_share = train_count / total if total else np.full(n_classes, np.nan)
        under_rep_p = np.ones(n_classes)
        if total:
            sd = math.sqrt(total * fair * (1 - fair))
            for c in range(n_classes):
                under_rep_p[c] = _normal_cdf((train_count[c] + 0.5 - total * fair) / sd)
        under_rep = under_rep_p < level
    else:
        train_count = np.zeros(n_classes, dtype=np.int64)
        train_share = np.full(n_classes, np.nan)
        under_rep_p = np.full(n_classes, np.nan)
        under_rep = np.ones(n_classes, dtype=bool)
    under_pred = under_pred_p < level
    return ClassImbalance(
        train_count=train_count, train_share=train_share, fair_share=fair,
        under_represented_pvalue=under_rep_p, given_count=given_count, predicted_count=predicted_count,
        recall=recall, recall_others=recall_others, predicted_vs_given=predicted_vs_given,
        under_predicted_pvalue=under_pred_p, pushed_into=pushed,
        under_represented=under_rep if train_labels is not None else np.zeros(n_classes, dtype=bool),
        under_predicted=under_pred, imbalanced=under_rep & under_pred,
    )


def class_imbalance(labels, pred_probs, *, train_labels=None, alpha: float = DEFAULT_ALPHA) -> ClassImbalance:
    """Class imbalance evidence: training shares, pool recall, where examples are pushed.

    A class is flagged ``imbalanced`` when it is significantly under-represented in the
    training data (fewer examples than a fair ``1/K`` share would give) *and* significantly
    under-predicted on the pool (its recall is below the other classes' recall), each at
    level ``alpha / K``. Rebalancing helps only when both hold; a class that is
    under-predicted despite a fair share needs another explanation.

    Parameters
    ----------
    labels : np.ndarray, shape (N,), int
        Pool labels; ``-1`` rows are ignored.
    pred_probs : np.ndarray, shape (N, K)
    train_labels : np.ndarray, shape (T,), int, optional
        Training labels (``-1`` ignored). Without them only under-prediction is tested.
    alpha : float

    Returns
    -------
    ClassImbalance
    """
    pred_probs = check_pred_probs(pred_probs)
    n, k = pred_probs.shape
    labels = check_labels(labels, n=n, n_classes=k)
    alpha = _check_alpha(alpha)
    if train_labels is not None:
        train_labels = check_labels(train_labels, n=len(np.asarray(train_labels)), n_classes=k,
                                    name="train_labels", other="pred_probs")
    return _compute_imbalance(labels, pred_probs, train_labels, alpha)
