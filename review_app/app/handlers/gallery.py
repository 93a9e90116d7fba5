"""Gallery tab: the candidates of a run as a grid, and opening one in the review tab.

:func:`~hardcase.review_app.workflows.gallery.gallery_entries` is the store query;
:class:`GalleryHandlers` holds the Gradio handlers (widget values in and out, user mistakes as ``gr.Error``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import gradio as gr
import numpy as np

from hardcase.review_app.app.handlers.review import ANY
from hardcase.review_app.workflows import explore
from hardcase.review_app.workflows.gallery import DEFAULT_LIMIT, gallery_entries
from hardcase.review_app.workflows.images import decode_png
from hardcase.review_app.workflows.review import ReviewService
from hardcase.store.errors import StoreError

THUMBNAIL = 112


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


def class_groups(class_names: list[str]) -> list[list]:
    """Runs of equal class names in order: ``["3", "3", "5"]`` -> ``[["3", 2], ["5", 1]]``."""
    groups: list[list] = []
    for name in class_names:
        if groups and groups[-1][0] == name:
            groups[-1][1] += 1
        else:
            groups.append([name, 1])
    return groups


def grid_updates(items: list, groups: list[list], n_slots: int, *, columns: int, row_height: int) -> list:
    """Updates of ``n_slots`` (header, grid) pairs showing ``items`` under their class headers.

    ``groups`` are ``[class name, count]`` runs of ``items`` (:func:`class_groups`); classes past
    the last slot share it, under a header naming them. Unused slots are hidden.
    """
    items = list(items or [])
    groups = [list(group) for group in groups or []]
    if len(groups) > n_slots:
        tail = groups[n_slots - 1:]
        names = [str(name) for name, _ in tail]
        groups = groups[: n_slots - 1] + [[f"{names[0]} to {names[-1]} ({len(names)} classes)",
                                           sum(count for _, count in tail)]]
    updates, start = [], 0
    for slot in range(n_slots):
        if slot < len(groups):
            name, count = groups[slot]
            rows = -(-count // columns)
            updates += [gr.update(value=f"#### Class {name} · {count} candidate{'s' if count != 1 else ''}",
                                  visible=True),
                        gr.update(value=items[start:start + count], visible=True, rows=rows,
                                  height=row_height * rows + 24)]
            start += count
        else:
            updates += [gr.update(visible=False), gr.update(value=None, visible=False)]
    return updates


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

    def class_groups(self, items) -> list[list]:
        """The class runs (:func:`class_groups`) of gallery items, read by the ids in their captions."""
        ids = [candidate_id_from_caption(item[1] if isinstance(item, (list, tuple)) and len(item) > 1 else None)
               for item in items or []]
        known = explore.candidate_classes(self.service.store, [i for i in ids if i is not None])
        return class_groups([known.get(i, "?") for i in ids])

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
