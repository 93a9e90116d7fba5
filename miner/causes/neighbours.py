"""Exact k nearest neighbours of embeddings in bounded memory, and their label votes.

Vocabulary as in :mod:`hardcase.miner.scores`; ``queries`` (N, D) and ``references`` (M, D)
are embeddings from the model's embedding layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hardcase.miner._validation import (
    check_embeddings,
    check_indices,
    check_labels,
    check_positive_int,
    check_row_array,
)
from hardcase.miner.causes._common import DEFAULT_K, _check_metric, _check_same_width

__all__ = ["Neighbours", "nearest_neighbours", "neighbour_votes", "pool_neighbour_votes"]


#: Upper bound on the number of float32 distances held at once by the neighbour search
#: (64 MiB), so memory stays bounded for any number of queries and references.
_BLOCK_ELEMENTS = 1 << 24
_QUERY_ROWS = 1024


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


def _compute_pool_votes(
    queries: np.ndarray,
    query_rows: np.ndarray,
    embeddings,
    labels: np.ndarray,
    k: int,
    metric: str,
    n_classes: int,
    *,
    block_rows: int | None = None,
) -> np.ndarray:
    """Label votes of the ``k`` nearest labelled pool rows of prepared ``queries`` (M, D), the
    pool rows ``query_rows`` themselves excluded; ``embeddings`` (N, D) is read block by block
    (it may be a float16 memory map), at most ``_BLOCK_ELEMENTS`` values at a time by default."""
    m = queries.shape[0]
    best_d = np.full((m, k), np.inf, dtype=np.float32)
    best_i = np.full((m, k), -1, dtype=np.int64)
    n = len(labels)
    if block_rows is None:
        block_rows = max(k + 1, _BLOCK_ELEMENTS // max(queries.shape[1], 1))
    for r0 in range(0, n, block_rows):
        rows = r0 + np.flatnonzero(labels[r0 : r0 + block_rows] >= 0)
        if not rows.size:
            continue
        block = _prepare(np.asarray(embeddings[rows], dtype=np.float32), metric)
        kb = min(k + 1, rows.size)  # one more: a query may find itself
        dist, idx = _compute_knn(queries, block, kb, metric)
        idx = rows[idx]
        dist[idx == query_rows[:, None]] = np.inf
        cand_d = np.concatenate([best_d, dist], axis=1)
        cand_i = np.concatenate([best_i, idx], axis=1)
        part = np.argsort(cand_d, axis=1, kind="stable")[:, :k]
        best_d = np.take_along_axis(cand_d, part, axis=1)
        best_i = np.take_along_axis(cand_i, part, axis=1)
    best_i[~np.isfinite(best_d)] = -1
    neighbour_labels = np.where(best_i >= 0, labels[np.clip(best_i, 0, None)], -1)
    return _compute_votes(neighbour_labels, n_classes)


def pool_neighbour_votes(labels, *, embeddings, rows, n_classes: int, k: int = DEFAULT_K,
                         metric: str = "cosine") -> np.ndarray:
    """Share of the ``k`` nearest *other* labelled pool examples of each of ``rows`` carrying
    each label: what the pool itself says about an example's label.

    A wrong label is an isolated one: the examples nearest to a mislabeled image carry its true
    class. An image the model gets wrong for being unusual (another writer's hand, another
    camera) usually has look-alikes in the pool carrying its own label.

    Parameters
    ----------
    labels : np.ndarray, shape (N,), int
        The pool's labels; ``-1`` = unknown (never a neighbour).
    embeddings : array-like, shape (N, D)
        The pool's embeddings; anything sliceable by row (a float16 memory map is read a block
        of rows at a time, so memory stays bounded).
    rows : np.ndarray, shape (M,), int
        The pool rows to explain (each is left out of its own neighbours).
    n_classes : int
        K.
    k : int
        Neighbours.
    metric : {"cosine", "euclidean"}

    Returns
    -------
    np.ndarray, shape (M, K), float64
        Rows sum to 1 (0 for a row with no other labelled example in the pool).
    """
    n_classes = check_positive_int(n_classes, name="n_classes")
    labels = check_labels(labels, n=len(np.asarray(labels)), n_classes=n_classes, other="n_classes")
    metric = _check_metric(metric)
    k = check_positive_int(k, name="k")
    embeddings = check_row_array(embeddings, name="embeddings", n=len(labels), n_name="labels")
    check_indices(rows, name="rows", n=len(labels), n_name="labels")
    rows = np.asarray(rows, dtype=np.int64)
    queries = check_embeddings(np.asarray(embeddings[rows]), name="embeddings (rows)")
    return _compute_pool_votes(_prepare(queries, metric), rows, embeddings, labels, k, metric, n_classes)
