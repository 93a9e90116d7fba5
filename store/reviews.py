"""Reviews: append-only decisions, undo as a retraction, conflicts, progress and triage counts;
bulk decisions of a lead as one batch, undone as one batch."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, exists, func, insert, select, update
from sqlalchemy.orm import Session, aliased

from hardcase.miner.vocabulary import DECISIONS
from hardcase.store._rows import _as_int, _check_name
from hardcase.store.candidates import _history, _history_rows, effective_reviews
from hardcase.store.errors import StoreError
from hardcase.store.queue import release_lease
from hardcase.store.schema import BATCH_ACTIONS, Candidate, Review, ReviewBatch


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
        INSERT_REVIEW,
        {"candidate_id": candidate_id, "retracts_review_id": None, "batch_id": None, **values},
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
    retraction_id = _retract(session, candidate_id, target.id, standing, previous, reviewer=reviewer)
    return ReviewResult(retraction_id, previous + 1, False, _others(history, target.id))


def _retract(
    session: Session,
    candidate_id: int,
    target_id: int,
    standing: Sequence[Any],
    previous: int,
    *,
    reviewer: str,
    batch_id: int | None = None,
) -> int:
    """Append the retraction of standing review ``target_id`` (the candidate row locked at
    version ``previous``); its decision falls back to the latest review still standing."""
    remaining = [review for review in standing if review.id != target_id]
    retraction_id, _ = _append_review(
        session,
        candidate_id,
        decision=remaining[-1].cause if remaining else None,
        reviewer=reviewer,
        cause=None,
        new_label=None,
        note=f"retracts review {target_id}",
        transform=None,
        seen_version=previous,
        version=previous + 1,
        conflict=False,
        retracts_review_id=target_id,
        batch_id=batch_id,
    )
    return retraction_id


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


@dataclass(frozen=True)
class BatchResult:
    """Outcome of ``submit_batch`` / ``undo_batch``.

    Attributes
    ----------
    batch_id
        Id of the appended ``review_batches`` row.
    candidate_ids
        The candidates a review was appended for, in the order given.
    review_ids
        The appended reviews (or retractions), one per candidate.
    """

    batch_id: int
    candidate_ids: tuple[int, ...]
    review_ids: tuple[int, ...]


def _check_decision(index: int, cause: Any, new_label: Any) -> None:
    if cause not in DECISIONS:
        raise ValueError(f"decision {index}: cause must be one of {', '.join(DECISIONS)}, got {cause!r}")
    if new_label is not None:
        _check_name("new_label", new_label)
    if cause == "mislabel" and new_label is None:
        raise ValueError(f"decision {index}: cause 'mislabel' needs new_label, the correct class name")


def submit_batch(
    session: Session,
    run_id: int,
    decisions: Sequence[Mapping[str, Any]],
    *,
    reviewer: str,
    action: str = "decide",
    description: str = "",
) -> BatchResult:
    """Decide many candidates of a run at once: one batch row, one review per candidate.

    Each review is ``reviewer``'s own judgment of that candidate, appended as
    :func:`submit_review` appends one (the candidate row locked, its version bumped, the
    reviewer's lease released) on top of the version it has now, so no conflict is flagged.

    Parameters
    ----------
    run_id
        The run every candidate belongs to.
    decisions
        Mappings with ``candidate_id``, ``cause`` (one of ``DECISIONS``) and optional
        ``new_label`` (required for ``mislabel``); a candidate at most once.
    action
        ``decide`` or ``adjudicate`` (a lead settling candidates whose reviewers disagree).
    description
        What was selected and how, in words (shown in the list of batches).

    Raises
    ------
    ValueError
        No decision, a candidate twice, a bad cause or label, a bad action or reviewer.
    StoreError
        A candidate that does not exist or belongs to another run.
    """
    _check_name("reviewer", reviewer)
    if action not in BATCH_ACTIONS or action == "undo":
        raise ValueError(f"action must be 'decide' or 'adjudicate', got {action!r}")
    if not decisions:
        raise ValueError("a batch needs at least one decision")
    ids = [_as_int("candidate_id", decision["candidate_id"]) for decision in decisions]
    if len(set(ids)) != len(ids):
        raise ValueError("a batch decides each candidate at most once")
    for index, decision in enumerate(decisions):
        _check_decision(index, decision.get("cause"), decision.get("new_label"))
    found = set(
        session.scalars(select(Candidate.id).where(Candidate.run_id == run_id, Candidate.id.in_(ids)))
    )
    if len(found) != len(ids):
        missing = next(candidate_id for candidate_id in ids if candidate_id not in found)
        raise StoreError(f"no candidate with id {missing} in run {run_id}")
    batch_id = _new_batch(session, run_id, reviewer=reviewer, action=action, description=description)
    review_ids = []
    for candidate_id, decision in zip(ids, decisions):
        previous = _lock_candidate(session, candidate_id)
        review_id, _ = _append_review(
            session,
            candidate_id,
            decision=decision["cause"],
            reviewer=reviewer,
            cause=decision["cause"],
            new_label=decision.get("new_label"),
            note=str(decision.get("note") or ""),
            transform=None,
            seen_version=previous,
            version=previous + 1,
            conflict=False,
            batch_id=batch_id,
        )
        release_lease(session, candidate_id, reviewer)
        review_ids.append(review_id)
    return BatchResult(batch_id, tuple(ids), tuple(review_ids))


def _new_batch(session: Session, run_id: int, **values: Any) -> int:
    batch = ReviewBatch(run_id=run_id, **values)
    session.add(batch)
    session.flush()
    return batch.id


def undo_batch(session: Session, batch_id: int, *, reviewer: str) -> BatchResult:
    """Retract every review of batch ``batch_id`` still standing, as one ``undo`` batch.

    Nothing is deleted; each candidate's decision falls back to its latest review still
    standing. A review of the batch already retracted on its own is left as it is.

    Raises
    ------
    StoreError
        No such batch, an undo batch, a batch of another reviewer, or one already undone.
    """
    _check_name("reviewer", reviewer)
    batch = session.get(ReviewBatch, _as_int("batch_id", batch_id))
    if batch is None:
        raise StoreError(f"no review batch with id {batch_id}")
    if batch.action == "undo":
        raise StoreError(f"batch {batch_id} is itself an undo; it cannot be undone")
    if batch.reviewer != reviewer:
        raise StoreError(f"batch {batch_id} was made by {batch.reviewer!r}; only they can undo it")
    if session.scalar(select(ReviewBatch.id).where(ReviewBatch.undoes_batch_id == batch.id)) is not None:
        raise StoreError(f"batch {batch_id} was already undone")
    undo_id = _new_batch(
        session, batch.run_id, reviewer=reviewer, action="undo",
        description=f"undoes batch {batch.id}", undoes_batch_id=batch.id,
    )
    targets = session.execute(
        select(Review.id, Review.candidate_id).where(Review.batch_id == batch.id).order_by(Review.id)
    ).all()
    candidate_ids, retraction_ids = [], []
    for target_id, candidate_id in targets:
        previous = _lock_candidate(session, candidate_id)
        standing = effective_reviews(_history_rows(session, candidate_id))
        if not any(review.id == target_id for review in standing):
            continue
        retraction_ids.append(
            _retract(session, candidate_id, target_id, standing, previous, reviewer=reviewer, batch_id=undo_id)
        )
        candidate_ids.append(candidate_id)
    return BatchResult(undo_id, tuple(candidate_ids), tuple(retraction_ids))


class BatchSummary(NamedTuple):
    """One batch of a run as the batch list shows it."""

    id: int
    reviewer: str
    action: str
    description: str
    n_reviews: int
    undone_by: int | None
    created_at: dt.datetime


def list_batches(session: Session, run_id: int, *, reviewer: str | None = None) -> list[BatchSummary]:
    """The run's review batches, newest first (``undone_by``: the batch that undid it, if any)."""
    undo = ReviewBatch.__table__.alias("undo")
    counts = (
        select(Review.batch_id, func.count().label("n"))
        .where(Review.batch_id.is_not(None))
        .group_by(Review.batch_id)
        .subquery()
    )
    query = (
        select(ReviewBatch.id, ReviewBatch.reviewer, ReviewBatch.action, ReviewBatch.description,
               func.coalesce(counts.c.n, 0), undo.c.id, ReviewBatch.created_at)
        .outerjoin(counts, counts.c.batch_id == ReviewBatch.id)
        .outerjoin(undo, undo.c.undoes_batch_id == ReviewBatch.id)
        .where(ReviewBatch.run_id == run_id)
        .order_by(ReviewBatch.id.desc())
    )
    if reviewer is not None:
        query = query.where(ReviewBatch.reviewer == reviewer)
    return [BatchSummary(*row) for row in session.execute(query)]


def latest_decision_query(run_id: int, reviewer: str) -> Select[tuple[int]]:
    """The candidate of ``reviewer``'s latest review in the run that has a cause and was not retracted."""
    retraction = aliased(Review)
    return (
        select(Review.candidate_id)
        .join(Candidate, Candidate.id == Review.candidate_id)
        .where(
            Candidate.run_id == run_id,
            Review.reviewer == reviewer,
            Review.cause.is_not(None),
            ~exists().where(retraction.retracts_review_id == Review.id),
        )
        .order_by(Review.id.desc())
        .limit(1)
    )


def latest_decided_candidate(session: Session, run_id: int, reviewer: str) -> int | None:
    """Id of the candidate ``reviewer`` decided last in the run (a skip counts), or None: what
    the review page's undo takes back (:func:`undo_last_review`).

    After that decision is undone the one before it comes next, so undo walks back through
    the reviewer's decisions one at a time.
    """
    return session.scalar(latest_decision_query(run_id, reviewer))
