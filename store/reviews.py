"""Reviews: append-only decisions, undo as a retraction, conflicts, progress and triage counts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from hardcase.miner.vocabulary import DECISIONS
from hardcase.store._rows import _as_int, _check_name
from hardcase.store.candidates import _history, _history_rows, effective_reviews
from hardcase.store.errors import StoreError
from hardcase.store.queue import release_lease
from hardcase.store.schema import Candidate, Review


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


LOCK_CANDIDATE_QUERY = (
    select(Candidate.review_version)
    .where(Candidate.id == bindparam("candidate_id"))
    .with_for_update()
)


INSERT_REVIEW = insert(Review.__table__).returning(Review.id, Review.created_at)


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
