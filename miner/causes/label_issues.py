"""Which labels are wrong: confident learning that also asks the embedding space.

:func:`neighbour_label_quality_score` discounts a low self-confidence by how typical the
example is of the class the model prefers (:mod:`hardcase.miner.causes.density`), and
:func:`rank_label_issues` orders the labelled examples by it.
:func:`contrast_label_quality_score` weighs the same self-confidence by how typical the
example is of that class *against* its given class, with typicality calibrated both on the
training examples and on the pool's own examples of each class; it is what hardcase exports
as ``label_quality_score`` (:func:`pool_label_quality_score` picks the reference and the
fallbacks). The scores that need no embeddings are :mod:`hardcase.miner.scores`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hardcase.miner._validation import check_embeddings, check_labels, check_pred_probs
from hardcase.miner.causes._common import DEFAULT_ALPHA, DEFAULT_K, _check_alpha
from hardcase.miner.causes.density import (
    ClassDensity,
    _check_density,
    _compute_typicality,
    fit_class_density,
)
from hardcase.miner.causes.neighbours import _prepare
from hardcase.miner.scores import label_quality_score

__all__ = [
    "ContrastEvidence",
    "ContrastParts",
    "contrast_label_quality_score",
    "contrast_parts",
    "contrast_quality_from_parts",
    "contrast_evidence_from_parts",
    "neighbour_label_quality_score",
    "pool_label_quality_score",
    "rank_label_issues",
]

#: Labelled pool rows per class a pool-fitted reference density keeps (a seeded draw): the
#: density's leave-one-out pass is quadratic in a class's rows.
POOL_REFERENCE_PER_CLASS = 2000


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


@dataclass(frozen=True)
class ContrastParts:
    """What :func:`contrast_label_quality_score` needs of each labelled row; computed chunk by
    chunk (:func:`contrast_parts`) and concatenated, so a pool's embeddings never need to be
    in memory at once.

    Attributes
    ----------
    p_given : np.ndarray, shape (M,)
        Probability of the given label.
    alternative : np.ndarray, shape (M,), int64
        The most probable other class.
    distance_alt, distance_given : np.ndarray, shape (M,)
        Normalized kNN distance to the reference examples of the alternative and of the given
        class (:func:`~hardcase.miner.causes.density.class_typicality`).
    pvalue_alt, pvalue_given : np.ndarray, shape (M,)
        Their typicality p-values against the reference's own leave-one-out distances.
    """

    p_given: np.ndarray
    alternative: np.ndarray
    distance_alt: np.ndarray
    distance_given: np.ndarray
    pvalue_alt: np.ndarray
    pvalue_given: np.ndarray

    @staticmethod
    def concatenate(parts) -> ContrastParts:
        parts = list(parts)
        return ContrastParts(*(np.concatenate([getattr(p, f) for p in parts])
                               for f in ("p_given", "alternative", "distance_alt", "distance_given",
                                         "pvalue_alt", "pvalue_given")))


def contrast_parts(labels, pred_probs, *, embeddings, density: ClassDensity) -> ContrastParts:
    """The parts of :func:`contrast_label_quality_score` for rows with a known label.

    Parameters
    ----------
    labels : np.ndarray, shape (M,), int
        Known labels (no -1).
    pred_probs : np.ndarray, shape (M, K)
    embeddings : np.ndarray, shape (M, D)
    density : ClassDensity
        The reference (training embeddings: :func:`fit_class_density`).

    Returns
    -------
    ContrastParts
    """
    pred_probs = check_pred_probs(pred_probs)
    m, k = pred_probs.shape
    labels = check_labels(labels, n=m, n_classes=k, allow_unknown=False)
    emb = check_embeddings(embeddings, name="embeddings", n=m, n_name="pred_probs")
    density = _check_density(density, emb.shape[1], "embeddings")
    if density.n_classes != k:
        raise ValueError(f"density has K={density.n_classes} classes but pred_probs has K={k} columns")
    prepared = _prepare(emb, density.metric)
    alternative = _alternative_class(labels, pred_probs)
    alt = _compute_typicality(prepared, alternative, density)
    given = _compute_typicality(prepared, labels, density)
    return ContrastParts(p_given=pred_probs[np.arange(m), labels], alternative=alternative.astype(np.int64),
                         distance_alt=alt.distance, distance_given=given.distance,
                         pvalue_alt=alt.pvalue, pvalue_given=given.pvalue)


def _pool_pvalues(distance: np.ndarray, classes: np.ndarray, labels: np.ndarray, own: np.ndarray,
                  n_classes: int) -> np.ndarray:
    """Conformal p-value of ``distance`` to ``classes`` among the pool rows labelled with that
    class (``own``: each labelled row's distance to its own class)."""
    out = np.ones(len(distance))
    for c in range(n_classes):
        rows = np.flatnonzero(classes == c)
        if not rows.size:
            continue
        reference = np.sort(own[labels == c])
        at_least_as_far = reference.size - np.searchsorted(reference, distance[rows], side="left")
        out[rows] = (1.0 + at_least_as_far) / (reference.size + 1.0)
    return out


def _contrast(p_alt: np.ndarray, p_given: np.ndarray) -> np.ndarray:
    total = p_alt + p_given
    return np.divide(p_alt, total, out=np.full(len(total), 0.5), where=total > 0)


def _compute_contrast(labels: np.ndarray, parts: ContrastParts, n_classes: int) -> ContrastEvidence:
    """:class:`ContrastEvidence` of the labelled rows ``labels`` (M,)."""
    d_given = np.where(np.isfinite(parts.distance_given), parts.distance_given, np.inf)
    d_alt = np.where(np.isfinite(parts.distance_alt), parts.distance_alt, np.inf)
    pool_alt = _pool_pvalues(d_alt, parts.alternative, labels, d_given, n_classes)
    pool_given = _pool_pvalues(d_given, labels, labels, d_given, n_classes)
    pool_weight = _contrast(pool_alt, pool_given)
    weight = 0.5 * (_contrast(parts.pvalue_alt, parts.pvalue_given) + pool_weight)
    return ContrastEvidence(weight=weight, pool_weight=pool_weight)


def _compute_contrast_quality(labels: np.ndarray, parts: ContrastParts, n_classes: int) -> np.ndarray:
    """Scores of the labelled rows ``labels`` (M,) from their :class:`ContrastParts`."""
    return _compute_contrast(labels, parts, n_classes).label_quality(parts.p_given)


def contrast_label_quality_score(labels, pred_probs, *, embeddings, density: ClassDensity) -> np.ndarray:
    """Label quality from the self-confidence and the embedding space; lower = more likely mislabeled.

    ``score = 1 - (1 - p_given) * w``, ``w`` in (0, 1) the weight of the evidence that the
    example belongs to ``j``, the most probable class other than its label ``y``, rather than
    to ``y``: ``w = p(j) / (p(j) + p(y))`` with ``p(c)`` the typicality p-value of the
    example's kNN distance to the reference examples of ``c``. A mislabeled example is an
    ordinary member of ``j`` and an outsider of ``y`` (``w`` near 1: the doubt of a low
    self-confidence counts fully); an example the model gets wrong for another reason (a
    rotation, a blur, an unusual style) is atypical of both (``w`` near 1/2); an ambiguous
    but correct one is typical of ``y`` (``w`` small). ``w`` is the mean of two such contrasts:
    p-values against the reference's own leave-one-out distances (how typical among the
    training examples), and against the distances of the pool's own examples labelled ``c``
    (how typical among this pool: a pool whose style differs from the training data as a
    whole, e.g. other writers, is then not atypical of every class).

    The pool calibration needs pool examples: with a few dozen labelled examples a class, the
    faults themselves make up the far tail it calibrates against. On 500 MNIST images with 4%
    flipped labels and 6% large rotations (the demo CNN of the tests) it found fewer of the
    flipped labels among its k lowest than the self-confidence (10 of 20 against 15), where
    the training calibration alone found 18; on 1,000 such images it found 35 of 40 against
    the self-confidence's 32.

    Parameters
    ----------
    labels : np.ndarray, shape (N,), int
        ``-1`` = unknown (NaN score; such rows are no pool reference either).
    pred_probs : np.ndarray, shape (N, K)
    embeddings : np.ndarray, shape (N, D)
    density : ClassDensity
        Fitted on the training embeddings (:func:`fit_class_density`).

    Returns
    -------
    np.ndarray, shape (N,), float64
        In [0, 1], at least ``p_given``; NaN where the label is unknown.
    """
    pred_probs = check_pred_probs(pred_probs)
    n, k = pred_probs.shape
    labels = check_labels(labels, n=n, n_classes=k)
    emb = check_embeddings(embeddings, name="embeddings", n=n, n_name="pred_probs")
    known = np.flatnonzero(labels >= 0)
    out = np.full(n, np.nan)
    if known.size:
        parts = contrast_parts(labels[known], pred_probs[known], embeddings=emb[known], density=density)
        out[known] = _compute_contrast_quality(labels[known], parts, k)
    return out


def contrast_quality_from_parts(labels, parts: ContrastParts, *, n_classes: int) -> np.ndarray:
    """:func:`contrast_label_quality_score` of labelled rows from their concatenated parts.

    Parameters
    ----------
    labels : np.ndarray, shape (M,), int
        The rows' known labels, in the order of ``parts``.
    parts : ContrastParts
    n_classes : int

    Returns
    -------
    np.ndarray, shape (M,), float64
    """
    labels = check_labels(labels, n=len(parts.p_given), n_classes=n_classes, name="labels", other="parts")
    return _compute_contrast_quality(labels, parts, n_classes)


@dataclass(frozen=True)
class ContrastEvidence:
    """The evidence of :func:`contrast_label_quality_score` that each row belongs to its most
    probable other class ``j`` rather than to its label; arrays of shape (M,).

    Attributes
    ----------
    weight : np.ndarray
        ``w`` in (0, 1): above 1/2 the row is more typical of ``j`` than of its label, among the
        training examples and among the pool's examples of each class on average.
    pool_weight : np.ndarray
        The same contrast calibrated on the pool's examples alone: what is left when the
        training examples of the label's class are too few to say what is typical of it.
    """

    weight: np.ndarray
    pool_weight: np.ndarray

    def __len__(self) -> int:
        return len(self.weight)

    def label_quality(self, p_given: np.ndarray) -> np.ndarray:
        """:func:`contrast_label_quality_score` of the rows, ``1 - (1 - p_given) * w``, from the
        probability of their given label (``ContrastParts.p_given``)."""
        return np.clip(1.0 - (1.0 - p_given) * self.weight, 0.0, 1.0)

    def take(self, rows) -> ContrastEvidence:
        """The evidence of ``rows`` only."""
        return ContrastEvidence(self.weight[rows], self.pool_weight[rows])

    @staticmethod
    def for_pool(labels, labelled_evidence: ContrastEvidence) -> ContrastEvidence:
        """Evidence for every row of a pool with ``labels`` (N,), from that of its labelled rows in
        order: where the label is unknown there is no contrast (weights 1/2)."""
        labels = np.asarray(labels)
        known = labels >= 0
        out = ContrastEvidence(np.full(len(labels), 0.5), np.full(len(labels), 0.5))
        for name in ("weight", "pool_weight"):
            getattr(out, name)[known] = getattr(labelled_evidence, name)
        return out


def contrast_evidence_from_parts(labels, parts: ContrastParts, *, n_classes: int) -> ContrastEvidence:
    """The :class:`ContrastEvidence` of labelled rows from their :class:`ContrastParts`.

    Parameters
    ----------
    labels : np.ndarray, shape (M,), int
        The rows' known labels, in the order of ``parts``.
    parts : ContrastParts
        Of every labelled pool row (the pool calibration needs them all).
    n_classes : int

    Returns
    -------
    ContrastEvidence
    """
    labels = check_labels(labels, n=len(parts.p_given), n_classes=n_classes, name="labels", other="parts")
    return _compute_contrast(labels, parts, n_classes)


def pool_label_quality_score(
    labels,
    pred_probs,
    *,
    embeddings=None,
    train_density: ClassDensity | None = None,
    alpha: float = DEFAULT_ALPHA,
    k: int = DEFAULT_K,
    seed: int = 0,
) -> np.ndarray:
    """The label quality hardcase exports (``label_quality_score``); lower = more likely mislabeled.

    The best score the inputs allow (``bench/faults.py --scenarios`` measures all three):

    1. ``train_density`` given (fitted on the training embeddings):
       :func:`contrast_label_quality_score`;
    2. ``embeddings`` but no training density: :func:`neighbour_label_quality_score` with
       typicality among the pool's own labelled examples of the alternative class
       (:func:`pool_reference_density`; a row is never its own reference, since its
       alternative class is never its label);
    3. no embeddings: the embedding-free :func:`hardcase.miner.scores.label_quality_score`.

    Parameters
    ----------
    labels : np.ndarray, shape (N,), int
        ``-1`` = unknown (NaN score).
    pred_probs : np.ndarray, shape (N, K)
    embeddings : np.ndarray, shape (N, D), optional
    train_density : ClassDensity, optional
        From :func:`fit_class_density` on the training embeddings (needs ``embeddings``).
    alpha : float
        Significance level of the typicality test.
    k : int
        Neighbours of a pool-fitted density.
    seed : int
        Seeds the draw of a pool-fitted density's rows.

    Returns
    -------
    np.ndarray, shape (N,), float64
        In [0, 1]; NaN where the label is unknown.
    """
    pred_probs = check_pred_probs(pred_probs)
    n, n_classes = pred_probs.shape
    labels = check_labels(labels, n=n, n_classes=n_classes)
    if embeddings is None:
        if train_density is not None:
            raise ValueError("train_density needs the pool's embeddings")
        return label_quality_score(labels, pred_probs)
    emb = check_embeddings(embeddings, name="embeddings", n=n, n_name="pred_probs")
    if train_density is not None:
        return contrast_label_quality_score(labels, pred_probs, embeddings=emb, density=train_density)
    density = pool_reference_density(emb, labels, n_classes=n_classes, k=k, seed=seed)
    return neighbour_label_quality_score(labels, pred_probs, embeddings=emb, density=density, alpha=alpha)


def pool_reference_density(embeddings, labels, *, n_classes: int, k: int = DEFAULT_K, seed: int = 0) -> ClassDensity:
    """The class density of a pool's labelled embeddings: the reference of the label quality
    when there are no training embeddings.

    At most :data:`POOL_REFERENCE_PER_CLASS` rows of each class are kept (a seeded draw), so
    the fit is bounded on any pool.

    Parameters
    ----------
    embeddings : array-like, shape (N, D)
        Anything indexable by an index array (a float16 memory map is read row by row).
    labels : np.ndarray, shape (N,), int
        ``-1`` = unknown (left out).
    n_classes : int
    k : int
    seed : int

    Returns
    -------
    ClassDensity
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)
        if members.size > POOL_REFERENCE_PER_CLASS:
            members = np.sort(rng.choice(members, size=POOL_REFERENCE_PER_CLASS, replace=False))
        rows.append(members)
    rows = np.sort(np.concatenate(rows))
    reference = np.asarray(embeddings[rows], dtype=np.float32)
    return fit_class_density(reference, labels[rows], n_classes=n_classes, k=k)


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
