"""The Export tab: the fix list as CSV/JSONL/Parquet, the relabeled data as a zipped image folder."""

from __future__ import annotations

import gradio as gr

from hardcase.review_app.app.handlers.export import ExportHandlers
from hardcase.review_app.workflows.review import ReviewService
from hardcase.store.export import EXPORTS, FORMATS

EXPORT_ORDER = ["fixes", "candidates", "reviews", "scores"]


def build(service: ReviewService, *, run_names: list[str], default_run: str | None) -> None:
    """Lay out the export tab inside ``tab`` and wire its events."""
    handlers = ExportHandlers(service)
    run = gr.Dropdown(run_names, value=default_run, label="Mining run", elem_id="export-run")
    with gr.Row(equal_height=False):
        with gr.Column():
            gr.Markdown("### Fix list\nCandidates with a final decision (cause, new label, transform, "
                        "reviewers, agreement); or every candidate, the review history, or all scores.")
            what = gr.Radio([*[w for w in EXPORT_ORDER if w in EXPORTS], *[w for w in EXPORTS if w not in EXPORT_ORDER]], value="fixes", label="What", elem_id="export-what")
            fmt = gr.Radio(list(FORMATS), value="csv", label="Format", elem_id="export-format")
            export_button = gr.Button("Export", variant="primary", elem_id="export-button")
            export_file = gr.File(label="Download", interactive=False, elem_id="export-file")
            export_note = gr.Markdown(elem_id="export-note")
        with gr.Column():
            gr.Markdown("### Relabeled images\nReviewed candidates with their final label as "
                        "`<run>-relabeled/<class>/<sample_id>.png` (plus `labels.csv`), zipped; "
                        "load with `keras.utils.image_dataset_from_directory`.")
            images_button = gr.Button("Export image folder (zip)", variant="primary", elem_id="export-images-button")
            images_file = gr.File(label="Download", interactive=False, elem_id="export-images-file")
            images_note = gr.Markdown(elem_id="export-images-note")

    export_button.click(handlers.export, [run, what, fmt], [export_file, export_note], api_name="export")
    images_button.click(handlers.export_image_folder, run, [images_file, images_note],
                        api_name="export_image_folder")
