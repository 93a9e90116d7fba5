"""Store functions used by the miner and the review app.

Every function takes the session first and runs inside the caller's unit of
work::

    with store.Session.begin() as session:
        result = submit_review(session, candidate_id, reviewer="ana", cause="rare",
                               seen_version=view.version)

Read-only work (rendering a page, counting) can use ``store.snapshot()``
instead, which does not take SQLite's write lock.

Review history is append-only. ``submit_review`` locks the candidate row,
appends the review and bumps the candidate's version in one transaction; a
review based on an outdated version is stored *and* flagged as a conflict.
``undo_last_review`` appends a retraction instead of deleting anything.

Bad arguments raise ``ValueError``; problems with the stored state (unknown
run, duplicate name, changed dataset...) raise ``store.errors.StoreError``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Select, Table, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hardcase.miner.vocabulary import (
    DECISIONS,
    LABEL_SCORE_FIELDS,
    ROLES,
    RUN_STATUSES,
    SCORE_FIELDS,
    SUGGESTED_CAUSES,
)
from hardcase.store.errors import StoreError
from hardcase.store.schema import (
    NAME_LENGTH,
    Candidate,
    Dataset,
    Lease,
    ModelVersion,
    Review,
    Run,
    RunError,
    Sample,
    Score,
    User,
)

CHUNK_ROWS = 5000
"""Rows per bulk statement (well under SQLite's 32766 bound parameters)."""

REVIEW_STATUSES: tuple[str, ...] = ("unreviewed", "reviewed", "all")
"""Queue filters of ``next_candidate``: no decision yet, a decision, either."""

DEFAULT_LEASE_SECONDS = 600

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

SCORE_REQUIRED = ("sample_id", *(name for name in SCORE_FIELDS if name not in LABEL_SCORE_FIELDS))
SCORE_OPTIONAL = LABEL_SCORE_FIELDS
CANDIDATE_REQUIRED = ("sample_id", "rank", "class_name", "hardness_score", "image_png")
CANDIDATE_OPTIONAL = (
    "pick_distance",
    "suggested_cause",
    "suggested_label",
    "suggestion_confidence",
    "evidence",
)
ERROR_REQUIRED = ("source_index", "reason")
ERROR_OPTIONAL = ("uri",)


class OtherReview(NamedTuple):
    """Another reviewer's standing judgment on the same candidate."""

    reviewer: str
    cause: str
    new_label: str | None
    created_at: dt.datetime


@dataclass(frozen=True)
class ReviewResult:
    """Outcome of ``submit_review`` / ``undo_last_review``.

    Attributes
    ----------
    review_id
        Id of the appended review row.
    version
        The candidate's version after this review.
    conflict
        True if another review landed after the version the reviewer saw.
    other_reviews
        The candidate's other non-retracted judgments, oldest first.
    """

    review_id: int
    version: int
    conflict: bool
    other_reviews: tuple[OtherReview, ...]


@dataclass(frozen=True)
class CandidateView:
    """Everything the review page shows for one candidate.

    ``decision``/``decided_label`` come from the latest non-retracted review
    (None when there is none); ``reviewers`` lists who judged it, oldest first.
    """

    id: int
    run_id: int
    sample_id: int
    rank: int
    class_name: str
    source_index: int
    uri: str | None
    given_label: str | None
    predicted_label: str | None
    confidence: float | None
    margin: float | None
    hardness_score: float
    pick_distance: float | None
    suggested_cause: str | None
    suggested_label: str | None
    suggestion_confidence: float | None
    evidence: dict[str, Any] | None
    image_png: bytes
    version: int
    decision: str | None
    decided_label: str | None
    reviewers: tuple[str, ...]


# --------------------------------------------------------------------------- helpers


def _dialect_insert(session: Session, table: Table) -> Any:
    """``INSERT`` supporting ``on_conflict_do_*`` on the session's dialect."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise StoreError(f"unsupported database dialect {name!r}")


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


# --------------------------------------------------------------------------- datasets, samples


def get_or_create_dataset(
    session: Session,
    *,
    name: str,
    uri: str,
    kind: str,
    class_names: Sequence[str] | None,
    n_samples: int,
) -> Dataset:
    """The dataset called ``name``, created if new.

    Safe when several processes create the same dataset at once. An existing
    dataset must have the same kind, class names and size (its stored ``uri``
    is kept: the same data may be mounted elsewhere).

    Raises
    ------
    StoreError
        The name is taken by a dataset with different kind, classes or size.
    """
    _check_name("dataset name", name)
    names = [str(class_name) for class_name in class_names] if class_names is not None else None
    n_samples = _as_int("n_samples", n_samples)
    table = Dataset.__table__
    session.execute(
        _dialect_insert(session, table)
        .values(name=name, uri=str(uri), kind=str(kind), class_names=names, n_samples=n_samples)
        .on_conflict_do_nothing(index_elements=[table.c.name])
    )
    dataset = session.scalars(
        select(Dataset).where(Dataset.name == name).execution_options(populate_existing=True)
    ).one()
    for field, given in (("kind", kind), ("class_names", names), ("n_samples", n_samples)):
        stored = getattr(dataset, field)
        if stored != given:
            raise StoreError(
                f"dataset {name!r} already exists with {field} {stored!r}, not {given!r}; "
                "use another dataset name"
            )
    return dataset


def get_dataset(session: Session, name: str) -> Dataset | None:
    """The dataset called ``name``, or None."""
    return session.scalars(select(Dataset).where(Dataset.name == name)).one_or_none()


def upsert_samples(
    session: Session,
    dataset_id: int,
    *,
    source_index: Sequence[int],
    content_hash: Sequence[str],
    uri: Sequence[str | None] | None,
    given_label: Sequence[str | None] | None,
    timestamp: Sequence[str | None] | None = None,
) -> list[int]:
    """Insert the samples that are new and return every sample's id.

    Columns are given as parallel sequences (``None`` for a column means all
    NULL). Inserting again is a no-op, so an interrupted import can resume.

    Returns
    -------
    list[int]
        Sample ids in the order of ``source_index``.

    Raises
    ------
    ValueError
        Sequences of different lengths or a repeated source index.
    StoreError
        A stored sample at the same source index has a different content hash.
    """
    indices = [_as_int("source_index", value) for value in source_index]
    count = len(indices)
    optional_columns = {"uri": uri, "given_label": given_label, "timestamp": timestamp}
    for what, values in {"content_hash": content_hash, **optional_columns}.items():
        if values is not None and len(values) != count:
            raise ValueError(f"{what} has {len(values)} values for {count} source indices")
    if len(set(indices)) != count:
        raise ValueError("source_index contains repeated values")
    hashes = [str(value) for value in content_hash]
    # driver-level executemany over tuples (mining inserts every sample of the pool)
    statement = (
        f"INSERT INTO {Sample.__table__.name} (dataset_id, source_index, content_hash, uri, given_label, "
        "timestamp) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dataset_id, source_index) DO NOTHING"
    )
    # Work through the rows in source-index order, so that each chunk's ids can be
    # read back with one index range scan (a long IN list makes PostgreSQL fall
    # back to a sequential scan while the new table has no statistics yet).
    order = sorted(range(count), key=indices.__getitem__)
    sample_ids: list[int] = [0] * count
    texts = [[None] * count if values is None else [None if v is None else str(v) for v in values]
             for values in optional_columns.values()]  # uri, given_label, timestamp
    for chunk in _chunks(count):
        positions = [order[rank] for rank in chunk]
        columns = [[column[position] for position in positions] for column in (indices, hashes, *texts)]
        _executemany(session, statement, list(zip([dataset_id] * len(positions), *columns)))
        wanted = columns[0]  # the chunk's source indices, ascending
        lowest, highest = wanted[0], wanted[-1]
        if highest - lowest < 4 * len(wanted):
            in_chunk = Sample.source_index.between(lowest, highest)
        else:  # sparse indices: a range would read too many unrelated rows
            in_chunk = Sample.source_index.in_(wanted)
        # Core rows unpacked as tuples: ORM row loading cost more than the insert itself
        stored = {
            source_index: (sample_id, stored_hash)
            for source_index, sample_id, stored_hash in session.connection().execute(
                select(Sample.source_index, Sample.id, Sample.content_hash).where(
                    Sample.dataset_id == dataset_id, in_chunk
                )
            ).all()
        }
        for position in positions:
            sample_id, stored_hash = stored[indices[position]]
            if stored_hash != hashes[position]:
                raise StoreError(
                    f"sample {indices[position]} of dataset {dataset_id} changed: stored hash "
                    f"{stored_hash}, now {hashes[position]}; register the data as a new dataset"
                )
            sample_ids[position] = sample_id
    return sample_ids


# --------------------------------------------------------------------------- models, runs


def register_model(
    session: Session,
    *,
    name: str,
    path: str,
    file_hash: str,
    spec: Mapping[str, Any],
    class_names: Sequence[str],
) -> ModelVersion:
    """The model version with ``file_hash``, registered if new.

    Raises
    ------
    StoreError
        The same file was registered with different class names.
    """
    _check_name("model name", name)
    names = [str(class_name) for class_name in class_names]
    table = ModelVersion.__table__
    session.execute(
        _dialect_insert(session, table)
        .values(name=name, path=str(path), file_hash=file_hash, spec=dict(spec), class_names=names)
        .on_conflict_do_nothing(index_elements=[table.c.file_hash])
    )
    model = session.scalars(
        select(ModelVersion)
        .where(ModelVersion.file_hash == file_hash)
        .execution_options(populate_existing=True)
    ).one()
    if model.class_names != names:
        raise StoreError(
            f"model file {file_hash} is registered with class names {model.class_names!r}, "
            f"not {names!r}"
        )
    return model


def create_run(
    session: Session,
    *,
    name: str,
    dataset_id: int,
    model_version_id: int,
    params: Mapping[str, Any],
    embeddings_path: str | None = None,
) -> Run:
    """A new mining run in status ``running``.

    Raises
    ------
    StoreError
        The name is taken, or the dataset or model does not exist.
    """
    _check_name("run name", name)
    if get_run(session, name) is not None:
        raise StoreError(f"run {name!r} already exists; choose another run name")
    if session.get(Dataset, dataset_id) is None:
        raise StoreError(f"no dataset with id {dataset_id}")
    if session.get(ModelVersion, model_version_id) is None:
        raise StoreError(f"no model version with id {model_version_id}")
    run = Run(
        name=name,
        dataset_id=dataset_id,
        model_version_id=model_version_id,
        params=dict(params),
        status="running",
        n_total=0,
        n_scored=0,
        n_errors=0,
        embeddings_path=embeddings_path,
    )
    session.add(run)
    try:
        session.flush()
    except IntegrityError as exc:
        raise StoreError(f"run {name!r} already exists; choose another run name") from exc
    return run


def get_run(session: Session, name: str) -> Run | None:
    """The run called ``name``, or None."""
    return session.scalars(select(Run).where(Run.name == name)).one_or_none()


def require_run(session: Session, name: str) -> Run:
    """The run called ``name``.

    Raises
    ------
    StoreError
        No such run; the message lists the runs there are.
    """
    run = get_run(session, name)
    if run is None:
        names = session.scalars(select(Run.name).order_by(Run.id)).all()
        listing = ", ".join(names) if names else "(none)"
        raise StoreError(f"no run named {name!r}; runs: {listing}")
    return run


def list_runs(session: Session) -> list[Run]:
    """All runs, oldest first."""
    return list(session.scalars(select(Run).order_by(Run.id)))


def set_run_status(
    session: Session,
    run_id: int,
    status: str,
    *,
    n_total: int | None = None,
    n_scored: int | None = None,
    n_errors: int | None = None,
) -> Run:
    """Record a run's status and counts; ``done``/``failed`` also set ``finished_at``."""
    if status not in RUN_STATUSES:
        raise ValueError(f"run status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
    run = session.get(Run, run_id)
    if run is None:
        raise StoreError(f"no run with id {run_id}")
    values: dict[str, Any] = {"status": status}
    for field, value in (("n_total", n_total), ("n_scored", n_scored), ("n_errors", n_errors)):
        if value is not None:
            values[field] = _as_int(field, value)
    values["finished_at"] = None if status == "running" else func.now()
    session.execute(
        update(Run).where(Run.id == run_id).values(**values),
        execution_options={"synchronize_session": False},
    )
    session.refresh(run)
    return run


# --------------------------------------------------------------------------- scores, errors


def scored_sample_ids(session: Session, run_id: int) -> set[int]:
    """Ids of the samples a run has already scored (to resume an interrupted run)."""
    return set(session.scalars(select(Score.sample_id).where(Score.run_id == run_id)))


def add_scores(session: Session, run_id: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """Store per-sample scores; rows already stored for the run are left as they are.

    Each row has ``sample_id, predicted_label, confidence, margin, entropy,
    hardness_score`` and optionally ``self_confidence, normalized_margin,
    loss, label_quality_score``. NumPy scalars are accepted.
    """
    float_fields = ("confidence", "margin", "entropy", "hardness_score")
    prepared = []
    for index, row in enumerate(rows):
        _check_keys("score", index, row, SCORE_REQUIRED, SCORE_OPTIONAL)
        record: dict[str, Any] = {
            "run_id": run_id,
            "sample_id": _as_int("sample_id", row["sample_id"]),
            "predicted_label": _as_label("predicted_label", row["predicted_label"]),
        }
        for field in float_fields:
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


# --------------------------------------------------------------------------- candidates


def add_candidates(session: Session, run_id: int, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Store the hard examples picked for review.

    Each row has ``sample_id, rank, class_name, hardness_score, image_png``
    and optionally ``pick_distance, suggested_cause, suggested_label,
    suggestion_confidence, evidence`` (JSON-serialisable dict).

    Returns
    -------
    list[int]
        Candidate ids in row order.

    Raises
    ------
    ValueError
        Bad field, unknown suggested cause, or a rank or sample repeated in ``rows``.
    StoreError
        The run already has a candidate with one of these ranks or samples.
    """
    prepared = []
    for index, row in enumerate(rows):
        _check_keys("candidate", index, row, CANDIDATE_REQUIRED, CANDIDATE_OPTIONAL)
        cause = row.get("suggested_cause")
        if cause is not None and cause not in SUGGESTED_CAUSES:
            raise ValueError(
                f"candidate row {index} suggested_cause must be one of "
                f"{', '.join(SUGGESTED_CAUSES)}, got {cause!r}"
            )
        image = row["image_png"]
        if not isinstance(image, (bytes, bytearray, memoryview)) or bytes(image[:8]) != PNG_MAGIC:
            raise ValueError(f"candidate row {index} image_png is not PNG data")
        prepared.append(
            {
                "run_id": run_id,
                "sample_id": _as_int("sample_id", row["sample_id"]),
                "rank": _as_int("rank", row["rank"]),
                "class_name": _as_label("class_name", row["class_name"]),
                "hardness_score": _as_float(
                    f"candidate row {index} hardness_score", row["hardness_score"], nullable=False
                ),
                "image_png": bytes(image),
                "pick_distance": _as_float(
                    f"candidate row {index} pick_distance", row.get("pick_distance"), nullable=True
                ),
                "suggested_cause": cause,
                "suggested_label": _as_label("suggested_label", row.get("suggested_label")),
                "suggestion_confidence": _as_float(
                    f"candidate row {index} suggestion_confidence",
                    row.get("suggestion_confidence"),
                    nullable=True,
                ),
                "evidence": row.get("evidence"),
                "review_version": 0,
            }
        )
    if not prepared:
        return []
    ranks = [row["rank"] for row in prepared]
    sample_ids = [row["sample_id"] for row in prepared]
    if len(set(ranks)) != len(ranks) or len(set(sample_ids)) != len(sample_ids):
        raise ValueError("candidate rows repeat a rank or a sample_id")
    taken_ranks: dict[int, int] = {}
    taken_samples: dict[int, int] = {}
    for rank, sample_id in session.execute(
        select(Candidate.rank, Candidate.sample_id).where(Candidate.run_id == run_id)
    ):
        taken_ranks[rank] = sample_id
        taken_samples[sample_id] = rank
    for row in prepared:
        if row["rank"] in taken_ranks or row["sample_id"] in taken_samples:
            rank = row["rank"] if row["rank"] in taken_ranks else taken_samples[row["sample_id"]]
            raise StoreError(
                f"run {run_id} already has a candidate at rank {rank} "
                f"(sample {taken_ranks.get(rank, row['sample_id'])}); delete_candidates first"
            )
    table = Candidate.__table__
    statement = table.insert().returning(table.c.id, sort_by_parameter_order=True)
    candidate_ids: list[int] = []
    for chunk in _chunks(len(prepared)):
        result = session.execute(statement, [prepared[position] for position in chunk])
        candidate_ids.extend(result.scalars().all())
    return candidate_ids


def delete_candidates(session: Session, run_id: int) -> int:
    """Delete a run's candidates (and their leases) before anyone reviewed them.

    Returns
    -------
    int
        Number of candidates deleted.

    Raises
    ------
    StoreError
        Some candidate of the run has a review (review history is kept forever).
    """
    locked_ids = session.scalars(
        select(Candidate.id).where(Candidate.run_id == run_id).with_for_update()
    ).all()
    if not locked_ids:
        return 0
    n_reviews = session.scalar(
        select(func.count(Review.id))
        .join(Candidate, Candidate.id == Review.candidate_id)
        .where(Candidate.run_id == run_id)
    )
    if n_reviews:
        raise StoreError(
            f"run {run_id} has {n_reviews} reviews; its candidates cannot be deleted "
            "(review history is append-only)"
        )
    run_candidates = select(Candidate.id).where(Candidate.run_id == run_id)
    no_sync = {"synchronize_session": False}
    session.execute(
        delete(Lease).where(Lease.candidate_id.in_(run_candidates)), execution_options=no_sync
    )
    session.execute(delete(Candidate).where(Candidate.run_id == run_id), execution_options=no_sync)
    return len(locked_ids)


HISTORY_QUERY = (
    select(Review).where(Review.candidate_id == bindparam("candidate_id")).order_by(Review.version)
)

HISTORY_ROWS_QUERY = (
    select(
        Review.id,
        Review.reviewer,
        Review.cause,
        Review.new_label,
        Review.retracts_review_id,
        Review.created_at,
    )
    .where(Review.candidate_id == bindparam("candidate_id"))
    .order_by(Review.version)
)
"""A candidate's review history as light rows (what deriving its decision needs)."""

CANDIDATE_VIEW_QUERY = (
    select(
        Candidate.id,
        Candidate.run_id,
        Candidate.sample_id,
        Candidate.rank,
        Candidate.class_name,
        Sample.source_index,
        Sample.uri,
        Sample.given_label,
        Score.predicted_label,
        Score.confidence,
        Score.margin,
        Candidate.hardness_score,
        Candidate.pick_distance,
        Candidate.suggested_cause,
        Candidate.suggested_label,
        Candidate.suggestion_confidence,
        Candidate.evidence,
        Candidate.image_png,
        Candidate.review_version.label("version"),
    )
    .join(Sample, Sample.id == Candidate.sample_id)
    .outerjoin(
        Score, and_(Score.run_id == Candidate.run_id, Score.sample_id == Candidate.sample_id)
    )
    .where(Candidate.id == bindparam("candidate_id"))
)


def _history(session: Session, candidate_id: int) -> list[Review]:
    return list(session.scalars(HISTORY_QUERY, {"candidate_id": candidate_id}))


def _history_rows(session: Session, candidate_id: int) -> list[Any]:
    return list(session.execute(HISTORY_ROWS_QUERY, {"candidate_id": candidate_id}))


def effective_reviews(history: Sequence[Any]) -> list[Any]:
    """The judgments that stand: reviews with a cause that were not retracted, oldest first.

    ``history`` holds ``Review`` objects or rows with ``id``, ``cause`` and
    ``retracts_review_id``, in version order.
    """
    retracted = {review.retracts_review_id for review in history}
    return [review for review in history if review.cause is not None and review.id not in retracted]


def get_candidate(session: Session, candidate_id: int) -> CandidateView:
    """Everything about one candidate, with its derived decision.

    Raises
    ------
    StoreError
        No candidate with this id.
    """
    row = session.execute(CANDIDATE_VIEW_QUERY, {"candidate_id": candidate_id}).one_or_none()
    if row is None:
        raise StoreError(f"no candidate with id {candidate_id}")
    standing = effective_reviews(_history_rows(session, candidate_id))
    latest = standing[-1] if standing else None
    return CandidateView(
        **row._asdict(),
        decision=None if latest is None else latest.cause,
        decided_label=None if latest is None else latest.new_label,
        reviewers=tuple(dict.fromkeys(review.reviewer for review in standing)),
    )


# --------------------------------------------------------------------------- review queue


def _take_lease(
    session: Session, candidate_id: int, reviewer: str, now: dt.datetime, expires: dt.datetime
) -> bool:
    """Create or take over the lease unless another reviewer holds it unexpired."""
    table = Lease.__table__
    statement = _dialect_insert(session, table).values(
        candidate_id=candidate_id, reviewer=reviewer, expires_at=expires
    )
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.candidate_id],
        set_={"reviewer": statement.excluded.reviewer, "expires_at": statement.excluded.expires_at},
        where=or_(table.c.expires_at <= now, table.c.reviewer == reviewer),
    ).returning(table.c.candidate_id)
    return session.execute(statement).first() is not None


def candidate_queue_query(
    run_id: int,
    *,
    reviewer: str,
    now: dt.datetime,
    class_name: str | None = None,
    suggested_cause: str | None = None,
    status: str = "unreviewed",
    after_rank: int | None = None,
) -> Select[tuple[int]]:
    """The ``SELECT ... FOR UPDATE SKIP LOCKED`` behind ``next_candidate``.

    Returns the id of the lowest-ranked candidate matching the filters whose
    lease is absent, expired at ``now`` or held by ``reviewer``. Public so the
    benchmark can show its query plan.
    """
    if status not in REVIEW_STATUSES:
        raise ValueError(f"status must be one of {', '.join(REVIEW_STATUSES)}, got {status!r}")
    if suggested_cause is not None and suggested_cause not in SUGGESTED_CAUSES:
        raise ValueError(
            f"suggested_cause must be one of {', '.join(SUGGESTED_CAUSES)}, got {suggested_cause!r}"
        )
    query = (
        select(Candidate.id)
        .outerjoin(Lease, Lease.candidate_id == Candidate.id)
        .where(
            Candidate.run_id == run_id,
            or_(Lease.candidate_id.is_(None), Lease.expires_at <= now, Lease.reviewer == reviewer),
        )
    )
    if status == "unreviewed":
        query = query.where(Candidate.decision.is_(None))
    elif status == "reviewed":
        query = query.where(Candidate.decision.is_not(None))
    if class_name is not None:
        query = query.where(Candidate.class_name == class_name)
    if suggested_cause is not None:
        query = query.where(Candidate.suggested_cause == suggested_cause)
    if after_rank is not None:
        query = query.where(Candidate.rank > _as_int("after_rank", after_rank))
    return query.order_by(Candidate.rank).limit(1).with_for_update(of=Candidate, skip_locked=True)


def next_candidate(
    session: Session,
    run_id: int,
    *,
    reviewer: str,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    class_name: str | None = None,
    suggested_cause: str | None = None,
    status: str = "unreviewed",
    after_rank: int | None = None,
    now: dt.datetime | None = None,
) -> CandidateView | None:
    """Lease and return the lowest-ranked candidate this reviewer may work on.

    A candidate qualifies if it matches the filters and has no lease, an
    expired lease, or a lease held by ``reviewer``. The reviewer's lease on
    it is taken or renewed for ``lease_seconds`` and the reviewer's other
    leases in the run are released. Concurrent callers never get the same
    candidate: PostgreSQL skips rows locked by ``FOR UPDATE SKIP LOCKED`` and
    the lease upsert only takes over expired or own leases; SQLite
    serialises writers with ``BEGIN IMMEDIATE``.

    Parameters
    ----------
    status
        ``'unreviewed'`` (no standing judgment), ``'reviewed'`` or ``'all'``.
    after_rank
        Only candidates ranked strictly after this (the "next" button).
    now
        Current time (timezone-aware); defaults to the clock.

    Returns
    -------
    CandidateView or None
        None when no candidate qualifies.
    """
    _check_name("reviewer", reviewer)
    seconds = _as_float("lease_seconds", lease_seconds, nullable=False)
    if seconds is None or seconds <= 0:
        raise ValueError(f"lease_seconds must be positive, got {lease_seconds!r}")
    now = _utcnow() if now is None else _aware("now", now)
    expires = now + dt.timedelta(seconds=seconds)
    query = candidate_queue_query(
        run_id,
        reviewer=reviewer,
        now=now,
        class_name=class_name,
        suggested_cause=suggested_cause,
        status=status,
        after_rank=after_rank,
    )

    taken_by_others: list[int] = []
    while True:
        attempt = query.where(Candidate.id.not_in(taken_by_others)) if taken_by_others else query
        candidate_id = session.scalar(attempt)
        if candidate_id is None:
            return None
        if _take_lease(session, candidate_id, reviewer, now, expires):
            break
        # Another reviewer leased it after our snapshot (PostgreSQL READ COMMITTED).
        taken_by_others.append(candidate_id)

    same_run = (
        select(Candidate.id)
        .where(Candidate.id == Lease.candidate_id, Candidate.run_id == run_id)
        .exists()
    )
    session.execute(
        delete(Lease).where(
            Lease.reviewer == reviewer, Lease.candidate_id != candidate_id, same_run
        ),
        execution_options={"synchronize_session": False},
    )
    return get_candidate(session, candidate_id)


def release_lease(session: Session, candidate_id: int, reviewer: str) -> bool:
    """Give up ``reviewer``'s lease on a candidate; True if there was one."""
    result = session.execute(RELEASE_LEASE, {"candidate_id": candidate_id, "reviewer": reviewer})
    return bool(result.rowcount)


# --------------------------------------------------------------------------- reviews


LOCK_CANDIDATE_QUERY = (
    select(Candidate.review_version)
    .where(Candidate.id == bindparam("candidate_id"))
    .with_for_update()
)

INSERT_REVIEW = insert(Review.__table__).returning(Review.id, Review.created_at)

RELEASE_LEASE = delete(Lease.__table__).where(
    Lease.candidate_id == bindparam("candidate_id"), Lease.reviewer == bindparam("reviewer")
)


def _lock_candidate(session: Session, candidate_id: int) -> int:
    """Lock the candidate row for this transaction and return its review version."""
    version = session.scalar(LOCK_CANDIDATE_QUERY, {"candidate_id": candidate_id})
    if version is None:
        raise StoreError(f"no candidate with id {candidate_id}")
    return version


def _append_review(
    session: Session, candidate_id: int, *, decision: str | None, **values: Any
) -> tuple[int, dt.datetime]:
    """Insert a review row and move the candidate to its version and decision."""
    review_id, created_at = session.execute(
        INSERT_REVIEW, {"candidate_id": candidate_id, "retracts_review_id": None, **values}
    ).one()
    session.execute(
        update(Candidate)
        .where(Candidate.id == candidate_id)
        .values(review_version=values["version"], decision=decision)
    )
    return review_id, created_at


def _others(history: Sequence[Any], excluded_id: int) -> tuple[OtherReview, ...]:
    return tuple(
        OtherReview(review.reviewer, review.cause, review.new_label, review.created_at)
        for review in effective_reviews(history)
        if review.id != excluded_id
    )


def submit_review(
    session: Session,
    candidate_id: int,
    *,
    reviewer: str,
    cause: str,
    new_label: str | None = None,
    note: str = "",
    transform: Mapping[str, Any] | None = None,
    seen_version: int,
) -> ReviewResult:
    """Append a reviewer's judgment; never lost, never overwriting another.

    The candidate row is locked, the review stored with
    ``version = candidate version + 1``, and flagged as a conflict when
    ``seen_version`` (the version the reviewer's page showed) is not the
    version it was stored on top of. The reviewer's lease is released.

    Parameters
    ----------
    cause
        One of ``DECISIONS``.
    new_label
        The correct class name; required when ``cause == 'mislabel'``.
    transform
        The augmentation that reproduces the failure (JSON-serialisable).
    seen_version
        ``CandidateView.version`` as shown to the reviewer.

    Raises
    ------
    ValueError
        Unknown cause, missing label for a mislabel, bad reviewer or version.
    StoreError
        No candidate with this id.
    """
    _check_name("reviewer", reviewer)
    if cause not in DECISIONS:
        raise ValueError(f"cause must be one of {', '.join(DECISIONS)}, got {cause!r}")
    if new_label is not None:
        _check_name("new_label", new_label)
    if cause == "mislabel" and new_label is None:
        raise ValueError("cause 'mislabel' needs new_label, the correct class name")
    seen = _as_int("seen_version", seen_version)
    if seen < 0:
        raise ValueError(f"seen_version must be >= 0, got {seen_version!r}")
    if not isinstance(note, str):
        raise TypeError(f"note must be a string, got {type(note).__name__}")

    previous = _lock_candidate(session, candidate_id)
    conflict = seen != previous
    review_id, _ = _append_review(
        session,
        candidate_id,
        decision=cause,
        reviewer=reviewer,
        cause=cause,
        new_label=new_label,
        note=note,
        transform=None if transform is None else dict(transform),
        seen_version=seen,
        version=previous + 1,
        conflict=conflict,
    )
    release_lease(session, candidate_id, reviewer)
    others = _others(_history_rows(session, candidate_id), review_id)
    return ReviewResult(review_id, previous + 1, conflict, others)


def undo_last_review(session: Session, candidate_id: int, *, reviewer: str) -> ReviewResult:
    """Retract ``reviewer``'s latest standing review of a candidate.

    Nothing is deleted: a retraction row is appended and the candidate's
    decision falls back to the latest review still standing (or none).

    Raises
    ------
    StoreError
        No such candidate, or the reviewer has no standing review of it.
    """
    _check_name("reviewer", reviewer)
    previous = _lock_candidate(session, candidate_id)
    history = _history_rows(session, candidate_id)
    standing = effective_reviews(history)
    own = [review for review in standing if review.reviewer == reviewer]
    if not own:
        raise StoreError(f"reviewer {reviewer!r} has no review of candidate {candidate_id} to undo")
    target = own[-1]
    remaining = [review for review in standing if review.id != target.id]
    retraction_id, _ = _append_review(
        session,
        candidate_id,
        decision=remaining[-1].cause if remaining else None,
        reviewer=reviewer,
        cause=None,
        new_label=None,
        note=f"retracts review {target.id}",
        transform=None,
        seen_version=previous,
        version=previous + 1,
        conflict=False,
        retracts_review_id=target.id,
    )
    return ReviewResult(retraction_id, previous + 1, False, _others(history, target.id))


def reviews_for(session: Session, candidate_id: int) -> list[Review]:
    """A candidate's full review history (retractions included), oldest first."""
    return _history(session, candidate_id)


def review_progress(session: Session, run_id: int) -> tuple[int, int]:
    """``(number of candidates, number with a standing judgment)`` for a run."""
    row = session.execute(
        select(func.count(), func.count(Candidate.decision)).where(Candidate.run_id == run_id)
    ).one()
    return int(row[0]), int(row[1])


def triage_query(run_id: int) -> Select[tuple[str, str | None, int]]:
    """``SELECT class_name, decision, count(*) ... GROUP BY`` behind ``triage_counts``."""
    return (
        select(Candidate.class_name, Candidate.decision, func.count())
        .where(Candidate.run_id == run_id)
        .group_by(Candidate.class_name, Candidate.decision)
    )


def triage_counts(session: Session, run_id: int) -> dict[tuple[str, str | None], int]:
    """Candidates per ``(class_name, decision)``; decision None means not reviewed yet.

    The decision is the cause of each candidate's latest non-retracted review.
    """
    rows = session.execute(triage_query(run_id))
    return {(class_name, decision): int(count) for class_name, decision, count in rows}


# --------------------------------------------------------------------------- users


def add_user(session: Session, *, name: str, role: str, password_hash: str) -> User:
    """Create a review-app account.

    Raises
    ------
    ValueError
        Unknown role.
    StoreError
        The name is taken.
    """
    _check_name("user name", name)
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if session.get(User, name) is not None:
        raise StoreError(f"user {name!r} already exists")
    user = User(name=name, role=role, password_hash=password_hash)
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        raise StoreError(f"user {name!r} already exists") from exc
    return user


def get_user(session: Session, name: str) -> User | None:
    """The account called ``name``, or None."""
    return session.get(User, name)


def list_users(session: Session) -> list[User]:
    """All accounts, by name."""
    return list(session.scalars(select(User).order_by(User.name)))


def set_suggestions(session: Session, run_id: int, rows: Sequence[Mapping[str, Any]]) -> int:
    """Store the suggested cause of candidates of a run; returns how many were updated.

    Each row has ``candidate_id``, ``suggested_cause`` (one of SUGGESTED_CAUSES),
    ``suggested_label`` (class name or None), ``suggestion_confidence`` in [0, 1] and
    ``evidence`` (a JSON-able dict). Suggestions are the miner's, not reviewers': they may be
    replaced at any time without touching the review history.
    """
    updated = 0
    for index, row in enumerate(rows):
        _check_keys("suggestion", index, row,
                    ("candidate_id", "suggested_cause", "suggested_label", "suggestion_confidence", "evidence"), ())
        cause = row["suggested_cause"]
        if cause not in SUGGESTED_CAUSES:
            raise ValueError(f"suggestion row {index}: cause must be one of {', '.join(SUGGESTED_CAUSES)}, got {cause!r}")
        confidence = _as_float(f"suggestion row {index} confidence", row["suggestion_confidence"], nullable=False)
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"suggestion row {index}: confidence must be in [0, 1], got {confidence}")
        result = session.execute(
            update(Candidate)
            .where(Candidate.id == int(row["candidate_id"]), Candidate.run_id == run_id)
            .values(
                suggested_cause=cause,
                suggested_label=_as_label(f"suggestion row {index} label", row["suggested_label"]),
                suggestion_confidence=confidence,
                evidence=row["evidence"],
            )
        )
        if result.rowcount != 1:
            raise StoreError(f"suggestion row {index}: run {run_id} has no candidate {row['candidate_id']}")
        updated += 1
    return updated


def previous_candidate(session: Session, run_id: int, *, before_rank: int,
                       class_name: str | None = None) -> CandidateView | None:
    """The candidate just before ``before_rank`` in rank order (reviewed or not), no lease taken."""
    query = select(Candidate.id).where(Candidate.run_id == run_id, Candidate.rank < before_rank)
    if class_name is not None:
        query = query.where(Candidate.class_name == class_name)
    candidate_id = session.scalar(query.order_by(Candidate.rank.desc()).limit(1))
    return None if candidate_id is None else get_candidate(session, candidate_id)


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
    for field in (*SCORE_REQUIRED[2:], *SCORE_OPTIONAL):
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
