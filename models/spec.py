"""The preprocessing spec stored with every model: what the model expects as input."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

SCALES = ("0-1", "0-255", "-1-1")


@dataclass(frozen=True)
class PreprocessingSpec:
    """How raw uint8 images become model input, and what the outputs mean.

    Parameters
    ----------
    height, width : int
        Input size the model expects.
    channels : int
        1 (grayscale) or 3 (RGB).
    scale : str
        Pixel scaling: ``"0-1"`` (x / 255), ``"0-255"`` (unchanged) or ``"-1-1"`` (x / 127.5 - 1).
    class_names : tuple of str
        Name of each output column, in order.
    """

    height: int
    width: int
    channels: int
    scale: str = "0-1"
    class_names: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"spec {name} must be a positive integer, got {value!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"spec channels must be 1 or 3, got {self.channels!r}")
        if self.scale not in SCALES:
            raise ValueError(f"spec scale must be one of {', '.join(SCALES)}, got {self.scale!r}")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"spec class_names has duplicates: {list(self.class_names)}")

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    def with_overrides(self, **overrides: Any) -> PreprocessingSpec:
        """A copy with the given non-None fields replaced."""
        changes = {key: value for key, value in overrides.items() if value is not None}
        if "class_names" in changes:
            changes["class_names"] = tuple(changes["class_names"])
        return replace(self, **changes)

    def affine(self) -> tuple[float, float]:
        """``(multiplier, offset)`` mapping 0-255 pixels to model input: ``x * m + o``."""
        return {"0-1": (1.0 / 255.0, 0.0), "-1-1": (1.0 / 127.5, -1.0), "0-255": (1.0, 0.0)}[self.scale]

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Scale a batch of uint8 images (N, H, W, C) to model input, float32."""
        multiplier, offset = self.affine()
        x = images.astype(np.float32) * np.float32(multiplier)
        return x + np.float32(offset) if offset else x

    def to_dict(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "width": self.width,
            "channels": self.channels,
            "scale": self.scale,
            "class_names": list(self.class_names),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessingSpec:
        known = {"height", "width", "channels", "scale", "class_names"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown preprocessing spec keys {sorted(unknown)}")
        return cls(
            height=int(data["height"]),
            width=int(data["width"]),
            channels=int(data["channels"]),
            scale=str(data.get("scale", "0-1")),
            class_names=tuple(str(c) for c in data.get("class_names", ())),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> PreprocessingSpec:
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"invalid preprocessing spec {path}: {exc}") from exc


def spec_path_for(model_path: Path) -> Path:
    """Where the spec of a model file or SavedModel directory is kept: ``<model>.spec.json``."""
    model_path = Path(model_path)
    if model_path.is_dir():
        return model_path.parent / f"{model_path.name}.spec.json"
    return model_path.with_suffix(".spec.json")


def as_uint8(images: np.ndarray) -> np.ndarray:
    """Canonical display/transform form: uint8 (N, H, W, C).

    Float arrays whose maximum is at most 1 are taken as 0-1 images; other floats as 0-255.
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
