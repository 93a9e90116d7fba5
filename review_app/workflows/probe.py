"""The Try tab's work without Gradio: turn a sketch or an upload into model input, predict.

The conversion follows the run's preprocessing spec (size, channels, class names):

Colour models (3 channels)
    The image stays in colour: RGBA is composited onto white (as the sketchpad shows it) and
    the whole image is resized to the model's size. Nothing is inverted or cropped.

Grayscale models
    The MNIST family's convention, **bright ink on a dark background**: RGBA is composited
    onto white, converted to grey (ITU-R 601 luma), inverted when the border is bright (dark
    ink on light paper, as the sketchpad and most scans give it) and resized to the model's
    size.

MNIST-style centring (only for a 28x28 grayscale spec, :func:`offers_centring`)
    With ``normalize`` (the default there), the ink is cropped, its longest side fitted into
    the central 20x20 pixels (area interpolation, as MNIST's anti-aliasing) and its centre of
    mass shifted to the centre, as MNIST's digits were made.

:func:`try_prompt` says what to draw or upload for a spec ("a digit" only when the classes are
the ten digits). Scaling to floats and the channel order are the classifier's job.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from hardcase.miner.spec import PreprocessingSpec
from hardcase.models.transforms import Transform, apply_transform
from hardcase.review_app.workflows.review import ReviewService
from hardcase.store.errors import StoreError

MNIST_BOX = 20 / 28
"""Share of the image side the digit's bounding box is fitted into."""
MNIST_SIZE = (28, 28)
"""The image size (height, width) MNIST-style centring is offered for, with one channel."""
DIGITS = tuple("0123456789")
INK_THRESHOLD = 0.15
"""Grey level (share of the brightest pixel) above which a pixel counts as ink."""


class EmptyImageError(ValueError):
    """The image has no ink to classify (an empty canvas)."""


def _opaque_pixels(image: np.ndarray) -> np.ndarray:
    """float32 (H, W, 1 or 3) in [0, 255]: uint8 or 0-1 / 0-255 floats, grey or colour, with any
    transparency composited onto white (as the sketchpad shows it).

    Raises
    ------
    ValueError
        Not an image of 1 to 4 channels.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4) or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an image (H, W[, C]) with 1-4 channels, got shape {image.shape}")
    pixels = image.astype(np.float32)
    if image.dtype != np.uint8:
        pixels = pixels * (255.0 if pixels.max(initial=0) <= 1.0 else 1.0)
    if pixels.shape[-1] in (2, 4):  # grey+alpha or RGBA
        alpha = pixels[..., -1:] / 255.0
        pixels = pixels[..., :-1] * alpha + 255.0 * (1.0 - alpha)
    return pixels


def to_grey_ink(image: np.ndarray) -> np.ndarray:
    """Grey float32 image in [0, 255] with bright ink on a dark background.

    Parameters
    ----------
    image
        uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); RGBA is composited onto white.
    """
    pixels = _opaque_pixels(image)
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


def offers_centring(spec: PreprocessingSpec) -> bool:
    """Whether MNIST-style crop, fit and centring applies: a 28x28 grayscale spec."""
    return spec.channels == 1 and (spec.height, spec.width) == MNIST_SIZE


@dataclass(frozen=True)
class TryPrompt:
    """What the Try tab asks for, from the run's spec."""

    label: str
    """The sketchpad's label."""
    help: str
    """Markdown under the upload button: what the model expects and how images are converted."""
    centring: bool
    """Whether MNIST-style centring is offered (:func:`offers_centring`)."""
    colour: bool
    """Whether the model takes colour (the brush offers colours, nothing turns grey)."""
    empty: str
    """The note shown before anything is drawn."""


def try_prompt(spec: PreprocessingSpec) -> TryPrompt:
    """The Try tab's texts for a model of ``spec``.

    "Digit" is said only when the classes are the ten digits; otherwise the class names are
    listed (up to 12).
    """
    names = list(spec.class_names)
    if tuple(names) == DIGITS:
        thing = "a digit"
    else:
        shown = ", ".join(names[:12]) + (f", ... ({len(names)} classes)" if len(names) > 12 else "")
        thing = f"one of: {shown}" if names else "an image"
    size = f"{spec.height}x{spec.width}"
    colour = spec.channels == 3
    if colour:
        help_text = (f"Draw or upload {thing}. The model takes {size} colour images: drawings and uploads "
                     f"keep their colours and are resized to {size} (transparent pixels become white).")
        tool = "brush ✎ and colours on the left"
    else:
        help_text = (f"Draw or upload {thing}. The model takes {size} grayscale images with bright ink on a dark "
                     f"background: drawings and uploads are turned grey, inverted when their border is light, "
                     f"and resized to {size}.")
        tool = "pick the brush ✎ on the left, then draw"
    if offers_centring(spec):
        help_text += (" Ticked, the box crops to the ink, fits it into the central 20x20 pixels and centres it "
                      "on its centre of mass, as MNIST's digits were made; unticked, the whole image is resized.")
    return TryPrompt(label=f"Draw {thing}: {tool}", help=help_text, centring=offers_centring(spec), colour=colour,
                     empty=f"Draw {thing} or upload an image.")


def _colour_input(image: np.ndarray, spec: PreprocessingSpec) -> np.ndarray:
    """An RGB(A) or grey image as the colour model's uint8 (H, W, 3) input: composited onto white, resized."""
    pixels = _opaque_pixels(image)
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    if float(np.ptp(pixels)) < 8:
        raise EmptyImageError("the image is empty: draw something or upload an image")
    shrinking = pixels.shape[0] > spec.height or pixels.shape[1] > spec.width
    out = cv2.resize(pixels, (spec.width, spec.height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_model_input(image: np.ndarray, spec: PreprocessingSpec, *, normalize: bool = True) -> np.ndarray:
    """A sketch or uploaded image as the model's uint8 input (H, W, C) (see the module docstring).

    Parameters
    ----------
    image : np.ndarray
        uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), any size.
    spec : PreprocessingSpec
        The model's: its size and channels shape the output.
    normalize : bool
        MNIST-style crop, fit and centring; applies only where :func:`offers_centring`.

    Returns
    -------
    np.ndarray, uint8, shape ``spec.image_shape``
        RGB for a colour model (the classifier applies its channel order).

    Raises
    ------
    EmptyImageError
        Nothing is drawn (no pixel differs from the background).
    """
    if spec.channels == 3:
        return _colour_input(image, spec)
    normalize = normalize and offers_centring(spec)
    grey = to_grey_ink(image)
    grey = grey - np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]]))
    grey = np.clip(grey, 0, 255)
    peak = float(grey.max(initial=0))
    if peak < 8:
        raise EmptyImageError("the image is empty: draw something or upload an image")
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
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)[..., None]


@dataclass(frozen=True)
class TryResult:
    """The model's view of a tried image: its input after the transform, and probabilities."""

    image: np.ndarray
    probabilities: dict[str, float]


class RunModels:
    """Probe the classifier of any run (the :class:`ReviewService`'s cache: one loaded model per version)."""

    def __init__(self, service: ReviewService) -> None:
        self.service = service

    def prompt(self, run_name: str) -> TryPrompt:
        """What the Try tab asks for with ``run_name``'s model, from the spec recorded with the run
        (no model is loaded; an unknown run or a run without a spec gets the generic prompt)."""
        from hardcase.review_app.workflows.retrain import run_spec

        try:
            spec = run_spec(self.service.store, run_name)
        except (StoreError, KeyError, ValueError, TypeError):
            return TryPrompt(label="Draw an image", help="Choose a mining run: its model makes the prediction.",
                             centring=False, colour=False, empty="Choose a mining run, then draw or upload an image.")
        return try_prompt(spec)

    def predict(self, run_name: str, image: np.ndarray, transform: Transform, *, normalize: bool = True) -> TryResult:
        """Convert ``image`` to the run's model input, apply ``transform`` and predict."""
        classifier = self.service.classifier_for_run(run_name)
        model_input = apply_transform(to_model_input(image, classifier.spec, normalize=normalize), transform)
        probabilities = classifier.predict_proba(model_input[None])[0]
        return TryResult(
            image=model_input,
            probabilities={name: float(p) for name, p in zip(classifier.class_names, probabilities)},
        )
