"""The Try tab: draw or upload a digit and see a run's model predict it under the review sliders."""

from __future__ import annotations

import gradio as gr

from hardcase.review_app.app.handlers.review import RESET_TRANSFORM
from hardcase.review_app.app.handlers.try_tab import CANVAS, TryHandlers
from hardcase.review_app.app.tabs.review import MODEL_CONCURRENCY, transform_sliders
from hardcase.review_app.workflows.review import ReviewService


def build(service: ReviewService, *, run_names: list[str], default_run: str | None) -> None:
    """Lay out the Try tab inside ``tab`` and wire its events."""
    handlers = TryHandlers(service)
    with gr.Row():
        run = gr.Dropdown(run_names, value=default_run, label="Model of mining run", scale=2, elem_id="try-run")
        normalize = gr.Checkbox(True, label="Crop, fit 20x20 and centre like MNIST", scale=1, elem_id="try-normalize")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            sketch = gr.Sketchpad(
                label="Draw a digit: pick the brush ✎ on the left, then draw", type="numpy", image_mode="RGBA",
                canvas_size=(CANVAS, CANVAS), fixed_canvas=True, layers=False, transforms=(),
                brush=gr.Brush(default_size=12, colors=["#000000"], color_mode="fixed"),
                elem_id="try-sketch",
            )
            upload = gr.UploadButton("Upload an image instead", file_types=["image"], size="sm",
                                     elem_id="try-upload")
            gr.Markdown(
                "Draw dark on light, or upload a photo or scan of a digit. "
                "The model expects MNIST's convention: a white digit on black, 28x28, fitted into the "
                "central 20x20 and centred on its centre of mass. Drawings and uploads are converted: "
                "dark-on-light images are inverted, then cropped, fitted and centred (untick the box to "
                "only resize).", elem_id="try-help")
        with gr.Column(scale=1):
            with gr.Row():
                model_view = gr.Image(label="What the model sees", type="numpy", interactive=False, height=220,
                                      buttons=[], format="png", elem_id="try-model-input")
                probabilities = gr.Label(num_top_classes=3, label="Prediction (top 3)", elem_id="try-probabilities")
            note = gr.Markdown(elem_id="try-note")
            sliders = transform_sliders("try-")
            reset = gr.Button("Reset transform", size="sm", elem_id="try-reset")

    gr.on([sketch.change, run.change, normalize.change, *(slider.change for slider in sliders)],
          handlers.predict, [run, sketch, normalize, *sliders], [model_view, probabilities, note],
          api_name="try_predict", trigger_mode="always_last", show_progress="hidden",
          concurrency_id=MODEL_CONCURRENCY, concurrency_limit=2)
    upload.upload(handlers.upload, upload, sketch, api_name="try_upload")
    reset.click(lambda: RESET_TRANSFORM, None, sliders, api_name="try_reset", queue=False)
