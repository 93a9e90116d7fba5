"""How reviewers received the miner's suggestions: the share of each suggested cause they confirmed.

Read-only: one ``SELECT ... GROUP BY`` over a run's candidates, answering "of the earlier
``augment`` suggestions that reviewers decided, how many did they call ``augment``?". A
``mislabel`` suggestion names the right class too, and is confirmed only by a mislabel decision
to that class. The review page shows it as the suggestion's track record once there are decisions.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import Select, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from hardcase.miner.vocabulary import SKIP
from hardcase.store.schema import Candidate, Review


class Acceptance(NamedTuple):
    """Reviewers' verdicts on the suggestions of one cause."""

    confirmed: int
    """Decided candidates whose decision is the suggested cause (for ``mislabel``, to the suggested class)."""
    decided: int
    """Candidates with that suggestion and a standing decision other than ``skip``."""


def acceptance_query(run_id: int, *, exclude_candidate_id: int | None = None) -> Select[tuple[str, int, int]]:
    """``SELECT suggested_cause, count(*), count(decision = suggested_cause) ... GROUP BY`` behind
    :func:`acceptance_by_cause`."""
    retraction = aliased(Review)
    # the label of the candidate's latest standing review (the decision's own label)
    decided_label = (
        select(Review.new_label)
        .where(
            Review.candidate_id == Candidate.id,
            Review.cause.is_not(None),
            ~exists().where(retraction.retracts_review_id == Review.id),
        )
        .order_by(Review.id.desc())
        .limit(1)
        .correlate(Candidate)
        .scalar_subquery()
    )
    confirmed = and_(
        Candidate.decision == Candidate.suggested_cause,
        or_(Candidate.suggested_cause != "mislabel", decided_label == Candidate.suggested_label),
    )
    statement = (
        select(
            Candidate.suggested_cause,
            func.count(),
            func.coalesce(func.sum(case((confirmed, 1), else_=0)), 0),
        )
        .where(
            Candidate.run_id == run_id,
            Candidate.suggested_cause.is_not(None),
            Candidate.decision.is_not(None),
            Candidate.decision != SKIP,
        )
        .group_by(Candidate.suggested_cause)
    )
    if exclude_candidate_id is not None:
        statement = statement.where(Candidate.id != exclude_candidate_id)
    return statement


def acceptance_by_cause(
    session: Session, run_id: int, *, exclude_candidate_id: int | None = None
) -> dict[str, Acceptance]:
    """Per suggested cause of a run: how many decided suggestions reviewers confirmed.

    A skip is no verdict and is left out; ``not_a_failure``, another cause, or a mislabel
    decision to another class than the suggested one counts as decided but not confirmed.
    Causes without a decided candidate are absent.

    Parameters
    ----------
    run_id
        The run.
    exclude_candidate_id
        A candidate to leave out (the one on the page: its own decision is no *earlier* verdict).
    """
    rows = session.execute(acceptance_query(run_id, exclude_candidate_id=exclude_candidate_id))
    return {cause: Acceptance(confirmed=int(confirmed), decided=int(decided)) for cause, decided, confirmed in rows}


__all__ = ["Acceptance", "acceptance_by_cause", "acceptance_query"]
