"""The Try tab: draw or upload an image and see a run's model predict it under the review sliders.

The sketchpad's prompt and brush, the MNIST-style centring box and the help follow the chosen
run's recorded spec (size, channels, class names: :func:`~hardcase.review_app.workflows.probe.try_prompt`);
an upload is predicted as soon as it lands on the sketchpad.
"""

from __future__ import annotations

import gradio as gr

from hardcase.review_app.app.handlers.review import RESET_TRANSFORM
from hardcase.review_app.app.handlers.try_tab import CANVAS, TryHandlers, brush_for
from hardcase.review_app.app.tabs.review import MODEL_CONCURRENCY, transform_sliders
from hardcase.review_app.workflows.review import ReviewService


def build(service: ReviewService, *, run_names: list[str], default_run: str | None) -> None:
    """Lay out the Try tab inside ``tab`` and wire its events."""
    handlers = TryHandlers(service)
    prompt = handlers.models.prompt(default_run or "")  # the recorded spec only: no model is loaded here
    with gr.Row():
        run = gr.Dropdown(run_names, value=default_run, label="Model of mining run", scale=2, elem_id="try-run")
        normalize = gr.Checkbox(prompt.centring, label="Crop, fit 20x20 and centre like MNIST", scale=1,
                                visible=prompt.centring, elem_id="try-normalize")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            sketch = gr.Sketchpad(
                label=prompt.label, type="numpy", image_mode="RGBA",
                canvas_size=(CANVAS, CANVAS), fixed_canvas=True, layers=False, transforms=(),
                brush=brush_for(prompt), elem_id="try-sketch",
            )
            upload = gr.UploadButton("Upload an image instead", file_types=["image"], size="sm",
                                     elem_id="try-upload")
            help_text = gr.Markdown(prompt.help, elem_id="try-help")
        with gr.Column(scale=1):
            with gr.Row():
                model_view = gr.Image(label="What the model sees", type="numpy", interactive=False, height=220,
                                      buttons=[], format="png", elem_id="try-model-input")
                probabilities = gr.Label(num_top_classes=3, label="Prediction (top 3)", elem_id="try-probabilities")
            note = gr.Markdown(elem_id="try-note")
            sliders = transform_sliders("try-")
            reset = gr.Button("Reset transform", size="sm", elem_id="try-reset")

    predict_inputs = [run, sketch, normalize, *sliders]
    predict_outputs = [model_view, probabilities, note]
    # private: the prompt follows the run (what it shows comes from the run's stored spec)
    run.change(handlers.describe, run, [sketch, normalize, help_text], api_name=False, queue=False)
    gr.on([sketch.change, run.change, normalize.change, *(slider.change for slider in sliders)],
          handlers.predict, predict_inputs, predict_outputs,
          api_name="try_predict", trigger_mode="always_last", show_progress="hidden",
          concurrency_id=MODEL_CONCURRENCY, concurrency_limit=2)
    # an upload sets the sketchpad's value from the server, which did not reach its change
    # event (nothing was predicted until a slider moved): predict it here, a private step of try_upload
    upload.upload(handlers.upload, upload, sketch, api_name="try_upload").then(
        handlers.predict, predict_inputs, predict_outputs, api_name=False, show_progress="hidden",
        concurrency_id=MODEL_CONCURRENCY, concurrency_limit=2)
    reset.click(lambda: RESET_TRANSFORM, None, sliders, api_name="try_reset", queue=False)
