"""Reliability under concurrency and crashes, on SQLite and PostgreSQL.

Worker processes are started with ``spawn`` and open their own store, like
separate review-app processes would.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import random
import signal
import time
from collections import defaultdict

import pytest
from pgutil import empty_database, seed_run
from sqlalchemy import func, select, text

from hardcase.store import api
from hardcase.store.db import current_revision, head_revision, open_store
from hardcase.store.export import export_rows
from hardcase.store.schema import Candidate, Review

DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
N_WRITERS = 8
REVIEWS_PER_WRITER = 250
N_CANDIDATES = 100
REVIEWED_CANDIDATES = 24
"""The reviews go to the first 24 candidates, so that writers often race on one."""
LEASES_PER_WORKER = 10
TIMEOUT = 180
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(params=DIALECTS)
def db_url(request, tmp_path):
    with empty_database(request.param, tmp_path) as url:
        yield url


# --------------------------------------------------------------------------- workers (in children)


def review_app_process(url, worker, barrier, seeded_event, progress, results):
    """One review-app process, in three phases synchronised with the others.

    1. open the (empty) database at the same moment as everyone else;
    2. lease ``LEASES_PER_WORKER`` candidates under distinct reviewer names;
    3. review: read a candidate's version (page render), then submit a
       review based on it in a second transaction, ``REVIEWS_PER_WRITER`` times.
    """
    try:
        barrier.wait(timeout=TIMEOUT)
        store = open_store(url)
        results.put(("opened", worker, current_revision(store)))

        assert seeded_event.wait(timeout=TIMEOUT), "the parent never seeded the run"
        with store.snapshot() as session:
            run_id = api.require_run(session, "run-1").id
            candidate_ids = session.scalars(
                select(Candidate.id).where(Candidate.run_id == run_id).order_by(Candidate.rank)
            ).all()
        taken = []
        for call in range(LEASES_PER_WORKER):
            with store.Session.begin() as session:
                candidate = api.next_candidate(session, run_id, reviewer=f"r{worker}-{call}")
                taken.append(None if candidate is None else candidate.id)
        results.put(("leased", worker, taken))

        barrier.wait(timeout=TIMEOUT)
        rng = random.Random(worker)
        done = []
        for number in range(REVIEWS_PER_WRITER):
            candidate_id = rng.choice(candidate_ids[:REVIEWED_CANDIDATES])
            with store.snapshot() as session:  # rendering the page: a read-only snapshot
                seen = api.get_candidate(session, candidate_id).version
            cause = rng.choice(["augment", "rare", "imbalance", "not_a_failure", "skip"])
            with store.Session.begin() as session:
                result = api.submit_review(
                    session,
                    candidate_id,
                    reviewer=f"w{worker}",
                    cause=cause,
                    seen_version=seen,
                    note=f"{number}",
                )
            done.append((result.review_id, candidate_id, seen, result.version, result.conflict))
            progress.put(result.review_id)
        store.dispose()
        results.put(("reviewed", worker, done))
    except BaseException as exc:  # reported, so the parent fails with the reason
        results.put(("failed", worker, f"{type(exc).__name__}: {exc}"))
        raise


def collect(results, kind: str, count: int) -> list:
    """The payloads of ``count`` messages of ``kind``, failing on a worker's error."""
    payloads = []
    while len(payloads) < count:
        got, worker, payload = results.get(timeout=TIMEOUT)
        assert got != "failed", f"worker {worker} failed: {payload}"
        assert got == kind, f"expected {kind!r} from worker {worker}, got {got!r}"
        payloads.append(payload)
    return payloads


def doomed_writer(url, candidate_id, n_commits, pipe):
    """Commit reviews, announcing each id after its commit; then die mid-transaction."""
    store = open_store(url)
    for number in range(n_commits):
        with store.Session.begin() as session:
            seen = api.get_candidate(session, candidate_id).version
            result = api.submit_review(
                session,
                candidate_id,
                reviewer="doomed",
                cause="rare",
                seen_version=seen,
                note=f"{number}",
            )
        pipe.send(("committed", result.review_id))
    with store.Session.begin() as session:
        seen = api.get_candidate(session, candidate_id).version
        result = api.submit_review(
            session, candidate_id, reviewer="doomed", cause="augment", seen_version=seen
        )
        pipe.send(("pending", result.review_id))
        time.sleep(600)  # killed here, holding the candidate lock and an open transaction


# --------------------------------------------------------------------------- tests


def test_eight_review_processes(db_url):
    """8 processes: concurrent first open, concurrent leasing, 8 x 250 racing reviews.

    Meanwhile the parent takes an export, which must be a consistent snapshot.
    """
    barrier = SPAWN.Barrier(N_WRITERS)
    seeded_event = SPAWN.Event()
    progress = SPAWN.Queue()
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(
            target=review_app_process,
            args=(db_url, worker, barrier, seeded_event, progress, results),
        )
        for worker in range(N_WRITERS)
    ]
    for process in processes:
        process.start()
    try:
        # phase 1: eight processes opened the empty database at once; it migrated once
        assert collect(results, "opened", N_WRITERS) == [head_revision()] * N_WRITERS
        store = open_store(db_url)
        seeded = seed_run(store, n_samples=N_CANDIDATES, n_candidates=N_CANDIDATES)
        seeded_event.set()

        # phase 2: concurrent next_candidate never hands out a candidate twice
        leased = [c for taken in collect(results, "leased", N_WRITERS) for c in taken]
        assert None not in leased
        assert len(leased) == len(set(leased)) == N_WRITERS * LEASES_PER_WORKER
        assert sorted(leased) == sorted(seeded.candidate_ids[: len(leased)])  # lowest ranks

        # phase 3, while the writers run: an export sees what was committed before it
        committed_before: set[int] = set()
        while len(committed_before) < N_WRITERS * REVIEWS_PER_WRITER // 3:
            committed_before.add(progress.get(timeout=TIMEOUT))
        while True:
            try:
                committed_before.add(progress.get_nowait())
            except queue.Empty:
                break
        columns, exported = export_rows(store, seeded.run_name, "reviews")

        outcomes = collect(results, "reviewed", N_WRITERS)
    finally:
        # keep reading progress so that no child blocks flushing its queue on exit
        deadline = time.monotonic() + 60
        while any(process.is_alive() for process in processes) and time.monotonic() < deadline:
            try:
                progress.get(timeout=0.1)
            except queue.Empty:
                pass
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()
    assert [process.exitcode for process in processes] == [0] * N_WRITERS
    reported = [entry for outcome in outcomes for entry in outcome]
    assert len(reported) == N_WRITERS * REVIEWS_PER_WRITER

    with store.Session.begin() as session:
        stored = session.execute(
            select(
                Review.id,
                Review.candidate_id,
                Review.seen_version,
                Review.version,
                Review.conflict,
                Review.reviewer,
                Review.cause,
                Review.note,
            )
        ).all()
        candidates = {c.id: c for c in session.scalars(select(Candidate))}
    assert len(stored) == N_WRITERS * REVIEWS_PER_WRITER, "reviews were lost"
    by_id = {row.id: row for row in stored}
    for review_id, candidate_id, seen, version, conflict in reported:
        row = by_id[review_id]
        assert (row.candidate_id, row.seen_version, row.version, row.conflict) == (
            candidate_id,
            seen,
            version,
            conflict,
        )

    history = defaultdict(list)
    for row in stored:
        history[row.candidate_id].append(row)
        # a conflict is exactly a review whose author saw another version than it follows
        assert row.conflict == (row.seen_version != row.version - 1)
    for candidate_id, rows in history.items():
        rows.sort(key=lambda row: row.version)
        assert [row.version for row in rows] == list(range(1, len(rows) + 1))
        assert candidates[candidate_id].review_version == len(rows)
        assert candidates[candidate_id].decision == rows[-1].cause
    n_conflicts = sum(row.conflict for row in stored)
    assert 0 < n_conflicts < len(stored), f"no race was produced ({n_conflicts} conflicts)"

    # the export: every review committed before it, and a gap-free prefix of
    # each candidate's history (one snapshot, not a mix of moments)
    exported_ids = {row[0] for row in exported}
    assert committed_before <= exported_ids <= set(by_id)
    exported_versions = defaultdict(list)
    for row in exported:
        exported_versions[row[columns.index("candidate_id")]].append(row[columns.index("version")])
        assert by_id[row[0]].note == row[columns.index("note")]
    for versions in exported_versions.values():
        assert sorted(versions) == list(range(1, len(versions) + 1))

    if store.dialect == "sqlite":
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            assert connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
    store.dispose()


def test_writer_killed_mid_transaction_loses_nothing_committed(db_url):
    store = open_store(db_url)
    seeded = seed_run(store)
    store.dispose()
    candidate_id = seeded.candidate_ids[0]
    parent_end, child_end = SPAWN.Pipe(duplex=False)
    writer = SPAWN.Process(target=doomed_writer, args=(db_url, candidate_id, 25, child_end))
    writer.start()
    committed, pending = [], None
    while pending is None:
        assert parent_end.poll(60), "the writer stopped talking"
        state, review_id = parent_end.recv()
        if state == "committed":
            committed.append(review_id)
        else:
            pending = review_id
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(timeout=30)
    assert writer.exitcode == -signal.SIGKILL

    reopened = open_store(db_url)
    try:
        with reopened.Session.begin() as session:
            stored = session.scalars(select(Review.id).order_by(Review.id)).all()
            assert stored == committed
            assert session.get(Candidate, candidate_id).review_version == len(committed)
        began = time.monotonic()
        with reopened.Session.begin() as session:  # the dead writer's lock is gone
            result = api.submit_review(
                session, candidate_id, reviewer="after", cause="rare", seen_version=len(committed)
            )
        assert time.monotonic() - began < 10
        assert (result.version, result.conflict) == (len(committed) + 1, False)
        with reopened.engine.connect() as connection:
            if reopened.dialect == "sqlite":
                assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            count = connection.execute(select(func.count(Review.id))).scalar()
            assert count == len(committed) + 1
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        reopened.dispose()
