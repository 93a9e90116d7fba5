"""The preprocessing spec stored with every model, and the one uint8 conversion of images.

Pure numpy, so the miner, the store-free workflows and the :class:`~hardcase.miner.protocols.Classifier`
protocol can use it without Keras:

- :class:`PreprocessingSpec`: what a model expects as input (size, channels, pixel scaling)
  and what its outputs mean (class names), saved as JSON beside the model;
- :func:`spec_path_for`: where that JSON lives (``<model>.spec.json``);
- :func:`as_uint8`: images of any numeric dtype as uint8 0-255, the form images are stored,
  shown, transformed and fed to a classifier in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CHANNEL_ORDERS", "SCALES", "PreprocessingSpec", "as_uint8", "spec_path_for"]

#: The pixel scalings a spec may name: ``"0-1"`` (x / 255), ``"0-255"`` (unchanged) and
#: ``"-1-1"`` (x / 127.5 - 1).
SCALES = ("0-1", "0-255", "-1-1")
#: The channel orders of a colour model's input: images are stored and shown as RGB; a
#: ``"BGR"`` model (trained on OpenCV-read images, or Caffe-style weights) gets them reversed.
CHANNEL_ORDERS = ("RGB", "BGR")


@dataclass(frozen=True)
class PreprocessingSpec:
    """How raw uint8 images become model input, and what the outputs mean.

    Parameters
    ----------
    height, width : int
        Input size the model expects, in pixels (positive).
    channels : int
        1 (grayscale) or 3 (RGB).
    scale : str
        Pixel scaling, one of :data:`SCALES`: ``"0-1"`` (x / 255), ``"0-255"`` (unchanged) or
        ``"-1-1"`` (x / 127.5 - 1).
    class_names : tuple of str
        Name of each output column, in order; empty when unknown (a classifier then names
        its K outputs ``"0" .. "K-1"``).
    invert : bool
        The model was trained on inverted pixels (255 - x: dark ink on light paper where the
        data has light ink on dark, or the other way round); applied before the scaling.
    channel_order : str
        One of :data:`CHANNEL_ORDERS`: ``"RGB"`` (images as stored) or ``"BGR"`` (the
        channels reversed before the model); only a 3-channel spec may say ``"BGR"``.

    Raises
    ------
    ValueError
        A size that is not a positive integer, channels other than 1 or 3, an unknown scale
        or channel order, ``"BGR"`` with one channel, or duplicate class names.
    """

    height: int
    width: int
    channels: int
    scale: str = "0-1"
    class_names: tuple[str, ...] = field(default_factory=tuple)
    invert: bool = False
    channel_order: str = "RGB"

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"spec {name} must be a positive integer, got {value!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"spec channels must be 1 or 3, got {self.channels!r}")
        if self.scale not in SCALES:
            raise ValueError(f"spec scale must be one of {', '.join(SCALES)}, got {self.scale!r}")
        if not isinstance(self.invert, bool):
            raise ValueError(f"spec invert must be true or false, got {self.invert!r}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"spec channel_order must be one of {', '.join(CHANNEL_ORDERS)}, got {self.channel_order!r}")
        if self.channel_order == "BGR" and self.channels != 3:
            raise ValueError(f"spec channel_order BGR needs 3 channels, got {self.channels}")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"spec class_names has duplicates: {list(self.class_names)}")

    @property
    def n_classes(self) -> int:
        """K, the number of class names (0 when they are unknown)."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)``: the shape of one input image."""
        return (self.height, self.width, self.channels)

    def with_overrides(self, **overrides: Any) -> PreprocessingSpec:
        """A copy with the given fields replaced; ``None`` values leave a field as it is.

        Parameters
        ----------
        **overrides
            Any of ``height``, ``width``, ``channels``, ``scale``, ``class_names`` (any
            sequence of str; stored as a tuple), ``invert``, ``channel_order``.

        Returns
        -------
        PreprocessingSpec
            Validated like a new spec.
        """
        changes = {key: value for key, value in overrides.items() if value is not None}
        if "class_names" in changes:
            changes["class_names"] = tuple(changes["class_names"])
        return replace(self, **changes)

    def affine(self) -> tuple[float, float]:
        """``(multiplier, offset)`` mapping 0-255 pixels to model input: ``x * multiplier + offset``.

        The inversion folds into it: ``(255 - x) * m + o = x * (-m) + (255 m + o)``.
        """
        multiplier, offset = {"0-1": (1.0 / 255.0, 0.0), "-1-1": (1.0 / 127.5, -1.0), "0-255": (1.0, 0.0)}[self.scale]
        if self.invert:
            return -multiplier, 255.0 * multiplier + offset
        return multiplier, offset

    @property
    def convention(self) -> str:
        """The input convention in words: ``"0-255"``, ``"0-1, inverted"``, ``"0-1, BGR"``."""
        return self.scale + (", inverted" if self.invert else "") + (", BGR" if self.channel_order == "BGR" else "")

    def ordered(self, images: np.ndarray) -> np.ndarray:
        """Images with their channels in the model's order (values unchanged).

        Parameters
        ----------
        images : np.ndarray, shape (..., C)
            RGB (or grayscale) pixels as stored, channels last.

        Returns
        -------
        np.ndarray
            ``images`` itself for an RGB (or grayscale) spec; a view with the last axis
            reversed for ``"BGR"``.
        """
        return images[..., ::-1] if self.channel_order == "BGR" else images

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Scale a batch of images to model input, channels in the model's order.

        Parameters
        ----------
        images : np.ndarray, uint8 (or any 0-255 numeric), shape (N, H, W, C)
            Pixels as stored (RGB); the scaling is per element, the channel order (see
            :meth:`ordered`) applies to the last axis.

        Returns
        -------
        np.ndarray, float32, same shape
            ``ordered(images) * multiplier + offset`` (see :meth:`affine`).
        """
        multiplier, offset = self.affine()
        x = self.ordered(np.asarray(images)).astype(np.float32) * np.float32(multiplier)
        return x + np.float32(offset) if offset else x

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready data: ``height``, ``width``, ``channels``, ``scale``, ``class_names`` (a list),
        ``invert``, ``channel_order``."""
        return {
            "height": self.height,
            "width": self.width,
            "channels": self.channels,
            "scale": self.scale,
            "class_names": list(self.class_names),
            "invert": self.invert,
            "channel_order": self.channel_order,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessingSpec:
        """The spec of :meth:`to_dict` data; ``scale`` defaults to ``"0-1"``, ``class_names`` to none,
        ``invert`` to false and ``channel_order`` to ``"RGB"`` (specs recorded before these
        fields existed load as they were read then).

        Raises
        ------
        KeyError
            ``height``, ``width`` or ``channels`` is missing.
        ValueError
            An unknown key, or an invalid value (see the class).
        """
        known = {"height", "width", "channels", "scale", "class_names", "invert", "channel_order"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown preprocessing spec keys {sorted(unknown)}")
        return cls(
            height=int(data["height"]),
            width=int(data["width"]),
            channels=int(data["channels"]),
            scale=str(data.get("scale", "0-1")),
            class_names=tuple(str(c) for c in data.get("class_names", ())),
            invert=bool(data.get("invert", False)),
            channel_order=str(data.get("channel_order", "RGB")),
        )

    def save(self, path: Path) -> None:
        """Write the spec to ``path`` as indented JSON."""
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> PreprocessingSpec:
        """Read a spec written by :meth:`save`.

        Raises
        ------
        ValueError
            The file does not hold a valid spec (the message names the file).
        """
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"invalid preprocessing spec {path}: {exc}") from exc


def spec_path_for(model_path: str | Path) -> Path:
    """Where the spec of a model file or SavedModel directory is kept.

    Parameters
    ----------
    model_path : str or Path
        A model file (``m.keras`` -> ``m.spec.json``) or a SavedModel directory
        (``saved/`` -> ``saved.spec.json`` beside it).

    Returns
    -------
    Path
    """
    model_path = Path(model_path)
    if model_path.is_dir():
        return model_path.parent / f"{model_path.name}.spec.json"
    return model_path.with_suffix(".spec.json")


def as_uint8(images: np.ndarray) -> np.ndarray:
    """Images as uint8 0-255: the one form images are stored, shown, transformed and classified in.

    uint8 input comes back as it is (the same array, no copy). Any other numeric array is
    read by its maximum: at most 1 means 0-1 pixels, scaled by 255; otherwise the values are
    taken as 0-255 pixels and kept. Either way they are then rounded to the nearest integer
    (half to even) and clipped to [0, 255] (so -3 becomes 0 and 300 becomes 255).

    Parameters
    ----------
    images : array_like, numeric, any shape
        Usually (N, H, W, C) or one image (H, W, C). Integer arrays follow the same rule as
        floats: an int array of 0s and 1s becomes 0s and 255s. NaN is ignored when finding
        the maximum; a NaN pixel itself has no defined result.

    Returns
    -------
    np.ndarray, uint8, the same shape

    Raises
    ------
    TypeError
        ``images`` is not numeric (e.g. strings or booleans).

    Examples
    --------
    >>> as_uint8(np.array([0.0, 0.5, 1.0])).tolist()
    [0, 128, 255]
    >>> as_uint8(np.array([0.0, 128.0, 300.0])).tolist()
    [0, 128, 255]
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.number):
        raise TypeError(f"images must be numeric, got dtype {images.dtype}")
    x = images.astype(np.float32)
    if x.size and np.nanmax(x) <= 1.0:
        x = x * 255.0
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
