"""A full disk is one clear line and nothing lost, on a small filesystem mounted for the test.

Mining whose artifacts folder cannot hold the run's arrays used to die of SIGBUS ("Bus error",
exit 135) with the run left ``running``; a review saved onto a full disk reached the reviewer
as SQLAlchemy's raw message. Each test mounts a tmpfs of a few megabytes (root only; skipped
where mounting is impossible, never in CI).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pgutil import in_ci, seed_run
from sqlalchemy import func, select

from hardcase.review_app.workflows.artifacts import SPACE_MARGIN, NoSpaceError, open_run_arrays
from hardcase.store import api
from hardcase.store.db import open_store
from hardcase.store.errors import StoreFullError
from hardcase.store.schema import Review


@contextlib.contextmanager
def small_filesystem(folder: Path, megabytes: int):
    """A tmpfs of ``megabytes`` mounted at ``folder``; ``remount(mb)`` resizes it."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        if in_ci():
            pytest.fail(f"cannot mount a tmpfs in CI: {mounted.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")

    def remount(size: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}m", str(folder)], check=True)

    try:
        yield remount
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_arrays_that_do_not_fit_are_refused_before_anything_is_written(tmp_path):
    with small_filesystem(tmp_path / "small", 20):
        folder = tmp_path / "small" / "run"
        with pytest.raises(NoSpaceError, match=r"no space left on device: the run's arrays need .* MB free"):
            open_run_arrays(folder, {"a.npy": (np.float32, (2_000_000, 2))})
        assert list(folder.iterdir()) == []  # nothing half-made to resume from
        arrays = open_run_arrays(folder, {"a.npy": (np.float32, (100, 2))})
        arrays["a.npy"][:] = 1.0
        arrays["a.npy"].flush()
        # the blocks are reserved, not sparse: a full disk later cannot turn a write into SIGBUS
        assert os.stat(folder / "a.npy").st_blocks * 512 >= 100 * 2 * 4
        assert SPACE_MARGIN < 20 * 1024 * 1024


def _mine(data: Path, model: Path, db: Path, artifacts: Path):
    return subprocess.run(
        [sys.executable, "-m", "hardcase.review_app.cli", "mine", "--model", str(model), "--data", str(data),
         "--db", f"sqlite:///{db}", "--artifacts", str(artifacts), "--run", "full", "--budget", "3",
         "--no-suggest", "--quiet"],
        capture_output=True, text=True, timeout=300,
    )


def test_mining_onto_a_full_disk_says_so_and_resumes_once_space_is_freed(tmp_path, demo_model_path, mnist_small):
    images, labels = mnist_small[2][:60], mnist_small[3][:60]
    data = tmp_path / "pool.npz"
    np.savez(data, x=images, y=labels)
    db = tmp_path / "store.db"
    artifacts = tmp_path / "artifacts"
    with small_filesystem(artifacts, 4) as remount:
        failed = _mine(data, demo_model_path, db, artifacts)
        assert failed.returncode == 1, failed.stderr[-800:]
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and "no space left on device" in lines[0], failed.stderr
        store = open_store(f"sqlite:///{db}")
        with store.Session() as session:
            run = api.get_run(session, "full")
            assert run.status == "failed" and "no space left" in run.failure
        remount(64)
        resumed = _mine(data, demo_model_path, db, artifacts)
        assert resumed.returncode == 0, resumed.stderr[-800:]
        with store.Session() as session:
            run = api.get_run(session, "full")
            assert run.status == "done" and run.n_scored == 60
        store.engine.dispose()


def test_a_review_saved_onto_a_full_disk_is_one_sentence_and_nothing_is_lost(tmp_path):
    folder = tmp_path / "db"
    with small_filesystem(folder, 3):
        store = open_store(f"sqlite:///{folder / 'team.db'}")
        seeded = seed_run(store, n_samples=12, n_candidates=6)
        candidate = seeded.candidate_ids[0]
        with store.Session.begin() as session:
            first = api.submit_review(session, candidate, reviewer="ana", cause="rare", seen_version=0)
        filler = folder / "filler"
        with open(filler, "wb") as handle:  # the rest of the device, to the last block
            with contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
        note = "x" * 200_000  # pages the full device cannot take
        with pytest.raises(StoreFullError) as caught:
            with store.Session.begin() as session:
                api.submit_review(session, candidate, reviewer="bo", cause="augment", note=note,
                                  seen_version=first.version)
        message = str(caught.value)
        assert "no space left on its device" in message and "nothing of this action was saved" in message
        assert "INSERT" not in message and "sqlite3" not in message
        filler.unlink()
        with store.Session.begin() as session:
            api.submit_review(session, candidate, reviewer="bo", cause="augment", note=note,
                              seen_version=first.version)
        with store.Session() as session:
            reviewers = session.scalars(select(Review.reviewer).where(Review.candidate_id == candidate)
                                        .order_by(Review.id)).all()
            assert reviewers == ["ana", "bo"]
            assert session.scalar(select(func.count()).select_from(Review)) == 2
        store.engine.dispose()
