"""Opening a hardcase database: URL checks, engine set-up and Alembic migrations.

SQLite (the default, one file) runs in WAL mode with ``synchronous=NORMAL``, a
30 s busy timeout and foreign keys on. pysqlite's own transaction handling is
switched off and every write transaction starts with ``BEGIN IMMEDIATE`` (the
SQLAlchemy "manual BEGIN" recipe), so concurrent writers queue on the busy
timeout instead of failing with "database is locked". Read-only snapshots
(``Store.snapshot``) start with a deferred ``BEGIN`` and never block writers.

PostgreSQL (for teams) is reached through psycopg 3 (``postgresql+psycopg://``;
plain ``postgresql://`` URLs are mapped to it).

Usage::

    store = open_store("sqlite:///hardcase.db")   # migrates to the newest schema
    with store.Session.begin() as session:        # one transaction per unit of work
        ...
    store.dispose()
"""

from __future__ import annotations

import functools
import os
import random
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from hardcase.store.errors import StoreError, StoreFullError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
"""Alembic script directory shipped inside the package."""

SQLITE_BUSY_TIMEOUT_SECONDS = 30
"""How long a SQLite writer waits for another writer before giving up."""

POSTGRES_CONNECT_TIMEOUT_SECONDS = 10
"""How long to wait for a PostgreSQL server to answer."""

MIGRATION_LOCK_KEY = 0x6861726463617365 & 0x7FFFFFFFFFFFFFFF
"""PostgreSQL advisory lock that serialises concurrent migrations."""

SNAPSHOT_OPTION = "hardcase_snapshot"
"""Execution option: begin a read-only deferred transaction on SQLite."""

SQLITE_HEADER = b"SQLite format 3\x00"

URL_HELP = "use sqlite:///path/to/hardcase.db or postgresql+psycopg://user@host:5432/dbname"


@dataclass(frozen=True)
class Store:
    """An opened database.

    Attributes
    ----------
    engine
        The SQLAlchemy engine.
    Session
        Session factory; use ``with store.Session.begin() as session:`` for
        one unit of work. Objects stay readable after commit.
    url
        The normalised URL (``str(url)`` masks the password).
    """

    engine: Engine
    Session: sessionmaker[Session]
    url: URL

    @property
    def dialect(self) -> str:
        """``'sqlite'`` or ``'postgresql'``."""
        return self.engine.dialect.name

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only session seeing one consistent snapshot of the database.

        PostgreSQL: a ``REPEATABLE READ READ ONLY`` transaction. SQLite: one
        deferred ``BEGIN`` with ``PRAGMA query_only``, whose snapshot is fixed
        by its first read (WAL mode keeps it stable while writers commit).
        Writers are never blocked by it.
        """
        if self.dialect == "postgresql":
            bind = self.engine.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        else:
            bind = self.engine.execution_options(**{SNAPSHOT_OPTION: True})
        with Session(bind=bind, expire_on_commit=False) as session, session.begin():
            yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def mask_url(raw: str | URL) -> str:
    """The URL as text with any password replaced by ``***``."""
    if isinstance(raw, URL):
        return raw.render_as_string(hide_password=True)
    try:
        return make_url(raw).render_as_string(hide_password=True)
    except (ArgumentError, ValueError, TypeError):
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", str(raw))


def parse_url(raw: str | URL) -> URL:
    """Validate a database URL and normalise its driver.

    Parameters
    ----------
    raw
        ``sqlite:///file.db``, ``postgresql+psycopg://...`` or ``postgresql://...``.

    Returns
    -------
    URL
        With ``postgresql``/``postgres`` mapped to ``postgresql+psycopg``.

    Raises
    ------
    StoreError
        Unparseable URL or unsupported driver; the message masks the password.
    """
    if not isinstance(raw, (str, URL)):
        raise StoreError(f"database URL must be a string, not {type(raw).__name__}; {URL_HELP}")
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(f"not a database URL: {mask_url(raw)!r}; {URL_HELP}") from exc
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        return url
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    raise StoreError(
        f"unsupported database driver {url.drivername!r} in {mask_url(url)!r}; {URL_HELP}"
    )


def _is_writable(path: Path) -> bool:
    """Writable for us, and not marked read-only (root ignores permission bits)."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for an in-memory database."""
    database = url.database
    if not database or database == ":memory:":
        return None
    return Path(database)


def _check_sqlite_file(url: URL) -> None:
    """Refuse SQLite targets hardcase could not write to, before touching them."""
    if url.query:
        raise StoreError(f"SQLite URL options are not supported: {mask_url(url)!r}; {URL_HELP}")
    path = sqlite_path(url)
    if path is None:
        return
    if path.name.startswith("file:") or str(path).startswith("file:"):
        raise StoreError(f"SQLite URI filenames are not supported: {str(path)!r}; {URL_HELP}")
    directory = path.absolute().parent
    if not directory.is_dir():
        raise StoreError(f"directory {str(directory)!r} for database {str(path)!r} does not exist")
    if path.exists():
        if not path.is_file():
            raise StoreError(f"database path {str(path)!r} is not a file")
        if not _is_writable(path):
            raise StoreError(f"database file {str(path)!r} is read-only; hardcase must write to it")
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
        if header and header != SQLITE_HEADER:
            raise StoreError(f"{str(path)!r} is not a SQLite database")
    if not _is_writable(directory):
        raise StoreError(
            f"directory {str(directory)!r} is read-only; SQLite needs to create "
            f"{path.name}-wal and {path.name}-shm next to the database"
        )


def enable_wal(cursor: Any) -> None:
    """Switch the database file to WAL mode (a no-op once it is in WAL mode).

    Several processes opening a brand-new file at once can deadlock on the
    switch (SQLite then answers "database is locked" at once, without
    waiting), so the switch is retried after a short random pause.
    """
    mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
    if mode in ("wal", "memory"):
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))
    if mode != "wal":
        raise StoreError(
            f"SQLite could not switch the database to WAL mode (it stays in {mode!r} mode); "
            "put the database file on a local disk"
        )


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    """Per-connection SQLite settings; also hands BEGIN over to SQLAlchemy."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    """Start write transactions immediately (take the write lock up front).

    Snapshot transactions begin deferred and run with ``PRAGMA query_only``
    so they cannot write, like PostgreSQL's ``READ ONLY``.
    """
    pooled = connection.connection
    query_only = bool(connection.get_execution_options().get(SNAPSHOT_OPTION))
    if pooled.info.get("query_only", False) != query_only:
        pooled.driver_connection.execute(f"PRAGMA query_only = {int(query_only)}")
        pooled.info["query_only"] = query_only
    connection.exec_driver_sql("BEGIN" if query_only else "BEGIN IMMEDIATE")


def _make_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        if sqlite_path(url) is None:
            engine = create_engine(
                url,
                poolclass=StaticPool,
                connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
        else:
            engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    else:
        engine = create_engine(
            url,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS,
                "application_name": "hardcase",
            },
        )
    event.listen(engine, "handle_error", _full_device_as_store_error)
    return engine


#: How each backend says its device is full: SQLite's SQLITE_FULL message, PostgreSQL's
#: SQLSTATE 53100 (disk_full) and the "could not extend file" / "could not write" it raises.
_FULL_DEVICE = ("database or disk is full", "no space left on device")


def _full_device_as_store_error(context) -> StoreFullError | None:
    """A full disk reaches users as one plain sentence, not the driver's message and SQL."""
    original = context.original_exception
    text = str(original).lower()
    if getattr(original, "sqlstate", None) == "53100" or any(marker in text for marker in _FULL_DEVICE):
        where = mask_url(context.engine.url) if context.engine is not None else "the database"
        return StoreFullError(
            f"the database {where!r} has no space left on its device: nothing of this action was saved; "
            "free some space and try again"
        )
    return None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config built in code (no alembic.ini needed).

    Parameters
    ----------
    connection
        Handed to ``env.py``; it must already be inside a transaction.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


@functools.lru_cache(maxsize=1)
def _script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest schema revision this hardcase knows."""
    head = _script_directory().get_current_head()
    if head is None:
        raise StoreError(f"no migrations found in {str(MIGRATIONS_DIR)!r}")
    return head


def known_revisions() -> set[str]:
    """Every schema revision this hardcase knows."""
    return {script.revision for script in _script_directory().walk_revisions()}


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _refuse_newer(revision: str | None, url: URL) -> None:
    if revision is not None and revision not in known_revisions():
        raise StoreError(
            f"database schema {revision} of {mask_url(url)!r} is newer than this hardcase "
            f"(head {head_revision()}); upgrade hardcase"
        )


@contextmanager
def migration_connection(store: Store) -> Iterator[Connection]:
    """A connection inside the transaction a migration runs in.

    SQLite: foreign-key enforcement is switched off around the transaction
    (as SQLite's ALTER TABLE procedure requires) and ``foreign_key_check``
    must pass before commit. PostgreSQL: an advisory lock serialises
    concurrent migrations (several app processes starting at once).
    """
    with store.engine.connect() as connection:
        is_sqlite = store.dialect == "sqlite"
        raw = connection.connection.driver_connection if is_sqlite else None
        if raw is not None:
            raw.execute("PRAGMA foreign_keys = OFF")
        try:
            with connection.begin():
                if not is_sqlite:
                    connection.exec_driver_sql(
                        f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
                    )
                yield connection
                if is_sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise StoreError(
                            f"migration left {len(broken)} broken foreign keys, first: {broken[0]}"
                        )
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys = ON")


def _run_alembic(store: Store, name: str, revision: str) -> None:
    with migration_connection(store) as connection:
        _refuse_newer(_revision_of(connection), store.url)
        config = alembic_config(connection)
        try:
            if name == "upgrade":
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
        except CommandError as exc:
            raise StoreError(
                f"cannot {name} {mask_url(store.url)!r} to {revision!r}: {exc}"
            ) from exc


def upgrade(store: Store, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` in one transaction."""
    _run_alembic(store, "upgrade", revision)


def downgrade(store: Store, revision: str) -> None:
    """Migrate the database down to ``revision`` (``"base"`` drops every table)."""
    _run_alembic(store, "downgrade", revision)


def current_revision(store: Store) -> str | None:
    """The schema revision the database is at (None for an empty database)."""
    with store.engine.connect().execution_options(**{SNAPSHOT_OPTION: True}) as connection:
        return _revision_of(connection)


def open_store(url: str | URL, *, upgrade: bool = True) -> Store:
    """Open (and by default migrate) a hardcase database.

    Parameters
    ----------
    url
        ``sqlite:///path/file.db`` (the directory must exist) or
        ``postgresql+psycopg://user:password@host:port/dbname``.
    upgrade
        Migrate to the newest schema if the database is older (or empty).

    Returns
    -------
    Store

    Raises
    ------
    StoreError
        Bad URL or driver, missing directory, read-only file, unreachable
        server, or a schema newer than this hardcase. Nothing is changed.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_file(parsed)
    engine = _make_engine(parsed)
    store = Store(engine=engine, Session=sessionmaker(engine, expire_on_commit=False), url=parsed)
    try:
        try:
            with engine.connect() as connection:
                revision = _revision_of(connection)
                connection.rollback()
            _refuse_newer(revision, parsed)
            if upgrade and revision != head_revision():
                _run_alembic(store, "upgrade", "head")
        except DBAPIError as exc:
            raise StoreError(
                f"cannot open database {mask_url(parsed)!r}: {_first_line(exc)}"
            ) from exc
    except BaseException:
        engine.dispose()
        raise
    return store
