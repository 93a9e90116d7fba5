"""Why is a hard example hard? Evidence for four causes and one suggested cause per example.

Vocabulary as in :mod:`miner.scores`: N pool examples, K classes, ``pred_probs`` (N, K),
``labels`` (N,) with ``-1`` for an unknown label; ``embeddings`` (N, D) from the model's
embedding layer; ``train_embeddings`` (T, D) and ``train_labels`` (T,) of the training data.

Four tests, each on evidence a reviewer can check:

``mislabel``
    Confident learning plus the embedding space. The model predicts another class ``j``
    with at least ``j``'s per-class confident threshold (cleanlab's ``t_j``: the mean
    self-confidence of the pool's examples labelled ``j``), the example is a *typical*
    member of ``j`` (see typicality below), it lies nearer to ``j`` than to its given class
    (each measured in units of the class's own spread) and the plurality of its ``k``
    nearest training neighbours are labelled ``j``.
``augment``
    A small geometric transform restores the given label: the model then predicts it
    confidently and the transformed example is a typical member of the class
    (:class:`TransformEvidence`, produced by :mod:`models.transform_search`).
``imbalance``
    The given class is under-represented in the training data *and* under-predicted on the
    pool, both significantly, and the example was pushed into another class
    (:func:`class_imbalance`).
``rare``
    The example is atypical of its class (and, when misclassified, of the class it is
    mistaken for) and no transform restores it.

The tests are tried in this order (a confident relabel explains a failure better than a
transform that happens to work on it; a transform that restores it explains it better than
the data distribution); an example no test claims is ``unclear``.

Typicality
    Per class ``c``, every training example's mean cosine (or Euclidean) distance to its
    ``k`` nearest other training examples of ``c`` is computed (leave-one-out). A query's
    *normalized distance* to ``c`` is its mean distance to its ``k`` nearest training
    examples of ``c`` divided by the median of those leave-one-out distances (1 = as close
    as the median training example), and its **typicality p-value** is the conformal
    p-value ``(1 + #{training examples of c at least as far}) / (n_c + 1)``: under the
    hypothesis that the query is drawn like the training examples of ``c`` it is uniform, so
    ``p < alpha`` rejects "a typical member of c" at level ``alpha``. Every decision
    threshold is such a significance level or a threshold estimated from the data (per-class
    confident thresholds from the pool, the leave-one-out distances from the training set);
    nothing is tuned to one data set.

Public functions validate their inputs once and raise ``TypeError``/``ValueError`` naming
the argument; private ``_compute_*`` helpers assume valid input. Only numpy is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from hardcase.miner._validation import (
    check_embeddings,
    check_fraction,
    check_indices,
    check_int_array_1d,
    check_labels,
    check_positive_int,
    check_pred_probs,
    check_thresholds,
)
from hardcase.miner.scores import _compute_confident_thresholds
from hardcase.miner.transform import Transform
from hardcase.miner.vocabulary import METRICS

__all__ = [
    "CAUSE_ORDER",
    "DEFAULT_ALPHA",
    "DEFAULT_K",
    "METRICS",
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
    "rank_label_issues",
    "suggest_causes",
]

#: Order in which the cause tests are tried.
CAUSE_ORDER = ("mislabel", "imbalance", "augment", "rare")
#: Everything :func:`suggest_causes` may answer.
SUGGESTED = (*CAUSE_ORDER, "unclear")
#: Default number of neighbours.
DEFAULT_K = 10
#: Default significance level of the typicality and imbalance tests.
DEFAULT_ALPHA = 0.05

#: Upper bound on the number of float32 distances held at once by the neighbour search
#: (64 MiB), so memory stays bounded for any number of queries and references.
_BLOCK_ELEMENTS = 1 << 24
_QUERY_ROWS = 1024
_TINY = float(np.finfo(np.float32).eps)


# ------------------------------------------------------------------------ small checks


def _check_metric(metric) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    return metric


def _check_alpha(alpha) -> float:
    alpha = check_fraction(alpha, name="alpha")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    return alpha


def _check_same_width(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_a} has D={a.shape[1]} columns but {name_b} has D={b.shape[1]}; "
            "both must come from the same embedding layer"
        )


def _check_train_labels(train_labels, *, n: int, n_classes: int | None) -> tuple[np.ndarray, int]:
    arr = check_int_array_1d(train_labels, name="train_labels", n=n, n_name="train_embeddings")
    bad = np.flatnonzero(arr < -1)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"train_labels has value {int(arr[i])} at index {i}; -1 (unknown) is the only negative value allowed")
    top = int(arr.max()) + 1 if arr.size else 0
    if n_classes is None:
        n_classes = max(top, 1)
    elif top > n_classes:
        i = int(np.flatnonzero(arr >= n_classes)[0])
        raise ValueError(f"train_labels has value {int(arr[i])} at index {i} but there are K={n_classes} classes")
    return arr, n_classes


def _as_class_names(class_names, n_classes: int) -> list[str]:
    if class_names is None:
        return [str(c) for c in range(n_classes)]
    names = [str(name) for name in class_names]
    if len(names) != n_classes:
        raise ValueError(f"class_names has {len(names)} names but pred_probs has K={n_classes} columns")
    return names


# ------------------------------------------------------------------------ neighbours


@dataclass(frozen=True)
class Neighbours:
    """The ``k`` nearest references of each query, nearest first.

    Attributes
    ----------
    distances : np.ndarray, shape (N, k), float32
        Ascending per row. Cosine: ``1 - cos`` in [0, 2]; Euclidean: L2 distance.
    indices : np.ndarray, shape (N, k), int64
        Rows of ``references``.
    """

    distances: np.ndarray
    indices: np.ndarray


def _prepare(x: np.ndarray, metric: str) -> np.ndarray:
    """float32 rows ready for dot products: unit rows for cosine (zero rows stay zero)."""
    if metric == "euclidean":
        return x
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64)).astype(np.float32)
    norms[norms == 0] = 1.0
    return x / norms[:, None]


def _compute_knn(
    queries: np.ndarray,
    references: np.ndarray,
    k: int,
    metric: str,
    *,
    exclude_self: bool = False,
    block_elements: int = _BLOCK_ELEMENTS,
) -> tuple[np.ndarray, np.ndarray]:
    """Chunked exact kNN over prepared float32 rows; (N, k) distances and indices.

    Memory: one (query chunk x reference block) float32 matrix of at most
    ``block_elements`` entries plus the running (query chunk, k) best.
    """
    n, m = queries.shape[0], references.shape[0]
    dist_out = np.empty((n, k), dtype=np.float32)
    idx_out = np.empty((n, k), dtype=np.int64)
    if n == 0 or k == 0:
        return dist_out, idx_out
    q_rows = max(1, min(n, _QUERY_ROWS, block_elements // max(k + 1, 1)))
    r_rows = max(k + 1, block_elements // q_rows)
    euclid = metric == "euclidean"
    ref_sq = np.einsum("ij,ij->i", references, references) if euclid else None
    for q0 in range(0, n, q_rows):
        q = queries[q0 : q0 + q_rows]
        q_sq = np.einsum("ij,ij->i", q, q) if euclid else None
        best_d = np.full((q.shape[0], k), np.inf, dtype=np.float32)
        best_i = np.full((q.shape[0], k), -1, dtype=np.int64)
        for r0 in range(0, m, r_rows):
            r = references[r0 : r0 + r_rows]
            dots = q @ r.T
            if euclid:
                block = q_sq[:, None] - 2.0 * dots + ref_sq[None, r0 : r0 + r.shape[0]]
                np.maximum(block, 0.0, out=block)
            else:
                block = 1.0 - dots
                np.maximum(block, 0.0, out=block)
            if exclude_self:
                rows = np.arange(q0, q0 + q.shape[0])
                inside = (rows >= r0) & (rows < r0 + r.shape[0])
                block[np.flatnonzero(inside), rows[inside] - r0] = np.inf
            if r.shape[0] == m:  # one block holds every reference: no running best to merge
                best_i = np.argpartition(block, k - 1, axis=1)[:, :k]
                best_d = np.take_along_axis(block, best_i, axis=1)
                continue
            cand_d = np.concatenate([best_d, block], axis=1)
            cand_i = np.concatenate(
                [best_i, np.broadcast_to(np.arange(r0, r0 + r.shape[0]), block.shape)], axis=1
            )
            part = np.argpartition(cand_d, k - 1, axis=1)[:, :k]
            best_d = np.take_along_axis(cand_d, part, axis=1)
            best_i = np.take_along_axis(cand_i, part, axis=1)
        order = np.argsort(best_d, axis=1, kind="stable")
        best_d = np.take_along_axis(best_d, order, axis=1)
        best_i = np.take_along_axis(best_i, order, axis=1)
        if euclid:
            np.sqrt(best_d, out=best_d)
        dist_out[q0 : q0 + q.shape[0]] = best_d
        idx_out[q0 : q0 + q.shape[0]] = best_i
    return dist_out, idx_out


def nearest_neighbours(
    queries,
    references,
    *,
    k: int = DEFAULT_K,
    metric: str = "cosine",
    exclude_self: bool = False,
) -> Neighbours:
    """Exact k nearest neighbours of query embeddings among reference embeddings.

    Computed in float32 with one matrix product per (query chunk, reference block), keeping
    a running top-k, so memory stays bounded (a few tens of MiB) whatever N and M are.

    Parameters
    ----------
    queries : np.ndarray, shape (N, D)
        Query embeddings (e.g. pool candidates).
    references : np.ndarray, shape (M, D)
        Reference embeddings (e.g. the training set).
    k : int
        Neighbours per query, ``1 <= k <= M`` (``M - 1`` with ``exclude_self``).
    metric : {"cosine", "euclidean"}
        ``cosine`` (default) compares directions: the ReLU embeddings of a CNN encode *which*
        features fire in their direction while their norm mostly follows contrast and stroke
        mass. A zero row is at distance 1 from everything.
    exclude_self : bool
        ``queries`` are the references themselves (same shape); row i is not its own
        neighbour (leave-one-out).

    Returns
    -------
    Neighbours
        ``distances`` (N, k) float32 ascending and ``indices`` (N, k) int64.
    """
    metric = _check_metric(metric)
    q = check_embeddings(queries, name="queries")
    r = check_embeddings(references, name="references")
    _check_same_width(q, r, "queries", "references")
    k = check_positive_int(k, name="k")
    available = r.shape[0] - (1 if exclude_self else 0)
    if exclude_self and q.shape != r.shape:
        raise ValueError(
            f"exclude_self needs queries to be the references, got shapes {q.shape} and {r.shape}"
        )
    if k > available:
        raise ValueError(f"k={k} but references has only {available} usable rows")
    distances, indices = _compute_knn(_prepare(q, metric), _prepare(r, metric), k, metric, exclude_self=exclude_self)
    return Neighbours(distances=distances, indices=indices)


def _compute_votes(neighbour_labels: np.ndarray, n_classes: int) -> np.ndarray:
    n = neighbour_labels.shape[0]
    votes = np.zeros((n, n_classes), dtype=np.float64)
    rows = np.repeat(np.arange(n), neighbour_labels.shape[1])
    flat = neighbour_labels.ravel()
    known = flat >= 0
    np.add.at(votes, (rows[known], flat[known]), 1.0)
    totals = votes.sum(axis=1, keepdims=True)
    np.divide(votes, totals, out=votes, where=totals > 0)
    return votes


def neighbour_votes(neighbour_indices, reference_labels, *, n_classes: int) -> np.ndarray:
    """Share of each query's neighbours carrying each label.

    Parameters
    ----------
    neighbour_indices : np.ndarray, shape (N, k), int
        Rows of the references (e.g. ``Neighbours.indices``); ``-1`` = no neighbour.
    reference_labels : np.ndarray, shape (M,), int
        Labels of the references; ``-1`` (unknown) neighbours are not counted.
    n_classes : int
        K.

    Returns
    -------
    np.ndarray, shape (N, K), float64
        Rows sum to 1 (0 for a row without any labelled neighbour).
    """
    n_classes = check_positive_int(n_classes, name="n_classes")
    labels_arr = check_labels(reference_labels, n=len(np.asarray(reference_labels)), n_classes=n_classes,
                              name="reference_labels", other="n_classes")
    idx = np.asarray(neighbour_indices)
    if idx.ndim != 2:
        raise ValueError(f"neighbour_indices must be 2-D (N, k), got shape {idx.shape}")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"neighbour_indices must be an integer array, got dtype {idx.dtype}")
    bad = np.argwhere((idx < -1) | (idx >= labels_arr.shape[0]))
    if bad.size:
        r, c = (int(v) for v in bad[0])
        raise ValueError(
            f"neighbour_indices[{r}, {c}] = {int(idx[r, c])} but reference_labels has M={labels_arr.shape[0]} rows"
        )
    neighbour_labels = np.where(idx >= 0, labels_arr[np.clip(idx, 0, None)], -1)
    return _compute_votes(neighbour_labels, n_classes)


# ------------------------------------------------------------------------ class density


@dataclass(frozen=True)
class ClassDensity:
    """kNN density of each class's training embeddings (see the module docstring).

    Attributes
    ----------
    embeddings : np.ndarray, shape (T, D), float32
        Training embeddings, rows prepared for the metric (unit rows for cosine).
    labels : np.ndarray, shape (T,), int64
        Training labels (-1 rows are kept for neighbour votes but belong to no class).
    n_classes : int
    k : int
    metric : str
    members : tuple of np.ndarray
        Training rows of each class.
    scale : np.ndarray, shape (K,), float64
        Median leave-one-out kNN distance of each class (NaN for a class with < 2 examples).
    reference : tuple of np.ndarray
        Each class's sorted leave-one-out kNN distances divided by its ``scale``.
    """

    embeddings: np.ndarray
    labels: np.ndarray
    n_classes: int
    k: int
    metric: str
    members: tuple = field(repr=False)
    scale: np.ndarray = field(repr=False)
    reference: tuple = field(repr=False)

    @property
    def counts(self) -> np.ndarray:
        """Training examples per class, shape (K,)."""
        return np.array([len(m) for m in self.members], dtype=np.int64)


def _compute_class_density(emb: np.ndarray, labels: np.ndarray, n_classes: int, k: int, metric: str) -> ClassDensity:
    prepared = np.ascontiguousarray(_prepare(emb, metric))
    members, scales, references = [], np.full(n_classes, np.nan), []
    for c in range(n_classes):
        rows = np.flatnonzero(labels == c)
        members.append(rows)
        if rows.size < 2:
            references.append(np.zeros(0))
            continue
        k_c = min(k, rows.size - 1)
        sub = prepared[rows]
        dist, _ = _compute_knn(sub, sub, k_c, metric, exclude_self=True)
        loo = dist.astype(np.float64).mean(axis=1)
        scale = max(float(np.median(loo)), _TINY)
        scales[c] = scale
        references.append(np.sort(loo / scale))
    return ClassDensity(
        embeddings=prepared, labels=labels, n_classes=n_classes, k=k, metric=metric,
        members=tuple(members), scale=scales, reference=tuple(references),
    )


def fit_class_density(
    train_embeddings,
    train_labels,
    *,
    n_classes: int | None = None,
    k: int = DEFAULT_K,
    metric: str = "cosine",
) -> ClassDensity:
    """Fit the per-class kNN density of the training embeddings (leave-one-out distances).

    Parameters
    ----------
    train_embeddings : np.ndarray, shape (T, D)
    train_labels : np.ndarray, shape (T,), int
        In ``0 .. K-1``; ``-1`` rows belong to no class.
    n_classes : int, optional
        K; default ``max(train_labels) + 1``.
    k : int
        Neighbours (a class with ``n_c <= k`` examples uses ``n_c - 1``).
    metric : {"cosine", "euclidean"}

    Returns
    -------
    ClassDensity
    """
    metric = _check_metric(metric)
    k = check_positive_int(k, name="k")
    emb = check_embeddings(train_embeddings, name="train_embeddings")
    if n_classes is not None:
        n_classes = check_positive_int(n_classes, name="n_classes")
    labels, n_classes = _check_train_labels(train_labels, n=emb.shape[0], n_classes=n_classes)
    return _compute_class_density(emb, labels, n_classes, k, metric)


@dataclass(frozen=True)
class Typicality:
    """How typical each query is of one class (see the module docstring).

    Attributes
    ----------
    distance : np.ndarray, shape (N,), float64
        Normalized kNN distance (1 = the median training example of the class); NaN where
        the class is -1, inf where the class has fewer than 2 training examples.
    pvalue : np.ndarray, shape (N,), float64
        Conformal p-value in (0, 1]; small = atypical. NaN where the class is -1, 0 where the
        class has fewer than 2 training examples (nothing to be typical of).
    neighbours : np.ndarray, shape (N, k), int64
        Training rows of the nearest members of the class, nearest first; -1 pads.
    """

    distance: np.ndarray
    pvalue: np.ndarray
    neighbours: np.ndarray


def _compute_typicality(prepared: np.ndarray, classes: np.ndarray, density: ClassDensity) -> Typicality:
    n = prepared.shape[0]
    distance = np.full(n, np.nan)
    pvalue = np.full(n, np.nan)
    neighbours = np.full((n, density.k), -1, dtype=np.int64)
    for c in np.unique(classes[classes >= 0]):
        rows = np.flatnonzero(classes == c)
        members = density.members[c]
        reference = density.reference[c]
        if reference.size == 0:
            distance[rows], pvalue[rows] = np.inf, 0.0
            neighbours[rows, : members.size] = members[None, :]
            continue
        k_c = min(density.k, members.size - 1)
        dist, idx = _compute_knn(prepared[rows], density.embeddings[members], k_c, density.metric)
        d = dist.astype(np.float64).mean(axis=1) / density.scale[c]
        distance[rows] = d
        at_least_as_far = reference.size - np.searchsorted(reference, d, side="left")
        pvalue[rows] = (1.0 + at_least_as_far) / (reference.size + 1.0)
        neighbours[rows, :k_c] = members[idx]
    return Typicality(distance=distance, pvalue=pvalue, neighbours=neighbours)


def _check_density(density, dim: int, name: str) -> ClassDensity:
    if not isinstance(density, ClassDensity):
        raise TypeError(f"density must be a ClassDensity from fit_class_density, got {type(density).__name__}")
    if density.embeddings.shape[1] != dim:
        raise ValueError(
            f"{name} has D={dim} columns but the density was fitted on D={density.embeddings.shape[1]}"
        )
    return density


def class_typicality(embeddings, classes, *, density: ClassDensity) -> Typicality:
    """Typicality of each embedding for one class each (normalized kNN distance, p-value).

    Parameters
    ----------
    embeddings : np.ndarray, shape (N, D)
    classes : np.ndarray, shape (N,), int
        The class to test each row against; ``-1`` = skip the row (NaN results).
    density : ClassDensity
        From :func:`fit_class_density`.

    Returns
    -------
    Typicality
    """
    emb = check_embeddings(embeddings, name="embeddings")
    density = _check_density(density, emb.shape[1], "embeddings")
    cls = check_labels(classes, n=emb.shape[0], n_classes=density.n_classes, name="classes", other="embeddings")
    return _compute_typicality(_prepare(emb, density.metric), cls, density)


# ------------------------------------------------------------------------ label issues


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


# ------------------------------------------------------------------------ imbalance


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


# ------------------------------------------------------------------------ transform evidence


@dataclass(frozen=True)
class TransformEvidence:
    """What a transform search found for each of M candidates (see models.transform_search).

    Attributes
    ----------
    target : np.ndarray, shape (M,), int64
        The class the search tried to restore (the given label, else the prediction).
    family : np.ndarray, shape (M,), str
        ``rotate``, ``perspective``, ``scale``, ``shift``, ``combined`` or ``none`` (identity).
    transform : tuple of dict
        The suggested transform as ``Transform.to_dict()``: the most typical restoring one,
        else the one giving the target the highest probability.
    before, after : np.ndarray, shape (M,), float64
        Probability of the target without and with the suggested transform.
    predicted_after : np.ndarray, shape (M,), int64
        The model's class for the transformed image.
    typicality : np.ndarray, shape (M,), float64
        Typicality p-value of the transformed image's embedding for the target (NaN unknown).
    stable : np.ndarray, shape (M,), bool
        The prediction stays on the target under neighbouring parameters.
    restores : np.ndarray, shape (M,), bool
        The transform restores the target: predicted at least at the target's confident
        threshold, typical, stable, beyond what the search does on clean samples, and the
        untransformed image was not already restored.
    smallest : tuple of (dict or None)
        The smallest restoring transform found (None when nothing restores).
    null_rate : float or None
        Share of clean reference examples that the same search "restores" to a wrong class.
    null_threshold : float or None
        The ``p_target x typicality`` a restoration must exceed: the ``1 - alpha`` quantile of
        what the search reaches on those references (None without a calibration).
    stats : dict
        Timing and counts (JSON-able).
    """

    target: np.ndarray
    family: np.ndarray
    transform: tuple
    before: np.ndarray
    after: np.ndarray
    predicted_after: np.ndarray
    typicality: np.ndarray
    stable: np.ndarray
    restores: np.ndarray
    smallest: tuple
    null_rate: float | None = None
    null_threshold: float | None = None
    stats: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = len(np.asarray(self.target))
        for f in fields(self):
            if f.name in ("null_rate", "null_threshold", "stats"):
                continue
            value = getattr(self, f.name)
            length = len(value)
            if length != m:
                raise ValueError(f"TransformEvidence.{f.name} has {length} entries but target has {m}")
            if isinstance(value, np.ndarray) or not isinstance(value, tuple):
                arr = np.array(value)
                arr.setflags(write=False)
                object.__setattr__(self, f.name, arr)

    def __len__(self) -> int:
        return int(len(self.target))


def describe_transform(transform: dict | None) -> str:
    """Words for a ``Transform.to_dict()`` as stored in the evidence (keys may be missing):
    :meth:`Transform.describe <hardcase.miner.transform.Transform.describe>` of it."""
    return Transform.from_dict(transform).describe()


def _check_transform_evidence(evidence, m: int) -> TransformEvidence | None:
    if evidence is None:
        return None
    if not isinstance(evidence, TransformEvidence):
        raise TypeError(
            f"transform_evidence must be a TransformEvidence (models.transform_search), got {type(evidence).__name__}"
        )
    if len(evidence) != m:
        raise ValueError(f"transform_evidence has {len(evidence)} entries but there are {m} candidates")
    return evidence


# ------------------------------------------------------------------------ suggestions


@dataclass(frozen=True)
class CauseSuggestions:
    """One suggested cause per candidate; arrays of shape (M,), read-only.

    Attributes
    ----------
    indices : np.ndarray, int64
        Pool rows of the candidates.
    cause : np.ndarray, str
        One of :data:`SUGGESTED`.
    confidence : np.ndarray, float64
        In [0, 1].
    suggested_label : np.ndarray, int64
        The class to relabel to for ``mislabel``, else -1.
    evidence : tuple of dict
        JSON-able evidence per candidate, with a human sentence under ``"text"``.
    """

    indices: np.ndarray
    cause: np.ndarray
    confidence: np.ndarray
    suggested_label: np.ndarray
    evidence: tuple

    def __post_init__(self) -> None:
        m = len(self.indices)
        for f in fields(self):
            value = getattr(self, f.name)
            if len(value) != m:
                raise ValueError(f"CauseSuggestions.{f.name} has {len(value)} entries, expected {m}")
            if f.name != "evidence":
                arr = np.array(value)
                arr.setflags(write=False)
                object.__setattr__(self, f.name, arr)

    def __len__(self) -> int:
        return int(len(self.indices))

    def counts(self) -> dict[str, int]:
        """How many candidates got each cause."""
        return {cause: int(np.sum(self.cause == cause)) for cause in SUGGESTED}


def _f(value) -> float | None:
    """A JSON-safe float (None for NaN/inf)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _rounded(value, digits: int = 4) -> float | None:
    value = _f(value)
    return None if value is None else round(value, digits)


def _compute_suggestions(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    cand: np.ndarray,
    cand_emb: np.ndarray,
    density: ClassDensity,
    evidence: TransformEvidence | None,
    imbalance: ClassImbalance,
    thresholds: np.ndarray,
    names: list[str],
    train_ids: np.ndarray,
    alpha: float,
) -> CauseSuggestions:
    n_classes = pred_probs.shape[1]
    probs = pred_probs[cand]
    y = labels[cand]
    m = len(cand)
    pred = probs.argmax(axis=1)
    rows = np.arange(m)
    p_pred = probs[rows, pred]
    known = y >= 0
    p_given = np.where(known, probs[rows, np.clip(y, 0, None)], np.nan)
    ref_class = np.where(known, y, pred)  # the class the example should belong to

    prepared = _prepare(cand_emb, density.metric)
    typ_ref = _compute_typicality(prepared, ref_class, density)
    typ_pred = _compute_typicality(prepared, pred, density)
    k_all = min(density.k, max(int(np.sum(density.labels >= 0)), 1))
    _, nn_idx = _compute_knn(prepared, density.embeddings, min(k_all, density.embeddings.shape[0]), density.metric)
    nn_labels = density.labels[nn_idx]
    votes = _compute_votes(nn_labels, n_classes)
    vote_top = votes.argmax(axis=1)

    causes = np.empty(m, dtype=object)
    confidence = np.zeros(m)
    suggested = np.full(m, -1, dtype=np.int64)
    records = []
    for i in range(m):
        yi, ji = int(y[i]), int(pred[i])
        ri = int(ref_class[i])
        misclassified = bool(known[i] and ji != yi)
        pv_ref, pv_pred = float(typ_ref.pvalue[i]), float(typ_pred.pvalue[i])
        nd_ref, nd_pred = float(typ_ref.distance[i]), float(typ_pred.distance[i])
        vote_j = float(votes[i, ji])

        # mislabel: a confident, typical member of another class, nearer to it, neighbours agree
        mis_test = bool(
            misclassified
            and p_pred[i] >= thresholds[ji]
            and pv_pred >= alpha
            and nd_ref > nd_pred
            and vote_top[i] == ji
            and vote_j > 0
        )
        mis_score = (1.0 - float(p_given[i])) * min(1.0, pv_pred / alpha) * vote_j if misclassified else 0.0

        # augment: the transform search restores the target
        aug_test, aug_score = False, 0.0
        if evidence is not None:
            after = float(evidence.after[i])
            typ_after = float(np.nan_to_num(evidence.typicality[i], nan=0.0))
            null = evidence.null_rate if evidence.null_rate is not None else 0.0
            aug_test = bool(evidence.restores[i])
            aug_score = after * min(1.0, typ_after / alpha) * (1.0 - null) if evidence.family[i] != "none" else 0.0

        # imbalance: the given class is flagged and this example was pushed out of it
        imb_test = bool(misclassified and imbalance.imbalanced[yi])
        imb_score = 0.0
        if misclassified:
            share = imbalance.train_share[yi]
            deficit = 1.0 - share / imbalance.fair_share if np.isfinite(share) else 1.0 - imbalance.predicted_vs_given[yi]
            imb_score = float(np.clip(deficit, 0.0, 1.0)) * (1.0 - float(p_given[i])) if imb_test else 0.0

        # rare: atypical of its class (and of what it is mistaken for)
        rare_test = bool(pv_ref < alpha and (ji == ri or pv_pred < alpha))
        rare_score = 1.0 - min(1.0, pv_ref / alpha)
        if ji != ri:
            rare_score *= 1.0 - min(1.0, pv_pred / alpha)

        if mis_test and aug_test:
            # both explain it: keep the one under which the example is the more typical member
            # of its class (the restored image for the given label, or the image as it is for j)
            if float(np.nan_to_num(evidence.typicality[i], nan=0.0)) > pv_pred:
                mis_test = False
            else:
                aug_test = False
        tests = {"mislabel": mis_test, "augment": aug_test, "imbalance": imb_test, "rare": rare_test}
        scores = {"mislabel": mis_score, "augment": aug_score, "imbalance": imb_score, "rare": rare_score}
        chosen = next((c for c in CAUSE_ORDER if tests[c]), "unclear")
        if chosen == "unclear":
            conf = 1.0 - max(scores.values())
        else:
            conf = scores[chosen]
        causes[i] = chosen
        confidence[i] = float(np.clip(conf, 0.0, 1.0))
        if chosen == "mislabel":
            suggested[i] = ji

        k_i = int(np.sum(nn_labels[i] >= 0))
        neighbour_names = [names[c] if c >= 0 else None for c in nn_labels[i]]
        density_ids = [int(train_ids[t]) for t in typ_ref.neighbours[i] if t >= 0]
        record: dict[str, Any] = {
            "cause": chosen,
            "confidence": round(confidence[i], 4),
            "given": {"label": names[yi] if yi >= 0 else None, "probability": _rounded(p_given[i])},
            "predicted": {
                "label": names[ji], "probability": _rounded(p_pred[i]), "threshold": _rounded(thresholds[ji]),
            },
            "neighbours": {
                "k": k_i,
                "labels": neighbour_names,
                "train_ids": [int(train_ids[t]) for t in nn_idx[i]],
                "agreement": _rounded(vote_j),
                "given_agreement": _rounded(votes[i, yi]) if yi >= 0 else None,
            },
            "density": {
                "class": names[ri],
                "distance": _rounded(nd_ref),
                "pvalue": _rounded(pv_ref),
                "percentile": _rounded(100.0 * (1.0 - pv_ref)) if math.isfinite(pv_ref) else None,
                "train_ids": density_ids,
                "predicted_distance": _rounded(nd_pred),
                "predicted_pvalue": _rounded(pv_pred),
            },
            "tests": tests,
            "scores": {name: round(float(np.clip(value, 0.0, 1.0)), 4) for name, value in scores.items()},
        }
        if yi >= 0:
            record["imbalance"] = {
                "class": names[yi],
                "train_share": _rounded(imbalance.train_share[yi]),
                "fair_share": _rounded(imbalance.fair_share),
                "recall": _rounded(imbalance.recall[yi]),
                "recall_others": _rounded(imbalance.recall_others[yi]),
                "predicted_vs_given": _rounded(imbalance.predicted_vs_given[yi]),
                "pushed_into": names[int(imbalance.pushed_into[yi])] if imbalance.pushed_into[yi] >= 0 else None,
                "under_represented": bool(imbalance.under_represented[yi]),
                "under_predicted": bool(imbalance.under_predicted[yi]),
            }
        if evidence is not None:
            record.update(
                {
                    "transform": dict(evidence.transform[i]) if evidence.transform[i] else None,
                    "family": str(evidence.family[i]),
                    "target": names[int(evidence.target[i])] if evidence.target[i] >= 0 else None,
                    "before": _rounded(evidence.before[i]),
                    "after": _rounded(evidence.after[i]),
                    "predicted_after": names[int(evidence.predicted_after[i])],
                    "restored_typicality": _rounded(evidence.typicality[i]),
                    "stable": bool(evidence.stable[i]),
                    "restores": bool(evidence.restores[i]),
                    "smallest": dict(evidence.smallest[i]) if evidence.smallest[i] else None,
                    "null_rate": _rounded(evidence.null_rate),
                    "null_threshold": _rounded(evidence.null_threshold),
                    "target_threshold": _rounded(thresholds[int(evidence.target[i])]) if evidence.target[i] >= 0 else None,
                }
            )
        record["text"] = _sentence(chosen, record, names, k_i, imbalance, alpha)
        records.append(record)
    return CauseSuggestions(
        indices=cand.astype(np.int64), cause=causes.astype(str), confidence=confidence,
        suggested_label=suggested, evidence=tuple(records),
    )


def _neighbour_phrase(record: dict, k: int) -> str:
    labels = [label for label in record["neighbours"]["labels"] if label is not None]
    if not labels:
        return "no labelled training neighbours"
    values, counts = np.unique(np.array(labels, dtype=object).astype(str), return_counts=True)
    top = int(counts.argmax())
    return f"{int(counts[top])} of {k} nearest training images are '{values[top]}'"


def _transform_phrase(record: dict) -> str:
    if record.get("transform") is None or record.get("family") in (None, "none"):
        return ""
    phrase = (
        f"{describe_transform(record['transform'])} gives '{record['predicted_after']}' at "
        f"{record['after']:.2f} (was {record['before']:.2f})"
    )
    if record.get("restored_typicality") is not None:
        phrase += f", typicality p={record['restored_typicality']:.2f}"
    return phrase


def _unconvincing(record: dict, alpha: float) -> str:
    """Why the best transform found is no restoration: the first of the search's tests it fails."""
    target, after = record["target"], record["after"]
    typ = record.get("restored_typicality")
    if record["predicted_after"] != target:
        return f"the model then says '{record['predicted_after']}', not '{target}'"
    if record.get("target_threshold") is not None and after < record["target_threshold"]:
        return f"{after:.2f} is under the confident threshold of '{target}' ({record['target_threshold']:.2f})"
    if typ is not None and typ < alpha:
        return f"the result is not a typical '{target}' (p={typ:.3f} < {alpha:g})"
    if not record.get("stable"):
        return "a slightly different rotation loses it again"
    if record.get("null_threshold") is not None:
        return (f"it is no more convincing than the false fixes the same search makes on clean images: "
                f"probability x typicality {after * (typ if typ is not None else 1.0):.2f}, while {alpha:.0%} "
                f"of those exceed {record['null_threshold']:.2f}")
    return "it is not convincing"


def _sentence(cause: str, record: dict, names: list[str], k: int, imbalance: ClassImbalance, alpha: float) -> str:
    given = record["given"]["label"]
    pred = record["predicted"]
    dens = record["density"]
    neighbours = _neighbour_phrase(record, k)
    if cause == "mislabel":
        if dens["distance"] is None:
            farther = f"there are no '{given}' training images to compare with"
        else:
            ratio = dens["distance"] / max(dens["predicted_distance"], _TINY)
            farther = f"{ratio:.1f}x farther from the '{given}' training images"
        return (
            f"labelled '{given}' but the model says '{pred['label']}' at {pred['probability']:.2f} "
            f"(confident above {pred['threshold']:.2f}); {neighbours}; it is a typical '{pred['label']}' "
            f"(p={dens['predicted_pvalue']:.2f}) and {farther}"
        )
    if cause == "augment":
        text = _transform_phrase(record) + "; the transformed image is a typical " + f"'{record['target']}'"
        if record.get("null_rate") is not None:
            text += f" (the same search turns {record['null_rate']:.0%} of clean training images into another class)"
        return text + f"; untransformed, {neighbours}"
    if cause == "imbalance":
        imb = record["imbalance"]
        share = f"{imb['train_share']:.1%} of the training data (fair share {imb['fair_share']:.0%})" if imb["train_share"] is not None else "a class"
        return (
            f"'{given}' is {share} and the model predicts it for {imb['recall']:.0%} of pool images labelled "
            f"'{given}' (other classes {imb['recall_others']:.0%}); this one is pushed into '{pred['label']}' "
            f"at {pred['probability']:.2f}"
        )
    if dens["distance"] is None:
        far = f"there are no training images of '{dens['class']}'"
    else:
        far = (f"farther from the '{dens['class']}' training images than {dens['percentile']:.1f}% of them "
               "are from each other")
    if cause == "rare":
        text = f"unlike the training data: {far}"
        if record.get("transform") is not None and record.get("family") not in (None, "none"):
            text += f"; no transform restores it: the best found, {_transform_phrase(record)}, fails because {_unconvincing(record, alpha)}"
        elif "restores" in record:
            text += "; no transform restores it"
        return text + f"; {neighbours}"
    reasons = [f"model says '{pred['label']}' at {pred['probability']:.2f}", neighbours]
    if dens["pvalue"] is not None:
        reasons.append(f"typicality for '{dens['class']}' p={dens['pvalue']:.2f}")
    phrase = _transform_phrase(record)
    if phrase:
        reasons.append(f"best transform: {phrase}" + ("" if record.get("restores") else f", which fails because {_unconvincing(record, alpha)}"))
    return "no test is convincing: " + "; ".join(reasons)


def suggest_causes(
    labels,
    pred_probs,
    *,
    embeddings,
    train_embeddings=None,
    train_labels=None,
    transform_evidence: TransformEvidence | None = None,
    candidates=None,
    density: ClassDensity | None = None,
    thresholds=None,
    train_ids=None,
    class_names=None,
    k: int = DEFAULT_K,
    alpha: float = DEFAULT_ALPHA,
    metric: str = "cosine",
) -> CauseSuggestions:
    """One cause per candidate (``mislabel``, ``augment``, ``imbalance``, ``rare`` or ``unclear``).

    The four tests of the module docstring are tried in :data:`CAUSE_ORDER`; the first that
    holds is the suggestion, and its strength is the confidence:

    * mislabel: ``(1 - p_given) * min(1, p_typ(j) / alpha) * share of neighbours labelled j``;
    * augment: ``p_after * min(1, p_typ(after) / alpha) * (1 - null_rate)``;
    * imbalance: ``(1 - train_share / fair_share) * (1 - p_given)``;
    * rare: ``1 - min(1, p_typ / alpha)`` (times the same for the predicted class when
      misclassified);
    * unclear: ``1 - `` the largest of those strengths.

    Pool-level statistics (confident thresholds, class recall) come from all N rows;
    evidence is computed for the candidate rows only.

    Parameters
    ----------
    labels : np.ndarray, shape (N,), int
        Given labels of the pool; ``-1`` = unknown.
    pred_probs : np.ndarray, shape (N, K)
    embeddings : np.ndarray, shape (N, D)
        Pool embeddings (only the candidate rows are read).
    train_embeddings : np.ndarray, shape (T, D), optional
    train_labels : np.ndarray, shape (T,), int, optional
        The training set the density, neighbours and shares come from; required unless
        ``density`` is given (then the density's own labels give the training shares).
    transform_evidence : TransformEvidence, optional
        From :func:`models.transform_search.search_transforms` for the candidates, in the
        order of ``candidates``. Without it ``augment`` is never suggested.
    candidates : np.ndarray, shape (M,), int, optional
        Pool rows to explain; default all N rows, in order.
    density : ClassDensity, optional
        Precomputed :func:`fit_class_density` of the training embeddings.
    thresholds : np.ndarray, shape (K,), optional
        Per-class confident thresholds; default
        ``confident_thresholds(labels, pred_probs, unknown_labels="as_predicted")`` of the pool
        (:func:`hardcase.miner.scores.confident_thresholds`).
    train_ids : np.ndarray, shape (T,), int, optional
        Ids reported for training neighbours (e.g. source indices); default ``0 .. T-1``.
    class_names : sequence of str, optional
        Names used in the evidence; default ``"0" .. "K-1"``.
    k : int
        Neighbours.
    alpha : float
        Significance level of the typicality and imbalance tests.
    metric : {"cosine", "euclidean"}

    Returns
    -------
    CauseSuggestions
    """
    pred_probs = check_pred_probs(pred_probs)
    n, n_classes = pred_probs.shape
    labels = check_labels(labels, n=n, n_classes=n_classes)
    alpha = _check_alpha(alpha)
    metric = _check_metric(metric)
    k = check_positive_int(k, name="k")
    cand = np.arange(n, dtype=np.int64) if candidates is None else _check_candidates(candidates, n)
    emb_all = embeddings
    if not hasattr(emb_all, "shape") or len(emb_all.shape) != 2:
        emb_all = np.asarray(emb_all)
    if len(emb_all.shape) != 2:
        raise ValueError(f"embeddings must be 2-D with shape (N, D), got shape {np.shape(emb_all)}")
    if emb_all.shape[0] != n:
        raise ValueError(f"embeddings has {emb_all.shape[0]} rows but pred_probs has N={n} rows")
    cand_emb = check_embeddings(np.asarray(emb_all[cand]), name="embeddings (candidate rows)")
    train_lab = None
    if density is None:
        if train_embeddings is None or train_labels is None:
            raise ValueError("pass train_embeddings and train_labels (or a fitted density)")
        t_emb = check_embeddings(train_embeddings, name="train_embeddings")
        _check_same_width(cand_emb, t_emb, "embeddings", "train_embeddings")
        train_lab, _ = _check_train_labels(train_labels, n=t_emb.shape[0], n_classes=n_classes)
        density = _compute_class_density(t_emb, train_lab, n_classes, k, metric)
    else:
        density = _check_density(density, cand_emb.shape[1], "embeddings")
        if density.n_classes != n_classes:
            raise ValueError(f"density has K={density.n_classes} classes but pred_probs has K={n_classes} columns")
        if train_labels is not None:
            train_lab, _ = _check_train_labels(train_labels, n=density.embeddings.shape[0], n_classes=n_classes)
        else:
            train_lab = density.labels
    n_train = density.embeddings.shape[0]
    if train_ids is None:
        ids = np.arange(n_train, dtype=np.int64)
    else:
        ids = check_int_array_1d(train_ids, name="train_ids", n=n_train, n_name="train_embeddings")
    if thresholds is None:
        thr = _compute_confident_thresholds(labels, pred_probs, "as_predicted")
    else:
        thr = check_thresholds(thresholds, n_classes=n_classes)
    evidence = _check_transform_evidence(transform_evidence, len(cand))
    names = _as_class_names(class_names, n_classes)
    imbalance = _compute_imbalance(labels, pred_probs, train_lab, alpha)
    return _compute_suggestions(labels, pred_probs, cand, cand_emb, density, evidence, imbalance, thr, names, ids, alpha)


def _check_candidates(candidates, n: int) -> np.ndarray:
    arr = np.asarray(candidates)
    if arr.ndim != 1:
        raise ValueError(f"candidates must be 1-D (M,), got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"candidates must be an integer array, got dtype {arr.dtype}")
    unique = check_indices(arr, name="candidates", n=n, n_name="pred_probs")
    if unique.size != arr.size:
        raise ValueError("candidates repeats a row")
    return arr.astype(np.int64)

