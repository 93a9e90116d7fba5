"""The geometric transform as a value: eight numbers, their limits and their wording.

A :class:`Transform` is what the review sliders set, what the transform search suggests (stored
in the cause evidence as :meth:`Transform.to_dict`) and what retraining turns into ranges. This
module holds only the value type, pure Python: applying a transform to pixels (albumentations,
cv2) is :mod:`hardcase.models.transforms`, which re-exports these names.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["FIELDS", "MAX_PERSPECTIVE", "MAX_SHEAR", "MAX_SHIFT", "Transform", "wrap_degrees"]


def wrap_degrees(angle: float) -> float:
    """``angle`` as the same direction in [-180, 180) (270 -> -90, 337.5 -> -22.5, 180 -> -180)."""
    return ((float(angle) + 180.0) % 360.0) - 180.0

#: The parameters of a :class:`Transform`, in the order the review sliders show them.
FIELDS = ("rotate", "perspective", "direction", "scale", "shift_x", "shift_y", "aspect", "shear")
#: Largest tilt strength, as a share of the image size.
MAX_PERSPECTIVE = 0.35
#: Largest shift, as a share of the image width or height.
MAX_SHIFT = 0.5
#: Largest shear, in degrees.
MAX_SHEAR = 45.0


@dataclass(frozen=True)
class Transform:
    """A deterministic geometric transform.

    Parameters
    ----------
    rotate : float
        Rotation in degrees, counter-clockwise, in [-180, 180].
    perspective : float
        Tilt strength in [0, MAX_PERSPECTIVE]: how far (as a share of the image size) the far
        edge of the image shrinks, as when the camera tilts away.
    direction : float
        Direction of the tilt in degrees (0 = the right edge moves away, 90 = the top edge).
    scale : float
        Zoom factor about the image centre, 1.0 = unchanged.
    shift_x, shift_y : float
        Translation as a share of the image width and height, in [-MAX_SHIFT, MAX_SHIFT]
        (+x moves the content right, +y moves it down).
    aspect : float
        Width over height stretch, 1.0 = unchanged: the zoom is ``scale * sqrt(aspect)``
        horizontally and ``scale / sqrt(aspect)`` vertically, in [0.5, 2].
    shear : float
        Horizontal shear in degrees, in [-MAX_SHEAR, MAX_SHEAR] (albumentations' ``Affine``
        ``shear={"x": ...}``).

    The tilt is applied first; then, about the centre, the zoom and stretch (along the image's
    axes), the rotation and the shear; then the shift (albumentations' ``Affine`` order). With
    the stretch and shear, the eight parameters reach any four-corner warp a camera gives.
    """

    rotate: float = 0.0
    perspective: float = 0.0
    direction: float = 0.0
    scale: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    aspect: float = 1.0
    shear: float = 0.0

    def __post_init__(self) -> None:
        for name in FIELDS:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"transform {name} must be a finite number, got {value!r}")
        if not -180.0 <= self.rotate <= 180.0:
            raise ValueError(f"transform rotate must be in [-180, 180] degrees, got {self.rotate}")
        if not 0.0 <= self.perspective <= MAX_PERSPECTIVE:
            raise ValueError(
                f"transform perspective must be in [0, {MAX_PERSPECTIVE}], got {self.perspective}"
            )
        if not 0.25 <= self.scale <= 4.0:
            raise ValueError(f"transform scale must be in [0.25, 4], got {self.scale}")
        if not 0.5 <= self.aspect <= 2.0:
            raise ValueError(f"transform aspect must be in [0.5, 2], got {self.aspect}")
        if not -MAX_SHEAR <= self.shear <= MAX_SHEAR:
            raise ValueError(f"transform shear must be in [-{MAX_SHEAR}, {MAX_SHEAR}] degrees, got {self.shear}")
        for name in ("shift_x", "shift_y"):
            if not -MAX_SHIFT <= getattr(self, name) <= MAX_SHIFT:
                raise ValueError(f"transform {name} must be in [-{MAX_SHIFT}, {MAX_SHIFT}], got {getattr(self, name)}")

    @property
    def is_identity(self) -> bool:
        return self.perspective == 0 and not self.affine

    @property
    def skews(self) -> bool:
        """Whether it stretches or shears (the ``Affine`` parameters beyond rotation, zoom and shift)."""
        return self.aspect != 1 or self.shear != 0

    @property
    def affine(self) -> bool:
        """Whether it needs the ``Affine`` operation (anything but the tilt)."""
        return bool(self.rotate or self.scale != 1 or self.shifts or self.skews)

    def axis_scales(self) -> dict[str, float]:
        """The zoom along x and y (``scale`` and ``aspect`` together)."""
        root = math.sqrt(self.aspect)
        return {"x": self.scale * root, "y": self.scale / root}

    @property
    def shifts(self) -> bool:
        return self.shift_x != 0 or self.shift_y != 0

    def to_dict(self) -> dict[str, float]:
        return {key: float(value) for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Transform:
        """The transform of a :meth:`to_dict`; missing keys take their defaults (evidence stored
        before a parameter existed), None or ``{}`` is the identity, an unknown key raises."""
        if not data:
            return cls()
        unknown = set(data) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown transform keys {sorted(unknown)}")
        return cls(**{key: float(value) for key, value in data.items()})

    def describe(self) -> str:
        """In words, as the cause evidence says it: ``rotating -40° and tilting 0.15 toward 90°``,
        ``shifting 10% left``...; ``no transform`` for the identity."""
        parts = []
        if self.rotate:
            parts.append(f"rotating {self.rotate:+.0f}°")
        if self.perspective:
            # in the review page's terms: its direction slider runs from -180 to 180
            parts.append(f"tilting {self.perspective:.2f} toward {wrap_degrees(self.direction):.0f}°")
        if self.scale != 1.0:
            parts.append(f"scaling by {self.scale:.2f}")
        if self.shifts:
            moves = [f"{100 * abs(v):.0f}% {word[v > 0]}"
                     for v, word in ((self.shift_x, ("left", "right")), (self.shift_y, ("up", "down"))) if v]
            parts.append("shifting " + " and ".join(moves))
        if self.aspect != 1.0:
            parts.append(f"stretching {'wider' if self.aspect > 1 else 'taller'} by {max(self.aspect, 1 / self.aspect):.2f}")
        if self.shear:
            parts.append(f"shearing {self.shear:+.0f}°")
        return " and ".join(parts) or "no transform"
