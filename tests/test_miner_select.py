"""Ground-truth tests for miner.select: k-center sampling and candidate selection."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardcase.miner.select import (
    POOL_FACTOR,
    Selection,
    _largest_remainder,
    farthest_point_sampling,
    select_candidates,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REPO = Path(__file__).resolve().parents[1]


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def covering_radius(x: np.ndarray, centers: np.ndarray) -> float:
    return float(pairwise(x, x[centers]).min(axis=1).max())


def naive_fps(x: np.ndarray, n_select: int, first: int) -> list[int]:
    """Textbook farthest-point sampling in float64 (reference)."""
    d = pairwise(x, x)
    picks = [first]
    while len(picks) < n_select:
        dist = d[:, picks].min(axis=1)
        dist[picks] = -1
        picks.append(int(dist.argmax()))
    return picks


def blobs(rng, n_per: int, centers: np.ndarray, scale: float) -> np.ndarray:
    return np.concatenate(
        [c + scale * rng.standard_normal((n_per, centers.shape[1])) for c in centers]
    ).astype(np.float32)


# ------------------------------------------------------------ farthest_point_sampling


@SETTINGS
@given(
    n=st.integers(2, 60),
    d=st.integers(1, 6),
    frac=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**31),
)
def test_fps_matches_reference_and_reports_pick_distances(n, d, frac, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32) * 3
    k = max(1, int(frac * n))
    idx, dist = farthest_point_sampling(x, k, seed=seed)
    assert idx.shape == (k,) and dist.shape == (k,)
    assert idx.dtype == np.int64 and dist.dtype == np.float64
    assert len(set(idx.tolist())) == k
    assert dist[0] == np.inf
    for i in range(1, k):
        expected = pairwise(x[idx[i : i + 1]], x[idx[:i]]).min()
        assert dist[i] == pytest.approx(expected, rel=1e-3, abs=1e-3)
    # greedy: non-increasing distances, and each pick is (within float32) the farthest
    assert np.all(np.diff(dist[1:]) <= 1e-3)
    ref = naive_fps(x, k, int(idx[0]))
    dref = pairwise(x, x)
    for i in range(1, k):
        best = dref[:, ref[:i]].min(axis=1).max()
        assert dist[i] == pytest.approx(best, rel=1e-3, abs=1e-3)


def test_fps_equals_textbook_on_generic_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    idx, _ = farthest_point_sampling(x, 40, seed=5)
    assert idx.tolist() == naive_fps(x, 40, int(idx[0]))


def test_fps_initial_set():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    initial = np.array([3, 50, 50, 199])
    idx, dist = farthest_point_sampling(x, 10, initial=initial)
    assert not set(idx.tolist()) & {3, 50, 199}
    to_initial = pairwise(x, x[[3, 50, 199]]).min(axis=1)
    assert idx[0] == int(np.argmax(np.where(np.isin(np.arange(200), initial), -1, to_initial)))
    assert dist[0] == pytest.approx(to_initial.max(), rel=1e-4)
    # seed is irrelevant with an initial set
    np.testing.assert_array_equal(farthest_point_sampling(x, 10, initial=initial, seed=9)[0], idx)
    # the picks continue an FPS run that had picked the initial points
    full, _ = farthest_point_sampling(x, 12, initial=[3])
    cont, _ = farthest_point_sampling(x, 10, initial=[3, int(full[0])])
    np.testing.assert_array_equal(cont, full[1:11])


def test_fps_deterministic_and_seeded():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((500, 4))  # float64 input is converted
    a = farthest_point_sampling(x, 20, seed=7)
    b = farthest_point_sampling(x, 20, seed=7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    firsts = {int(farthest_point_sampling(x, 1, seed=s)[0][0]) for s in range(10)}
    assert len(firsts) > 1


def test_fps_duplicates_and_select_all():
    x = np.zeros((5, 3), dtype=np.float32)
    x[4] = 1.0
    idx, dist = farthest_point_sampling(x, 5, seed=0)
    assert sorted(idx.tolist()) == [0, 1, 2, 3, 4]
    assert np.isinf(dist[0]) and (dist[1:] >= 0).all()
    np.testing.assert_allclose(np.sort(dist[1:]), [0, 0, 0, np.sqrt(3)], atol=1e-6)


def test_fps_beats_random_covering_radius():
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((30, 16)) * 6
    x = blobs(rng, 40, centers, 0.5)
    idx, _ = farthest_point_sampling(x, 30, seed=0)
    fps_r = covering_radius(x, idx)
    random_r = [covering_radius(x, rng.choice(len(x), 30, replace=False)) for _ in range(20)]
    assert fps_r < min(random_r)
    assert fps_r < 0.5 * np.median(random_r)
    # one pick per blob: k-center finds all 30 clusters
    assert len(set((idx // 40).tolist())) == 30


@pytest.mark.parametrize(
    "call, exc, pattern",
    [
        (lambda x: farthest_point_sampling(x, 0), ValueError, r"n_select must be >= 1, got 0"),
        (lambda x: farthest_point_sampling(x, True), TypeError, r"n_select must be an int"),
        (lambda x: farthest_point_sampling(x, 2.0), TypeError, r"n_select must be an int"),
        (
            lambda x: farthest_point_sampling(x, 11),
            ValueError,
            r"n_select=11 but embeddings has only 10 rows",
        ),
        (
            lambda x: farthest_point_sampling(x, 9, initial=[0, 1]),
            ValueError,
            r"only 8 rows to pick from \(2 of N=10 rows are in initial\)",
        ),
        (
            lambda x: farthest_point_sampling(x, 2, initial=[0, 10]),
            ValueError,
            r"initial has value 10 at position 1 but embeddings has N=10 rows",
        ),
        (lambda x: farthest_point_sampling(x, 2, seed=-1), ValueError, r"seed must be >= 0"),
        (
            lambda x: farthest_point_sampling(x[0], 2),
            ValueError,
            r"embeddings must be 2-D with shape \(N, D\), got shape \(4,\)",
        ),
        (lambda x: farthest_point_sampling(x.astype(str), 2), TypeError, r"embeddings must be"),
        (
            lambda x: farthest_point_sampling(np.where(np.arange(10)[:, None] == 6, np.nan, x), 2),
            ValueError,
            r"embeddings row 6 contains NaN \(column 0\)",
        ),
        (
            lambda x: farthest_point_sampling(x * 1e30, 2),
            ValueError,
            r"embeddings row 0 .*too large",
        ),
        (
            lambda x: farthest_point_sampling(x.astype(np.float64) * 1e300, 2),
            ValueError,
            r"embeddings row 0 has a value too large for float32",
        ),
    ],
)
def test_fps_errors(call, exc, pattern):
    x = np.arange(40, dtype=np.float32).reshape(10, 4) + 1
    with pytest.raises(exc, match=pattern):
        call(x)


# ------------------------------------------------------------------ select_candidates


@SETTINGS
@given(
    n=st.integers(1, 120),
    n_groups=st.integers(1, 6),
    k=st.integers(1, 12),
    seed=st.integers(0, 1000),
)
def test_diversity_zero_is_the_k_hardest_per_group(n, n_groups, k, seed):
    rng = np.random.default_rng(seed)
    hardness = rng.permutation(n) / n  # distinct
    groups = rng.integers(0, n_groups, n) * 3 - 2  # arbitrary ids, incl. negative
    sel = select_candidates(hardness, groups=groups, per_class=k, diversity=0.0, seed=seed)
    for grp in np.unique(groups):
        members = np.flatnonzero(groups == grp)
        expected = members[np.argsort(hardness[members])[:k]]
        got = sel.indices[sel.group == grp]
        np.testing.assert_array_equal(got, expected)  # hardness order within a group
    assert len(sel) == sum(min(k, int((groups == g).sum())) for g in np.unique(groups))
    assert np.isnan(sel.pick_distance).all()
    np.testing.assert_array_equal(sel.rank, np.arange(len(sel)))
    np.testing.assert_array_equal(sel.hardness_score, hardness[sel.indices])
    np.testing.assert_array_equal(sel.group, groups[sel.indices])
    # with embeddings, diversity=0 ignores them
    emb = rng.standard_normal((n, 3))
    sel2 = select_candidates(hardness, groups=groups, embeddings=emb, per_class=k, diversity=0)
    np.testing.assert_array_equal(sel2.indices, sel.indices)


def test_diversity_zero_with_ties_takes_the_tied_hardest():
    hardness = np.array([0.1, 0.1, 0.1, 0.1, 0.5, 0.05])
    groups = np.zeros(6, dtype=int)
    picks = {
        tuple(
            sorted(
                select_candidates(
                    hardness, groups=groups, per_class=3, diversity=0, seed=s
                ).indices.tolist()
            )
        )
        for s in range(20)
    }
    assert all(5 in p and 4 not in p for p in picks)
    assert len(picks) > 1  # ties broken by the seed, not by row


def test_rank_interleaves_groups_round_robin():
    hardness = np.array([0.9, 0.1, 0.2, 0.3, 0.05, 0.6, 0.4])
    groups = np.array([0, 0, 0, 1, 1, 1, 2])
    sel = select_candidates(hardness, groups=groups, per_class=2, diversity=0)
    # round 0: hardest of each group, hardest first; round 1: second picks
    assert sel.indices.tolist() == [4, 1, 6, 2, 3]
    assert sel.group.tolist() == [1, 0, 2, 0, 1]


def _duplicates_and_clusters(seed: int = 0):
    """200 near-copies of one failure (the hardest), 5 distinct hard clusters of 20,
    700 easy examples, all in one class."""
    rng = np.random.default_rng(seed)
    d = 32
    centers = rng.standard_normal((6, d)) * 10
    copies = centers[0] + 0.01 * rng.standard_normal((200, d))
    clusters = np.concatenate([c + 0.5 * rng.standard_normal((20, d)) for c in centers[1:]])
    easy = rng.standard_normal((700, d)) * 10
    emb = np.concatenate([copies, clusters, easy]).astype(np.float32)
    cluster_id = np.concatenate([np.zeros(200), np.repeat(np.arange(1, 6), 20), np.full(700, -1)])
    hardness = np.concatenate(
        [rng.uniform(0.0, 0.02, 200), rng.uniform(0.05, 0.3, 100), rng.uniform(0.6, 1.0, 700)]
    )
    perm = rng.permutation(len(hardness))
    return hardness[perm], emb[perm], cluster_id[perm].astype(int)


def test_diversity_escapes_near_duplicates():
    hardness, emb, cluster = _duplicates_and_clusters()
    groups = np.zeros(len(hardness), dtype=int)
    hits = {}
    for w in (0.0, 0.3, 0.5, 1.0):
        sel = select_candidates(hardness, groups=groups, embeddings=emb, per_class=10, diversity=w)
        assert len(sel) == 10
        hits[w] = set(cluster[sel.indices].tolist())
        assert -1 not in hits[w]  # never leaves the hard pool for an easy example
    assert hits[0.0] == {0}  # pure hardness: ten copies of one failure
    assert len(hits[0.3]) > 1
    assert hits[0.5] == hits[1.0] == {0, 1, 2, 3, 4, 5}
    sel = select_candidates(hardness, groups=groups, embeddings=emb, per_class=10, diversity=0.5,
                            metric="euclidean")
    assert set(cluster[sel.indices].tolist()) == {0, 1, 2, 3, 4, 5}
    assert np.isnan(sel.pick_distance[0]) and (sel.pick_distance[1:] > 1).all()
    # cosine (default): the five picks opening a new cluster are far apart on the unit sphere,
    # the later ones (inside clusters) close
    sel = select_candidates(hardness, groups=groups, embeddings=emb, per_class=10, diversity=0.5)
    assert (sel.pick_distance[1:6] > 1).all() and (sel.pick_distance[6:] < 0.3).all()
    # the default pool is the hardest quarter: a pool of only 5k is swallowed by the copies
    small = select_candidates(
        hardness,
        groups=groups,
        embeddings=emb,
        per_class=10,
        diversity=0.5,
        pool_size=POOL_FACTOR * 10,
    )
    assert set(cluster[small.indices].tolist()) == {0}


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_diversity_one_is_kcenter_over_the_pool_from_the_hardest(metric):
    rng = np.random.default_rng(4)
    n = 400
    hardness = rng.random(n)
    emb = rng.standard_normal((n, 8)).astype(np.float32) * rng.uniform(0.1, 10, (n, 1)).astype(np.float32)
    groups = np.zeros(n, dtype=int)
    sel = select_candidates(
        hardness, groups=groups, embeddings=emb, per_class=12, diversity=1.0, pool_size=150, metric=metric
    )
    pool = np.argsort(hardness)[:150]
    x = emb[pool] if metric == "euclidean" else emb[pool] / np.linalg.norm(emb[pool], axis=1, keepdims=True)
    idx, dist = farthest_point_sampling(x, 11, initial=[0])
    # picks in pick order = rank order (a single group)
    np.testing.assert_array_equal(sel.indices, np.concatenate([[pool[0]], pool[idx]]))
    np.testing.assert_allclose(sel.pick_distance[1:], dist, rtol=1e-6)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_pick_distance_is_distance_to_earlier_picks_of_the_group(metric):
    rng = np.random.default_rng(5)
    n = 300
    hardness = rng.random(n)
    groups = rng.integers(0, 3, n)
    emb = rng.standard_normal((n, 5)).astype(np.float32)
    sel = select_candidates(hardness, groups=groups, embeddings=emb, per_class=6, diversity=0.7, metric=metric)
    if metric == "cosine":
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for grp in range(3):
        picks = sel.indices[sel.group == grp]  # rank order = pick order within a group
        dist = sel.pick_distance[sel.group == grp]
        assert np.isnan(dist[0])
        for i in range(1, len(picks)):
            expected = pairwise(emb[picks[i : i + 1]], emb[picks[:i]]).min()
            assert dist[i] == pytest.approx(expected, rel=1e-4)


def test_cosine_diversity_covers_directions_not_magnitudes():
    """Five failure kinds that the network answers weakly (short embeddings in five
    directions) and one it answers strongly at varying strength (one direction, lengths
    5..50): cosine picks one of each kind, Euclidean spends its picks along the long one."""
    rng = np.random.default_rng(6)
    d = 16
    directions = np.linalg.qr(rng.standard_normal((d, 6)))[0].T  # 6 orthonormal directions
    weak = np.concatenate([0.5 * u + 0.01 * rng.standard_normal((20, d)) for u in directions[:5]])
    strong = rng.uniform(5, 50, (100, 1)) * directions[5] + 0.01 * rng.standard_normal((100, d))
    emb = np.concatenate([weak, strong]).astype(np.float32)
    kind = np.concatenate([np.repeat(np.arange(5), 20), np.full(100, 5)])
    hardness = rng.uniform(0.0, 0.1, len(kind))
    hardness[np.argmax(kind == 5)] = 0.0  # the hardest is a strong one
    groups = np.zeros(len(kind), dtype=int)
    picked = {}
    for metric in ("cosine", "euclidean"):
        sel = select_candidates(hardness, groups=groups, embeddings=emb, per_class=6, diversity=1.0,
                                pool_size=len(kind), metric=metric)
        picked[metric] = set(kind[sel.indices].tolist())
    assert picked["cosine"] == {0, 1, 2, 3, 4, 5}
    assert len(picked["euclidean"]) < 6


def test_max_pool_caps_the_default_pool():
    rng = np.random.default_rng(7)
    n = 4000
    hardness = rng.random(n)
    emb = rng.standard_normal((n, 4)).astype(np.float32)
    groups = rng.integers(0, 2, n)

    def within(sel, size, grp=None):
        members = np.arange(n) if grp is None else np.flatnonzero(groups == grp)
        allowed = members[np.argsort(hardness[members])[:size]]
        got = sel.indices if grp is None else sel.indices[sel.group == grp]
        return set(got.tolist()) <= set(allowed.tolist())

    kw = {"groups": groups, "embeddings": emb, "diversity": 1.0}
    # per class (~2000 each, quarter ~500): capped at 60, floored at POOL_FACTOR * k = 25
    assert not all(within(select_candidates(hardness, per_class=5, **kw), 60, grp) for grp in (0, 1))
    assert all(within(select_candidates(hardness, per_class=5, max_pool=60, **kw), 60, grp) for grp in (0, 1))
    assert all(within(select_candidates(hardness, per_class=5, max_pool=5, **kw), POOL_FACTOR * 5, grp)
               for grp in (0, 1))
    # budget: the overall pool (quarter = 1000)
    assert not within(select_candidates(hardness, budget=10, **kw), 60)
    assert within(select_candidates(hardness, budget=10, max_pool=60, **kw), 60)
    # a cap the quarter does not reach changes nothing
    a = select_candidates(hardness, budget=10, **kw)
    b = select_candidates(hardness, budget=10, max_pool=1000, **kw)
    np.testing.assert_array_equal(a.indices, b.indices)


def test_select_is_deterministic_for_a_seed():
    hardness, emb, _ = _duplicates_and_clusters(seed=1)
    groups = np.random.default_rng(0).integers(0, 4, len(hardness))
    for kwargs in ({"per_class": 7}, {"budget": 19}):
        a = select_candidates(hardness, groups=groups, embeddings=emb, seed=3, **kwargs)
        b = select_candidates(hardness, groups=groups, embeddings=emb, seed=3, **kwargs)
        for field in ("indices", "group", "rank", "hardness_score", "pick_distance"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_budget_is_split_in_proportion_to_hard_pool_sizes():
    # overall pool of 50: 30 from group 0, 15 from group 1, 5 from group 2
    hardness = np.concatenate(
        [
            np.linspace(0, 0.3, 30),
            np.linspace(0, 0.3, 15),
            np.linspace(0, 0.3, 5),
            np.full(100, 0.9),
        ]
    )
    groups = np.concatenate([np.zeros(30), np.ones(15), np.full(5, 2), np.arange(100) % 3])
    sel = select_candidates(
        hardness, groups=groups.astype(int), budget=10, pool_size=50, diversity=0
    )
    assert np.bincount(sel.group, minlength=3).tolist() == [6, 3, 1]
    assert (sel.hardness_score <= 0.3).all()
    # budget larger than the data: everything
    sel = select_candidates(hardness, groups=groups.astype(int), budget=1000, diversity=0)
    assert sorted(sel.indices.tolist()) == list(range(150))


def test_largest_remainder():
    np.testing.assert_array_equal(
        _largest_remainder(10, np.array([30, 15, 5]), np.arange(3)), [6, 3, 1]
    )
    np.testing.assert_array_equal(
        _largest_remainder(2, np.array([1, 1, 1]), np.arange(3)), [1, 1, 0]
    )
    np.testing.assert_array_equal(
        _largest_remainder(2, np.array([1, 2, 2]), np.arange(3)), [0, 1, 1]
    )
    np.testing.assert_array_equal(
        _largest_remainder(9, np.array([1, 2, 2]), np.arange(3)), [1, 2, 2]
    )


@SETTINGS
@given(
    n=st.integers(1, 200),
    n_groups=st.integers(1, 5),
    budget=st.integers(1, 60),
    w=st.floats(0, 1),
    seed=st.integers(0, 100),
)
def test_budget_invariants(n, n_groups, budget, w, seed):
    rng = np.random.default_rng(seed)
    hardness = rng.random(n)
    groups = rng.integers(0, n_groups, n)
    emb = rng.standard_normal((n, 4))
    sel = select_candidates(
        hardness, groups=groups, embeddings=emb, budget=budget, diversity=w, seed=seed
    )
    assert len(sel) == min(budget, n)
    assert len(set(sel.indices.tolist())) == len(sel)
    np.testing.assert_array_equal(sel.group, groups[sel.indices])
    np.testing.assert_array_equal(sel.hardness_score, hardness[sel.indices])
    pool = max(POOL_FACTOR * budget, -(-n // 4))
    assert set(sel.indices.tolist()) <= set(np.argsort(hardness, kind="stable")[:pool].tolist())


def test_empty_input_and_small_groups():
    sel = select_candidates(np.empty(0), groups=np.empty(0, dtype=int), per_class=3, diversity=0)
    assert len(sel) == 0 and sel.indices.dtype == np.int64
    sel = select_candidates([0.2, 0.1], groups=[0, 1], embeddings=[[0.0], [1.0]], per_class=3)
    assert sorted(sel.indices.tolist()) == [0, 1]


def test_selection_is_immutable():
    sel = select_candidates([0.3, 0.1, 0.2], groups=[0, 0, 0], per_class=2, diversity=0)
    assert isinstance(sel, Selection)
    with pytest.raises(FrozenInstanceError):
        sel.indices = np.array([0])
    with pytest.raises(ValueError):
        sel.indices[0] = 2
    with pytest.raises(ValueError, match="share one shape"):
        Selection(np.arange(2), np.arange(2), np.arange(2), np.zeros(2), np.zeros(3))


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        ({}, ValueError, r"pass exactly one of per_class and budget"),
        ({"per_class": 2, "budget": 3}, ValueError, r"pass exactly one of per_class and budget"),
        ({"per_class": 0}, ValueError, r"per_class must be >= 1, got 0"),
        ({"budget": 2.5}, TypeError, r"budget must be an int"),
        (
            {"per_class": 2, "embeddings": None},
            ValueError,
            r"diversity=0.5 needs embeddings; pass embeddings=\.\.\. or diversity=0",
        ),
        ({"per_class": 2, "diversity": 1.5}, ValueError, r"diversity must be in \[0, 1\], got 1.5"),
        ({"per_class": 2, "diversity": "high"}, TypeError, r"diversity must be a real number"),
        ({"per_class": 2, "pool_size": 1}, ValueError, r"pool_size=1 must be >= per_class=2"),
        ({"budget": 4, "pool_size": 3}, ValueError, r"pool_size=3 must be >= budget=4"),
        ({"budget": 4, "max_pool": 3}, ValueError, r"max_pool=3 must be >= budget=4"),
        ({"per_class": 2, "metric": "cityblock"}, ValueError, r"metric must be one of 'cosine', 'euclidean'"),
        ({"per_class": 2, "seed": -3}, ValueError, r"seed must be >= 0, got -3"),
        (
            {"per_class": 2, "hardness": [0.1, np.nan, 0.3, 0.4]},
            ValueError,
            r"hardness contains NaN at index 1",
        ),
        ({"per_class": 2, "hardness": [[0.1, 0.2, 0.3, 0.4]]}, ValueError, r"hardness must be 1-D"),
        (
            {"per_class": 2, "groups": [0, 1, 1]},
            ValueError,
            r"groups has length 3 but hardness has N=4 entries",
        ),
        (
            {"per_class": 2, "groups": [0.0, 1.0, 1.0, 0.0]},
            TypeError,
            r"groups must be an integer array, got shape \(4,\) and dtype float64",
        ),
        (
            {"per_class": 2, "embeddings": np.zeros((5, 2))},
            ValueError,
            r"embeddings has 5 rows but hardness has N=4 entries",
        ),
        (
            {"per_class": 2, "embeddings": [[0, 0], [0, np.inf], [1, 1], [2, 2]]},
            ValueError,
            r"embeddings row 1 contains inf \(column 1\)",
        ),
    ],
)
def test_select_errors(kwargs, exc, pattern):
    args = {
        "hardness": [0.1, 0.2, 0.3, 0.4],
        "groups": [0, 1, 1, 0],
        "embeddings": np.arange(8.0).reshape(4, 2),
    }
    args.update(kwargs)
    hardness = args.pop("hardness")
    with pytest.raises(exc, match=pattern):
        select_candidates(hardness, **args)


# ---------------------------------------------------------------------- bench smoke


@pytest.mark.slow
def test_select_scale_bench_runs_small():
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "select_scale.py"),
            "--sizes",
            "3000",
            "--dim",
            "16",
            "--n-select",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=REPO,
    ).stdout
    assert "farthest_point_sampling" in out and "bare loop" in out and "random" in out
