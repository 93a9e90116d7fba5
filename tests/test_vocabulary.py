"""The shared vocabulary is what the database enforces and what every layer reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sqlalchemy import CheckConstraint

from hardcase.miner import vocabulary
from hardcase.store.schema import Candidate, MonitorSignal, MonitorWindow, Review, Run, Score, User

REPO = Path(__file__).resolve().parents[1]


def _allowed(table, name: str) -> set[str]:
    """The quoted values of the named CHECK constraint ``col IN ('a', 'b')`` of ``table``."""
    for constraint in table.__table__.constraints:
        if isinstance(constraint, CheckConstraint) and str(constraint.name).endswith(name):
            text = str(constraint.sqltext)
            inside = text[text.index("(") + 1 : text.rindex(")")]
            return {part.strip().strip("'") for part in inside.split(",")}
    raise AssertionError(f"{table.__tablename__} has no CHECK constraint named {name}")


@pytest.mark.parametrize(
    ("table", "constraint", "values"),
    [
        (Candidate, "suggested_cause", vocabulary.SUGGESTED_CAUSES),
        (Candidate, "decision", vocabulary.DECISIONS),
        (Review, "cause", vocabulary.DECISIONS),
        (Run, "status", vocabulary.RUN_STATUSES),
        (User, "role", vocabulary.ROLES),
        (MonitorSignal, "signal", vocabulary.MONITOR_SIGNALS),
        (MonitorWindow, "root_cause", vocabulary.ROOT_CAUSES),
    ],
)
def test_schema_constraints_are_the_vocabulary(table, constraint, values):
    assert _allowed(table, constraint) == set(values)


def test_score_columns_are_the_score_fields():
    columns = {column.name for column in Score.__table__.columns}
    assert set(vocabulary.SCORE_FIELDS) - {"predicted_label"} <= columns
    # label-dependent scores are nullable, the others are not
    for name in vocabulary.SCORE_FIELDS:
        if name == "predicted_label":
            continue
        assert Score.__table__.columns[name].nullable == (name in vocabulary.LABEL_SCORE_FIELDS), name


def test_vocabulary_is_consistent():
    assert set(vocabulary.CAUSES) < set(vocabulary.DECISIONS)
    assert set(vocabulary.CAUSES) < set(vocabulary.SUGGESTED_CAUSES)
    assert set(vocabulary.LABEL_SCORE_FIELDS) < set(vocabulary.SCORE_FIELDS)
    assert len(set(vocabulary.DECISIONS)) == len(vocabulary.DECISIONS)


def test_vocabulary_imports_nothing():
    tree = ast.parse((REPO / "miner" / "vocabulary.py").read_text())
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]
    assert [node.module for node in imports if isinstance(node, ast.ImportFrom)] == ["__future__"]
    assert not [node for node in imports if isinstance(node, ast.Import)]


def test_migrated_database_enforces_the_vocabulary(tmp_path):
    """The Alembic migrations (not just the ORM models) build the constraints from these words."""
    from sqlalchemy import text

    from hardcase.store.db import open_store

    store = open_store(f"sqlite:///{tmp_path / 'v.db'}")
    try:
        with store.engine.connect() as conn:
            ddl = {name: sql for name, sql in conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type='table'"))}
    finally:
        store.dispose()
    for table, column, values in [
        ("candidates", "suggested_cause", vocabulary.SUGGESTED_CAUSES),
        ("candidates", "decision", vocabulary.DECISIONS),
        ("reviews", "cause", vocabulary.DECISIONS),
        ("runs", "status", vocabulary.RUN_STATUSES),
        ("users", "role", vocabulary.ROLES),
        ("monitor_signals", "signal", vocabulary.MONITOR_SIGNALS),
        ("monitor_windows", "root_cause", vocabulary.ROOT_CAUSES),
    ]:
        sql = ddl[table]
        start = sql.index(f"{column} IN (")
        listed = sql[start + len(column) + 5 : sql.index(")", start)]
        assert {part.strip().strip("'") for part in listed.split(",")} == set(values), (table, column)
