"""Which labels are wrong: confident learning that also asks the embedding space.

:func:`neighbour_label_quality_score` discounts a low self-confidence by how typical the
example is of the class the model prefers (:mod:`hardcase.miner.causes.density`), and
:func:`rank_label_issues` orders the labelled examples by it. The plain confident-learning
scores, which need no embeddings, are :mod:`hardcase.miner.scores`.
"""

from __future__ import annotations

import numpy as np

from hardcase.miner._validation import check_embeddings, check_labels, check_pred_probs
from hardcase.miner.causes._common import DEFAULT_ALPHA, _check_alpha
from hardcase.miner.causes.density import ClassDensity, _check_density, _compute_typicality
from hardcase.miner.causes.neighbours import _prepare

__all__ = ["neighbour_label_quality_score", "rank_label_issues"]


def _alternative_class(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """The most probable class other than the given label (the prediction where unknown)."""
    masked = pred_probs.copy()
    known = labels >= 0
    masked[np.flatnonzero(known), labels[known]] = -1.0
    return masked.argmax(axis=1)


def _compute_label_quality(labels, pred_probs, typ_alt: np.ndarray, alpha: float) -> np.ndarray:
    n = len(labels)
    known = labels >= 0
    p_given = np.where(known, pred_probs[np.arange(n), np.clip(labels, 0, None)], np.nan)
    plausible = np.minimum(1.0, np.nan_to_num(typ_alt, nan=0.0) / alpha)
    score = 1.0 - (1.0 - p_given) * plausible
    score[~known] = np.nan
    return np.clip(score, 0.0, 1.0, where=known, out=score)


def neighbour_label_quality_score(
    labels,
    pred_probs,
    *,
    embeddings,
    density: ClassDensity,
    alpha: float = DEFAULT_ALPHA,
) -> np.ndarray:
    """Label quality that also asks the embedding space; lower = more likely mislabeled.

    ``score = 1 - (1 - p_given) * min(1, p_typ(j) / alpha)`` where ``j`` is the most probable
    class other than the given label and ``p_typ(j)`` the example's typicality p-value for
    ``j`` among the training embeddings (:func:`class_typicality`). A mislabeled example is
    an ordinary member of another class, so its typicality for that class is not small; an
    example the model gets wrong for other reasons (a rotation, an unusual style) is
    atypical of every class, and its low self-confidence is discounted in proportion.
    Typicality above ``alpha`` (not rejected) counts fully.

    Parameters
    ----------
    labels : np.ndarray, shape (N,), int
        ``-1`` = unknown (NaN score).
    pred_probs : np.ndarray, shape (N, K)
    embeddings : np.ndarray, shape (N, D)
    density : ClassDensity
        Fitted on the training embeddings with :func:`fit_class_density`.
    alpha : float
        Significance level of the typicality test.

    Returns
    -------
    np.ndarray, shape (N,), float64
        In [0, 1]; NaN where the label is unknown.
    """
    pred_probs = check_pred_probs(pred_probs)
    n, k = pred_probs.shape
    labels = check_labels(labels, n=n, n_classes=k)
    emb = check_embeddings(embeddings, name="embeddings", n=n, n_name="pred_probs")
    density = _check_density(density, emb.shape[1], "embeddings")
    if density.n_classes != k:
        raise ValueError(f"density has K={density.n_classes} classes but pred_probs has K={k} columns")
    alpha = _check_alpha(alpha)
    alt = _alternative_class(labels, pred_probs)
    alt[labels < 0] = -1
    typ = _compute_typicality(_prepare(emb, density.metric), alt, density)
    return _compute_label_quality(labels, pred_probs, typ.pvalue, alpha)


def rank_label_issues(labels, pred_probs, *, embeddings, density: ClassDensity, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Labelled examples ordered from most to least likely mislabeled.

    By :func:`neighbour_label_quality_score` ascending, ties by self-confidence ascending,
    then by index.

    Returns
    -------
    np.ndarray, shape (n_labelled,), int64
        Row indices; rows with an unknown label are left out.
    """
    score = neighbour_label_quality_score(labels, pred_probs, embeddings=embeddings, density=density, alpha=alpha)
    labels = np.asarray(labels, dtype=np.int64)
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    known = np.flatnonzero(labels >= 0)
    self_conf = pred_probs[known, labels[known]]
    order = np.lexsort((known, self_conf, score[known]))
    return known[order]
