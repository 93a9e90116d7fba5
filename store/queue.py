"""The review queue: which candidate a reviewer sees next, held by an expiring lease."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Select, and_, bindparam, delete, func, or_, select
from sqlalchemy.orm import Session, aliased

from hardcase.miner.vocabulary import SUGGESTED_CAUSES
from hardcase.store._rows import _as_float, _as_int, _aware, _check_name, _dialect_insert, _utcnow
from hardcase.store.candidates import CandidateView, get_candidate
from hardcase.store.schema import Candidate, Lease, Score

REVIEW_STATUSES: tuple[str, ...] = ("unreviewed", "reviewed", "all")
"""Queue filters of ``next_candidate``: no decision yet, a decision, either."""


DEFAULT_LEASE_SECONDS = 600

#: Where a candidate without a label quality (no label) sorts in the mislabel filter: after
#: every stored one (label quality lies in [0, 1]).
_NO_LABEL_QUALITY = 2.0


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
    lease is absent, expired at ``now`` or held by ``reviewer``; with
    ``suggested_cause="mislabel"``, the one with the lowest stored
    ``label_quality_score`` (most likely mislabeled), ties by rank, ``after_rank``
    then naming the current candidate in that order. Public so the benchmark can
    show its query plan.
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
    if suggested_cause == "mislabel":
        return _by_label_quality(query, run_id, after_rank)
    if after_rank is not None:
        query = query.where(Candidate.rank > _as_int("after_rank", after_rank))
    return query.order_by(Candidate.rank).limit(1).with_for_update(of=Candidate, skip_locked=True)


def _label_quality_key(run_id: int, candidate=Candidate):
    """The run's stored ``label_quality_score`` of ``candidate`` (unknown sorts last)."""
    return func.coalesce(
        select(Score.label_quality_score)
        .where(Score.run_id == run_id, Score.sample_id == candidate.sample_id)
        .scalar_subquery(),
        _NO_LABEL_QUALITY,
    )


def _by_label_quality(query: Select, run_id: int, after_rank: int | None) -> Select:
    """The mislabel filter's order: most likely mislabeled first (lowest label quality), ties by
    rank; ``after_rank`` names the current candidate, and "after" follows this order."""
    key = _label_quality_key(run_id)
    if after_rank is not None:
        after_rank = _as_int("after_rank", after_rank)
        cursor = aliased(Candidate)
        current = (
            select(_label_quality_key(run_id, cursor))
            .where(cursor.run_id == run_id, cursor.rank == after_rank)
            .scalar_subquery()
        )
        # a rank that names no candidate of the run leaves nothing "after" it in this order
        query = query.where(or_(key > current, and_(key == current, Candidate.rank > after_rank)))
    return query.order_by(key, Candidate.rank).limit(1).with_for_update(of=Candidate, skip_locked=True)


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


RELEASE_LEASE = delete(Lease.__table__).where(
    Lease.candidate_id == bindparam("candidate_id"), Lease.reviewer == bindparam("reviewer")
)


def release_lease(session: Session, candidate_id: int, reviewer: str) -> bool:
    """Give up ``reviewer``'s lease on a candidate; True if there was one."""
    result = session.execute(RELEASE_LEASE, {"candidate_id": candidate_id, "reviewer": reviewer})
    return bool(result.rowcount)


def previous_candidate(session: Session, run_id: int, *, before_rank: int,
                       class_name: str | None = None) -> CandidateView | None:
    """The candidate just before ``before_rank`` in rank order (reviewed or not), no lease taken."""
    query = select(Candidate.id).where(Candidate.run_id == run_id, Candidate.rank < before_rank)
    if class_name is not None:
        query = query.where(Candidate.class_name == class_name)
    candidate_id = session.scalar(query.order_by(Candidate.rank.desc()).limit(1))
    return None if candidate_id is None else get_candidate(session, candidate_id)
