"""A reviewer's own standing decisions in a run, latest first: what the review page's undo takes back.

Read-only; the retraction itself is :func:`hardcase.store.reviews.undo_last_review`.
"""

from __future__ import annotations

from sqlalchemy import Select, exists, select
from sqlalchemy.orm import Session, aliased

from hardcase.store.schema import Candidate, Review


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
    """Id of the candidate ``reviewer`` decided last in the run (a skip counts), or None.

    After that decision is undone the one before it comes next, so undo walks back through
    the reviewer's decisions one at a time.
    """
    return session.scalar(latest_decision_query(run_id, reviewer))


__all__ = ["latest_decided_candidate", "latest_decision_query"]
