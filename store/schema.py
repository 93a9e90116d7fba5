"""Database schema: SQLAlchemy 2 declarative models for every hardcase table.

Causes, decisions, run statuses, roles, monitoring signals and root causes are
constrained by named CHECK constraints, so a bad value is rejected by the
database itself and not only by the Python code that usually writes it.

Production monitoring keeps one ``monitor_runs`` row per monitored stream, one
``monitor_windows`` row per scored window (its whole report as JSON, the
headline numbers as columns) and one ``monitor_signals`` row per signal of a
window; the per-sample values of a window live in a Parquet file beside the
database (``monitor_windows.samples_path``, see ``store.columnar``).

Reviews are append-only: a review is never updated or deleted. Undo appends a
row that retracts an earlier one (``retracts_review_id``). A lead's bulk decision
is one ``review_batches`` row and one review per candidate pointing at it
(``reviews.batch_id``); undoing the batch is a second batch (``undoes_batch_id``)
whose reviews retract the first one's. A candidate's
``review_version`` counts the review rows written for it and ``decision``
caches the cause of its latest non-retracted review; both are changed only
under a row lock in the same transaction that appends the review (see
``store.api.submit_review``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from hardcase.miner.vocabulary import (
    DECISIONS,
    MONITOR_SIGNALS,
    ROLES,
    ROOT_CAUSES,
    RUN_STATUSES,
    SUGGESTED_CAUSES,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_LENGTH = 200
"""Maximum length of names, labels and reviewers."""

WINDOW_KEY_LENGTH = 64
"""Maximum length of a monitoring window's key (a timestamp or batch id), as ``samples.timestamp``."""

WINDOW_BY: tuple[str, ...] = ("count", "t")
"""How a monitor run cuts its stream: every ``window_size`` samples, or by timestamp / batch id."""

SIGNAL_SIDES: tuple[str, ...] = ("above", "below")
"""Which side of its threshold a monitoring statistic alerts on."""

WINDOW_ACCURACIES: tuple[str, ...] = (
    "estimated_accuracy",
    "accuracy_low",
    "accuracy_high",
    "true_accuracy",
)
"""The accuracy columns of a monitoring window, each NULL or in [0, 1]."""

BATCH_ACTIONS: tuple[str, ...] = ("decide", "adjudicate", "undo")
"""What a batch of reviews does: decide many candidates, settle disputed ones, or undo a batch."""

PROJECTION_METHODS: tuple[str, ...] = ("pca", "tsne")
"""How a run's 2-D map of its embeddings was computed."""


def in_values(column: str, values: tuple[str, ...]) -> str:
    """SQL text ``column IN ('a', 'b')`` for a CHECK constraint.

    Parameters
    ----------
    column
        Column name.
    values
        Allowed values (trusted module constants, never user input).
    """
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware datetime, stored in UTC on every dialect.

    PostgreSQL stores ``timestamp with time zone``; SQLite has no such type,
    so values are normalised to UTC before storing and read back as UTC.
    A naive datetime is taken to be UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def nullable_json() -> JSON:
    """A JSON type that stores Python ``None`` as SQL NULL (not the JSON text ``null``)."""
    return JSON(none_as_null=True)


class Base(DeclarativeBase):
    """Declarative base carrying the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def created_at_column() -> Mapped[dt.datetime]:
    """A ``created_at`` column filled by the database server."""
    return mapped_column(UTCDateTime(), server_default=func.now(), nullable=False)


class Dataset(Base):
    """A labelled image collection hardcase has read (npz, idx, folder, manifest, demo)."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    uri: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    class_names: Mapped[list[str] | None] = mapped_column(nullable_json(), nullable=True)
    n_samples: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = created_at_column()


class Sample(Base):
    """One image of a dataset, identified by its position and its content hash."""

    __tablename__ = "samples"
    __table_args__ = (
        UniqueConstraint("dataset_id", "source_index"),
        Index(None, "content_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    source_index: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    given_label: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    timestamp: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ModelVersion(Base):
    """A trained classifier file, identified by its hash."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    path: Mapped[str] = mapped_column(Text)
    file_hash: Mapped[str] = mapped_column(String(64), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    class_names: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = created_at_column()


class Run(Base):
    """One mining run of a model over a dataset."""

    __tablename__ = "runs"
    __table_args__ = (CheckConstraint(in_values("status", RUN_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), server_default="running")
    n_total: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    n_scored: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    n_errors: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    embeddings_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = created_at_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failure: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why a ``failed`` run stopped (one line); None otherwise."""


class Score(Base):
    """The model's view of one sample in one run."""

    __tablename__ = "scores"
    __table_args__ = (Index(None, "run_id", "hardness_score"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id"), primary_key=True)
    predicted_label: Mapped[str] = mapped_column(String(NAME_LENGTH))
    confidence: Mapped[float] = mapped_column(Float)
    margin: Mapped[float] = mapped_column(Float)
    entropy: Mapped[float] = mapped_column(Float)
    self_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    normalized_margin: Mapped[float | None] = mapped_column(Float, nullable=True)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    label_quality_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    hardness_score: Mapped[float] = mapped_column(Float)
    map_x: Mapped[float | None] = mapped_column(Float, nullable=True)
    """The sample's place on the run's 2-D map of its embeddings (see ``RunProjection``); None before."""
    map_y: Mapped[float | None] = mapped_column(Float, nullable=True)


class RunError(Base):
    """A sample a run could not score, and why."""

    __tablename__ = "run_errors"
    __table_args__ = (UniqueConstraint("run_id", "source_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    source_index: Mapped[int] = mapped_column(Integer)
    uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str] = mapped_column(Text)


class Candidate(Base):
    """A hard example picked for review, with the miner's suggested cause.

    ``decision`` is NULL until the candidate has a non-retracted review. The
    review queue reads the unreviewed candidates in rank order through two
    covering partial indexes (``WHERE decision IS NULL``: by run, and by run
    and class), never touching the rows with their images; the triage counts are an index-only scan of
    ``(run_id, class_name, decision)``. A plain ``(run_id, decision, rank)``
    index does not do: PostgreSQL does not treat ``decision IS NULL`` as
    fixing the index order, and walks the rank index instead.
    """

    __tablename__ = "candidates"
    __table_args__ = (
        UniqueConstraint("run_id", "sample_id"),
        UniqueConstraint("run_id", "rank"),
        Index(
            "ix_candidates_unreviewed_queue",
            "run_id",
            "rank",
            "decision",
            postgresql_where=text("decision IS NULL"),
            sqlite_where=text("decision IS NULL"),
        ),
        Index(
            "ix_candidates_unreviewed_class_queue",
            "run_id",
            "class_name",
            "rank",
            "decision",
            postgresql_where=text("decision IS NULL"),
            sqlite_where=text("decision IS NULL"),
        ),
        Index(None, "run_id", "class_name", "decision"),
        CheckConstraint(in_values("suggested_cause", SUGGESTED_CAUSES), name="suggested_cause"),
        CheckConstraint(in_values("decision", DECISIONS), name="decision"),
        CheckConstraint("review_version >= 0", name="review_version_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id"), index=True)
    rank: Mapped[int] = mapped_column(Integer)
    class_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    hardness_score: Mapped[float] = mapped_column(Float)
    pick_distance: Mapped[float | None] = mapped_column(Float, nullable=True)
    image_png: Mapped[bytes] = mapped_column(LargeBinary)
    suggested_cause: Mapped[str | None] = mapped_column(String(16), nullable=True)
    suggested_label: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    suggestion_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(nullable_json(), nullable=True)
    review_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    monitor_window_id: Mapped[int | None] = mapped_column(
        ForeignKey("monitor_windows.id"), nullable=True, index=True
    )
    """The monitoring window a monitoring candidate came from; None for a mining run's."""


class Review(Base):
    """One reviewer judgment (or the retraction of one); never updated or deleted.

    ``version`` is the candidate's ``review_version`` after this row;
    ``seen_version`` is the version the reviewer's page showed, and
    ``conflict`` records that another review landed in between
    (``seen_version != version - 1``). A retraction row has no ``cause`` and
    points at the review it retracts.
    """

    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("candidate_id", "version"),
        UniqueConstraint("retracts_review_id"),
        CheckConstraint(in_values("cause", DECISIONS), name="cause"),
        CheckConstraint("cause <> 'mislabel' OR new_label IS NOT NULL", name="mislabel_has_label"),
        CheckConstraint(
            "(cause IS NULL AND retracts_review_id IS NOT NULL)"
            " OR (cause IS NOT NULL AND retracts_review_id IS NULL)",
            name="decision_or_retraction",
        ),
        CheckConstraint("version >= 1 AND seen_version >= 0", name="versions_valid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"))
    reviewer: Mapped[str] = mapped_column(String(NAME_LENGTH))
    cause: Mapped[str | None] = mapped_column(String(16), nullable=True)
    new_label: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    transform: Mapped[dict[str, Any] | None] = mapped_column(nullable_json(), nullable=True)
    seen_version: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    conflict: Mapped[bool] = mapped_column(Boolean)
    retracts_review_id: Mapped[int | None] = mapped_column(ForeignKey("reviews.id"), nullable=True)
    created_at: Mapped[dt.datetime] = created_at_column()
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("review_batches.id"), nullable=True, index=True)
    """The bulk decision (or its undo) this review belongs to; None for a review of its own."""


class ReviewBatch(Base):
    """One bulk action of a lead over many candidates: its reviews point at it (``Review.batch_id``).

    An ``undo`` batch names the batch it undoes (at most once); its reviews are the
    retractions of that batch's reviews.
    """

    __tablename__ = "review_batches"
    __table_args__ = (
        UniqueConstraint("undoes_batch_id"),
        CheckConstraint(in_values("action", BATCH_ACTIONS), name="action"),
        CheckConstraint(
            "(action = 'undo' AND undoes_batch_id IS NOT NULL)"
            " OR (action <> 'undo' AND undoes_batch_id IS NULL)",
            name="undo_names_its_batch",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(NAME_LENGTH))
    action: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    undoes_batch_id: Mapped[int | None] = mapped_column(ForeignKey("review_batches.id"), nullable=True)
    created_at: Mapped[dt.datetime] = created_at_column()


class RunProjection(Base):
    """How a run's 2-D map (``scores.map_x``, ``scores.map_y``) was computed, once it was."""

    __tablename__ = "run_projections"
    __table_args__ = (
        CheckConstraint(in_values("method", PROJECTION_METHODS), name="method"),
        CheckConstraint("n_points >= 0 AND n_fitted >= 0 AND n_fitted <= n_points", name="counts_valid"),
    )

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    method: Mapped[str] = mapped_column(String(16))
    n_points: Mapped[int] = mapped_column(Integer)
    """Scored samples placed on the map."""
    n_fitted: Mapped[int] = mapped_column(Integer)
    """Samples the 2-D embedding was fitted on (t-SNE's subsample; the others are placed by their neighbours)."""
    created_at: Mapped[dt.datetime] = created_at_column()


class Lease(Base):
    """Who is looking at which candidate, until when (one holder per candidate)."""

    __tablename__ = "leases"

    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id"), primary_key=True)
    reviewer: Mapped[str] = mapped_column(String(NAME_LENGTH), index=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class User(Base):
    """A review-app account."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(in_values("role", ROLES), name="role"),)

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_at_column()


class MonitorRun(Base):
    """One monitored stream: a model watched on a stream dataset against a reference dataset.

    Its alerting windows' samples go to the review run ``review_run_id``, which has the
    monitor run's name. ``updated_at`` is set when a window is added.
    """

    __tablename__ = "monitor_runs"
    __table_args__ = (
        CheckConstraint(in_values("window_by", WINDOW_BY), name="window_by"),
        CheckConstraint("window_size IS NULL OR window_size > 0", name="window_size_positive"),
        CheckConstraint(
            "window_by <> 'count' OR window_size IS NOT NULL", name="count_has_window_size"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    reference_dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    stream_dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    review_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    window_by: Mapped[str] = mapped_column(String(8))
    window_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = created_at_column()


class MonitorWindow(Base):
    """One scored window of a monitor run: its headline numbers and its whole report.

    ``first_index``/``last_index`` are the stream's source indices the window spans
    (inclusive); ``alert_signals`` lists the alerting signals, most severe first;
    ``classes_moved`` lists class names; ``report`` is ``WindowReport.to_dict()``;
    ``samples_path`` is the window's per-sample Parquet file, relative to the artifacts folder.
    """

    __tablename__ = "monitor_windows"
    __table_args__ = (
        UniqueConstraint("monitor_run_id", "window_index"),
        CheckConstraint("window_index >= 0", name="window_index_not_negative"),
        CheckConstraint(
            "first_index >= 0 AND last_index >= first_index", name="index_range_valid"
        ),
        CheckConstraint("n >= 0 AND n_errors >= 0", name="counts_not_negative"),
        CheckConstraint(in_values("root_cause", ROOT_CAUSES), name="root_cause"),
        *(
            CheckConstraint(
                f"{column} IS NULL OR ({column} >= 0 AND {column} <= 1)",
                name=f"{column}_within_0_1",
            )
            for column in WINDOW_ACCURACIES
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    monitor_run_id: Mapped[int] = mapped_column(ForeignKey("monitor_runs.id"), index=True)
    window_index: Mapped[int] = mapped_column(Integer)
    window_key: Mapped[str | None] = mapped_column(String(WINDOW_KEY_LENGTH), nullable=True)
    first_index: Mapped[int] = mapped_column(Integer)
    last_index: Mapped[int] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(Integer)
    n_errors: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    estimated_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    accuracy_low: Mapped[float | None] = mapped_column(Float, nullable=True)
    accuracy_high: Mapped[float | None] = mapped_column(Float, nullable=True)
    true_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    alert: Mapped[bool] = mapped_column(Boolean)
    alert_signals: Mapped[list[str]] = mapped_column(JSON)
    classes_moved: Mapped[list[str]] = mapped_column(JSON)
    root_cause: Mapped[str | None] = mapped_column(String(16), nullable=True)
    root_cause_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    root_cause_detail: Mapped[dict[str, Any] | None] = mapped_column(
        nullable_json(), nullable=True
    )
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    samples_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = created_at_column()

    signals: Mapped[list[MonitorSignal]] = relationship(order_by="MonitorSignal.id")
    """The window's signal rows, inserted in the same flush as the window."""


class MonitorSignal(Base):
    """One signal of one monitoring window: its statistic against its threshold."""

    __tablename__ = "monitor_signals"
    __table_args__ = (
        UniqueConstraint("window_id", "signal"),
        CheckConstraint(in_values("signal", MONITOR_SIGNALS), name="signal"),
        CheckConstraint(in_values("side", SIGNAL_SIDES), name="side"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    window_id: Mapped[int] = mapped_column(ForeignKey("monitor_windows.id"))
    signal: Mapped[str] = mapped_column(String(32))
    statistic: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    side: Mapped[str] = mapped_column(String(8))
    severity: Mapped[float | None] = mapped_column(Float, nullable=True)
    p_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    alert: Mapped[bool] = mapped_column(Boolean)
    message: Mapped[str] = mapped_column(Text, default="", server_default="")
    classes_moved: Mapped[list[str]] = mapped_column(JSON)


metadata = Base.metadata
"""The MetaData Alembic compares the migrations against."""
