"""Production monitoring in the store: migration 0003, monitor runs, windows, signals, the windows
export, per-sample Parquet columns, and candidates from a window; on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from pgutil import TINY_PNG, empty_database, seed_run
from sqlalchemy import insert, inspect, text, update
from sqlalchemy.exc import IntegrityError

from hardcase.store import api
from hardcase.store.columnar import read_columns, write_columns
from hardcase.store.db import current_revision, downgrade, open_store, upgrade
from hardcase.store.errors import StoreError
from hardcase.store.export import WINDOW_COLUMNS, export_rows, read_rows, write_rows
from hardcase.store.schema import Candidate, MonitorRun, MonitorSignal, MonitorWindow

DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
MONITORING_TABLES = {"monitor_runs", "monitor_windows", "monitor_signals"}


@pytest.fixture(params=DIALECTS)
def db_url(request, tmp_path):
    with empty_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def store(db_url):
    opened = open_store(db_url)
    yield opened
    opened.dispose()


@pytest.fixture
def seeded(store):
    return seed_run(store, name="stream-1")


def new_monitor_run(store, seeded, *, name="stream-1", window_by="count", window_size=100):
    with store.Session.begin() as session:
        run = api.create_monitor_run(
            session,
            name=name,
            model_version_id=api.get_run(session, seeded.run_name).model_version_id,
            reference_dataset_id=seeded.dataset_id,
            stream_dataset_id=seeded.dataset_id,
            params={"alpha": 0.002, "signals": None},
            window_by=window_by,
            window_size=window_size,
        )
        return run.id


def signal(name, statistic, *, alert=False, **extra):
    return {"signal": name, "statistic": statistic, "threshold": 0.5, "side": "above", "alert": alert, **extra}


def window_fields(window_index, **changes):
    """A window of 100 samples at ``100 * window_index``; quiet unless changed."""
    fields = {
        "window_index": window_index,
        "window_key": None,
        "first_index": 100 * window_index,
        "last_index": 100 * window_index + 99,
        "n": 100,
        "n_errors": 0,
        "estimated_accuracy": 0.9,
        "accuracy_interval": (0.85, 0.95),
        "true_accuracy": None,
        "alert": False,
        "alert_signals": [],
        "classes_moved": [],
        "root_cause": None,
        "root_cause_message": None,
        "root_cause_detail": None,
        "report": {"window": window_index, "n": 100},
        "samples_path": None,
        "signals": [signal("confidence", 0.1), signal("ood", 0.2)],
    }
    return fields | changes


def add(store, monitor_run_id, window_index, **changes):
    with store.Session.begin() as session:
        return api.add_window(session, monitor_run_id, **window_fields(window_index, **changes))


def table_names(store):
    with store.engine.connect() as connection:
        return set(inspect(connection).get_table_names())


# --------------------------------------------------------------------------- migration 0003


def test_migration_0003_up_and_down_keeps_the_mining_data(db_url):
    store = open_store(db_url, upgrade=False)
    try:
        upgrade(store, "0002")
        assert not table_names(store) & MONITORING_TABLES
        upgrade(store, "head")
        assert current_revision(store) == "0004"
        assert MONITORING_TABLES <= table_names(store)
        seeded = seed_run(store)
        monitor_run_id = new_monitor_run(store, seeded, name="run-1")
        window_id = add(store, monitor_run_id, 0)
        with store.Session.begin() as session:
            session.execute(update(Candidate).values(monitor_window_id=window_id))

        downgrade(store, "0002")
        assert current_revision(store) == "0002"
        assert not table_names(store) & MONITORING_TABLES
        with store.engine.connect() as connection:
            inspector = inspect(connection)
            columns = {column["name"] for column in inspector.get_columns("candidates")}
            queue_indexes = {
                index["name"]: index["dialect_options"].get(f"{store.dialect}_where")
                for index in inspector.get_indexes("candidates")
            }
            assert connection.scalar(text("SELECT count(*) FROM candidates")) == 6
        assert "monitor_window_id" not in columns
        # SQLite copies the table to drop the column: the partial queue indexes come back
        for name in ("ix_candidates_unreviewed_queue", "ix_candidates_unreviewed_class_queue"):
            assert "decision IS NULL" in str(queue_indexes[name]), name

        upgrade(store, "head")
        with store.Session.begin() as session:
            assert api.list_monitor_runs(session) == []
            assert api.get_candidate(session, seeded.candidate_ids[0]).rank == 1
            assert session.get(Candidate, seeded.candidate_ids[0]).monitor_window_id is None
        new_monitor_run(store, seeded, name="run-1")
    finally:
        store.dispose()


# --------------------------------------------------------------------------- constraints


def test_database_constraints_reject_bad_monitoring_rows(store, seeded):
    monitor_run_id = new_monitor_run(store, seeded)
    window_id = add(store, monitor_run_id, 0)
    good_window = {
        "monitor_run_id": monitor_run_id,
        "window_index": 1,
        "first_index": 100,
        "last_index": 199,
        "n": 100,
        "alert": False,
        "alert_signals": [],
        "classes_moved": [],
        "report": {},
    }
    good_signal = {
        "window_id": window_id,
        "signal": "accuracy",
        "side": "below",
        "alert": False,
        "classes_moved": [],
    }
    good_run = {
        "name": "other",
        "model_version_id": 1,
        "reference_dataset_id": seeded.dataset_id,
        "stream_dataset_id": seeded.dataset_id,
        "params": {},
        "window_by": "t",
    }
    bad = {
        "unknown signal": (MonitorSignal, good_signal | {"signal": "vibes"}),
        "unknown side": (MonitorSignal, good_signal | {"side": "left"}),
        "repeated signal": (MonitorSignal, good_signal | {"signal": "confidence"}),
        "unknown root cause": (MonitorWindow, good_window | {"root_cause": "gremlins"}),
        "negative n": (MonitorWindow, good_window | {"n": -1}),
        "negative n_errors": (MonitorWindow, good_window | {"n_errors": -1}),
        "negative window index": (MonitorWindow, good_window | {"window_index": -1}),
        "reversed index range": (MonitorWindow, good_window | {"last_index": 50}),
        "accuracy 2.0": (MonitorWindow, good_window | {"estimated_accuracy": 2.0}),
        "negative true accuracy": (MonitorWindow, good_window | {"true_accuracy": -0.1}),
        "interval above 1": (MonitorWindow, good_window | {"accuracy_high": 1.5}),
        "duplicate window index": (MonitorWindow, good_window | {"window_index": 0}),
        "unknown window_by": (MonitorRun, good_run | {"window_by": "hour"}),
        "count window without size": (MonitorRun, good_run | {"window_by": "count"}),
        "zero window size": (MonitorRun, good_run | {"window_size": 0}),
        "taken name": (MonitorRun, good_run | {"name": "stream-1"}),
    }
    for what, (model, values) in bad.items():
        with pytest.raises(IntegrityError), store.Session.begin() as session:
            session.execute(insert(model).values(**values))
            pytest.fail(f"the database accepted a row with {what}")
    with store.Session.begin() as session:  # the same rows, corrected, are accepted
        session.execute(insert(MonitorWindow).values(**good_window | {"root_cause": "rare", "true_accuracy": 1.0}))
        session.execute(insert(MonitorSignal).values(**good_signal))
        session.execute(insert(MonitorRun).values(**good_run))


# --------------------------------------------------------------------------- monitor runs


def test_monitor_runs_are_created_found_and_listed(store, seeded):
    monitor_run_id = new_monitor_run(store, seeded)
    new_monitor_run(store, seeded, name="by-batch", window_by="t", window_size=None)
    with store.Session.begin() as session:
        found = api.require_monitor_run(session, "stream-1")
        assert (found.id, found.window_by, found.window_size, found.review_run_id) == (
            monitor_run_id, "count", 100, None,
        )
        assert found.params == {"alpha": 0.002, "signals": None}
        assert api.get_monitor_run(session, "nope") is None
        assert [run.name for run in api.list_monitor_runs(session)] == ["stream-1", "by-batch"]
        with pytest.raises(StoreError, match=r"no monitor run named 'nope'; monitor runs: stream-1, by-batch"):
            api.require_monitor_run(session, "nope")
    with pytest.raises(StoreError, match="monitor run 'stream-1' already exists"):
        new_monitor_run(store, seeded)
    for bad, message in (
        ({"window_by": "hour"}, "window_by must be one of count, t"),
        ({"window_size": None}, "'count' needs a window_size"),
        ({"window_size": 0}, "window_size must be > 0"),
        ({"name": ""}, "monitor run name"),
    ):
        with pytest.raises(ValueError, match=message):
            new_monitor_run(store, seeded, **{"name": "fresh", **bad})
    with pytest.raises(StoreError, match="no stream dataset with id 999"), store.Session.begin() as session:
        api.create_monitor_run(
            session, name="fresh", model_version_id=1, reference_dataset_id=seeded.dataset_id,
            stream_dataset_id=999, params={}, window_by="t", window_size=None,
        )


def test_review_run_must_have_the_monitor_runs_name(store, seeded):
    monitor_run_id = new_monitor_run(store, seeded)
    other = seed_run(store, name="other")
    with pytest.raises(StoreError, match="must have its name, not 'other'"), store.Session.begin() as session:
        api.set_review_run(session, monitor_run_id, other.run_id)
    for _ in range(2):  # setting the same run again is a no-op
        with store.Session.begin() as session:
            assert api.set_review_run(session, monitor_run_id, seeded.run_id).review_run_id == seeded.run_id
    with store.Session.begin() as session:
        assert api.require_monitor_run(session, "stream-1").review_run_id == seeded.run_id


# --------------------------------------------------------------------------- windows and signals


def test_add_window_stores_the_window_and_its_signals(store, seeded):
    monitor_run_id = new_monitor_run(store, seeded)
    with store.Session.begin() as session:
        created = api.require_monitor_run(session, "stream-1").updated_at
    window_id = add(
        store, monitor_run_id, 0,
        alert=True, alert_signals=["ood", "confidence"], classes_moved=["dog", "cat"],
        root_cause="transform", root_cause_message="a rotation of 20 degrees restores 80%",
        root_cause_detail={"transform": {"rotate": 20}}, samples_path="stream-1/window-0.parquet",
        true_accuracy=0.7,
        signals=[
            signal("ood", 0.9, alert=True, severity=6.5, classes_moved=["dog"], message="far"),
            signal("confidence", 0.8, alert=True, severity=3.0, p_value=0.001),
        ],
    )
    with store.Session.begin() as session:
        (window,) = api.list_windows(session, monitor_run_id)
        assert window.id == window_id
        assert (window.alert, window.alert_signals, window.classes_moved) == (True, ["ood", "confidence"], ["dog", "cat"])
        assert (window.accuracy_low, window.accuracy_high, window.true_accuracy) == (0.85, 0.95, 0.7)
        assert (window.root_cause, window.root_cause_detail) == ("transform", {"transform": {"rotate": 20}})
        assert window.samples_path == "stream-1/window-0.parquet"
        assert [(s.signal, s.severity, s.p_value, s.message, s.classes_moved) for s in window.signals] == [
            ("ood", 6.5, None, "far", ["dog"]),
            ("confidence", 3.0, 0.001, "", []),
        ]
        assert api.require_monitor_run(session, "stream-1").updated_at > created


def test_non_finite_floats_are_stored_as_null(store, seeded):
    monitor_run_id = new_monitor_run(store, seeded)
    add(
        store, monitor_run_id, 0,
        estimated_accuracy=math.nan, accuracy_interval=(np.float64("nan"), math.inf),
        signals=[
            signal("ood", math.nan, severity=math.inf),
            signal("embedding_drift", -math.inf, p_value=np.float32("nan")),
            {**signal("accuracy", np.float64(0.25)), "threshold": math.inf},
        ],
    )
    with store.Session.begin() as session:
        (window,) = api.list_windows(session, monitor_run_id)
        assert (window.estimated_accuracy, window.accuracy_low, window.accuracy_high) == (None, None, None)
        stored = {s.signal: (s.statistic, s.threshold, s.severity, s.p_value) for s in window.signals}
        assert stored == {
            "ood": (None, 0.5, None, None),
            "embedding_drift": (None, 0.5, None, None),
            "accuracy": (0.25, None, None, None),
        }


def test_add_window_refuses_bad_values_and_a_repeated_index(store, seeded):
    monitor_run_id = new_monitor_run(store, seeded)
    add(store, monitor_run_id, 0)
    with pytest.raises(StoreError, match="'stream-1' already has window 0"):
        add(store, monitor_run_id, 0)
    for changes, message in (
        ({"signals": [signal("vibes", 1.0)]}, "unknown signals vibes"),
        ({"signals": [signal("ood", 1.0), signal("ood", 2.0)]}, "repeats a signal"),
        ({"signals": [signal("ood", 1.0) | {"side": "left"}]}, "side must be one of above, below"),
        ({"signals": [signal("ood", "high")]}, "statistic must be a number"),
        ({"root_cause": "gremlins"}, "root_cause must be one of"),
        ({"n": -1}, "n must be >= 0"),
        ({"n_errors": -3}, "n_errors must be >= 0"),
        ({"estimated_accuracy": 2.0}, r"estimated_accuracy must be in \[0, 1\], got 2.0"),
        ({"last_index": 50}, "last_index 50 is before first_index 100"),
        ({"alert_signals": ["ood"]}, "alert is False but signals alerted: ood"),
        ({"window_key": "k" * 65}, "window_key is longer than 64"),
        ({"samples_path": "/etc/passwd"}, "samples_path must be relative"),
        ({"report": {"x": math.nan}}, "report is not JSON-able"),
    ):
        with pytest.raises(ValueError, match=message):
            add(store, monitor_run_id, 1, **changes)
    with pytest.raises(StoreError, match="no monitor run with id 999"):
        add(store, 999, 1)
    with store.Session.begin() as session:
        assert api.scored_windows(session, monitor_run_id) == {0: None}


def test_resuming_reads_the_scored_windows(store, seeded):
    monitor_run_id = new_monitor_run(store, seeded, window_by="t", window_size=None)
    for index, key in ((0, "2031-01-01"), (2, "2031-01-03")):
        add(store, monitor_run_id, index, window_key=key)
    with store.Session.begin() as session:
        done = api.scored_windows(session, monitor_run_id)
    assert done == {0: "2031-01-01", 2: "2031-01-03"}
    keys = ["2031-01-01", "2031-01-02", "2031-01-03", "2031-01-04"]
    for index, key in enumerate(keys):  # a resumed run scores what is missing
        if index not in done:
            add(store, monitor_run_id, index, window_key=key)
    with store.Session.begin() as session:
        assert api.scored_windows(session, monitor_run_id) == dict(enumerate(keys))
        assert [w.window_key for w in api.list_windows(session, monitor_run_id)] == keys


def test_signal_timeline_and_alerting_windows(store, seeded):
    monitor_run_id = new_monitor_run(store, seeded)
    add(store, monitor_run_id, 1, alert=True, alert_signals=["label_shift"],
        signals=[signal("label_shift", 9.0, alert=True, classes_moved=["bird"]), signal("confidence", 0.3)])
    add(store, monitor_run_id, 0)
    with store.Session.begin() as session:
        timeline = [tuple(row) for row in api.signal_timeline(session, monitor_run_id)]
        assert [window.window_index for window in api.alerting_windows(session, monitor_run_id)] == [1]
    # by window, then in MONITOR_SIGNALS order (confidence before ood before label_shift)
    assert timeline == [
        (0, "confidence", 0.1, 0.5, "above", None, False, []),
        (0, "ood", 0.2, 0.5, "above", None, False, []),
        (1, "confidence", 0.3, 0.5, "above", None, False, []),
        (1, "label_shift", 9.0, 0.5, "above", None, True, ["bird"]),
    ]


def test_candidates_of_a_window(store, seeded):
    monitor_run_id = new_monitor_run(store, seeded)
    window_id = add(store, monitor_run_id, 0, alert=True)
    quiet_id = add(store, monitor_run_id, 1)
    with store.Session.begin() as session:
        api.set_review_run(session, monitor_run_id, seeded.run_id)
        ids = api.add_candidates(
            session,
            seeded.run_id,
            [
                {"sample_id": seeded.sample_ids[sample], "rank": rank, "class_name": "cat",
                 "hardness_score": 0.5, "image_png": TINY_PNG, "monitor_window_id": window_id}
                for sample, rank in ((8, 12), (7, 11))
            ],
        )
        assert api.window_candidate_ids(session, window_id) == [ids[1], ids[0]]  # by rank
        assert api.window_candidate_ids(session, quiet_id) == []
        with pytest.raises(ValueError, match="monitor_window_id must be an integer"):
            api.add_candidates(session, seeded.run_id, [
                {"sample_id": seeded.sample_ids[9], "rank": 13, "class_name": "cat",
                 "hardness_score": 0.5, "image_png": TINY_PNG, "monitor_window_id": "w0"}])
    with pytest.raises(IntegrityError), store.Session.begin() as session:  # the key is enforced
        api.add_candidates(session, seeded.run_id, [
            {"sample_id": seeded.sample_ids[9], "rank": 13, "class_name": "cat",
             "hardness_score": 0.5, "image_png": TINY_PNG, "monitor_window_id": 999}])


# --------------------------------------------------------------------------- the windows export


def test_windows_export_rows_and_columns(store, seeded, tmp_path):
    monitor_run_id = new_monitor_run(store, seeded)
    add(store, monitor_run_id, 1, alert=True, alert_signals=["ood", "confidence"], classes_moved=["dog", "cat"],
        root_cause="rare", root_cause_message="no transform restores them", n_errors=2, true_accuracy=0.5,
        estimated_accuracy=math.nan, window_key="b1")
    add(store, monitor_run_id, 0)
    columns, rows = export_rows(store, "stream-1", "windows")
    assert columns == WINDOW_COLUMNS == [
        "window", "window_key", "first_index", "last_index", "n", "n_errors", "estimated_accuracy",
        "accuracy_low", "accuracy_high", "true_accuracy", "alert", "alert_signals", "classes_moved",
        "root_cause", "root_cause_message",
    ]
    assert rows == [
        (0, None, 0, 99, 100, 0, 0.9, 0.85, 0.95, None, False, "", "", None, None),
        (1, "b1", 100, 199, 100, 2, None, 0.85, 0.95, 0.5, True, "ood;confidence", "dog;cat", "rare",
         "no transform restores them"),
    ]
    for fmt in ("csv", "jsonl", "parquet"):
        path = write_rows(columns, rows, tmp_path / f"windows.{fmt}")
        assert read_rows(path) == (columns, rows), fmt  # '' (no alert signal) survives CSV
    with pytest.raises(StoreError, match="no monitor run named 'nope'; monitor runs: stream-1"):
        export_rows(store, "nope", "windows")


# --------------------------------------------------------------------------- Parquet columns


def test_columns_round_trip_through_parquet(tmp_path):
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], dtype=np.float32)
    columns = {
        "source_index": np.array([10, 11, 12]),
        "confidence": [0.9, 0.8, math.nan],
        "predicted": ["cat", "dog", "cat"],
        "probabilities": probabilities,
    }
    path = write_columns(tmp_path / "w0.parquet", columns)
    assert sorted(os.listdir(tmp_path)) == ["w0.parquet"]  # no temporary file left
    read = read_columns("w0.parquet", root=tmp_path)
    assert list(read) == list(columns)
    assert read["source_index"].tolist() == [10, 11, 12]
    np.testing.assert_array_equal(read["confidence"], [0.9, 0.8, math.nan])
    assert read["predicted"].tolist() == ["cat", "dog", "cat"]
    assert read["probabilities"].dtype == np.float32
    np.testing.assert_array_equal(read["probabilities"], probabilities)
    assert read_columns(path, root=tmp_path)["source_index"].tolist() == [10, 11, 12]

    write_columns(path, {"source_index": [1]})  # replaced in place
    assert read_columns(path, root=tmp_path) == {"source_index": np.array([1])}
    with pytest.raises(ValueError, match="column 'b' has 2 values, column 'a' has 3"):
        write_columns(path, {"a": [1, 2, 3], "b": [1, 2]})
    with pytest.raises(ValueError, match="at least one column"):
        write_columns(path, {})
    assert sorted(os.listdir(tmp_path)) == ["w0.parquet"]
    assert read_columns(path, root=tmp_path)["source_index"].tolist() == [1]


def test_read_columns_refuses_files_outside_the_root(tmp_path):
    root = tmp_path / "artifacts"
    outside = tmp_path / "private"
    root.mkdir()
    outside.mkdir()
    write_columns(outside / "secret.parquet", {"x": [1, 2]})
    os.symlink(outside / "secret.parquet", root / "link.parquet")
    os.symlink(outside, root / "folder")
    for path in ("link.parquet", "folder/secret.parquet", "../private/secret.parquet", outside / "secret.parquet"):
        with pytest.raises(ValueError, match="outside"):
            read_columns(path, root=root)
    os.symlink(root / "inside.parquet", root / "inner-link.parquet")
    write_columns(root / "inside.parquet", {"x": [3]})
    assert read_columns("inner-link.parquet", root=root)["x"].tolist() == [3]
