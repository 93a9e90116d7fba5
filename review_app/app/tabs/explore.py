"""The Explore tab: the whole run at a glance — a sortable, filterable table of every candidate
and its state, the score histograms with the candidate cut, the map of the run's embeddings
(a click opens a candidate in the review tab) and, for leads, bulk decisions, adjudication and undo."""

from __future__ import annotations

import gradio as gr

from hardcase.miner.vocabulary import DECISIONS, SUGGESTED_CAUSES
from hardcase.review_app.app.handlers.access import visible_tabs
from hardcase.review_app.app.handlers.explore import (
    APPLY_TO,
    MAP_COLORS,
    TABLE_COLUMNS,
    TABLE_TYPES,
    ExploreHandlers,
    ticked_ids,
)
from hardcase.review_app.app.handlers.review import ANY
from hardcase.review_app.app.tabs.review import ReviewTab
from hardcase.review_app.workflows.explore import ACCEPT_SUGGESTION, SORTABLE, STATUSES
from hardcase.review_app.workflows.review import ReviewService


def build(service: ReviewService, *, tab: gr.Tab, tabs: gr.Tabs, review_tab: ReviewTab,
          run_names: list[str], default_run: str | None) -> None:
    """Lay out the explore tab inside ``tab``; its contents are read when the tab is selected."""
    handlers = ExploreHandlers(service)
    classes = service.class_names(default_run) if default_run else []
    with gr.Row():
        run = gr.Dropdown(run_names, value=default_run, label="Mining run", scale=3, elem_id="explore-run")
        refresh = gr.Button("Refresh", size="sm", scale=1, elem_id="explore-refresh")
    summary = gr.Markdown(elem_id="explore-summary")
    with gr.Row():
        hardness = gr.Plot(show_label=False, format="png", elem_id="explore-hardness")
        quality = gr.Plot(show_label=False, format="png", elem_id="explore-quality")
    with gr.Accordion("Map of the run's embeddings", open=True):
        color_by = gr.Radio(list(MAP_COLORS), value="class", label="Colour by", elem_id="explore-color")
        map_image = gr.Image(type="numpy", interactive=False, show_label=False, buttons=[], elem_id="explore-map")
        map_note = gr.Markdown(elem_id="explore-map-note")
        # where the map drew each candidate (no gr.State: it would keep a heartbeat connection open)
        map_positions = gr.JSON({"ids": [], "xy": []}, visible=False)

    gr.Markdown("### Candidates")
    with gr.Row():
        class_filter = gr.Dropdown([ANY, *classes], value=ANY, label="Class", scale=1,
                                   allow_custom_value=True, elem_id="explore-class")
        cause_filter = gr.Dropdown([ANY, *SUGGESTED_CAUSES, "none"], value=ANY, label="Suggested cause", scale=1,
                                   elem_id="explore-cause")
        status_filter = gr.Dropdown(list(STATUSES), value="all", label="Status", scale=1, elem_id="explore-status")
        reviewer_filter = gr.Textbox(label="Judged by", placeholder="reviewer name", scale=1,
                                     elem_id="explore-reviewer")
        min_confidence = gr.Slider(0, 1, value=0, step=0.05, label="Suggestion confidence at least", scale=2,
                                   elem_id="explore-min-confidence")
    with gr.Row():
        sort_by = gr.Dropdown(list(SORTABLE), value="rank", label="Sort by", scale=1, elem_id="explore-sort")
        descending = gr.Checkbox(False, label="Descending", scale=1, elem_id="explore-descending")
        clear = gr.Button("Clear filters", size="sm", scale=1, elem_id="explore-clear")
    table_note = gr.Markdown(elem_id="explore-table-note")
    table = gr.Dataframe(headers=TABLE_COLUMNS, datatype=TABLE_TYPES, interactive=True,
                         static_columns=list(range(1, len(TABLE_COLUMNS))), max_height=520, wrap=True,
                         label="Candidates", elem_id="explore-table")

    with gr.Accordion("Bulk decisions and adjudication (leads)", open=True, visible=True,
                      elem_id="explore-bulk") as bulk:
        with gr.Row():
            apply_to = gr.Radio(list(APPLY_TO), value=APPLY_TO[0], label="Apply to", scale=2,
                                elem_id="explore-apply-to")
            ticked = gr.Textbox(label="Ticked candidate ids", placeholder="tick rows above, or type ids: 4, 14",
                                scale=2, elem_id="explore-ticked")
        with gr.Row():
            decision = gr.Dropdown([ACCEPT_SUGGESTION, *DECISIONS], value=ACCEPT_SUGGESTION, label="Decision",
                                   scale=2, elem_id="explore-decision")
            relabel = gr.Dropdown(classes, value=None, label="Relabel as (for mislabel)", scale=1, allow_custom_value=True,
                                  elem_id="explore-relabel")
            decide = gr.Button("Decide them", variant="primary", scale=1, elem_id="explore-decide")
            settle = gr.Button("Adjudicate the disputed ones", scale=1, elem_id="explore-adjudicate")
        bulk_status = gr.Markdown(elem_id="explore-bulk-status")
        with gr.Row():
            batch = gr.Dropdown([], value=None, label="Your batches", scale=3, allow_custom_value=True, elem_id="explore-batches")
            undo = gr.Button("Undo this batch", scale=1, elem_id="explore-undo")
        last_batch = gr.Number(value=None, visible=False, precision=0)

    filters = [class_filter, cause_filter, status_filter, reviewer_filter, min_confidence]
    table_inputs = [run, *filters, sort_by, descending]
    review_targets = [review_tab.open_id, review_tab.run, tabs]
    reviewer = review_tab.reviewer

    gr.on([tab.select, run.change, refresh.click], handlers.overview, run, [summary, hardness, quality],
          api_name="explore", trigger_mode="always_last")
    gr.on([tab.select, run.change, refresh.click, color_by.change], handlers.map, [run, color_by],
          [map_image, map_positions, map_note], api_name="explore_map", trigger_mode="always_last")
    run.change(handlers.choices, run, [class_filter, relabel], api_name=False)
    gr.on([tab.select, refresh.click, class_filter.change, cause_filter.change, status_filter.change,
           reviewer_filter.submit, min_confidence.change, sort_by.change, descending.change],
          handlers.table, table_inputs, [table, table_note], api_name="explore_table", trigger_mode="always_last",
          queue=False)  # a filter or sort answers at once: no queue round trip (a few ms of work, cached table)
    clear.click(handlers.clear_filters, None, filters, api_name="explore_clear_filters", queue=False).then(
        handlers.table, table_inputs, [table, table_note], api_name=False)
    table.input(lambda value: ", ".join(map(str, ticked_ids(value))), table, ticked, api_name=False, queue=False)
    table.select(handlers.open_row, None, review_targets, api_name="explore_open")
    map_image.select(handlers.open_point, map_positions, review_targets, api_name="explore_map_select")

    bulk_inputs = [run, apply_to, ticked, decision, relabel, *filters, reviewer]
    for button, handler, name in ((decide, handlers.bulk_decide, "bulk_decide"),
                                  (settle, handlers.adjudicate, "adjudicate")):
        button.click(handler, bulk_inputs, [bulk_status, last_batch], api_name=name).success(
            handlers.table, table_inputs, [table, table_note], api_name=False).then(
            lambda: "", None, ticked, api_name=False, queue=False).then(
            handlers.batches, [run, reviewer], batch, api_name=False)
    undo.click(handlers.undo_batch, [batch, reviewer], bulk_status, api_name="undo_batch").success(
        handlers.table, table_inputs, [table, table_note], api_name=False).then(
        handlers.batches, [run, reviewer], batch, api_name=False)

    def show_bulk(run_name, typed, request: gr.Request):
        (shown,) = visible_tabs(service, request, ["bulk_decide"])
        return shown, handlers.batches(run_name, typed, request) if shown["visible"] else gr.update()

    gr.on([tab.select, run.change], show_bulk, [run, reviewer], [bulk, batch], api_name=False)
