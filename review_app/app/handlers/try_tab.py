"""Try tab handlers: a drawn or uploaded image through a run's model under the sliders."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import gradio as gr
import numpy as np
from PIL import Image, UnidentifiedImageError

from hardcase.miner.sources import MAX_PIXELS
from hardcase.review_app.app.handlers.review import transform_from_sliders
from hardcase.review_app.workflows.probe import EmptyImageError, RunModels, TryPrompt
from hardcase.review_app.workflows.review import ReviewService
from hardcase.store.errors import StoreError

DISPLAY = 280
CANVAS = 280
#: The brush of a grayscale model: black ink only (it is inverted to MNIST's bright ink).
INK_BRUSH = {"default_size": 12, "colors": ["#000000"], "color_mode": "fixed"}
#: The brush of a colour model: a palette to start from, and a colour picker.
COLOUR_BRUSH = {"default_size": 12, "colors": ["#000000", "#d62728", "#2ca02c", "#1f77b4", "#ff7f0e", "#ffffff"],
                "color_mode": "defaults"}


def brush_for(prompt: TryPrompt) -> gr.Brush:
    """The sketchpad's brush for a model: colours for a colour model, black ink otherwise."""
    return gr.Brush(**(COLOUR_BRUSH if prompt.colour else INK_BRUSH))


def crisp(image: np.ndarray, size: int = DISPLAY) -> np.ndarray:
    """Upscale a small model input without smoothing, RGB uint8."""
    factor = max(1, size // max(image.shape[:2]))
    big = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
    return np.repeat(big, 3, axis=2) if big.shape[-1] == 1 else big


def _image_of(sketch) -> np.ndarray | None:
    """The composite of a sketchpad value, or an image given directly (API callers)."""
    if sketch is None:
        return None
    if isinstance(sketch, dict):
        composite = sketch.get("composite")
        if composite is None:
            composite = sketch.get("background")
        return None if composite is None else np.asarray(composite)
    return np.asarray(sketch)


def fit_canvas(image: np.ndarray, size: int = CANVAS) -> np.ndarray:
    """An RGB image padded to a square with its border colour and resized to the canvas."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] in (2, 4):  # composite transparency onto white, as the sketchpad shows it
        alpha = image[..., -1:].astype(np.float32) / 255.0
        image = (image[..., :-1] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=2)
    height, width = image.shape[:2]
    side = max(height, width)
    border = np.median(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]), axis=0)
    square = np.empty((side, side, 3), np.uint8)
    square[:] = border.astype(np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top:top + height, left:left + width] = image[..., :3]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_NEAREST
    return cv2.resize(square, (size, size), interpolation=interpolation)


@dataclass
class TryHandlers:
    """Gradio handlers of the Try tab over one :class:`ReviewService`."""

    service: ReviewService
    models: RunModels = field(init=False)

    def __post_init__(self) -> None:
        self.models = RunModels(self.service)

    def describe(self, run_name):
        """The Try tab's sketchpad, centring box and help for ``run_name``'s model (from its recorded spec)."""
        prompt = self.models.prompt(run_name or "")
        return (gr.update(label=prompt.label, brush=brush_for(prompt)),
                gr.update(visible=prompt.centring, value=prompt.centring),
                prompt.help)

    def predict(self, run_name, sketch, normalize, rotate, perspective, direction, scale, shift_x=0.0, shift_y=0.0,
                aspect=1.0, shear=0.0):
        """Model input (as the model sees it), probabilities and a note for a drawn image."""
        if not run_name:
            raise gr.Error("choose a mining run: its model makes the prediction")
        transform = transform_from_sliders(rotate, perspective, direction, scale, shift_x, shift_y, aspect, shear)
        image = _image_of(sketch)
        if image is None:
            return None, None, self.models.prompt(run_name).empty
        try:
            result = self.models.predict(run_name, image, transform, normalize=bool(normalize))
        except EmptyImageError:
            empty = self.models.prompt(run_name).empty
            return None, None, f"The canvas is empty: {empty[0].lower()}{empty[1:]}"
        except (StoreError, FileNotFoundError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        top = max(result.probabilities, key=result.probabilities.get)
        how = "as drawn" if transform.is_identity else f"after {transform.describe()}"
        note = f"**{top}** at {result.probabilities[top]:.0%} {how}"
        return crisp(result.image), result.probabilities, note

    def upload(self, path):
        """An uploaded image file as the sketchpad's background, fitted to the canvas."""
        if not path:
            raise gr.Error("choose an image file to upload")
        try:
            with Image.open(path) as opened:  # reads the header only
                width, height = opened.size
                if width * height > MAX_PIXELS:  # a 194 KB PNG may declare 13000 x 13000 pixels
                    raise gr.Error(f"that image is {width}x{height} pixels ({width * height / 1e6:.0f} Mpx); "
                                   f"uploads are limited to {MAX_PIXELS / 1e6:.0f} Mpx")
                image = np.asarray(opened.convert("RGBA"))
        except Image.DecompressionBombError:  # the served process's own limit, met while opening
            raise gr.Error(f"that image declares more pixels than uploads may have ({MAX_PIXELS / 1e6:.0f} Mpx)") from None
        except (UnidentifiedImageError, OSError):
            raise gr.Error("that file is not an image hardcase can read (PNG, JPEG, WebP, ...)") from None
        fitted = fit_canvas(image)
        return {"background": fitted, "layers": [], "composite": fitted}
