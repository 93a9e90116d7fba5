"""A run's candidates: adding them, their cause suggestions, and the view the review page shows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from hardcase.miner.vocabulary import SUGGESTED_CAUSES
from hardcase.store._rows import PNG_MAGIC, _as_float, _as_int, _as_label, _check_keys, _chunks
from hardcase.store.errors import StoreError
from hardcase.store.schema import Candidate, Lease, Review, Sample, Score

CANDIDATE_REQUIRED = ("sample_id", "rank", "class_name", "hardness_score", "image_png")


CANDIDATE_OPTIONAL = (
    "pick_distance",
    "suggested_cause",
    "suggested_label",
    "suggestion_confidence",
    "evidence",
    "monitor_window_id",
)


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


def add_candidates(session: Session, run_id: int, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Store the hard examples picked for review.

    Each row has ``sample_id, rank, class_name, hardness_score, image_png``
    and optionally ``pick_distance, suggested_cause, suggested_label,
    suggestion_confidence, evidence`` (JSON-serialisable dict) and ``monitor_window_id``
    (the monitoring window a monitoring candidate came from).

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
                "monitor_window_id": None
                if row.get("monitor_window_id") is None
                else _as_int("monitor_window_id", row["monitor_window_id"]),
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
