"""Store benchmark: bulk loading, review throughput and review-page query latency.

For each dialect (SQLite file, PostgreSQL database created for the run):

1. load 1,000,000 samples and scores, 100,000 candidates and 100,000 reviews;
2. time ``next_candidate``, ``get_candidate``, ``triage_counts`` and
   ``review_progress`` (each a whole unit of work: begin, query, commit) and
   print the query plans of the queue and triage queries (target < 50 ms);
3. measure reviews per second with 1 and with 8 writer processes (each
   review = read the candidate in a snapshot, then submit in a transaction).

Usage::

    python bench/store_load.py                       # both dialects, full size
    python bench/store_load.py --dialects sqlite --samples 100000 --reviews 10000

PostgreSQL: a database ``hc_bench_<random>`` is created through ``--pg-admin``
(default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``) and dropped at
the end.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import bindparam, create_engine, func, select, text, update
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hardcase.store import api
from hardcase.store.db import Store, open_store
from hardcase.store.export import export_rows
from hardcase.store.schema import Candidate, Review

CLASSES = [f"class_{index:02d}" for index in range(10)]
CAUSES = ["augment", "rare", "imbalance", "mislabel", "not_a_failure", "skip"]
WRITER_CAUSES = ["augment", "rare", "imbalance", "not_a_failure", "skip"]
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
LOAD_CHUNK = 50_000
SPAWN = multiprocessing.get_context("spawn")


# --------------------------------------------------------------------------- helpers


@contextmanager
def timed(label: str) -> Iterator[None]:
    began = time.perf_counter()
    yield
    print(f"  {label}: {time.perf_counter() - began:.1f} s", flush=True)


def latency(label: str, call: Callable[[int], object], repeats: int) -> float:
    """Run ``call(i)`` ``repeats`` times; print and return the median in ms."""
    timings = []
    for index in range(repeats):
        began = time.perf_counter()
        call(index)
        timings.append((time.perf_counter() - began) * 1000)
    timings.sort()
    median = statistics.median(timings)
    p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
    verdict = "ok" if p95 < 50 else "SLOW"
    print(
        f"  {label:<48} median {median:7.2f} ms  p95 {p95:7.2f} ms  max {timings[-1]:7.2f} ms"
        f"  [{verdict}]",
        flush=True,
    )
    return median


@contextmanager
def database(dialect: str, pg_admin: str, directory: Path) -> Iterator[str]:
    if dialect == "sqlite":
        yield f"sqlite:///{directory / 'bench.db'}"
        return
    name = f"hc_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --------------------------------------------------------------------------- loading


def load(store: Store, n_samples: int, n_candidates: int, n_reviews: int) -> int:
    """Fill the store; returns the run id."""
    rng = random.Random(0)
    with timed(f"upsert_samples x {n_samples:,}"):
        sample_ids: list[int] = []
        with store.Session.begin() as session:
            dataset = api.get_or_create_dataset(
                session,
                name="bench",
                uri="/data",
                kind="npz",
                class_names=CLASSES,
                n_samples=n_samples,
            )
            model = api.register_model(
                session, name="m", path="/m.keras", file_hash="f" * 64, spec={}, class_names=CLASSES
            )
            run = api.create_run(
                session,
                name="bench-run",
                dataset_id=dataset.id,
                model_version_id=model.id,
                params={},
            )
            run_id, dataset_id = run.id, dataset.id
        for start in range(0, n_samples, LOAD_CHUNK):
            indices = list(range(start, min(n_samples, start + LOAD_CHUNK)))
            with store.Session.begin() as session:
                sample_ids += api.upsert_samples(
                    session,
                    dataset_id,
                    source_index=indices,
                    content_hash=[f"{index:064x}" for index in indices],
                    uri=[f"/data/{index}.png" for index in indices],
                    given_label=[CLASSES[index % 10] for index in indices],
                )
    with timed(f"add_scores x {n_samples:,}"):
        for start in range(0, n_samples, LOAD_CHUNK):
            rows = [
                {
                    "sample_id": sample_id,
                    "predicted_label": CLASSES[(index + 1) % 10],
                    "confidence": rng.random(),
                    "margin": rng.random(),
                    "entropy": rng.random(),
                    "loss": rng.random(),
                    "hardness_score": rng.random(),
                }
                for index, sample_id in enumerate(sample_ids[start : start + LOAD_CHUNK], start)
            ]
            with store.Session.begin() as session:
                api.add_scores(session, run_id, rows)
    with timed(f"add_candidates x {n_candidates:,}"):
        candidate_ids: list[int] = []
        for start in range(0, n_candidates, LOAD_CHUNK):
            rows = [
                {
                    "sample_id": sample_ids[index],
                    "rank": index + 1,
                    "class_name": CLASSES[index % 10],
                    "hardness_score": 1 - index / n_candidates,
                    "image_png": TINY_PNG,
                    "suggested_cause": CAUSES[index % 4],
                    "evidence": {"neighbours": [index]},
                }
                for index in range(start, min(n_candidates, start + LOAD_CHUNK))
            ]
            with store.Session.begin() as session:
                candidate_ids += api.add_candidates(session, run_id, rows)
    with timed(f"bulk-insert {n_reviews:,} reviews (setup, not via submit_review)"):
        # the first candidates by rank get 2 reviews each, until n_reviews is reached
        reviews, decisions = [], []
        per_candidate = 2
        for position in range(min(len(candidate_ids), (n_reviews + 1) // per_candidate)):
            cause = "skip"
            for version in range(1, per_candidate + 1):
                if len(reviews) == n_reviews:
                    break
                cause = CAUSES[rng.randrange(6)]
                reviews.append(
                    {
                        "candidate_id": candidate_ids[position],
                        "reviewer": f"r{version}",
                        "cause": cause,
                        "new_label": CLASSES[0] if cause == "mislabel" else None,
                        "note": "",
                        "transform": None,
                        "seen_version": version - 1,
                        "version": version,
                        "conflict": False,
                        "retracts_review_id": None,
                    }
                )
            decisions.append({"cid": candidate_ids[position], "v": version, "d": cause})
        table = Review.__table__
        for start in range(0, len(reviews), LOAD_CHUNK):
            with store.Session.begin() as session:
                session.execute(table.insert(), reviews[start : start + LOAD_CHUNK])
        set_decision = (
            update(Candidate.__table__)
            .where(Candidate.__table__.c.id == bindparam("cid"))
            .values(review_version=bindparam("v"), decision=bindparam("d"))
        )
        for start in range(0, len(decisions), LOAD_CHUNK):
            with store.Session.begin() as session:
                session.connection().execute(set_decision, decisions[start : start + LOAD_CHUNK])
    # PostgreSQL: what autovacuum would do after a bulk load (statistics, and the
    # visibility map that index-only scans need)
    statement = "ANALYZE" if store.dialect == "sqlite" else "VACUUM ANALYZE"
    with timed(statement):
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql(statement)
    return run_id


# --------------------------------------------------------------------------- latency


def show_plan(store: Store, label: str, statement) -> None:
    sql = str(
        statement.compile(dialect=store.engine.dialect, compile_kwargs={"literal_binds": True})
    )
    if store.dialect == "sqlite":
        explain = "EXPLAIN QUERY PLAN " + sql
    else:
        explain = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + sql
    with store.engine.connect() as connection:
        plan = connection.exec_driver_sql(explain).all()
        connection.rollback()
    print(f"  plan of {label}:")
    for row in plan:
        print("     ", " | ".join(str(value) for value in row if value is not None))


def measure_latency(store: Store, run_id: int, n_candidates: int) -> None:
    now = dt.datetime.now(dt.UTC)
    show_plan(
        store,
        "next_candidate (unreviewed)",
        api.candidate_queue_query(run_id, reviewer="ana", now=now),
    )
    show_plan(
        store,
        "next_candidate (class filter, after_rank)",
        api.candidate_queue_query(
            run_id, reviewer="ana", now=now, class_name=CLASSES[3], after_rank=n_candidates // 2
        ),
    )
    show_plan(
        store,
        "next_candidate (reviewed, class filter)",
        api.candidate_queue_query(
            run_id, reviewer="ana", now=now, status="reviewed", class_name=CLASSES[3]
        ),
    )
    show_plan(store, "triage_counts", api.triage_query(run_id))

    def next_unreviewed(index: int) -> None:
        with store.Session.begin() as session:
            assert api.next_candidate(session, run_id, reviewer=f"bench{index % 20}") is not None

    def next_reviewed_class(index: int) -> None:
        with store.Session.begin() as session:
            api.next_candidate(
                session,
                run_id,
                reviewer=f"bench{index % 20}",
                status="reviewed",
                class_name=CLASSES[index % 10],
            )

    def next_reviewed(index: int) -> None:
        with store.Session.begin() as session:
            api.next_candidate(session, run_id, reviewer=f"bench{index % 20}", status="reviewed")

    def next_after_rank(index: int) -> None:
        with store.Session.begin() as session:
            api.next_candidate(
                session,
                run_id,
                reviewer=f"late{index}",
                status="all",
                after_rank=n_candidates // 2 + index,
            )

    def get_one(index: int) -> None:
        with store.snapshot() as session:
            api.get_candidate(session, 1 + (index * 7919) % n_candidates)

    def triage(index: int) -> None:
        with store.snapshot() as session:
            api.triage_counts(session, run_id)

    def progress(index: int) -> None:
        with store.snapshot() as session:
            api.review_progress(session, run_id)

    latency("next_candidate (unreviewed, 20 reviewers)", next_unreviewed, 200)
    latency("next_candidate (reviewed, class filter)", next_reviewed_class, 100)
    latency("next_candidate (reviewed)", next_reviewed, 100)
    latency("next_candidate (all, after_rank)", next_after_rank, 100)
    latency("get_candidate", get_one, 200)
    latency("triage_counts", triage, 50)
    latency("review_progress", progress, 50)
    with store.snapshot() as session:
        counts = api.triage_counts(session, run_id)
        reviews = session.scalar(select(func.count(Review.id)))
    print(
        f"  ({sum(counts.values()):,} candidates in {len(counts)} triage cells, "
        f"{reviews:,} reviews)"
    )
    with timed("export_rows(fixes)"):
        export_rows(store, "bench-run", "fixes")


# --------------------------------------------------------------------------- throughput


def writer(url: str, run_id: int, n_candidates: int, seed: int, n_reviews: int, start, results):
    try:
        store = open_store(url)
        rng = random.Random(seed)
        start.wait()
        began = time.perf_counter()
        for _ in range(n_reviews):
            candidate_id = rng.randrange(1, n_candidates + 1)
            with store.snapshot() as session:
                seen = api.get_candidate(session, candidate_id).version
            with store.Session.begin() as session:
                api.submit_review(
                    session,
                    candidate_id,
                    reviewer=f"w{seed}",
                    cause=WRITER_CAUSES[rng.randrange(len(WRITER_CAUSES))],
                    seen_version=seen,
                )
        results.put(time.perf_counter() - began)
        store.dispose()
    except BaseException as exc:
        results.put(f"writer {seed} failed: {type(exc).__name__}: {exc}")
        raise


def throughput(url: str, run_id: int, n_candidates: int, n_writers: int, per_writer: int) -> None:
    start, results = SPAWN.Event(), SPAWN.Queue()
    processes = [
        SPAWN.Process(
            target=writer, args=(url, run_id, n_candidates, seed, per_writer, start, results)
        )
        for seed in range(100 + 10 * n_writers, 100 + 11 * n_writers)
    ]
    for process in processes:
        process.start()
    time.sleep(3)  # let every writer import and open the store
    began = time.perf_counter()
    start.set()
    for _ in processes:
        outcome = results.get(timeout=600)
        if isinstance(outcome, str):
            raise SystemExit(outcome)
    elapsed = time.perf_counter() - began
    for process in processes:
        process.join()
    total = n_writers * per_writer
    print(
        f"  {n_writers} writer(s): {total:,} reviews in {elapsed:.1f} s = "
        f"{total / elapsed:,.0f} reviews/s",
        flush=True,
    )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialects", default="sqlite,postgresql")
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--reviews", type=int, default=100_000)
    parser.add_argument("--pg-admin", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args(argv)
    for dialect in args.dialects.split(","):
        print(
            f"\n== {dialect}: {args.samples:,} scored samples, {args.candidates:,} candidates, "
            f"{args.reviews:,} reviews",
            flush=True,
        )
        with (
            tempfile.TemporaryDirectory() as directory,
            database(dialect, args.pg_admin, Path(directory)) as url,
        ):
            store = open_store(url)
            run_id = load(store, args.samples, args.candidates, args.reviews)
            measure_latency(store, run_id, args.candidates)
            store.dispose()
            throughput(url, run_id, args.candidates, 1, 1000)
            throughput(url, run_id, args.candidates, 8, 250)
            if dialect == "sqlite":
                size = Path(make_url(url).database).stat().st_size
                print(f"  database file: {size / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
