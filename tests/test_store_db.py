"""Opening databases, URLs, migrations and schema constraints, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pgutil import TINY_PNG, empty_database, seed_run
from sqlalchemy import CheckConstraint, Column, Integer, create_engine, insert, inspect, text
from sqlalchemy.exc import IntegrityError

from hardcase.store import api, db
from hardcase.store.db import (
    current_revision,
    downgrade,
    head_revision,
    open_store,
    parse_url,
    upgrade,
)
from hardcase.store.errors import StoreError
from hardcase.store.schema import Candidate, Review, Run, User, metadata

DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
HARDCASE_TABLES = set(metadata.tables)


@pytest.fixture(params=DIALECTS)
def db_url(request, tmp_path):
    """URL of an empty database of each dialect."""
    with empty_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def store(db_url):
    opened = open_store(db_url)
    yield opened
    opened.dispose()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def table_names(store) -> set[str]:
    with store.engine.connect() as connection:
        return set(inspect(connection).get_table_names())


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "not a database URL"),
        ("", "not a database URL"),
        ("mysql://ana:hunter2@db.example/hc", "unsupported database driver 'mysql'"),
        ("postgresql+psycopg2://ana:hunter2@db.example/hc", "unsupported database driver"),
        ("sqlite:////no/such/directory/hardcase.db", "does not exist"),
        ("sqlite:///x.db?mode=ro", "options are not supported"),
    ],
)
def test_bad_urls_are_refused_with_a_clear_error(url, expected):
    with pytest.raises(StoreError, match=expected) as caught:
        open_store(url)
    message = str(caught.value)
    assert "hunter2" not in message
    assert "\n" not in message


def test_unreachable_server_is_refused_and_password_masked():
    with pytest.raises(StoreError, match="cannot open database") as caught:
        open_store("postgresql://ana:hunter2@127.0.0.1:1/hc")
    assert "hunter2" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


def test_postgresql_urls_use_psycopg():
    assert parse_url("postgresql://u@h/d").drivername == "postgresql+psycopg"
    assert parse_url("postgres://u@h/d").drivername == "postgresql+psycopg"
    assert parse_url("sqlite:///x.db").drivername == "sqlite"


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("hello, not a database\n")
    with pytest.raises(StoreError, match="not a SQLite database"):
        open_store(f"sqlite:///{path}")
    assert path.read_text() == "hello, not a database\n"


def test_read_only_sqlite_file_is_refused_and_unchanged(tmp_path):
    path = tmp_path / "hardcase.db"
    store = open_store(f"sqlite:///{path}")
    seed_run(store)
    store.dispose()
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    before = file_digest(path)
    try:
        with pytest.raises(StoreError, match="read-only") as caught:
            open_store(f"sqlite:///{path}")
        assert str(path) in str(caught.value)
        assert file_digest(path) == before
        assert not Path(f"{path}-wal").exists()
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_missing_sqlite_file_is_created_in_an_existing_directory(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        assert current_revision(store) == head_revision()
    finally:
        store.dispose()


def test_sqlite_connection_settings(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'hc.db'}")
    try:
        expected = {
            "journal_mode": "wal",
            "synchronous": 1,
            "foreign_keys": 1,
            "busy_timeout": 30_000,
        }
        with store.engine.connect() as connection:
            found = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar() for name in expected
            }
        assert found == expected  # synchronous 1 = NORMAL
    finally:
        store.dispose()


def test_sqlite_write_transactions_begin_immediately(tmp_path):
    """A second writer waits for the first instead of failing (BEGIN IMMEDIATE)."""
    store = open_store(f"sqlite:///{tmp_path / 'hc.db'}")
    try:
        with store.engine.connect() as first:
            first.exec_driver_sql("SELECT 1")  # the transaction already holds the write lock
            other = sqlite3.connect(tmp_path / "hc.db", timeout=0, isolation_level=None)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()
        other = sqlite3.connect(tmp_path / "hc.db", timeout=0, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # free again once the first transaction ended
        other.close()
    finally:
        store.dispose()


def test_concurrent_first_connections_switch_to_wal_without_locking_errors(tmp_path):
    """Plain ``PRAGMA journal_mode=WAL`` fails in a few % of such races ("database is locked")."""

    def connect_and_switch(path, barrier, outcomes):
        connection = sqlite3.connect(path, timeout=30, isolation_level=None)
        connection.execute("PRAGMA busy_timeout = 30000")
        barrier.wait()
        try:
            db.enable_wal(connection.cursor())
            outcomes.append(connection.execute("PRAGMA journal_mode").fetchone()[0])
        except sqlite3.Error as exc:
            outcomes.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    for attempt in range(100):
        path = tmp_path / f"race{attempt}.db"
        barrier, outcomes = threading.Barrier(8), []
        threads = [
            threading.Thread(target=connect_and_switch, args=(path, barrier, outcomes))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes == ["wal"] * 8, outcomes


def test_in_memory_sqlite_works():
    store = open_store("sqlite://")
    try:
        seeded = seed_run(store)
        assert len(seeded.candidate_ids) == 6
    finally:
        store.dispose()


# --------------------------------------------------------------------------- migrations


def test_migrations_empty_to_head_to_base_to_head(db_url):
    store = open_store(db_url, upgrade=False)
    try:
        assert current_revision(store) is None
        assert not table_names(store) & HARDCASE_TABLES
        upgrade(store)
        assert current_revision(store) == head_revision() == "0004"
        assert HARDCASE_TABLES <= table_names(store)
        seed_run(store)
        downgrade(store, "base")
        assert current_revision(store) is None
        assert not table_names(store) & HARDCASE_TABLES
        upgrade(store, "head")
        assert current_revision(store) == "0004"
        seed_run(store)
    finally:
        store.dispose()


def test_migrated_schema_equals_schema_module(store):
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []

        changed = copy.deepcopy(metadata)
        changed.tables["reviews"].append_column(Column("extra", Integer))
        diff = compare_metadata(context, changed)
        assert [entry[0] for entry in diff] == ["add_column"]


def test_check_constraints_exist_in_the_database(store):
    with store.engine.connect() as connection:
        inspector = inspect(connection)
        for table in metadata.sorted_tables:
            declared = {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
            found = {c["name"] for c in inspector.get_check_constraints(table.name)}
            assert declared <= found, table.name


def test_review_queue_uses_the_partial_indexes(store):
    seeded = seed_run(store)
    with store.engine.connect() as connection:
        found = {ix["name"]: ix for ix in inspect(connection).get_indexes("candidates")}
        for name in ("ix_candidates_unreviewed_queue", "ix_candidates_unreviewed_class_queue"):
            where = found[name]["dialect_options"][f"{store.dialect}_where"]
            assert "decision IS NULL" in str(where)
        if store.dialect == "sqlite":
            now = dt.datetime.now(dt.UTC)
            for filters, index in (
                ({}, "ix_candidates_unreviewed_queue"),
                ({"class_name": "cat"}, "ix_candidates_unreviewed_class_queue"),
            ):
                query = api.candidate_queue_query(seeded.run_id, reviewer="a", now=now, **filters)
                sql = str(
                    query.compile(
                        dialect=store.engine.dialect, compile_kwargs={"literal_binds": True}
                    )
                )
                plan = " ".join(
                    str(row[-1]) for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)
                )
                assert f"COVERING INDEX {index}" in plan, plan
                assert "TEMP B-TREE" not in plan, plan


def test_newer_schema_is_refused_and_nothing_changes(db_url):
    store = open_store(db_url)
    seed_run(store)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffff_future'"))
    store.dispose()
    sqlite_file = db.sqlite_path(parse_url(db_url)) if db_url.startswith("sqlite") else None
    before = file_digest(sqlite_file) if sqlite_file else None

    for attempt in (lambda: open_store(db_url), lambda: open_store(db_url, upgrade=False)):
        with pytest.raises(StoreError, match="newer than this hardcase") as caught:
            attempt()
        assert "ffff_future" in str(caught.value) and "head 0004" in str(caught.value)

    if sqlite_file:
        assert file_digest(sqlite_file) == before
    engine = create_engine(parse_url(db_url))
    try:
        with engine.connect() as connection:
            assert (
                connection.scalar(text("SELECT version_num FROM alembic_version")) == "ffff_future"
            )
            assert connection.scalar(text("SELECT count(*) FROM reviews")) == 0
            assert connection.scalar(text("SELECT count(*) FROM candidates")) == 6
    finally:
        engine.dispose()


def test_unknown_downgrade_target_is_a_store_error(store):
    with pytest.raises(StoreError, match="cannot downgrade"):
        downgrade(store, "nonsense")
    assert current_revision(store) == "0004"


# --------------------------------------------------------------------------- constraints


def bad_rows(seeded):
    """Rows that only the database constraints stop (the API would refuse them earlier)."""
    candidate_id = seeded.candidate_ids[0]
    review = {
        "candidate_id": candidate_id,
        "reviewer": "ana",
        "seen_version": 0,
        "version": 1,
        "conflict": False,
        "note": "",
    }
    return {
        "unknown review cause": (Review, {**review, "cause": "boredom"}),
        "mislabel without label": (Review, {**review, "cause": "mislabel"}),
        "no cause and no retraction": (Review, {**review, "cause": None}),
        "review of a missing candidate": (Review, {**review, "cause": "rare", "candidate_id": 999}),
        "unknown role": (User, {"name": "eve", "role": "admin", "password_hash": "x"}),
        "unknown run status": (
            Run,
            {
                "name": "r2",
                "dataset_id": seeded.dataset_id,
                "model_version_id": 1,
                "params": {},
                "status": "paused",
            },
        ),
        "unknown suggested cause": (
            Candidate,
            {
                "run_id": seeded.run_id,
                "sample_id": seeded.sample_ids[-1],
                "rank": 99,
                "class_name": "cat",
                "hardness_score": 0.5,
                "image_png": TINY_PNG,
                "suggested_cause": "boredom",
                "review_version": 0,
            },
        ),
        "unknown decision": (
            Candidate,
            {
                "run_id": seeded.run_id,
                "sample_id": seeded.sample_ids[-1],
                "rank": 99,
                "class_name": "cat",
                "hardness_score": 0.5,
                "image_png": TINY_PNG,
                "decision": "boredom",
                "review_version": 0,
            },
        ),
    }


def test_database_constraints_reject_bad_values(store):
    seeded = seed_run(store)
    for what, (model, values) in bad_rows(seeded).items():
        with pytest.raises(IntegrityError), store.Session.begin() as session:
            session.execute(insert(model).values(**values))
            pytest.fail(f"the database accepted a row with {what}")
    with store.Session.begin() as session:
        ok = bad_rows(seeded)["unknown review cause"][1] | {"cause": "rare"}
        session.execute(insert(Review).values(**ok))
        session.execute(insert(User).values(name="eve", role="lead", password_hash="x"))


def test_no_stray_files_left_after_dispose(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'hc.db'}")
    seed_run(store)
    store.dispose()
    assert sorted(os.listdir(tmp_path)) == ["hc.db"]


def test_run_stages_upgrade_keeps_runs_and_records_failures(db_url):
    """A 0001 database with a run upgrades to the stages; a failed run keeps its reason, any other
    status clears it; a status outside the stages is refused by the database itself."""
    from hardcase.store import api
    from hardcase.store.schema import Run

    store = open_store(db_url, upgrade=False)
    try:
        upgrade(store, "head")
        seeded = seed_run(store)
        downgrade(store, "0001")  # the run survives the round trip through the old schema
        with store.engine.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM runs")) == 1
        upgrade(store, "head")
        with store.Session.begin() as session:
            run = api.set_run_status(session, seeded.run_id, "failed", failure="OSError: [Errno 28] No space left")
            assert run.failure == "OSError: [Errno 28] No space left" and run.finished_at is not None
        with store.Session.begin() as session:
            run = api.set_run_status(session, seeded.run_id, "scored")
            assert run.status == "scored" and run.failure is None and run.finished_at is None
        with pytest.raises(IntegrityError), store.Session.begin() as session:
            session.execute(text("UPDATE runs SET status = 'suggested'"))
        downgrade(store, "0001")  # a scored run goes back to running
        with store.engine.connect() as connection:
            assert connection.scalar(text("SELECT status FROM runs")) == "running"
        upgrade(store, "head")
        with store.Session.begin() as session:
            assert session.get(Run, seeded.run_id).status == "running"
    finally:
        store.dispose()
