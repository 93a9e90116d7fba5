"""Exports of a run: scores, candidates, the fix list and the raw review history; a monitor
run's windows.

``export_rows`` reads everything in one read-only transaction, so an export
taken while reviewers keep writing is one consistent snapshot.
``write_rows``/``read_rows`` store rows as CSV, JSONL or Parquet and read them
back with the same Python values (round trip). JSON-valued fields
(``evidence``, ``transform``, ``reviewers``) are JSON text in CSV and Parquet
and plain JSON in JSONL; timestamps are ISO 8601 in UTC.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from hardcase.miner.vocabulary import SCORE_FIELDS, SKIP
from hardcase.store.api import effective_reviews, require_monitor_run, require_run
from hardcase.store.db import Store
from hardcase.store.schema import Candidate, MonitorWindow, Review, RunError, Sample, Score

SCORE_COLUMNS: list[str] = ["sample_id", "source_index", "given_label", *SCORE_FIELDS, "uri"]
"""``uri`` (file path for folders and manifests, ``path#row`` for arrays) comes last, so the
earlier columns keep their places."""

_CANDIDATE_STORED: list[str] = SCORE_COLUMNS + [
    "rank",
    "pick_distance",
    "suggested_cause",
    "suggested_label",
    "suggestion_confidence",
    "evidence",
]
"""The candidate columns read from the database; the rest are derived from the review history."""

CANDIDATE_COLUMNS: list[str] = _CANDIDATE_STORED + ["n_reviews", "final_cause", "final_label"]

FIX_COLUMNS: list[str] = [
    "sample_id",
    "source_index",
    "uri",
    "given_label",
    "predicted_label",
    "suggested_cause",
    "suggested_label",
    "final_cause",
    "final_label",
    "transform",
    "n_reviews",
    "reviewers",
    "agreement",
    "conflict",
    "decided_at",
]

REVIEW_COLUMNS: list[str] = [
    "review_id",
    "candidate_id",
    "sample_id",
    "rank",
    "reviewer",
    "cause",
    "new_label",
    "note",
    "transform",
    "seen_version",
    "version",
    "conflict",
    "retracts_review_id",
    "created_at",
]

ERROR_COLUMNS: list[str] = ["source_index", "uri", "reason"]

WINDOW_COLUMNS: list[str] = [
    "window",
    "window_key",
    "first_index",
    "last_index",
    "n",
    "n_errors",
    "estimated_accuracy",
    "accuracy_low",
    "accuracy_high",
    "true_accuracy",
    "alert",
    "alert_signals",
    "classes_moved",
    "root_cause",
    "root_cause_message",
]
"""A monitor run's windows; ``window`` is the window index, the lists are joined with ``;``."""

LIST_SEPARATOR = ";"
"""Joins the list-valued window columns (signal and class names) into one text value."""

EXPORTS: dict[str, list[str]] = {
    "scores": SCORE_COLUMNS,
    "errors": ERROR_COLUMNS,
    "candidates": CANDIDATE_COLUMNS,
    "fixes": FIX_COLUMNS,
    "reviews": REVIEW_COLUMNS,
}
"""What ``export_rows`` can export of a mining run, and its columns."""

MONITOR_EXPORTS: dict[str, list[str]] = {"windows": WINDOW_COLUMNS}
"""What ``export_rows`` can export of a monitor run, and its columns."""

FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet")

INT, FLOAT, STR, TEXT, BOOL, JSON, TIME = "int", "float", "str", "text", "bool", "json", "time"
"""Column kinds; STR may be NULL, TEXT is never NULL (so '' survives CSV)."""

COLUMN_KINDS: dict[str, str] = {
    **dict.fromkeys(
        [
            "sample_id",
            "source_index",
            "rank",
            "n_reviews",
            "review_id",
            "candidate_id",
            "seen_version",
            "version",
            "retracts_review_id",
            "window",
            "first_index",
            "last_index",
            "n",
            "n_errors",
        ],
        INT,
    ),
    **dict.fromkeys(
        [
            *(field for field in SCORE_FIELDS if field != "predicted_label"),
            "pick_distance",
            "suggestion_confidence",
            "agreement",
            "estimated_accuracy",
            "accuracy_low",
            "accuracy_high",
            "true_accuracy",
        ],
        FLOAT,
    ),
    **dict.fromkeys(
        [
            "given_label",
            "predicted_label",
            "uri",
            "suggested_cause",
            "suggested_label",
            "final_cause",
            "final_label",
            "reviewer",
            "cause",
            "new_label",
            "window_key",
            "root_cause",
            "root_cause_message",
        ],
        STR,
    ),
    **dict.fromkeys(["note", "reason", "alert_signals", "classes_moved"], TEXT),
    **dict.fromkeys(["conflict", "alert"], BOOL),
    **dict.fromkeys(["evidence", "transform", "reviewers"], JSON),
    **dict.fromkeys(["decided_at", "created_at"], TIME),
}

Row = tuple[Any, ...]


# --------------------------------------------------------------------------- reading the store


def _column(name: str, *entities: Any) -> Any:
    """Column ``name`` of the first of ``entities`` (ORM classes) that has one.

    The selects below take their columns from the export's column list, so each export's
    columns are listed once.
    """
    for entity in entities:
        if name in entity.__table__.c:
            return getattr(entity, name)
    raise LookupError(f"no table of {', '.join(e.__name__ for e in entities)} has a column {name!r}")


def _review_query(run_id: int) -> Any:
    """A run's reviews in ``REVIEW_COLUMNS`` order; ``review_id`` is the row's ``id``
    (the name ``effective_reviews`` reads)."""
    return (
        select(
            *(
                Review.id if name == "review_id" else _column(name, Review, Candidate)
                for name in REVIEW_COLUMNS
            )
        )
        .join(Candidate, Candidate.id == Review.candidate_id)
        .where(Candidate.run_id == run_id)
    )


def _reviews_by_candidate(session: Session, run_id: int) -> dict[int, list[Any]]:
    rows = session.execute(_review_query(run_id).order_by(Review.candidate_id, Review.version))
    history: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        history[row.candidate_id].append(row)
    return history


def summarize(history: Sequence[Any]) -> dict[str, Any]:
    """Derived state of one candidate from its review history.

    Returns
    -------
    dict
        ``n_reviews`` (standing reviews, skips included), ``final`` (the latest
        standing non-skip review or None), ``reviewers`` (list, oldest first),
        ``agreement`` (share of standing non-skip reviews with the final
        cause), ``conflict`` (a standing review was stored as a conflict).
    """
    standing = effective_reviews(history)
    judged = [review for review in standing if review.cause != SKIP]
    final = judged[-1] if judged else None
    agreement = None
    if final is not None:
        agreement = sum(review.cause == final.cause for review in judged) / len(judged)
    return {
        "n_reviews": len(standing),
        "final": final,
        "reviewers": list(dict.fromkeys(review.reviewer for review in standing)),
        "agreement": agreement,
        "conflict": any(review.conflict for review in standing),
    }


def _score_rows(session: Session, run_id: int) -> list[Row]:
    rows = session.execute(
        select(*(_column(name, Score, Sample) for name in SCORE_COLUMNS))
        .join(Sample, Sample.id == Score.sample_id)
        .where(Score.run_id == run_id)
        .order_by(Sample.source_index)
    )
    return [tuple(row) for row in rows]


def _error_rows(session: Session, run_id: int) -> list[Row]:
    rows = session.execute(
        select(*(_column(name, RunError) for name in ERROR_COLUMNS))
        .where(RunError.run_id == run_id)
        .order_by(RunError.source_index)
    )
    return [tuple(row) for row in rows]


def _candidate_query(run_id: int) -> Any:
    return (
        select(
            Candidate.id.label("candidate_id"),
            # Candidate first: it keeps the hardness it was selected by; the other scores are the run's
            *(_column(name, Candidate, Sample, Score) for name in _CANDIDATE_STORED),
        )
        .join(Sample, Sample.id == Candidate.sample_id)
        .outerjoin(
            Score, and_(Score.run_id == Candidate.run_id, Score.sample_id == Candidate.sample_id)
        )
        .where(Candidate.run_id == run_id)
        .order_by(Candidate.rank)
    )


def _summarized_candidates(
    session: Session, run_id: int
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """A run's candidates by rank: their stored columns by name, and ``summarize`` of their history."""
    history = _reviews_by_candidate(session, run_id)
    for candidate in session.execute(_candidate_query(run_id)):
        yield candidate._asdict(), summarize(history.get(candidate.candidate_id, []))


def _candidate_rows(session: Session, run_id: int) -> list[Row]:
    rows = []
    for values, summary in _summarized_candidates(session, run_id):
        final = summary["final"]
        values["n_reviews"] = summary["n_reviews"]
        values["final_cause"] = None if final is None else final.cause
        values["final_label"] = None if final is None else final.new_label
        rows.append(tuple(values[column] for column in CANDIDATE_COLUMNS))
    return rows


def _fix_rows(session: Session, run_id: int) -> list[Row]:
    rows = []
    for values, summary in _summarized_candidates(session, run_id):
        final = summary["final"]
        if final is None:
            continue
        values.update(
            final_cause=final.cause,
            final_label=final.new_label,
            transform=final.transform,
            n_reviews=summary["n_reviews"],
            reviewers=summary["reviewers"],
            agreement=summary["agreement"],
            conflict=summary["conflict"],
            decided_at=final.created_at,
        )
        rows.append(tuple(values[column] for column in FIX_COLUMNS))
    return rows


def _review_rows(session: Session, run_id: int) -> list[Row]:
    return [tuple(row) for row in session.execute(_review_query(run_id).order_by(Review.id))]


def _window_rows(session: Session, monitor_run_id: int) -> list[Row]:
    listed = ("alert_signals", "classes_moved")
    rows = session.execute(
        select(
            *(
                MonitorWindow.window_index if name == "window" else _column(name, MonitorWindow)
                for name in WINDOW_COLUMNS
            )
        )
        .where(MonitorWindow.monitor_run_id == monitor_run_id)
        .order_by(MonitorWindow.window_index)
    )
    return [
        tuple(
            LIST_SEPARATOR.join(value) if name in listed else value
            for name, value in zip(WINDOW_COLUMNS, row)
        )
        for row in rows
    ]


def export_rows(store: Store, run_name: str, what: str) -> tuple[list[str], list[Row]]:
    """Rows of one export of a run, read from one consistent snapshot.

    Parameters
    ----------
    run_name
        The mining run, or for ``'windows'`` the monitor run.
    what
        ``'scores'`` (every scored sample), ``'candidates'`` (every candidate,
        by rank, with its final decision), ``'fixes'`` (candidates with a
        final non-skip decision, by rank), ``'reviews'`` (the full review
        history, retractions included, by id) or ``'windows'`` (a monitor
        run's windows, by index).

    Returns
    -------
    (columns, rows)
        Column names (``EXPORTS[what]`` or ``MONITOR_EXPORTS[what]``) and value tuples.
    """
    columns = EXPORTS.get(what) or MONITOR_EXPORTS.get(what)
    if columns is None:
        raise ValueError(f"export must be one of {', '.join([*EXPORTS, *MONITOR_EXPORTS])}, got {what!r}")
    readers = {
        "scores": _score_rows,
        "errors": _error_rows,
        "candidates": _candidate_rows,
        "fixes": _fix_rows,
        "reviews": _review_rows,
        "windows": _window_rows,
    }
    find_run = require_monitor_run if what in MONITOR_EXPORTS else require_run
    with store.snapshot() as session:
        run = find_run(session, run_name)  # the first read fixes the SQLite snapshot
        rows = readers[what](session, run.id)
    return list(columns), rows


# --------------------------------------------------------------------------- files


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is None:
        fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r} ({path})")
    return fmt


def _kinds(columns: Sequence[str]) -> list[str]:
    unknown = [column for column in columns if column not in COLUMN_KINDS]
    if unknown:
        raise ValueError(f"unknown export columns: {', '.join(unknown)}")
    return [COLUMN_KINDS[column] for column in columns]


def _to_text(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == BOOL:
        return "true" if value else "false"
    if kind == FLOAT:
        return repr(float(value))
    if kind == JSON:
        return json.dumps(value, sort_keys=True)
    if kind == TIME:
        return value.isoformat()
    return str(value)


def _from_text(kind: str, text: str) -> Any:
    if text == "":
        return "" if kind == TEXT else None
    if kind == INT:
        return int(text)
    if kind == FLOAT:
        return float(text)
    if kind == BOOL:
        if text not in ("true", "false"):
            raise ValueError(f"not a boolean: {text!r}")
        return text == "true"
    if kind == JSON:
        return json.loads(text)
    if kind == TIME:
        return dt.datetime.fromisoformat(text)
    return text


def _to_json_value(kind: str, value: Any) -> Any:
    if value is not None and kind == TIME:
        return value.isoformat()
    if value is not None and kind == FLOAT:
        return float(value)
    return value


def _from_json_value(kind: str, value: Any) -> Any:
    if value is not None and kind == TIME:
        return dt.datetime.fromisoformat(value)
    return value


def _arrow_type(kind: str) -> Any:
    import pyarrow as pa

    return {
        INT: pa.int64(),
        FLOAT: pa.float64(),
        STR: pa.string(),
        TEXT: pa.string(),
        BOOL: pa.bool_(),
        JSON: pa.string(),
        TIME: pa.timestamp("us", tz="UTC"),
    }[kind]


#: Rows written between two progress reports of :func:`write_rows`.
PROGRESS_EVERY = 10_000


def write_rows(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    path: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write export rows to ``path`` as CSV, JSONL or Parquet (by ``fmt`` or suffix).

    The file is written next to ``path`` and renamed into place, so a crash
    never leaves a half-written export. ``progress(done, total)`` is called every
    :data:`PROGRESS_EVERY` rows (Parquet: every column) and once at the end.
    """
    target = Path(path)
    fmt = _format_of(target, fmt)
    kinds = _kinds(columns)
    rows = [tuple(row) for row in rows]
    for number, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(f"row {number} has {len(row)} values for {len(columns)} columns")
    partial = target.with_name(target.name + ".partial")
    total = len(rows)
    report = progress or (lambda done, total: None)
    if fmt == "csv":
        with partial.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for number, row in enumerate(rows, start=1):
                writer.writerow([_to_text(kind, value) for kind, value in zip(kinds, row)])
                if number % PROGRESS_EVERY == 0:
                    report(number, total)
    elif fmt == "jsonl":
        with partial.open("w", encoding="utf-8") as handle:
            for number, row in enumerate(rows, start=1):
                record = {
                    column: _to_json_value(kind, value)
                    for column, kind, value in zip(columns, kinds, row)
                }
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                if number % PROGRESS_EVERY == 0:
                    report(number, total)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays = []
        for position, kind in enumerate(kinds):
            values = [row[position] for row in rows]
            if kind == JSON:
                values = [
                    None if value is None else json.dumps(value, sort_keys=True) for value in values
                ]
            arrays.append(pa.array(values, type=_arrow_type(kind)))
            report(total * (position + 1) // (len(kinds) + 1), total)
        pq.write_table(pa.Table.from_arrays(arrays, names=list(columns)), partial)
    os.replace(partial, target)
    report(total, total)
    return target


def read_rows(path: str | os.PathLike[str], fmt: str | None = None) -> tuple[list[str], list[Row]]:
    """Read a file written by ``write_rows`` back into ``(columns, rows)``.

    A JSONL file without rows has no columns.
    """
    source = Path(path)
    fmt = _format_of(source, fmt)
    if fmt == "csv":
        with source.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            columns = next(reader, [])
            kinds = _kinds(columns)
            rows = [
                tuple(_from_text(kind, text) for kind, text in zip(kinds, record))
                for record in reader
            ]
        return list(columns), rows
    if fmt == "jsonl":
        columns: list[str] = []
        rows = []
        with source.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                record = json.loads(line)
                if not columns:
                    columns = list(record)
                    kinds = _kinds(columns)
                rows.append(
                    tuple(
                        _from_json_value(kind, record[column])
                        for column, kind in zip(columns, kinds)
                    )
                )
        return columns, rows

    import pyarrow.parquet as pq

    table = pq.read_table(source)
    columns = list(table.column_names)
    kinds = _kinds(columns)
    values = []
    for column, kind in zip(columns, kinds):
        data = table.column(column).to_pylist()
        if kind == JSON:
            data = [None if item is None else json.loads(item) for item in data]
        if kind == TIME:
            data = [None if item is None else item.astimezone(dt.UTC) for item in data]
        values.append(data)
    return columns, list(zip(*values)) if values else []
