"""Geometric transforms shared by the review sliders, cause search and retraining.

Every transform is an albumentations operation, so what a reviewer sees while dragging a
slider is exactly what retraining applies later. A transform is described by a small
JSON-able :class:`Transform` (rotation, perspective tilt, scale, shift); :func:`apply_transform`
applies it deterministically and :func:`augmentation_pipeline` turns ranges of the same
parameters into a random training pipeline.

Uncovered borders (the corners a rotation or a tilt reveals) are filled by default with the
median colour of the image's own one-pixel frame (:func:`border_fill`), per channel: a photo
on a uniform coloured background keeps its background instead of growing black corners, and
an MNIST digit on black still gets black (so the demo is unchanged, bit for bit). The median
was preferred to mirroring the border (``cv2.BORDER_REFLECT``) because a mirror copies any
object touching the edge into the corners, adding strokes the model may read as evidence,
while the median of the frame is robust to an object crossing part of it and invents nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import albumentations as A
import albumentations.augmentations.geometric.functional as fgeometric
import cv2
import numpy as np

# the value type lives on the ground floor; re-exported here beside the pixel code that applies it
from hardcase.miner.transform import FIELDS, MAX_PERSPECTIVE, MAX_SHEAR, MAX_SHIFT, Transform  # noqa: F401


class TiltPerspective(A.Perspective):
    """A perspective warp with a controllable strength and direction.

    albumentations' ``Perspective`` jitters the four corners at random; a reviewer's slider
    needs a warp it can set. This subclass keeps ``Perspective``'s warp and replaces only how
    the four source corners are chosen: the edge facing ``direction`` shrinks toward the
    image's centre line by ``strength`` of the image size, like a camera tilting away.
    """

    def __init__(
        self,
        strength: tuple[float, float] = (0.0, 0.1),
        direction: tuple[float, float] = (-180.0, 180.0),
        fill: float = 0,
        p: float = 1.0,
    ) -> None:
        super().__init__(scale=strength, keep_size=True, fill=fill, border_mode=cv2.BORDER_CONSTANT, p=p)
        self.strength = tuple(float(v) for v in strength)
        self.direction = tuple(float(v) for v in direction)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        image_shape = params["shape"][:2]
        strength = self.py_random.uniform(*self.strength)
        direction = math.radians(self.py_random.uniform(*self.direction))
        points = tilt_corners(image_shape, strength, direction)
        matrix, max_width, max_height = fgeometric.compute_perspective_params(points, image_shape)
        return {"matrix": matrix, "max_height": max_height, "max_width": max_width, "matrix_bbox": matrix}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("strength", "direction", "fill")


def snap_shift(share: float, size: int) -> float:
    """The shift share that moves content by ``round(share * size)`` whole pixels.

    Shifts apply as whole pixels truncated toward zero (as albumentations' ``Affine`` does), so a
    share computed from image moments is placed mid-pixel: ``apply_transform`` then moves
    exactly the rounded number of pixels, not one fewer.
    """
    pixels = round(share * size)
    if pixels == 0:
        return 0.0
    snapped = round((pixels + math.copysign(0.5, pixels)) / size, 6)
    return float(min(MAX_SHIFT, max(-MAX_SHIFT, snapped)))


def applied_shift(share: float, size: int) -> float:
    """The share of ``size`` that a shift of ``share`` actually moves (whole pixels, toward zero)."""
    return int(share * size) / size


def tilt_corners(image_shape: tuple[int, int], strength: float, direction_rad: float) -> np.ndarray:
    """Source corners (tl, tr, br, bl) in pixels for a tilt of ``strength`` toward a direction."""
    height, width = image_shape
    unit = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    centred = unit - 0.5
    # image y grows downward; direction 90 degrees means "up"
    toward = np.array([math.cos(direction_rad), -math.sin(direction_rad)])
    along = centred @ toward
    weight = np.clip(2.0 * along, 0.0, None)[:, None]
    lateral = centred - along[:, None] * toward[None, :]
    moved = unit - strength * weight * lateral * 2.0
    moved = np.clip(moved, 0.0, 1.0)
    return (moved * np.array([width, height])).astype(np.float32)


#: A fill: one value for every channel, or one per channel.
Fill = float | Sequence[float]


def border_fill(image: np.ndarray) -> float | tuple[float, ...]:
    """The median colour of the image's outermost one-pixel frame: what uncovered borders get.

    Parameters
    ----------
    image : np.ndarray, shape (H, W) or (H, W, C)
        Any numeric dtype.

    Returns
    -------
    float or tuple of float
        One value when every channel's median is the same (always for (H, W) and (H, W, 1)
        images), else one value per channel, in channel order. Rounded to whole numbers for
        integer images.

    Examples
    --------
    >>> border_fill(np.zeros((5, 5), np.uint8))
    0.0
    >>> border_fill(np.full((5, 5, 3), (10, 20, 30), np.uint8))
    (10.0, 20.0, 30.0)
    """
    pixels = image[..., None] if image.ndim == 2 else image
    frame = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]]).astype(np.float64)
    medians = np.median(frame, axis=0)
    if np.issubdtype(image.dtype, np.integer):
        medians = np.rint(medians)
    if np.all(medians == medians[0]):
        return float(medians[0])
    return tuple(float(m) for m in medians)


def _ops(transform: Transform, fill: Fill) -> list[A.BasicTransform]:
    ops: list[A.BasicTransform] = []
    if transform.perspective:
        ops.append(
            TiltPerspective(
                strength=(transform.perspective, transform.perspective),
                direction=(transform.direction, transform.direction),
                fill=fill,
            )
        )
    if transform.affine:
        scales = transform.axis_scales()
        ops.append(
            A.Affine(
                rotate=(transform.rotate, transform.rotate),
                scale={"x": (scales["x"],) * 2, "y": (scales["y"],) * 2},
                shear={"x": (transform.shear,) * 2, "y": (0.0, 0.0)},
                translate_percent={"x": (transform.shift_x,) * 2, "y": (transform.shift_y,) * 2},
                border_mode=cv2.BORDER_CONSTANT,
                fill=fill,
                p=1.0,
            )
        )
    return ops


def _tilt_params(transform: Transform, shape: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    """albumentations' perspective parameters (matrix, max width, max height) of the tilt."""
    corners = tilt_corners(shape, transform.perspective, math.radians(transform.direction))
    return fgeometric.compute_perspective_params(corners, shape)


def _affine_matrix(transform: Transform, shape: tuple[int, int]) -> np.ndarray:
    """The 3x3 pixel matrix of the ``Affine`` part, as albumentations builds it."""
    height, width = shape
    return fgeometric.create_affine_transformation_matrix(
        # as Affine(translate_percent=...): whole pixels, truncated toward zero
        {"x": int(transform.shift_x * width), "y": int(transform.shift_y * height)},
        {"x": -transform.shear, "y": -0.0},  # Affine negates the sampled shear
        transform.axis_scales(),
        transform.rotate,
        fgeometric.center(shape),
    )


def perspective_homography(matrix: np.ndarray, max_width: int, max_height: int, shape: tuple[int, int]) -> np.ndarray:
    """The pixel homography a ``Perspective(keep_size=True)`` warp applies to an image of ``shape``.

    albumentations warps by ``matrix`` into a ``max_width x max_height`` frame and scales that
    frame back to the image size; this is the product of the two, mapping input pixel
    coordinates to output pixel coordinates.
    """
    height, width = shape
    return np.diag([width / max_width, height / max_height, 1.0]) @ np.asarray(matrix, dtype=np.float64)


def transform_homography(transform: Transform, shape: tuple[int, int]) -> np.ndarray:
    """The 3x3 pixel homography of ``transform`` on images of ``shape`` (H, W): the tilt, then the affine part.

    Maps input pixel coordinates (x, y, 1) to where :func:`apply_transform` puts them, up to
    the scale of homogeneous coordinates. ``cv2.warpPerspective`` with it gives the same
    geometry in one resampling (``apply_transform`` resamples once per operation).
    """
    homography = np.eye(3)
    if transform.perspective:
        homography = perspective_homography(*_tilt_params(transform, shape), shape)
    if transform.affine:
        homography = _affine_matrix(transform, shape) @ homography
    return homography


def apply_transform(image: np.ndarray, transform: Transform, *, fill: Fill | None = None) -> np.ndarray:
    """Apply ``transform`` to one image; returns the same shape and dtype.

    Calls albumentations' own functional warps with the parameters its ``Perspective`` (as
    :class:`TiltPerspective`) and ``Affine`` operations compute, without building a pipeline
    per call (the transform search applies thousands of distinct transforms): the result is
    pixel for pixel that of ``A.Compose(ops)`` for the same transform (tested).

    Parameters
    ----------
    image : np.ndarray, shape (H, W) or (H, W, C)
        Usually uint8; C is 1, 3, or any number of stacked images (each channel then gets
        its own frame's median).
    transform : Transform
    fill : float or sequence of float, optional
        What uncovered borders get; default :func:`border_fill` of ``image``.

    Returns
    -------
    np.ndarray, the shape and dtype of ``image``
        ``image`` itself for the identity transform.
    """
    if transform.is_identity:
        return image
    if fill is None:
        fill = border_fill(image)
    if not isinstance(fill, float | int) and image.ndim == 3 and image.shape[-1] > 4:
        # OpenCV warps more than 4 channels in chunks of 4, each given the whole fill tuple
        return np.stack([apply_transform(image[..., c], transform, fill=float(fill[c]))
                         for c in range(image.shape[-1])], axis=-1)
    squeeze = image.ndim == 3 and image.shape[-1] == 1
    out = image[..., 0] if squeeze else image
    shape = out.shape[:2]
    if transform.perspective:
        matrix, max_width, max_height = _tilt_params(transform, shape)
        out = fgeometric.perspective(out, matrix, max_width, max_height, fill, cv2.BORDER_CONSTANT, True,
                                     cv2.INTER_LINEAR)
    if transform.affine:
        out = fgeometric.warp_affine(out, _affine_matrix(transform, shape), interpolation=cv2.INTER_LINEAR, fill=fill,
                                     border_mode=cv2.BORDER_CONSTANT, output_shape=shape)
    return out[..., None] if squeeze else out


def apply_transform_pipeline(image: np.ndarray, transform: Transform, *, fill: Fill | None = None) -> np.ndarray:
    """:func:`apply_transform` through an ``A.Compose`` of the operations themselves (slow; the reference)."""
    if transform.is_identity:
        return image
    if fill is None:
        fill = border_fill(image)
    squeeze = image.ndim == 3 and image.shape[-1] == 1
    work = image[..., 0] if squeeze else image
    out = A.Compose(_ops(transform, fill), seed=0)(image=work)["image"]
    return out[..., None] if squeeze else out


def apply_transforms(images: np.ndarray, transforms: list[Transform], *, fill: Fill | None = None) -> np.ndarray:
    """Apply ``transforms[i]`` to ``images[i]``; images has shape (N, H, W[, C]).

    ``fill`` as for :func:`apply_transform`: by default each image's own frame median.
    """
    if len(images) != len(transforms):
        raise ValueError(f"{len(images)} images but {len(transforms)} transforms")
    return np.stack([apply_transform(img, t, fill=fill) for img, t in zip(images, transforms)])


def augmentation_pipeline(
    *,
    rotate_limit: float = 0.0,
    perspective_limit: float = 0.0,
    scale_limit: float = 0.0,
    shift_limit: float = 0.0,
    shear_limit: float = 0.0,
    aspect_limit: float = 0.0,
    p: float = 0.5,
    fill: float = 0,
) -> A.Compose:
    """A random training pipeline over the same operations the sliders apply.

    Parameters
    ----------
    rotate_limit : float
        Rotations are drawn from [-rotate_limit, rotate_limit] degrees.
    perspective_limit : float
        Tilt strengths from [0, perspective_limit], in any direction.
    scale_limit : float
        Zoom from [1 - scale_limit, 1 + scale_limit].
    shift_limit : float
        Shifts from [-shift_limit, shift_limit] of the image size, on each axis.
    shear_limit : float
        Horizontal shear from [-shear_limit, shear_limit] degrees.
    aspect_limit : float
        Width/height stretch up to ``1 + aspect_limit`` either way.
    p : float
        Probability that each operation is applied to an image.
    """
    ops: list[A.BasicTransform] = []
    if perspective_limit > 0:
        ops.append(TiltPerspective(strength=(0.0, perspective_limit), fill=fill, p=p))
    ops += random_affine_ops(rotate_limit=rotate_limit, scale_limit=scale_limit, shift_limit=shift_limit,
                             shear_limit=shear_limit, aspect_limit=aspect_limit, p=p, fill=fill)
    return A.Compose(ops)


def random_affine_ops(*, rotate_limit: float = 0.0, scale_limit: float = 0.0, shift_limit: float = 0.0,
                      shear_limit: float = 0.0, aspect_limit: float = 0.0, p: float = 0.5,
                      fill: float = 0) -> list[A.BasicTransform]:
    """The slider's ``Affine`` with random parameters: rotation, zoom (the same on both axes, as
    the scale slider), shift and shear in one operation, and the stretch as its own ``Affine``
    (the width alone scaled by 1/(1 + aspect_limit) .. 1 + aspect_limit), so a confirmed stretch
    is drawn as often as any other range and adds no zoom of its own. Empty when every limit is 0.
    """
    ops: list[A.BasicTransform] = []
    if any(limit > 0 for limit in (rotate_limit, scale_limit, shift_limit, shear_limit)):
        ops.append(A.Affine(
            rotate=(-rotate_limit, rotate_limit),
            scale=(1 - scale_limit, 1 + scale_limit),
            keep_ratio=True,
            translate_percent={"x": (-shift_limit, shift_limit), "y": (-shift_limit, shift_limit)},
            shear={"x": (-shear_limit, shear_limit), "y": (0.0, 0.0)},
            border_mode=cv2.BORDER_CONSTANT,
            fill=fill,
            p=p,
        ))
    if aspect_limit > 0:
        ops.append(A.Affine(scale={"x": (1 / (1 + aspect_limit), 1 + aspect_limit), "y": (1.0, 1.0)},
                            border_mode=cv2.BORDER_CONSTANT, fill=fill, p=p))
    return ops
