"""Mining from predictions a user already has, with no model (another framework, a slow model)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hardcase.miner.transform import Transform
from hardcase.review_app.workflows.mining import MiningInputError, MiningOptions, mine
from hardcase.review_app.workflows.recorded import NoModelError
from hardcase.review_app.workflows.review import ReviewService
from hardcase.store import api
from hardcase.store.db import open_store
from hardcase.store.export import export_rows

N, K, D = 300, 3, 8
NAMES = ["cat", "dog", "fox"]


@pytest.fixture
def recorded(tmp_path):
    """A labelled pool whose recorded predictions are right, except that rows FLIPPED carry wrong labels.

    Embeddings cluster by true class, so the flipped rows look like their true class.
    """
    rng = np.random.default_rng(0)
    truth = rng.integers(0, K, N)
    given = truth.copy()
    flipped = np.arange(5, N, 30)  # 10 rows
    given[flipped] = (truth[flipped] + 1) % K
    probs = np.full((N, K), 0.02)
    probs[np.arange(N), truth] = 0.96
    probs += rng.uniform(0, 0.01, (N, K))
    probs /= probs.sum(axis=1, keepdims=True)
    centres = rng.normal(0, 4, (K, D))
    embeddings = centres[truth] + rng.normal(0, 0.5, (N, D))
    images = rng.integers(0, 256, (N, 16, 16), dtype=np.uint8)
    np.savez(tmp_path / "pool.npz", x=images, y=given)
    np.save(tmp_path / "probs.npy", probs.astype(np.float32))
    np.save(tmp_path / "emb.npy", embeddings.astype(np.float32))
    return tmp_path, truth, flipped


def _options(folder, **kw):
    return MiningOptions(run_name="rec", model_path=None, data_path=str(folder / "pool.npz"),
                         predictions_path=str(folder / "probs.npy"), embeddings_path=str(folder / "emb.npy"),
                         class_names=NAMES, per_class=10, **kw)


def test_mines_scores_selects_and_suggests_without_a_model(recorded):
    folder, truth, flipped = recorded
    store = open_store(f"sqlite:///{folder / 'r.db'}")
    try:
        report = mine(store, _options(folder), artifacts_dir=folder / "art", progress=False)
        assert report.n_scored == N and report.n_errors == 0 and report.n_candidates == 30
        columns, rows = export_rows(store, "rec", "scores")
        rows = [dict(zip(columns, row)) for row in rows]
        assert len(rows) == N
        by_index = {row["source_index"]: row for row in rows}
        assert by_index[7]["uri"].endswith("pool.npz#7")  # an array row traces back as path#row
        # the flipped rows are the hardest by label quality, and every candidate group holds them
        quality = np.array([by_index[i]["label_quality_score"] for i in range(N)])
        assert set(np.argsort(quality)[: len(flipped)]) == set(flipped)
        columns, candidates = export_rows(store, "rec", "candidates")
        candidates = [dict(zip(columns, row)) for row in candidates]
        chosen = {row["source_index"]: row for row in candidates}
        assert set(flipped) <= set(chosen)
        called_mislabel = {i for i, row in chosen.items() if row["suggested_cause"] == "mislabel"}
        # every mislabel suggestion is a flipped row, with its true class; the typicality test at
        # alpha = 0.05 lets a couple of the ten look atypical of their class
        assert called_mislabel <= set(flipped) and len(called_mislabel) >= 8
        assert all(chosen[i]["suggested_label"] == NAMES[truth[i]] for i in called_mislabel)
        # no model: no transform search, so augment is never suggested
        assert not any(row["suggested_cause"] == "augment" for row in candidates)

        service = ReviewService(store)
        with store.Session.begin() as session:
            candidate_id = api.next_candidate(session, api.require_run(session, "rec").id, reviewer="ann",
                                              lease_seconds=60).id
        shown = service.predict_transformed(candidate_id, Transform())
        assert set(shown.probabilities) == set(NAMES) and abs(sum(shown.probabilities.values()) - 1) < 1e-4
        with pytest.raises(NoModelError, match="recorded predictions"):
            service.predict_transformed(candidate_id, Transform(rotate=30))
    finally:
        store.dispose()


def test_recorded_predictions_are_checked_at_the_door(recorded):
    folder, _, _ = recorded
    store = open_store(f"sqlite:///{folder / 'r.db'}")
    try:
        np.save(folder / "short.npy", np.full((N - 1, K), 1 / K, dtype=np.float32))
        with pytest.raises(ValueError, match=r"short.npy: predictions have shape \(299, 3\), expected \(300, K\)"):
            mine(store, MiningOptions(
                run_name="x", model_path=None, data_path=str(folder / "pool.npz"),
                predictions_path=str(folder / "short.npy")), artifacts_dir=folder / "art", progress=False)
        with pytest.raises(ValueError, match="3 columns but 4 class names"):
            mine(store, MiningOptions(run_name="y", model_path=None, data_path=str(folder / "pool.npz"),
                                      predictions_path=str(folder / "probs.npy"), class_names=["a", "b", "c", "d"]),
                 artifacts_dir=folder / "art", progress=False)
        with pytest.raises(MiningInputError, match="either a model or recorded predictions"):
            mine(store, MiningOptions(run_name="z", model_path="m.keras", data_path=str(folder / "pool.npz"),
                                      predictions_path=str(folder / "probs.npy")),
                 artifacts_dir=folder / "art", progress=False)
    finally:
        store.dispose()


def test_cli_mines_from_predictions(recorded):
    folder, _, _ = recorded
    result = subprocess.run(
        [sys.executable, "-m", "hardcase.review_app.cli", "mine", "--predictions", str(folder / "probs.npy"),
         "--embeddings", str(folder / "emb.npy"), "--data", str(folder / "pool.npz"), "--class-names", "cat,dog,fox",
         "--db", f"sqlite:///{folder / 'c.db'}", "--run", "c", "--per-class", "5", "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "300 scored + 0 errors = 300 samples; 15 candidates" in result.stdout
