"""Row checks and bulk-insert helpers shared by the store's entity modules."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hardcase.store.errors import StoreError
from hardcase.store.schema import NAME_LENGTH

CHUNK_ROWS = 5000
"""Rows per bulk statement (well under SQLite's 32766 bound parameters)."""


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _dialect_insert(session: Session, table: Table) -> Any:
    """``INSERT`` supporting ``on_conflict_do_*`` on the session's dialect."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise StoreError(f"unsupported database dialect {name!r}")


def _get_or_insert(session: Session, entity: Any, key: str, values: Mapping[str, Any]) -> Any:
    """The ``entity`` row whose unique ``key`` is ``values[key]``, inserted from ``values`` if new.

    Safe when several processes insert the same row at once (``ON CONFLICT DO NOTHING``); the
    row is read back as stored, so the caller can compare it with ``values``.
    """
    table = entity.__table__
    insert = _dialect_insert(session, table).values(**values)
    session.execute(insert.on_conflict_do_nothing(index_elements=[table.c[key]]))
    stored = select(entity).where(getattr(entity, key) == values[key])
    return session.scalars(stored.execution_options(populate_existing=True)).one()


def _add_new(session: Session, row: Any, taken: str) -> Any:
    """Add and flush ``row``; a unique key taken by another writer raises ``StoreError(taken)``."""
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise StoreError(taken) from exc
    return row


def _check_name(what: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > NAME_LENGTH:
        raise ValueError(f"{what} is longer than {NAME_LENGTH} characters: {value[:40]!r}...")
    return value


def _as_float(what: str, value: object, *, nullable: bool) -> float | None:
    if value is None:
        if nullable:
            return None
        raise ValueError(f"{what} must be a number, got None")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be a number, got {value!r}") from exc
    if math.isnan(number):
        raise ValueError(f"{what} is NaN")
    return number


def _as_int(what: str, value: object) -> int:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what} must be an integer, got {value!r}")
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be an integer, got {value!r}") from exc
    if number != value:
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return number


def _as_label(what: str, value: object) -> str | None:
    if value is None:
        return None
    return _check_name(what, str(value) if not isinstance(value, str) else value)


def _check_keys(
    what: str, index: int, row: Mapping[str, Any], required: Sequence[str], optional: Sequence[str]
) -> None:
    missing = [key for key in required if key not in row]
    if missing:
        raise ValueError(f"{what} row {index} lacks {', '.join(missing)}")
    unknown = sorted(set(row) - set(required) - set(optional))
    if unknown:
        raise ValueError(f"{what} row {index} has unknown keys {', '.join(unknown)}")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(what: str, moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware, got {moment.isoformat()}")
    return moment


def _chunks(count: int) -> list[range]:
    return [range(start, min(count, start + CHUNK_ROWS)) for start in range(0, count, CHUNK_ROWS)]


def _insert_ignoring_duplicates(
    session: Session, table: Table, key: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    if not rows:
        return
    statement = _dialect_insert(session, table).on_conflict_do_nothing(
        index_elements=[table.c[name] for name in key]
    )
    for chunk in _chunks(len(rows)):
        session.execute(statement, [rows[position] for position in chunk])


def _executemany(session: Session, sql: str, rows: Sequence[tuple]) -> None:
    """Run ``sql`` (written with ``?`` placeholders) once per row through the DB-API driver.

    Only for statements built here from column names, never from user input. Both supported
    dialects accept ``INSERT ... ON CONFLICT (...) DO NOTHING``.
    """
    connection = session.connection()
    if connection.dialect.name not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported database dialect {connection.dialect.name!r}")
    if connection.dialect.paramstyle != "qmark":
        sql = sql.replace("?", "%s")
    for chunk in _chunks(len(rows)):
        connection.exec_driver_sql(sql, [rows[i] for i in chunk])
