"""Per-sample scores and unreadable rows of a run, written in bulk while mining."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hardcase.miner.vocabulary import LABEL_SCORE_FIELDS, SCORE_FIELDS
from hardcase.store._rows import (
    _as_float,
    _as_int,
    _as_label,
    _check_keys,
    _executemany,
    _insert_ignoring_duplicates,
)
from hardcase.store.schema import RunError, Score

_ALWAYS_FLOATS = tuple(
    name for name in SCORE_FIELDS if name != "predicted_label" and name not in LABEL_SCORE_FIELDS
)
"""The numeric scores every row has: ``confidence, margin, entropy, hardness_score``."""

SCORE_REQUIRED = ("sample_id", "predicted_label", *_ALWAYS_FLOATS)


SCORE_OPTIONAL = LABEL_SCORE_FIELDS


ERROR_REQUIRED = ("source_index", "reason")


ERROR_OPTIONAL = ("uri",)


def scored_sample_ids(session: Session, run_id: int) -> set[int]:
    """Ids of the samples a run has already scored (to resume an interrupted run)."""
    return set(session.scalars(select(Score.sample_id).where(Score.run_id == run_id)))


def add_scores(session: Session, run_id: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """Store per-sample scores; rows already stored for the run are left as they are.

    Each row has ``sample_id, predicted_label, confidence, margin, entropy,
    hardness_score`` and optionally ``self_confidence, normalized_margin,
    loss, label_quality_score``. NumPy scalars are accepted.
    """
    prepared = []
    for index, row in enumerate(rows):
        _check_keys("score", index, row, SCORE_REQUIRED, SCORE_OPTIONAL)
        record: dict[str, Any] = {
            "run_id": run_id,
            "sample_id": _as_int("sample_id", row["sample_id"]),
            "predicted_label": _as_label("predicted_label", row["predicted_label"]),
        }
        for field in _ALWAYS_FLOATS:
            record[field] = _as_float(f"score row {index} {field}", row[field], nullable=False)
        for field in SCORE_OPTIONAL:
            record[field] = _as_float(f"score row {index} {field}", row.get(field), nullable=True)
        prepared.append(record)
    _insert_ignoring_duplicates(session, Score.__table__, ("run_id", "sample_id"), prepared)


def add_errors(session: Session, run_id: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """Record samples a run could not score (``source_index, reason``, optional ``uri``).

    An error already recorded for the same source index is left as it is.
    """
    prepared = []
    for index, row in enumerate(rows):
        _check_keys("error", index, row, ERROR_REQUIRED, ERROR_OPTIONAL)
        uri = row.get("uri")
        prepared.append(
            {
                "run_id": run_id,
                "source_index": _as_int("source_index", row["source_index"]),
                "uri": None if uri is None else str(uri),
                "reason": str(row["reason"]),
            }
        )
    _insert_ignoring_duplicates(session, RunError.__table__, ("run_id", "source_index"), prepared)


def add_score_columns(
    session: Session,
    run_id: int,
    *,
    sample_id: Sequence[int],
    predicted_label: Sequence[str],
    **columns: Sequence[float],
) -> None:
    """Store per-sample scores given as columns (the fast path for whole pools).

    The same contract as :func:`add_scores`: ``confidence, margin, entropy, hardness_score``
    are required and finite; ``self_confidence, normalized_margin, loss,
    label_quality_score`` are optional, NaN meaning unknown. Rows already stored are kept.
    """
    import numpy as np

    unknown = sorted(set(columns) - set(SCORE_REQUIRED) - set(SCORE_OPTIONAL))
    if unknown:
        raise ValueError(f"unknown score columns {', '.join(unknown)}")
    n = len(sample_id)
    if len(predicted_label) != n:
        raise ValueError(f"predicted_label has {len(predicted_label)} entries but sample_id has {n}")
    values: dict[str, list] = {}
    for field in (*_ALWAYS_FLOATS, *SCORE_OPTIONAL):
        if field not in columns:
            if field in SCORE_REQUIRED:
                raise ValueError(f"score column {field} is missing")
            values[field] = [None] * n
            continue
        array = np.asarray(columns[field], dtype=np.float64)
        if array.shape != (n,):
            raise ValueError(f"score column {field} has shape {array.shape}, expected ({n},)")
        finite = np.isfinite(array)
        if field in SCORE_REQUIRED and not finite.all():
            raise ValueError(f"score column {field} is not finite at row {int(np.argmin(finite))}")
        values[field] = np.where(finite, array, None).tolist()  # NaN -> NULL
    ids = [int(i) for i in sample_id]
    labels = [_as_label("predicted_label", label) for label in predicted_label]
    names = list(values)
    table = Score.__table__
    # one driver-level executemany over plain tuples: whole pools are inserted while mining
    # streams, and building SQLAlchemy parameter dicts cost more than the insert itself
    column_list = ", ".join(["run_id", "sample_id", "predicted_label", *names])
    marks = ", ".join(["?"] * (3 + len(names)))
    rows = list(zip([run_id] * n, ids, labels, *(values[k] for k in names), strict=True))
    _executemany(
        session,
        f"INSERT INTO {table.name} ({column_list}) VALUES ({marks}) ON CONFLICT (run_id, sample_id) DO NOTHING",
        rows,
    )


def update_score_column(
    session: Session, run_id: int, column: str, *, sample_id: Sequence[int], values: Sequence[float]
) -> None:
    """Overwrite one optional score column of scores already stored (NaN = unknown, NULL).

    For scores that need the whole pool before they are known, e.g. ``label_quality_score``
    (per-class thresholds of the pool): the other columns are stored while mining streams,
    this one once the pool is complete. Rows not stored are ignored.
    """
    import numpy as np

    if column not in SCORE_OPTIONAL:
        raise ValueError(f"update_score_column: {column!r} is not one of {', '.join(SCORE_OPTIONAL)}")
    array = np.asarray(values, dtype=np.float64)
    n = len(sample_id)
    if array.shape != (n,):
        raise ValueError(f"values has shape {array.shape}, expected ({n},)")
    ids = [int(i) for i in sample_id]
    finite = np.isfinite(array).tolist()
    rows = [(v if ok else None, run_id, i) for v, ok, i in zip(array.tolist(), finite, ids, strict=True)]
    _executemany(session, f"UPDATE {Score.__table__.name} SET {column} = ? WHERE run_id = ? AND sample_id = ?", rows)


def count_scores(session: Session, run_id: int) -> int:
    """Number of samples with stored scores in a run."""
    return int(session.scalar(select(func.count()).select_from(Score).where(Score.run_id == run_id)) or 0)
