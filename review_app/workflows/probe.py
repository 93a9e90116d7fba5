"""The Try tab's work without Gradio: turn a sketch or an upload into model input, predict.

Input convention
----------------
The demo model, like MNIST, expects a **white digit on a black background**, 28x28, the
digit's bounding box fitted into the central 20x20 pixels and its centre of mass at the
centre of the image. The sketchpad gives the opposite: an RGBA canvas with black strokes
on a transparent (shown white) background, far larger than 28x28; uploads may be either
polarity. :func:`to_model_input` therefore

1. composites RGBA onto white (the colour under transparent pixels is arbitrary),
2. converts to grey (ITU-R 601 luma),
3. inverts when the border is bright (dark ink on a light background), so ink is bright,
4. with ``normalize`` (the default), crops to the ink, fits the longest side into
   ``20/28`` of the model's size (area interpolation, as MNIST's anti-aliasing) and shifts
   the centre of mass to the centre; without it, resizes the whole image,
5. repeats the channel for RGB models.

The same conversion serves any run's model through its preprocessing spec (size and
channels); scaling to floats is the classifier's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from hardcase.miner.spec import PreprocessingSpec
from hardcase.models.transforms import Transform, apply_transform
from hardcase.review_app.workflows.review import ReviewService

if TYPE_CHECKING:
    pass

MNIST_BOX = 20 / 28
"""Share of the image side the digit's bounding box is fitted into."""
INK_THRESHOLD = 0.15
"""Grey level (share of the brightest pixel) above which a pixel counts as ink."""


class EmptyImageError(ValueError):
    """The image has no ink to classify (an empty canvas)."""


def to_grey_ink(image: np.ndarray) -> np.ndarray:
    """Grey float32 image in [0, 255] with bright ink on a dark background.

    Parameters
    ----------
    image
        uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); RGBA is composited onto white.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4) or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an image (H, W[, C]) with 1-4 channels, got shape {image.shape}")
    pixels = image.astype(np.float32)
    if image.dtype != np.uint8:
        pixels = pixels * (255.0 if pixels.max(initial=0) <= 1.0 else 1.0)
    if pixels.shape[-1] in (2, 4):  # grey+alpha or RGBA: composite onto white
        alpha = pixels[..., -1:] / 255.0
        pixels = pixels[..., :-1] * alpha + 255.0 * (1.0 - alpha)
    grey = pixels[..., 0] if pixels.shape[-1] == 1 else pixels[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 127.5:
        grey = 255.0 - grey
    return grey


def _centre_of_mass_shift(canvas: np.ndarray) -> tuple[float, float]:
    total = canvas.sum()
    rows, cols = np.indices(canvas.shape)
    centre_row = (rows * canvas).sum() / total
    centre_col = (cols * canvas).sum() / total
    return (canvas.shape[0] - 1) / 2 - centre_row, (canvas.shape[1] - 1) / 2 - centre_col


def to_model_input(image: np.ndarray, spec: PreprocessingSpec, *, normalize: bool = True) -> np.ndarray:
    """A sketch or uploaded image as the model's uint8 input (H, W, C) (see the module docstring).

    Raises
    ------
    EmptyImageError
        Nothing is drawn (no pixel differs from the background).
    """
    grey = to_grey_ink(image)
    grey = grey - np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]]))
    grey = np.clip(grey, 0, 255)
    peak = float(grey.max(initial=0))
    if peak < 8:
        raise EmptyImageError("the image is empty: draw a digit or upload an image")
    grey *= 255.0 / peak
    height, width = spec.height, spec.width
    if not normalize:
        out = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
    else:
        ink = np.argwhere(grey > INK_THRESHOLD * 255)
        (top, left), (bottom, right) = ink.min(axis=0), ink.max(axis=0) + 1
        crop = grey[top:bottom, left:right]
        box_h, box_w = max(1, round(height * MNIST_BOX)), max(1, round(width * MNIST_BOX))
        factor = min(box_h / crop.shape[0], box_w / crop.shape[1])
        new_h, new_w = max(1, round(crop.shape[0] * factor)), max(1, round(crop.shape[1] * factor))
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        small = cv2.resize(crop, (new_w, new_h), interpolation=interpolation)
        canvas = np.zeros((height, width), np.float32)
        row0, col0 = (height - new_h) // 2, (width - new_w) // 2
        canvas[row0:row0 + new_h, col0:col0 + new_w] = small
        shift_row, shift_col = _centre_of_mass_shift(canvas)
        matrix = np.float32([[1, 0, shift_col], [0, 1, shift_row]])
        out = cv2.warpAffine(canvas, matrix, (width, height), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)[..., None]
    return np.repeat(out, 3, axis=2) if spec.channels == 3 else out


@dataclass(frozen=True)
class TryResult:
    """The model's view of a tried image: its input after the transform, and probabilities."""

    image: np.ndarray
    probabilities: dict[str, float]


class RunModels:
    """Probe the classifier of any run (the :class:`ReviewService`'s cache: one loaded model per version)."""

    def __init__(self, service: ReviewService) -> None:
        self.service = service

    def predict(self, run_name: str, image: np.ndarray, transform: Transform, *, normalize: bool = True) -> TryResult:
        """Convert ``image`` to the run's model input, apply ``transform`` and predict."""
        classifier = self.service.classifier_for_run(run_name)
        model_input = apply_transform(to_model_input(image, classifier.spec, normalize=normalize), transform)
        probabilities = classifier.predict_proba(model_input[None])[0]
        return TryResult(
            image=model_input,
            probabilities={name: float(p) for name, p in zip(classifier.class_names, probabilities)},
        )
