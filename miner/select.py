"""Choosing a small, diverse set of hard examples per class for human review.

Two building blocks:

- :func:`farthest_point_sampling`: greedy k-center over embeddings, built for
  10^6 x 128 float32 (one matrix-vector product per pick, an (N,) running
  min-distance vector, no N x n_select matrix).
- :func:`select_candidates`: per class (group), take the hardest pool and pick
  greedily, trading hardness against distance to what is already picked with a
  ``diversity`` weight in [0, 1] (0 = pure hardness order, 1 = pure k-center).

:func:`farthest_point_sampling` compares embeddings by Euclidean distance;
:func:`select_candidates` by default by the angle between them (cosine: the
Euclidean distance between unit-length rows), see its ``metric``. All in
float32. Everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from hardcase.miner._validation import (
    check_choice,
    check_embeddings,
    check_fraction,
    check_indices,
    check_int_array_1d,
    check_nonnegative_int,
    check_positive_int,
    check_values_1d,
)
from hardcase.miner.vocabulary import METRICS

__all__ = [
    "MAX_POOL",
    "MAX_POOL_FACTOR",
    "METRICS",
    "POOL_FACTOR",
    "POOL_QUANTILE",
    "Selection",
    "farthest_point_sampling",
    "select_candidates",
]

#: Default hard pool (see :func:`select_candidates`): the hardest
#: ``max(POOL_FACTOR * k, min(ceil(POOL_QUANTILE * n), max_pool))`` examples of
#: a group of n from which k are picked, i.e. the group's hardest quarter but
#: never fewer than 5 candidates per pick, and never more than ``max_pool``
#: (default ``max(MAX_POOL_FACTOR * k, MAX_POOL)``), so that memory and time do
#: not grow with n.
POOL_FACTOR = 5
POOL_QUANTILE = 0.25
MAX_POOL_FACTOR = 50
MAX_POOL = 10_000
#: Distances :func:`select_candidates` can compare embeddings by.


@dataclass(frozen=True)
class Selection:
    """The selected candidates, one entry per candidate, sorted by ``rank``.

    All arrays have shape (M,) and are read-only. M may be smaller than asked
    for when groups hold fewer examples than their quota.

    Attributes
    ----------
    indices : np.ndarray, int64
        Row of the candidate in the scored pool (0-based, as ``hardness``).
    group : np.ndarray, int64
        Its group (class) id.
    rank : np.ndarray, int64
        Global 0-based review rank; equal to ``arange(M)`` since the arrays are
        sorted by it. Groups are interleaved round-robin: rank first goes
        through every group's first pick, then every group's second pick, and
        so on; within a round, harder candidates come first. So any prefix of
        the review queue covers the classes evenly and, within a class, follows
        the greedy pick order.
    hardness_score : np.ndarray, float64
        Its hardness (lower = harder).
    pick_distance : np.ndarray, float64
        Distance (in the selection's ``metric``: for ``"cosine"`` the Euclidean
        distance between the unit-length embeddings, ``sqrt(2 - 2 cos)`` in
        [0, 2]) from the candidate to the nearest candidate already picked in
        its group at the moment it was picked (the distance that got it
        picked). NaN for pure hardness picks: every pick when
        ``diversity == 0`` and the first pick of each group.
    """

    indices: np.ndarray
    group: np.ndarray
    rank: np.ndarray
    hardness_score: np.ndarray
    pick_distance: np.ndarray

    def __post_init__(self) -> None:
        lengths = {f.name: np.shape(getattr(self, f.name)) for f in fields(self)}
        if len({shape for shape in lengths.values()}) != 1:
            raise ValueError(f"Selection arrays must share one shape (M,), got {lengths}")
        for f in fields(self):
            arr = np.array(getattr(self, f.name))  # private copy, then frozen
            arr.setflags(write=False)
            object.__setattr__(self, f.name, arr)

    def __len__(self) -> int:
        return int(self.indices.shape[0])


# ------------------------------------------------------------------ k-center core


def _half_sq_norms(x: np.ndarray) -> np.ndarray:
    """``0.5 * ||x_i||^2`` per row, float32."""
    half = np.einsum("ij,ij->i", x, x)
    half *= 0.5
    return half


def _update_min_half_d2(
    x: np.ndarray, half_sq: np.ndarray, j: int, min_half_d2: np.ndarray, buf: np.ndarray
) -> None:
    """``min_half_d2 = min(min_half_d2, 0.5 * ||x_i - x_j||^2)`` in place, one mat-vec.

    ``0.5 * ||x_i - x_j||^2 = half_sq_i - x_i . x_j + half_sq_j``.
    """
    np.dot(x, x[j], out=buf)
    np.subtract(half_sq, buf, out=buf)
    buf += half_sq[j]
    np.minimum(min_half_d2, buf, out=min_half_d2)


def _dist_from_half_d2(half_d2) -> np.ndarray:
    """Euclidean distance (float64) from half squared distances (clipped at 0)."""
    return np.sqrt(np.maximum(2.0 * np.asarray(half_d2, dtype=np.float64), 0.0))


def _check_norms(x: np.ndarray, half_sq: np.ndarray, name: str) -> None:
    bad = np.flatnonzero(~np.isfinite(half_sq))
    if bad.size:
        r = int(bad[0])
        raise ValueError(
            f"{name} row {r} is too large for float32 distances "
            f"(max abs {np.abs(x[r]).max():.3g}); rescale the embeddings"
        )


def _compute_fps(
    x: np.ndarray, half_sq: np.ndarray, n_select: int, initial: np.ndarray | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    min_half_d2 = np.full(n, np.inf, dtype=np.float32)
    buf = np.empty(n, dtype=np.float32)
    indices = np.empty(n_select, dtype=np.int64)
    distances = np.empty(n_select, dtype=np.float64)
    if initial is not None and initial.size:
        for j in initial:
            _update_min_half_d2(x, half_sq, int(j), min_half_d2, buf)
        min_half_d2[initial] = -np.inf
        cur = int(np.argmax(min_half_d2))
        distances[0] = _dist_from_half_d2(min_half_d2[cur])
    else:
        cur = int(np.random.default_rng(seed).integers(n))
        distances[0] = np.inf
    indices[0] = cur
    for i in range(1, n_select):
        _update_min_half_d2(x, half_sq, cur, min_half_d2, buf)
        min_half_d2[cur] = -np.inf  # never pick it again, even among exact duplicates
        cur = int(np.argmax(min_half_d2))
        indices[i] = cur
        distances[i] = _dist_from_half_d2(min_half_d2[cur])
    return indices, distances


def farthest_point_sampling(
    embeddings, n_select, *, initial=None, seed=0
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center (farthest-point) selection.

    Each step picks the point farthest from everything picked so far (and from
    ``initial``), which 2-approximates the smallest covering radius. Cost: one
    float32 matrix-vector product over the embeddings per pick, with squared
    norms computed once; memory: the embeddings (no copy when they are already
    C-contiguous float32) plus two (N,) float32 vectors.

    Parameters
    ----------
    embeddings : np.ndarray, shape (N, D)
        Finite; converted to float32.
    n_select : int
        Number of points to pick, ``1 <= n_select <= N - len(initial)``.
    initial : array_like of int, shape (M,), optional
        Rows of ``embeddings`` already selected (e.g. reviewed earlier). They
        are never returned, and distances are measured to them too (one extra
        mat-vec per initial row; duplicates are ignored).
    seed : int
        Seeds the first pick when ``initial`` is empty or None (a uniformly
        random row); with ``initial``, the first pick is the point farthest from
        it and the seed is unused.

    Returns
    -------
    indices : np.ndarray, shape (n_select,), int64
        Picked rows, in pick order, all distinct.
    distances : np.ndarray, shape (n_select,), float64
        ``distances[i]``: Euclidean distance from ``indices[i]`` to the nearest
        previously picked point (including ``initial``) at the time it was
        picked; ``inf`` for the first pick without ``initial``. Non-increasing
        after the first entry; the covering radius of the first ``i`` picks is
        ``distances[i]``.

    Raises
    ------
    TypeError, ValueError
        Bad embeddings (naming the row with NaN/inf), bad ``n_select``,
        ``initial`` out of range, or ``n_select`` larger than the points left.
    """
    x = check_embeddings(embeddings)
    n = x.shape[0]
    n_select = check_positive_int(n_select, name="n_select")
    seed = check_nonnegative_int(seed, name="seed")
    init = None if initial is None else check_indices(initial, name="initial", n=n)
    available = n - (0 if init is None else init.size)
    if n_select > available:
        extra = "" if init is None else f" ({init.size} of N={n} rows are in initial)"
        raise ValueError(
            f"n_select={n_select} but embeddings has only {available} rows to pick from{extra}"
        )
    half_sq = _half_sq_norms(x)
    _check_norms(x, half_sq, "embeddings")
    return _compute_fps(x, half_sq, n_select, init, seed)


# ------------------------------------------------------------------- selection


def _greedy_pick(
    hardness: np.ndarray, x: np.ndarray | None, k: int, diversity: float
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy hardness/diversity trade-off over one group's pool.

    ``hardness`` (m,) is sorted hardest first (ties already broken), ``x`` the
    matching (m, D) float32 embeddings. Returns positions into the pool in pick
    order and the pick distances (NaN for pure hardness picks).
    """
    m = hardness.shape[0]
    if diversity == 0.0 or x is None or k == 1:
        return np.arange(k), np.full(k, np.nan)
    span = hardness[-1] - hardness[0]
    goodness = (hardness[-1] - hardness) / span if span > 0 else np.ones(m)
    half_sq = _half_sq_norms(x)
    min_half_d2 = np.full(m, np.inf, dtype=np.float32)
    buf = np.empty(m, dtype=np.float32)
    picked = np.zeros(m, dtype=bool)
    order = np.empty(k, dtype=np.int64)
    dists = np.full(k, np.nan)
    cur = 0  # first pick: the hardest (no distance yet)
    for step in range(k):
        order[step] = cur
        picked[cur] = True
        if step == k - 1:
            break
        _update_min_half_d2(x, half_sq, cur, min_half_d2, buf)
        dist = _dist_from_half_d2(min_half_d2)
        dmax = dist[~picked].max()
        dist_term = dist / dmax if dmax > 0 else np.zeros(m)
        score = (1.0 - diversity) * goodness + diversity * dist_term
        score[picked] = -np.inf
        cur = int(np.argmax(score))  # ties: the harder (pool is hardest first)
        dists[step + 1] = dist[cur]
    return order, dists


def _default_max_pool(k: int) -> int:
    return max(MAX_POOL_FACTOR * k, MAX_POOL)


def _default_pool(k: int, n: int, max_pool: int) -> int:
    return max(POOL_FACTOR * k, min(math.ceil(POOL_QUANTILE * n), max_pool))


def _largest_remainder(total: int, weights: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Split ``total`` proportionally to integer ``weights`` (Hamilton's method).

    Floors first, then one extra each to the largest fractional parts (ties:
    larger weight, then smaller key). Each share is at most its weight when
    ``total <= weights.sum()``.
    """
    wsum = int(weights.sum())
    if total >= wsum:
        return weights.copy()
    exact = weights * total / wsum
    shares = np.floor(exact).astype(np.int64)
    left = total - int(shares.sum())
    if left:
        frac = exact - shares
        best = np.lexsort((keys, -weights, -frac))[:left]
        shares[best] += 1
    return shares


def select_candidates(
    hardness,
    *,
    groups,
    embeddings=None,
    per_class=None,
    budget=None,
    diversity=0.5,
    pool_size=None,
    max_pool=None,
    metric="cosine",
    seed=0,
) -> Selection:
    """Pick a small, diverse set of hard examples per group for review.

    1. **Order.** Examples are ordered hardest first (lowest ``hardness``);
       ties are broken by a permutation drawn from ``seed`` (not by row, so
       that ties do not favour the start of the input).
    2. **Quotas.** With ``per_class=k`` each group gets ``k`` (or all of its
       examples if it has fewer). With ``budget=B`` the hard pool is the
       ``pool_size`` hardest examples overall and ``B`` is split over the
       groups in proportion to how many of them each group holds (Hamilton's
       largest-remainder method; ties to the larger share, then the smaller
       group id): classes where the model fails more get more review, and a
       class with no example in the hard pool gets none.
    3. **Hard pool.** With ``per_class`` the pool of a group of ``n_g``
       examples is its ``pool_size`` hardest; with ``budget`` it is the group's
       part of the ``pool_size`` hardest overall. Default ``pool_size``:
       ``max(POOL_FACTOR * k, min(ceil(POOL_QUANTILE * n), max_pool))`` with
       ``POOL_FACTOR = 5``, ``POOL_QUANTILE = 0.25``, and ``k, n`` =
       (``per_class``, ``n_g``) per group or (``budget``, ``N``) overall. That
       is the hardest quarter (below the lower quartile of hardness, a cut that
       needs no calibration of the scores) but at least 5 candidates per pick
       and at most ``max_pool`` (default ``max(MAX_POOL_FACTOR * k, MAX_POOL)``
       = ``max(50 k, 10_000)``): the cap keeps the pool's float32 embeddings
       (``max_pool * D * 4`` bytes, 5 MB for D = 128) and the greedy pick's
       O(k * pool * D) time independent of the data size; below
       ``4 * max_pool`` examples per group (budget: overall) it never binds.
       Why not only a
       multiple of ``k``: near-copies of one failure have near-identical
       scores, so they fill a contiguous block of the hardness order; a pool of
       ``5k`` is swallowed by 200 copies when ``k = 10`` and diversity could
       not escape them. The quarter scales with the data, so such a block is
       only a part of the pool; the ``5k`` floor lets diversity skip up to 4 of
       every 5 hardness-order picks in small groups. Pool members far down the
       order are picked only when they are much farther from what is picked
       than the harder ones (the hardness term keeps them at a disadvantage).
       Cost: O(k * pool * D) time per group; memory: the pool's embeddings
       plus a few (N,) vectors (the tie-breaking permutation, one partition
       copy of ``hardness``); the embeddings are read only at the pool's rows,
       so a float16 memory map is never copied whole.
    4. **Greedy pick** within each group's pool (sorted hardest first). The
       first pick is the hardest example. Each next pick maximises
       ``(1 - diversity) * g + diversity * d / d_max``, where
       ``g = (h_max - h) / (h_max - h_min)`` is the min-max scaled hardness over
       the pool (1 = hardest), ``d`` the distance (see ``metric``) to the nearest
       example already picked in the group and ``d_max`` the largest such
       distance among the unpicked: both terms lie in [0, 1], and the distance
       term is rescaled every step so the trade-off does not fade as the picks
       close in. ``diversity=0`` gives exactly the ``k`` hardest;
       ``diversity=1`` is farthest-point (k-center) sampling over the pool
       started at the hardest example; ties go to the harder example.
    5. **Metric.** ``metric="cosine"`` (default) compares the directions of
       the embeddings (each pool row scaled to unit length; an all-zero row
       stays at the origin), ``"euclidean"`` the raw vectors. Why cosine: the
       length of a penultimate-layer (ReLU) embedding mostly tracks how
       strongly the network responds, i.e. its confidence, which the hardness
       term already weighs; with raw distances, low-confidence failures
       (rotated, warped digits) huddle near the origin, look alike and lose
       the farthest-point contest to confident outliers, while the direction
       says *what* the network sees, which is the diversity a reviewer wants.

    Parameters
    ----------
    hardness : np.ndarray, shape (N,)
        Finite scores, lower = harder (e.g. ``hardness_score``).
    groups : np.ndarray, shape (N,), int
        Group (class) of each example: the given label where known, else the
        predicted class (computed by the caller). Any integers.
    embeddings : np.ndarray, shape (N, D), optional
        Needed when ``diversity > 0``; converted to float32.
    per_class : int, optional
        Number to select per group. Exactly one of ``per_class`` and ``budget``.
    budget : int, optional
        Total number to select, spread over the groups as above.
    diversity : float in [0, 1]
        Weight of distance against hardness; 0 = pure hardness order.
    pool_size : int, optional
        Size of the hard pool: per group with ``per_class`` (must be >=
        ``per_class``), overall with ``budget`` (must be >= ``budget``).
        Default: ``max(POOL_FACTOR * k, min(ceil(POOL_QUANTILE * n),
        max_pool))`` (see 3.).
    metric : {"cosine", "euclidean"}
        Distance between embeddings for the diversity term (see 5.).
    max_pool : int, optional
        Upper bound of the default pool (ignored when ``pool_size`` is given);
        must be >= ``per_class`` / ``budget``. Default
        ``max(MAX_POOL_FACTOR * k, MAX_POOL)``.
    seed : int
        Seeds the tie-breaking permutation.

    Returns
    -------
    Selection
        Sorted by ``rank`` (round-robin over groups, see :class:`Selection`).

    Raises
    ------
    TypeError, ValueError
        Bad arrays (naming the argument and index), neither or both of
        ``per_class``/``budget``, ``diversity > 0`` without ``embeddings``,
        ``pool_size`` smaller than the request.
    """
    h = check_values_1d(hardness, name="hardness")
    n = h.shape[0]
    g = check_int_array_1d(groups, name="groups", n=n, n_name="hardness")
    if (per_class is None) == (budget is None):
        raise ValueError(
            f"pass exactly one of per_class and budget, got per_class={per_class!r}, "
            f"budget={budget!r}"
        )
    mode = "per_class" if per_class is not None else "budget"
    k = check_positive_int(per_class if per_class is not None else budget, name=mode)
    diversity = check_fraction(diversity, name="diversity")
    if pool_size is None:
        pool = None
    else:
        pool = check_positive_int(pool_size, name="pool_size")
        if pool < k:
            raise ValueError(f"pool_size={pool} must be >= {mode}={k}")
    if max_pool is None:
        cap = _default_max_pool(k)
    else:
        cap = check_positive_int(max_pool, name="max_pool")
        if cap < k:
            raise ValueError(f"max_pool={cap} must be >= {mode}={k}")
    metric = check_choice(metric, name="metric", choices=METRICS)
    seed = check_nonnegative_int(seed, name="seed")
    x = None
    if diversity > 0:
        if embeddings is None:
            raise ValueError(
                f"diversity={diversity} needs embeddings; pass embeddings=... or diversity=0 "
                "for pure hardness order"
            )
        x = _checked_in_chunks(embeddings, n)
    elif embeddings is not None:
        _checked_in_chunks(embeddings, n)
    return _compute_selection(h, g, x, mode, k, pool, cap, diversity, metric, seed)


_CHECK_CHUNK = 65_536


def _checked_in_chunks(embeddings, n: int):
    """Validate (N, D) embeddings chunk by chunk and return them unconverted.

    Only the hard pool's rows are converted to float32 later, so a float16 memory map of
    10^6 embeddings is never copied whole.
    """
    if not hasattr(embeddings, "shape") or getattr(embeddings, "ndim", 0) != 2:
        return check_embeddings(embeddings, n=n, n_name="hardness")
    if embeddings.shape[0] != n:
        check_embeddings(embeddings, n=n, n_name="hardness")  # raises the row-count error
    for start in range(0, n, _CHECK_CHUNK):
        chunk = check_embeddings(embeddings[start : start + _CHECK_CHUNK])
        try:
            _check_norms(chunk, _half_sq_norms(chunk), "embeddings")
        except ValueError as exc:
            raise ValueError(f"{exc} (in rows starting at {start})") from None
    return embeddings


def _hardest(candidates: np.ndarray | None, h: np.ndarray, tiebreak: np.ndarray, m: int) -> np.ndarray:
    """The ``m`` hardest of ``candidates`` (rows; None = all), hardest first, ties by ``tiebreak``.

    Equal to ``candidates[np.lexsort((tiebreak[candidates], h[candidates]))[:m]]`` but sorts
    only the rows at or below the m-th smallest hardness (one partition, no full sort).
    """
    hc = h if candidates is None else h[candidates]
    if m < hc.shape[0]:
        cut = np.partition(hc, m - 1)[m - 1]
        keep = np.flatnonzero(hc <= cut)
        candidates = keep if candidates is None else candidates[keep]
        hc = hc[keep]
    elif candidates is None:
        candidates = np.arange(hc.shape[0])
    return candidates[np.lexsort((tiebreak[candidates], hc))[:m]]


def _compute_selection(
    h: np.ndarray,
    g: np.ndarray,
    x: np.ndarray | None,
    mode: str,
    k: int,
    pool: int | None,
    cap: int,
    diversity: float,
    metric: str,
    seed: int,
) -> Selection:
    n = h.shape[0]
    # a permutation of 0..n-1 breaks ties; int32 halves its memory and sorts the same
    tiebreak = np.random.default_rng(seed).permutation(n)
    if n < 2**31:
        tiebreak = tiebreak.astype(np.int32)

    # each group's pool, hardest first (ties by tiebreak); pools/quotas in group-id order
    if mode == "budget":
        top = _hardest(None, h, tiebreak, min(n, _default_pool(k, n, cap) if pool is None else pool))
        by_group = top[np.argsort(g[top], kind="stable")]
        group_ids, starts, counts = np.unique(g[by_group], return_index=True, return_counts=True)
        pools = [by_group[a : a + c] for a, c in zip(starts, counts, strict=True)]
        quotas = _largest_remainder(k, counts, group_ids)
    else:
        # one stable sort groups the rows (ascending within a group), not one scan per group
        by_group = np.argsort(g, kind="stable")
        group_ids, starts, counts = np.unique(g[by_group], return_index=True, return_counts=True)
        pools, quotas = [], []
        for a, c in zip(starts.tolist(), counts.tolist(), strict=True):
            members = by_group[a : a + c]
            m = min(c, _default_pool(k, c, cap) if pool is None else pool)
            pools.append(_hardest(members, h, tiebreak, m))
            quotas.append(min(c, k))

    sel_idx, sel_round, sel_dist = [], [], []
    for members, q in zip(pools, quotas, strict=True):
        if q == 0:
            continue
        xp = None if x is None else np.ascontiguousarray(x[members], dtype=np.float32)
        if xp is not None and metric == "cosine":
            norms = np.sqrt(np.einsum("ij,ij->i", xp, xp))
            xp /= np.where(norms > 0, norms, 1.0)[:, None]
        local, dist = _greedy_pick(h[members], xp, int(q), diversity)
        sel_idx.append(members[local])
        sel_round.append(np.arange(q))
        sel_dist.append(dist)

    if not sel_idx:
        empty_i, empty_f = np.empty(0, np.int64), np.empty(0, np.float64)
        return Selection(empty_i, empty_i, empty_i, empty_f, empty_f)
    idx = np.concatenate(sel_idx)
    rounds = np.concatenate(sel_round)
    dist = np.concatenate(sel_dist)
    # round-robin; within a round, in the global hardness order (ties by tiebreak)
    ranked = np.lexsort((tiebreak[idx], h[idx], rounds))
    idx, dist = idx[ranked], dist[ranked]
    return Selection(
        indices=idx,
        group=g[idx],
        rank=np.arange(idx.shape[0], dtype=np.int64),
        hardness_score=h[idx],
        pick_distance=dist,
    )
