"""The Gallery tab: a grid of a run's candidates per class; clicking one opens it for review."""

from __future__ import annotations

import gradio as gr

from hardcase.review_app.app.handlers.gallery import GalleryHandlers
from hardcase.review_app.app.handlers.review import ANY
from hardcase.review_app.app.tabs.review import ReviewTab
from hardcase.review_app.workflows.gallery import STATUSES
from hardcase.review_app.workflows.review import ReviewService


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
    gallery = gr.Gallery(label="#id · given→predicted label · ✔ decided cause, or suggested cause? — click one to review it",
                         columns=6, height="auto", allow_preview=False, object_fit="contain",
                         buttons=[], format="png", elem_id="gallery")
    with gr.Row(equal_height=True):
        candidate = gr.Number(label="Candidate #", placeholder="candidate id", precision=0, scale=1,
                              elem_id="gallery-candidate")
        open_button = gr.Button("Open in review tab", size="md", scale=1, elem_id="gallery-open")
        gr.Markdown("Type a candidate id, or click a thumbnail above.", container=False)

    review_targets = [review_tab.open_id, review_tab.run, tabs]
    run.change(handlers.classes, run, class_filter, api_name="gallery_classes")
    gr.on([tab.select, run.change, class_filter.change, status.change, refresh.click], handlers.show,
          [run, class_filter, status], [gallery, summary], api_name="gallery", trigger_mode="always_last")
    gallery.select(handlers.select, None, [candidate, *review_targets], api_name="gallery_select")
    open_button.click(handlers.open_in_review, candidate, review_targets, api_name="open_in_review")
