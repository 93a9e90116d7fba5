"""Database helpers for the store tests: one throw-away database per test.

The server is the one at ``HARDCASE_TEST_PG`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Tests needing it are
skipped when it is unreachable, unless ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import base64
import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

ADMIN_URL = os.environ.get("HARDCASE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
"""Maintenance database in which test databases are created and dropped."""

DATABASE_PREFIX = "hc_test_"


def in_ci() -> bool:
    """True when running in CI, where a missing PostgreSQL must fail the tests."""
    return os.environ.get("CI", "").lower() == "true"


@functools.lru_cache(maxsize=1)
def unreachable_reason() -> str | None:
    """Why the PostgreSQL server cannot be used, or None when it can."""
    engine = create_engine(ADMIN_URL, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        return str(exc.orig).strip().splitlines()[0]
    finally:
        engine.dispose()
    return None


def require_postgres() -> None:
    """Skip (or, with ``CI=true``, fail) the calling test if PostgreSQL is down."""
    reason = unreachable_reason()
    if reason is None:
        return
    message = f"PostgreSQL at {make_url(ADMIN_URL)!s} is unreachable: {reason}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create an empty database ``hc_test_<random>``, yield its URL, drop it afterwards."""
    require_postgres()
    name = DATABASE_PREFIX + uuid.uuid4().hex[:12]
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(ADMIN_URL).set(database=name)
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def empty_database(dialect: str, directory: Path) -> Iterator[str]:
    """URL of an empty database: a SQLite file in ``directory`` or a fresh PostgreSQL one."""
    if dialect == "sqlite":
        yield f"sqlite:///{directory / 'hardcase.db'}"
    elif dialect == "postgresql":
        with fresh_database() as url:
            yield url
    else:
        raise ValueError(f"unknown dialect {dialect!r}")


TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
"""A valid 1x1 PNG."""

CLASSES = ("cat", "dog", "bird")


@dataclass(frozen=True)
class Seeded:
    """Ids of a seeded run."""

    run_id: int
    run_name: str
    dataset_id: int
    sample_ids: list[int]
    candidate_ids: list[int]


def seed_run(
    store: Any, *, n_samples: int = 12, n_candidates: int = 6, name: str = "run-1", classes: tuple = ()
) -> Seeded:
    """A dataset, model, run, scores for every sample and candidates for the first ones.

    Candidate ``i`` has rank ``i + 1``, class ``CLASSES[i % 3]`` and suggested
    cause ``SUGGESTED_CAUSES[i % 5]`` (``classes``, three names, replaces ``CLASSES``).
    """
    names = tuple(classes) or CLASSES
    from hardcase.miner.vocabulary import SUGGESTED_CAUSES
    from hardcase.store import api

    with store.Session.begin() as session:
        dataset = api.get_or_create_dataset(
            session,
            name=f"ds-{name}",
            uri="/data/ds",
            kind="folder",
            class_names=list(names),
            n_samples=n_samples,
        )
        sample_ids = api.upsert_samples(
            session,
            dataset.id,
            source_index=list(range(n_samples)),
            content_hash=[f"{index:064x}" for index in range(n_samples)],
            uri=[f"/data/ds/{index}.png" for index in range(n_samples)],
            given_label=[names[index % 3] for index in range(n_samples)],
        )
        model = api.register_model(
            session,
            name="m",
            path="/models/m.keras",
            file_hash=f"hash-{name}",
            spec={"size": [32, 32]},
            class_names=list(names),
        )
        run = api.create_run(
            session,
            name=name,
            dataset_id=dataset.id,
            model_version_id=model.id,
            params={"top_k": n_candidates},
        )
        api.add_scores(
            session,
            run.id,
            [
                {
                    "sample_id": sample_id,
                    "predicted_label": names[(index + 1) % 3],
                    "confidence": 0.5 + index / (4 * n_samples),
                    "margin": 0.1,
                    "entropy": 0.9,
                    "loss": 1.5,
                    "hardness_score": 1.0 - index / n_samples,
                }
                for index, sample_id in enumerate(sample_ids)
            ],
        )
        candidate_ids = api.add_candidates(
            session,
            run.id,
            [
                {
                    "sample_id": sample_ids[index],
                    "rank": index + 1,
                    "class_name": names[index % 3],
                    "hardness_score": 1.0 - index / n_samples,
                    "image_png": TINY_PNG,
                    "suggested_cause": SUGGESTED_CAUSES[index % 5],
                    "suggested_label": names[(index + 1) % 3],
                    "suggestion_confidence": 0.75,
                    "evidence": {"neighbours": [index, index + 1]},
                }
                for index in range(n_candidates)
            ],
        )
        return Seeded(run.id, name, dataset.id, sample_ids, candidate_ids)
