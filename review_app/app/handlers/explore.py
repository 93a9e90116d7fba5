"""Explore tab handlers: the run's table, score histograms and map, opening a candidate in the
review tab, and a lead's bulk decisions, adjudications and their undo.

The work is done by :mod:`hardcase.review_app.workflows.explore`; these translate widgets to and
from it (a user's mistake is one ``gr.Error`` message and one log line).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr
import numpy as np
import pandas as pd

from hardcase.review_app.app import plots
from hardcase.review_app.app.handlers.access import guard, reviewer_name
from hardcase.review_app.app.handlers.gallery import GalleryHandlers
from hardcase.review_app.app.handlers.review import ANY
from hardcase.review_app.workflows import explore
from hardcase.review_app.workflows.review import ReviewService
from hardcase.store.errors import StoreError

PICK = "pick"
"""The table's first column: ticked rows are the hand-made selection of a bulk decision."""
TABLE_COLUMNS = [PICK, *explore.COLUMNS]
TABLE_TYPES = ["bool", "number", "number", "str", "str", "str", "number", "number", "str", "number", "str", "str",
               "str"]
TABLE_ROWS = 500
"""Rows sent to the page at most (filters and bulk decisions by filter see every row)."""
CLICK_RADIUS = 15.0
"""A click on the map opens the nearest candidate within this many pixels."""
APPLY_TO = ("ticked rows", "every row matching the filters")
MAP_COLORS = ("class", "cause")


def _chosen(value) -> str | None:
    return None if value in (None, "", ANY, "all") else str(value)


def filters_from(class_filter, cause_filter, status_filter, reviewer_filter, min_confidence) -> explore.Filters:
    """The table's filter widgets as :class:`~hardcase.review_app.workflows.explore.Filters`."""
    confidence = None
    if min_confidence not in (None, ""):
        try:
            confidence = float(min_confidence)
        except (TypeError, ValueError):
            raise gr.Error(f"minimum confidence must be a number, got {min_confidence!r}") from None
        if confidence <= 0:
            confidence = None
    return explore.Filters(class_name=_chosen(class_filter), suggested_cause=_chosen(cause_filter),
                           status=status_filter or "all", reviewer=_chosen((reviewer_filter or "").strip()),
                           min_confidence=confidence)


def ticked_ids(table) -> list[int]:
    """Ids of the table rows whose pick box is ticked."""
    if table is None:
        return []
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(
        table.get("data", []), columns=table.get("headers"))
    if PICK not in frame.columns or "id" not in frame.columns or frame.empty:
        return []
    picked = frame[PICK].map(lambda value: value is True or str(value).lower() == "true")
    return [int(value) for value in frame.loc[picked, "id"]]


def parse_ids(text) -> list[int]:
    """``"4, 14 21"`` -> ``[4, 14, 21]``; a word that is not a number is a ``gr.Error``."""
    ids = []
    for word in str(text or "").replace(",", " ").split():
        try:
            ids.append(int(word.lstrip("#")))
        except ValueError:
            raise gr.Error(f"{word!r} is not a candidate id") from None
    return ids


@dataclass
class ExploreHandlers:
    """Gradio handlers of the explore tab over one :class:`ReviewService`."""

    service: ReviewService
    tables: explore.CandidateTables = field(default_factory=explore.CandidateTables)

    def _candidates(self, run_name) -> pd.DataFrame:
        if not run_name:
            raise gr.Error("choose a mining run first")
        try:
            return self.tables.get(self.service.store, run_name)
        except StoreError as exc:
            raise gr.Error(str(exc)) from None

    # the run at a glance -------------------------------------------------------------------------
    def overview(self, run_name, request: gr.Request = None):
        """A summary line and the two score histograms of a run, the candidate cut marked."""
        guard(self.service, request, "explore")
        frame = self._candidates(run_name)
        distributions = explore.score_distributions(self.service.store, run_name, frame)
        counts = frame["status"].value_counts()
        summary = (f"**{run_name}**: {len(distributions.hardness):,} scored samples · {len(frame):,} candidates · "
                   + " · ".join(f"{counts.get(status, 0)} {status}" for status in explore.STATUSES[1:]))
        hardness = plots.score_histogram_figure(
            distributions.hardness, distributions.candidate_hardness, cut=distributions.hardness_cut,
            title="Hardness of every scored sample", xlabel="hardness score (lower = harder)")
        quality = plots.score_histogram_figure(
            distributions.label_quality, distributions.candidate_label_quality, cut=distributions.label_quality_cut,
            title="Label quality of every labelled sample", xlabel="label quality score (lower = likelier mislabelled)")
        return summary, hardness, quality

    def table(self, run_name, class_filter, cause_filter, status_filter, reviewer_filter, min_confidence,
              sort_by="rank", descending=False, request: gr.Request = None):
        """The candidates passing the filters, sorted, and a line saying how many (and which filters)."""
        guard(self.service, request, "explore_table")
        frame = self._candidates(run_name)
        filters = filters_from(class_filter, cause_filter, status_filter, reviewer_filter, min_confidence)
        try:
            shown = explore.sort_candidates(explore.filter_candidates(frame, filters), sort_by or "rank",
                                            descending=bool(descending))
        except explore.ExploreInputError as exc:
            raise gr.Error(str(exc)) from None
        described = filters.describe()
        if shown.empty:
            note = (f"No candidate of **{run_name}** matches the filters ({described}): "
                    "press **Clear filters** to see all." if described else f"**{run_name}** has no candidate.")
        else:
            note = f"{len(shown)} of {len(frame)} candidates" + (f" match {described}" if described else "")
            if len(shown) > TABLE_ROWS:
                note += f" (the first {TABLE_ROWS} shown; a bulk decision by filter takes all {len(shown)})"
            note += ". Click a row to review it; tick rows to decide them together."
        page = shown.head(TABLE_ROWS)
        rows = pd.DataFrame({PICK: False, **{column: page[column] for column in explore.COLUMNS}},
                            columns=TABLE_COLUMNS)
        rows = rows.round({"hardness": 4, "label quality": 4, "confidence": 3})
        return rows, note

    def clear_filters(self):
        """Every table filter back to showing all."""
        return ANY, ANY, "all", "", 0

    def choices(self, run_name, request: gr.Request = None):
        """The class filter's and the relabel choices of a run."""
        guard(self.service, request, "explore")
        if not run_name:
            return gr.update(choices=[ANY], value=ANY), gr.update(choices=[], value=None)
        try:
            classes = self.service.class_names(run_name)
        except StoreError as exc:
            raise gr.Error(str(exc)) from None
        return gr.update(choices=[ANY, *classes], value=ANY), gr.update(choices=classes, value=None)

    def map(self, run_name, color_by="class", request: gr.Request = None, progress=gr.Progress()):  # noqa: B008 - how Gradio asks for a progress bar
        """The run's map as an image, where its candidates landed, and a note. A run mined
        before maps were stored gets a PCA map on first open (seconds; t-SNE is for mining)."""
        guard(self.service, request, "explore_map")
        frame = self._candidates(run_name)
        run_map = explore.load_map(self.service.store, run_name, frame)
        note = ""
        if run_map is None:
            progress(0.1, desc="computing the map of the run's embeddings (PCA)")
            info = explore.compute_and_store_projection(self.service.store, run_name, method="pca")
            if info is None:
                return (None, {"ids": [], "xy": []},
                        f"**{run_name}** has no stored embeddings, so no map (mine it with a model, or with --embeddings).")
            run_map = explore.load_map(self.service.store, run_name, frame)
            note = "This run had no map yet: a PCA map was computed now and stored. "
        image, positions = plots.run_map_image(run_map, color_by=color_by if color_by in MAP_COLORS else "class")
        state = {"ids": run_map.candidate_id.tolist(), "xy": positions.round(1).tolist()}
        note += "Outlined points are the candidates: click one to open it in the review tab."
        return image, state, note

    # opening a candidate -------------------------------------------------------------------------
    def open_row(self, evt: gr.EventData, request: gr.Request = None):
        """A click on a table row opens its candidate in the review tab (a click on the pick box only ticks it)."""
        guard(self.service, request, "explore_open")
        data = getattr(evt, "_data", None) or {}
        index = data.get("index") or [None, None]
        if isinstance(index, (list, tuple)) and len(index) > 1 and index[1] == 0:
            return gr.skip(), gr.skip(), gr.skip()
        row = data.get("row_value") or []
        try:
            candidate_id = int(row[TABLE_COLUMNS.index("id")])
        except (IndexError, TypeError, ValueError):
            raise gr.Error("select a row of the candidate table") from None
        return GalleryHandlers(self.service).open_in_review(candidate_id)

    def open_point(self, positions, evt: gr.EventData, request: gr.Request = None):
        """A click on the map opens the nearest candidate within :data:`CLICK_RADIUS` pixels."""
        guard(self.service, request, "explore_map_select")
        data = getattr(evt, "_data", None) or {}
        index = data.get("index")
        ids = (positions or {}).get("ids") or []
        if not ids or not isinstance(index, (list, tuple)) or len(index) != 2:
            raise gr.Error("click on an outlined candidate of the map")
        xy = np.asarray((positions or {}).get("xy"), dtype=np.float64).reshape(-1, 2)
        distance = np.hypot(xy[:, 0] - float(index[0]), xy[:, 1] - float(index[1]))
        nearest = int(np.argmin(distance))
        if distance[nearest] > CLICK_RADIUS:
            gr.Warning("No candidate there: click on an outlined point.")
            return gr.skip(), gr.skip(), gr.skip()
        return GalleryHandlers(self.service).open_in_review(int(ids[nearest]))

    # bulk work for leads -------------------------------------------------------------------------
    def _bulk(self, endpoint, run_name, apply_to, ticked, decision, new_label, class_filter, cause_filter,
              status_filter, reviewer_filter, min_confidence, reviewer_typed, request, *, adjudicate):
        guard(self.service, request, endpoint)
        if not run_name:
            raise gr.Error("choose a mining run first")
        by_hand = apply_to != APPLY_TO[1]
        ids = parse_ids(ticked) if by_hand else None
        filters = None if by_hand else filters_from(class_filter, cause_filter, status_filter, reviewer_filter,
                                                    min_confidence)
        try:
            outcome = explore.bulk_decide(
                self.service.store, run_name, reviewer=reviewer_name(request, reviewer_typed),
                decision=decision or explore.ACCEPT_SUGGESTION, new_label=new_label or None,
                candidate_ids=ids, filters=filters, adjudicate=adjudicate)
        except (explore.ExploreInputError, StoreError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        message = f"Batch **#{outcome.batch_id}**: {outcome.description}."
        if outcome.skipped:
            reasons = {}
            for _, reason in outcome.skipped:
                reasons[reason] = reasons.get(reason, 0) + 1
            message += " Left: " + ", ".join(f"{n} with {reason}" for reason, n in reasons.items()) + "."
        return message, outcome.batch_id

    def bulk_decide(self, run_name, apply_to, ticked, decision, new_label, class_filter, cause_filter,
                    status_filter, reviewer_filter, min_confidence, reviewer_typed, request: gr.Request = None):
        """Decide the ticked candidates (or every one matching the filters) as the signed-in lead, in one batch."""
        return self._bulk("bulk_decide", run_name, apply_to, ticked, decision, new_label, class_filter,
                          cause_filter, status_filter, reviewer_filter, min_confidence, reviewer_typed, request,
                          adjudicate=False)

    def adjudicate(self, run_name, apply_to, ticked, decision, new_label, class_filter, cause_filter,
                   status_filter, reviewer_filter, min_confidence, reviewer_typed, request: gr.Request = None):
        """Settle the disputed candidates of the selection with the lead's decision, in one batch."""
        return self._bulk("adjudicate", run_name, apply_to, ticked, decision, new_label, class_filter,
                          cause_filter, status_filter, reviewer_filter, min_confidence, reviewer_typed, request,
                          adjudicate=True)

    def undo_batch(self, batch_id, reviewer_typed, request: gr.Request = None):
        """Retract a batch's reviews (those still standing) as one undo batch."""
        guard(self.service, request, "undo_batch")
        try:
            number = int(batch_id)
        except (TypeError, ValueError):
            raise gr.Error("choose a batch to undo") from None
        try:
            result = explore.undo_batch(self.service.store, number, reviewer=reviewer_name(request, reviewer_typed))
        except (explore.ExploreInputError, StoreError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        return (f"Batch **#{number}** undone (batch #{result.batch_id}): {len(result.candidate_ids)} decisions "
                "retracted; those candidates are back to their earlier state.")

    def batches(self, run_name, reviewer_typed, request: gr.Request = None):
        """The signed-in lead's batches of the run that can still be undone, newest first (a step of
        the undo and bulk endpoints: it checks the role of ``undo_batch``)."""
        guard(self.service, request, "undo_batch")
        reviewer = reviewer_name(request, reviewer_typed)
        if not run_name or not reviewer:
            return gr.update(choices=[], value=None)
        try:
            found = explore.batches(self.service.store, run_name, reviewer=reviewer)
        except StoreError as exc:
            raise gr.Error(str(exc)) from None
        choices = [(f"#{batch.id} · {batch.description} · {batch.created_at:%H:%M}", batch.id)
                   for batch in found if batch.action != "undo" and batch.undone_by is None]
        return gr.update(choices=choices, value=choices[0][1] if choices else None)
