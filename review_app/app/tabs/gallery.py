"""The Gallery tab: a run's candidates as one grid per class, each under its header; clicking one
opens it for review."""

from __future__ import annotations

import gradio as gr

from hardcase.review_app.app.handlers.gallery import GalleryHandlers, grid_updates
from hardcase.review_app.app.handlers.review import ANY
from hardcase.review_app.app.tabs.review import ReviewTab
from hardcase.review_app.workflows.gallery import STATUSES
from hardcase.review_app.workflows.review import ReviewService

GRID_COLUMNS = 8
"""Thumbnails per row of a class's grid (fixed, so every class's thumbnails have one size)."""
ROW_HEIGHT = 150
"""Pixels per row of thumbnails: a grid's height is set from its rows (Gradio gives ``height="auto"``
galleries a minimum of 450 px, which left a one-row class in a mostly empty box)."""
GROUP_SLOTS = 24
"""Headed grids laid out (hidden until used); the classes past the last share it. Fixed slots fed
from the endpoint's items, with no ``gr.State`` in the page: one keeps a heartbeat connection open
for good, so the page never goes network-idle."""


def build(service: ReviewService, *, tab: gr.Tab, tabs: gr.Tabs, review_tab: ReviewTab,
          run_names: list[str], default_run: str | None) -> None:
    """Lay out the gallery inside ``tab`` and wire its events (loaded when the tab is selected)."""
    handlers = GalleryHandlers(service)
    classes = service.class_names(default_run) if default_run else []
    with gr.Row():
        run = gr.Dropdown(run_names, value=default_run, label="Mining run", scale=2, elem_id="gallery-run")
        class_filter = gr.Dropdown([ANY, *classes], value=ANY, label="Class", scale=1, elem_id="gallery-class")
        status = gr.Radio(list(STATUSES), value="all", label="Status", scale=2, elem_id="gallery-status")
        refresh = gr.Button("Refresh", size="sm", scale=1)
    summary = gr.Markdown(elem_id="gallery-summary")
    with gr.Row(equal_height=True):
        candidate = gr.Number(label="Candidate #", placeholder="candidate id", precision=0, scale=1,
                              elem_id="gallery-candidate")
        open_button = gr.Button("Open in review tab", size="md", scale=1, elem_id="gallery-open")
        gr.Markdown("Type a candidate id, or click a thumbnail below.", container=False)
    # the endpoint's answer (every item, in class order); drawn below as one headed grid per class
    gallery = gr.Gallery(visible=False, format="png", type="filepath", elem_id="gallery-items")
    review_targets = [review_tab.open_id, review_tab.run, tabs]
    header_slots, grid_slots = [], []
    with gr.Column(elem_id="gallery"):
        gr.Markdown("#id · given→predicted label · ✔ decided cause, or suggested cause? — click one to review it",
                    elem_id="gallery-legend")
        for _ in range(GROUP_SLOTS):
            header_slots.append(gr.Markdown(visible=False, elem_classes=["gallery-header"]))
            grid_slots.append(gr.Gallery(visible=False, columns=GRID_COLUMNS, fit_columns=False, allow_preview=False,
                                         object_fit="contain", buttons=[], format="png", show_label=False,
                                         interactive=False, elem_classes=["gallery-group"]))
    slots = [component for pair in zip(header_slots, grid_slots) for component in pair]

    def fill_slots(items):
        return grid_updates(items, handlers.class_groups(items), GROUP_SLOTS, columns=GRID_COLUMNS,
                            row_height=ROW_HEIGHT)

    run.change(handlers.classes, run, class_filter, api_name="gallery_classes")
    gr.on([tab.select, run.change, class_filter.change, status.change, refresh.click], handlers.show,
          [run, class_filter, status], [gallery, summary], api_name="gallery", trigger_mode="always_last"
          ).then(fill_slots, gallery, slots, api_name=False)
    for grid in grid_slots:
        grid.select(handlers.select, None, [candidate, *review_targets], api_name=False)
    gallery.select(handlers.select, None, [candidate, *review_targets], api_name="gallery_select")
    open_button.click(handlers.open_in_review, candidate, review_targets, api_name="open_in_review")
