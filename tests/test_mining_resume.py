"""A mining run killed with SIGKILL and started again ends exactly like an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
from sqlalchemy import func, select

from hardcase.review_app.workflows.mining import MiningOptions, mine
from hardcase.store.db import open_store
from hardcase.store.export import export_rows
from hardcase.store.schema import Sample, Score

N = 4000


def _pool(tmp_path, mnist_small):
    train_x, train_y, pool_x, pool_y = mnist_small
    images = np.concatenate([train_x, pool_x])[:N, ..., 0]
    labels = np.concatenate([train_y, pool_y])[:N]
    path = tmp_path / "pool.npz"
    np.savez(path, x=images, y=labels)
    return path


def _options(model, data, run="r"):
    return MiningOptions(run_name=run, model_path=str(model), data_path=str(data), per_class=4, batch_size=16)


def _snapshot(store, run):
    columns, scores = export_rows(store, run, "scores")
    _, candidates = export_rows(store, run, "candidates")
    drop = columns.index("sample_id")

    def without_ids(rows):
        return sorted(tuple(v for i, v in enumerate(r) if i != drop) for r in rows)

    return without_ids(scores), without_ids(candidates)


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, demo_model_path, mnist_small):
    data = _pool(tmp_path, mnist_small)
    db = tmp_path / "killed.db"
    artifacts = tmp_path / "killed_artifacts"
    process = subprocess.Popen(
        [sys.executable, "-m", "hardcase.review_app.cli", "mine", "--model", str(demo_model_path), "--data", str(data),
         "--db", f"sqlite:///{db}", "--run", "r", "--per-class", "4", "--batch-size", "16", "--checkpoint-seconds", "0", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    done_path = artifacts / "r" / "done.npy"
    deadline = time.monotonic() + 180
    progressed = 0
    while time.monotonic() < deadline and process.poll() is None:
        if done_path.exists():
            try:
                progressed = int((np.load(done_path, mmap_mode="r") > 0).sum())
            except (ValueError, OSError, EOFError):  # the file exists before its header is written
                progressed = 0
            if progressed >= 400:
                break
        time.sleep(0.01)
    assert process.poll() is None, f"mining finished before it could be killed: {process.stderr.read()[-500:]}"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert 400 <= progressed < N

    store = open_store(f"sqlite:///{db}")
    report = mine(store, _options(demo_model_path, data), artifacts_dir=artifacts, progress=False)
    assert report.resumed_from >= 400
    assert report.n_scored == N and report.n_errors == 0
    with store.Session.begin() as session:
        assert session.scalar(select(func.count()).select_from(Sample)) == N
        assert session.scalar(select(func.count()).select_from(Score)) == N

    fresh = open_store(f"sqlite:///{tmp_path / 'fresh.db'}")
    mine(fresh, _options(demo_model_path, data), artifacts_dir=tmp_path / "fresh_artifacts", progress=False)
    resumed_scores, resumed_candidates = _snapshot(store, "r")
    fresh_scores, fresh_candidates = _snapshot(fresh, "r")
    assert resumed_scores == fresh_scores
    assert resumed_candidates == fresh_candidates


def test_streamed_scores_equal_whole_pool_scores_and_missing_ones_are_completed(tmp_path, demo_model_path,
                                                                                 mnist_small):
    """Scores stored batch by batch (label quality at the end, from the pool's embeddings) equal
    compute_scores over the whole pool; a run whose stored scores went missing (e.g. started by a
    version that stored them only at the end) gets them when it is finished again."""
    from hardcase.miner.scores import compute_scores
    from hardcase.miner.vocabulary import SCORE_FIELDS
    from hardcase.store import api

    train_x, train_y, pool_x, pool_y = mnist_small
    images, labels = pool_x[:600, ..., 0], pool_y[:600].copy()
    labels[::7] = -1  # some unknown labels
    data = tmp_path / "pool.npz"
    np.savez(data, x=images, y=labels)
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    options = MiningOptions(run_name="s", model_path=str(demo_model_path), data_path=str(data), per_class=3,
                            batch_size=64, suggest=False, checkpoint_seconds=0)
    artifacts = tmp_path / "art"
    mine(store, options, artifacts_dir=artifacts, progress=False)
    probs = np.load(artifacts / "s" / "pred_probs.npy")
    expected = compute_scores(probs.astype(np.float64), labels=labels)
    # the exported label quality weighs in the pool's own embeddings (miner.causes.label_issues)
    from hardcase.miner.causes.label_issues import pool_label_quality_score

    expected["label_quality_score"] = pool_label_quality_score(
        labels, probs.astype(np.float64), embeddings=np.load(artifacts / "s" / "embeddings.npy"))
    columns, rows = export_rows(store, "s", "scores")
    rows = sorted(rows, key=lambda row: row[columns.index("source_index")])
    assert len(rows) == 600
    for field in SCORE_FIELDS[1:]:
        got = np.array([np.nan if row[columns.index(field)] in (None, "") else float(row[columns.index(field)])
                        for row in rows])
        np.testing.assert_allclose(got, expected[field], rtol=1e-12, atol=1e-15, equal_nan=True, err_msg=field)
    assert np.isnan(expected["label_quality_score"][::7]).all() and np.isfinite(expected["label_quality_score"][1::7]).all()
    before = _snapshot(store, "s")

    with store.Session.begin() as session:
        run = api.require_run(session, "s")
        session.execute(Score.__table__.delete().where(Score.run_id == run.id, Score.sample_id % 2 == 0))
        api.set_run_status(session, run.id, "running")
    mine(store, options, artifacts_dir=artifacts, progress=False)
    assert _snapshot(store, "s") == before


def test_a_writer_error_stops_the_run_with_its_message_and_keeps_what_was_stored(tmp_path, demo_model_path,
                                                                                 mnist_small):
    # the same file (same dataset) changed under a later run: the writer thread's hash check
    # fails at the changed row; the error reaches the caller and the first run is untouched
    import pytest

    from hardcase.store.errors import StoreError

    data = _pool(tmp_path, mnist_small)
    store = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    mine(store, _options(demo_model_path, data, run="first"), artifacts_dir=tmp_path / "a", progress=False)
    before = _snapshot(store, "first")
    with np.load(data) as z:
        images, labels = z["x"].copy(), z["y"]
    images[3000] = 255 - images[3000]
    np.savez(data, x=images, y=labels)
    with pytest.raises(StoreError, match=r"sample 3000 of dataset \d+ changed"):
        mine(store, _options(demo_model_path, data, run="second"), artifacts_dir=tmp_path / "a", progress=False)
    assert _snapshot(store, "first") == before
    done = np.load(tmp_path / "a" / "second" / "done.npy")
    assert done[3000] == 0 and done.sum() < N  # the failed rows are not marked scored: a rerun retries them
    store.dispose()


def test_a_run_that_fails_during_suggestion_resumes_there(tmp_path, demo_model_path, mnist_small, monkeypatch):
    """The error marks the run failed with its reason; mined again, it scores nothing again and
    ends with the suggestions an uninterrupted run stores."""
    import hardcase.review_app.workflows.suggest as suggest
    from hardcase.store import api

    data = _pool(tmp_path, mnist_small)
    clean = open_store(f"sqlite:///{tmp_path / 'clean.db'}")
    mine(clean, _options(demo_model_path, data), artifacts_dir=tmp_path / "clean_art", progress=False)
    expected = _snapshot(clean, "r")
    clean.dispose()

    store = open_store(f"sqlite:///{tmp_path / 'failing.db'}")
    real_search = suggest.search_transforms

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(suggest, "search_transforms", broken)
    try:
        mine(store, _options(demo_model_path, data), artifacts_dir=tmp_path / "art", progress=False)
    except OSError:
        pass
    else:
        raise AssertionError("the suggestion stage should have failed")
    with store.Session.begin() as session:
        run = api.require_run(session, "r")
        assert run.status == "failed" and "No space left on device" in run.failure
        assert run.n_scored + run.n_errors == run.n_total == N
    done_before = np.load(tmp_path / "art" / "r" / "done.npy").copy()

    monkeypatch.setattr(suggest, "search_transforms", real_search)
    import hardcase.review_app.workflows.mining as mining

    def rescored(*args, **kwargs):
        raise AssertionError("the scoring stage ran again")

    monkeypatch.setattr(mining, "_score_and_select", rescored)
    report = mine(store, _options(demo_model_path, data), artifacts_dir=tmp_path / "art", progress=False)
    assert report.suggestions and "suggested causes" in report.suggestions
    np.testing.assert_array_equal(np.load(tmp_path / "art" / "r" / "done.npy"), done_before)
    with store.Session.begin() as session:
        run = api.require_run(session, "r")
        assert run.status == "done" and run.failure is None
    assert _snapshot(store, "r") == expected
    store.dispose()
