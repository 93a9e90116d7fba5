"""The gallery's entries: a run's candidates by class, most likely mislabeled first, with their standing decision."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select

from hardcase.store import api
from hardcase.store.db import Store
from hardcase.store.schema import Candidate, Review, Sample, Score

STATUSES = ("all", "unreviewed", "reviewed")
"""The gallery's review-status filters."""
DEFAULT_LIMIT = 120
"""Entries shown at most (images are read only for these)."""


@dataclass(frozen=True)
class GalleryEntry:
    """One candidate as the gallery shows it."""

    candidate_id: int
    rank: int
    class_name: str
    given_label: str | None
    predicted_label: str | None
    suggested_cause: str | None
    decision: str | None
    decided_label: str | None
    image_png: bytes

    @property
    def caption(self) -> str:
        """``#id · given→predicted · ✔ decided cause`` or ``· suggested cause?``."""
        text = f"#{self.candidate_id} · {self.given_label or '?'}→{self.predicted_label or '?'}"
        if self.decision:
            label = f"→{self.decided_label}" if self.decided_label else ""
            return f"{text} · ✔ {self.decision.replace('_', ' ')}{label}"
        if self.suggested_cause:
            return f"{text} · {self.suggested_cause}?"
        return text


def _label_quality_key(row) -> float:
    """Sort key of a row's label quality: unknown (None, NaN) after every stored value in [0, 1]."""
    value = row.label_quality_score
    return 2.0 if value is None or value != value else float(value)


def gallery_entries(
    store: Store,
    run_name: str,
    *,
    class_name: str | None = None,
    status: str = "all",
    limit: int = DEFAULT_LIMIT,
) -> tuple[list[GalleryEntry], int]:
    """Candidates of a run by class (model order), then the most likely mislabeled first (stored
    ``label_quality_score`` ascending; candidates without one, unlabelled, after), then rank.

    Parameters
    ----------
    class_name
        Only this class group; None for all.
    status
        ``all``, ``unreviewed`` (no standing decision) or ``reviewed``.
    limit
        At most this many entries (images are read only for these).

    Returns
    -------
    (entries, n_matching)
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    with store.snapshot() as session:
        run = api.require_run(session, run_name)
        order = {name: k for k, name in enumerate(api.model_version(session, run).class_names)}
        query = (
            select(Candidate.id, Candidate.rank, Candidate.class_name, Candidate.suggested_cause,
                   Candidate.decision, Sample.given_label, Score.predicted_label, Score.label_quality_score)
            .join(Sample, Sample.id == Candidate.sample_id)
            .outerjoin(Score, (Score.run_id == Candidate.run_id) & (Score.sample_id == Candidate.sample_id))
            .where(Candidate.run_id == run.id)
        )
        if class_name is not None:
            query = query.where(Candidate.class_name == class_name)
        if status == "unreviewed":
            query = query.where(Candidate.decision.is_(None))
        elif status == "reviewed":
            query = query.where(Candidate.decision.is_not(None))
        rows = sorted(session.execute(query), key=lambda row: (order.get(row.class_name, len(order)),
                                                               row.class_name, _label_quality_key(row), row.rank))
        shown = rows[: max(0, int(limit))]
        ids = [row.id for row in shown]
        images = dict(session.execute(select(Candidate.id, Candidate.image_png).where(Candidate.id.in_(ids))).all()) if ids else {}
        history = defaultdict(list)
        if ids:
            for review in session.execute(
                select(Review.id, Review.candidate_id, Review.reviewer, Review.cause, Review.new_label,
                       Review.retracts_review_id)
                .where(Review.candidate_id.in_(ids))
                .order_by(Review.candidate_id, Review.version)
            ):
                history[review.candidate_id].append(review)
    entries = []
    for row in shown:
        standing = api.effective_reviews(history[row.id])
        latest = standing[-1] if standing else None
        entries.append(GalleryEntry(
            candidate_id=row.id, rank=row.rank, class_name=row.class_name, given_label=row.given_label,
            predicted_label=row.predicted_label, suggested_cause=row.suggested_cause,
            decision=None if latest is None else latest.cause,
            decided_label=None if latest is None else latest.new_label,
            image_png=images[row.id],
        ))
    return entries, len(rows)
