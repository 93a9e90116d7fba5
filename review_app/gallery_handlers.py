"""Gallery tab: the candidates of a run as a grid, and opening one in the review tab.

:func:`gallery_entries` is the plain store query; :class:`GalleryHandlers` holds the Gradio
handlers (widget values in and out, user mistakes as ``gr.Error``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import gradio as gr
import numpy as np
from sqlalchemy import select

from hardcase.review_app.mining import decode_png
from hardcase.review_app.service import ReviewService
from hardcase.store import api
from hardcase.store.db import Store
from hardcase.store.errors import StoreError
from hardcase.store.schema import Candidate, ModelVersion, Review, Sample, Score

ANY = "any"
STATUSES = ("all", "unreviewed", "reviewed")
THUMBNAIL = 112
DEFAULT_LIMIT = 120


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


def gallery_entries(
    store: Store,
    run_name: str,
    *,
    class_name: str | None = None,
    status: str = "all",
    limit: int = DEFAULT_LIMIT,
) -> tuple[list[GalleryEntry], int]:
    """Candidates of a run by class (model order), then rank.

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
        order = {name: k for k, name in enumerate(session.get(ModelVersion, run.model_version_id).class_names)}
        query = (
            select(Candidate.id, Candidate.rank, Candidate.class_name, Candidate.suggested_cause,
                   Candidate.decision, Sample.given_label, Score.predicted_label)
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
                                                               row.class_name, row.rank))
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


def thumbnail(png: bytes, size: int = THUMBNAIL) -> np.ndarray:
    """Decode a candidate image and upscale it without smoothing, RGB uint8."""
    image = decode_png(png)
    factor = max(1, size // max(image.shape[:2]))
    big = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
    if big.shape[-1] == 1:
        return np.repeat(big, 3, axis=2)
    return big[..., :3]


_CAPTION_ID = re.compile(r"^#(\d+)\b")


def candidate_id_from_caption(caption: str | None) -> int | None:
    """The candidate id at the start of a gallery caption, or None."""
    match = _CAPTION_ID.match(caption or "")
    return int(match.group(1)) if match else None


@dataclass
class GalleryHandlers:
    """Gradio handlers of the gallery tab over one :class:`ReviewService`."""

    service: ReviewService

    def show(self, run_name, class_filter, status, limit=DEFAULT_LIMIT):
        """Gallery items ``(image, caption)`` and a summary line for the filters."""
        if not run_name:
            raise gr.Error("choose a mining run first")
        try:
            entries, total = gallery_entries(
                self.service.store, run_name,
                class_name=None if class_filter in (None, "", ANY) else class_filter,
                status=status or "all", limit=int(limit or DEFAULT_LIMIT),
            )
        except (StoreError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        items = [(thumbnail(entry.image_png), entry.caption) for entry in entries]
        where = f"class **{class_filter}**" if class_filter not in (None, "", ANY) else "all classes"
        summary = f"{len(entries)} of {total} {status or 'all'} candidates of **{run_name}**, {where}"
        if not entries:
            summary += " — nothing to show."
        elif len(entries) < total:
            summary += f" (the first {len(entries)} by class and rank)"
        return items, summary

    def classes(self, run_name):
        """Class filter choices of a run (``any`` first)."""
        if not run_name:
            return gr.update(choices=[ANY], value=ANY)
        try:
            return gr.update(choices=[ANY, *self.service.class_names(run_name)], value=ANY)
        except StoreError as exc:
            raise gr.Error(str(exc)) from None

    def open_in_review(self, candidate_id):
        """Show ``candidate_id`` in the review tab: its id, its run, and the review tab selected."""
        if candidate_id is None or candidate_id < 1:
            raise gr.Error("enter or pick a candidate id first")
        try:
            view = self.service.candidate(int(candidate_id))
            run_name = self.service.run_name_of(view.run_id)
        except StoreError as exc:
            raise gr.Error(str(exc)) from None
        return view.id, run_name, gr.Tabs(selected="review")

    def select(self, evt: gr.EventData):
        """A click on a gallery item opens that candidate in the review tab."""
        data = getattr(evt, "_data", None) or {}
        value = data.get("value") or {}
        candidate_id = candidate_id_from_caption(value.get("caption") if isinstance(value, dict) else None)
        if candidate_id is None:
            raise gr.Error("select a candidate in the gallery")
        return (candidate_id, *self.open_in_review(candidate_id))
