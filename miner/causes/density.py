"""How typical an embedding is of a class: the kNN density of each class's training embeddings.

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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hardcase.miner._validation import check_embeddings, check_labels, check_positive_int
from hardcase.miner.causes._common import _TINY, DEFAULT_K, _check_metric, _check_train_labels
from hardcase.miner.causes.neighbours import _compute_knn, _prepare

__all__ = ["ClassDensity", "Typicality", "class_typicality", "fit_class_density"]


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
