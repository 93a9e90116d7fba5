"""Known-cause fault injection, for benchmarks and tests: every sample gets a true cause.

Disjoint, seeded subsets of a labelled pool are disturbed: labels flipped uniformly to another
class (``mislabel``), images rotated or perspective-warped (``augment``), and strokes thickened
by a dilation the training data never shows (``rare``). The rest stay ``clean``.
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from hardcase.models.transforms import (
    Transform,
    apply_transform,
    perspective_homography,
    transform_homography,
)


@dataclass(frozen=True)
class FaultyPool:
    """A pool with injected faults.

    Attributes
    ----------
    images : ndarray, uint8 (N, H, W, C)
    labels : ndarray, int (N,)
        Given labels (flipped where ``fault == "flip"``).
    true_labels : ndarray, int (N,)
    fault : ndarray of str (N,)
        ``clean``, ``flip``, ``rotate``, ``perspective`` or ``rare``.
    angle : ndarray, float (N,)
        Rotation applied (0 where none).
    warp : ndarray, float64 (N, 3, 3)
        The pixel homography each rotation or perspective warp applied (identity elsewhere).
    """

    images: np.ndarray
    labels: np.ndarray
    true_labels: np.ndarray
    fault: np.ndarray
    angle: np.ndarray
    warp: np.ndarray

    def undone(self, indices) -> np.ndarray:
        """The images at ``indices`` with their geometric fault inverted exactly (an oracle).

        The warp is undone with the inverse of the homography that made it, so only what the
        warp itself lost (pixels pushed out of the frame, detail merged by resampling) is
        missing: what a search that found the true inverse would give back. Images without a
        geometric fault come back as they are.

        Returns
        -------
        ndarray, uint8, shape (len(indices), H, W, C)
        """
        indices = np.asarray(indices, dtype=np.int64)
        out = self.images[indices].copy()
        height, width = out.shape[1:3]
        for row, i in enumerate(indices):
            if self.fault[i] in ("rotate", "perspective"):
                inverse = np.linalg.inv(self.warp[i])
                for c in range(out.shape[3]):
                    out[row, ..., c] = cv2.warpPerspective(self.images[i, ..., c], inverse, (width, height),
                                                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return out

    @property
    def true_cause(self) -> np.ndarray:
        """``clean``, ``mislabel``, ``augment`` or ``rare`` per sample."""
        mapping = {"clean": "clean", "flip": "mislabel", "rotate": "augment", "perspective": "augment", "rare": "rare"}
        return np.array([mapping[f] for f in self.fault])


def inject_faults(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    n_classes: int,
    flip: float = 0.03,
    rotate: float = 0.04,
    perspective: float = 0.03,
    rare: float = 0.02,
    angle_range: tuple[float, float] = (35.0, 70.0),
    perspective_scale: tuple[float, float] = (0.12, 0.18),
    dilations: int = 2,
    seed: int = 0,
) -> FaultyPool:
    """Inject disjoint faults into shares of a labelled pool (seeded: the same arguments, the same pool).

    Parameters
    ----------
    images : np.ndarray, uint8, shape (N, H, W, C)
    labels : np.ndarray, int, shape (N,)
        The true labels.
    n_classes : int
        K: a flipped label is drawn uniformly from the K - 1 other classes.
    flip, rotate, perspective, rare : float
        Shares of the pool given each fault, each in [0, 1], together at most 1.
    angle_range : (float, float)
        Rotations are drawn from this range of degrees, either way.
    perspective_scale : (float, float)
        ``scale`` of albumentations' ``Perspective`` (how far the corners move).
    dilations : int
        Iterations of the 3 x 3 dilation that thickens the strokes of ``rare`` images.
    seed : int

    Returns
    -------
    FaultyPool

    Raises
    ------
    ValueError
        A share outside [0, 1], or shares adding up to more than 1.
    """
    shares = {"flip": flip, "rotate": rotate, "perspective": perspective, "rare": rare}
    for name, share in shares.items():
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"fault share {name} must be in [0, 1], got {share}")
    if sum(shares.values()) > 1.0:
        raise ValueError(f"fault shares add up to {sum(shares.values()):.2f} > 1")
    rng = np.random.default_rng(seed)
    n = len(images)
    order = rng.permutation(n)
    fault = np.full(n, "clean", dtype=object)
    start = 0
    for name, share in shares.items():
        count = int(round(share * n))
        fault[order[start : start + count]] = name
        start += count

    out = images.copy()
    given = labels.copy()
    angle = np.zeros(n, dtype=np.float32)
    homography = np.tile(np.eye(3), (n, 1, 1))
    warp = A.Compose(
        [A.Perspective(scale=perspective_scale, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0)], seed=seed,
        save_applied_params=True,
    )
    kernel = np.ones((3, 3), np.uint8)
    for i in np.flatnonzero(fault != "clean"):
        kind = fault[i]
        if kind == "flip":
            given[i] = (labels[i] + rng.integers(1, n_classes)) % n_classes
        elif kind == "rotate":
            angle[i] = float(rng.uniform(*angle_range) * rng.choice([-1, 1]))
            rotation = Transform(rotate=float(angle[i]))
            out[i] = apply_transform(images[i], rotation)
            homography[i] = transform_homography(rotation, images.shape[1:3])
        elif kind == "perspective":
            out[i], homography[i] = _perspective(warp, images[i])
        else:
            out[i] = cv2.dilate(images[i], kernel, iterations=dilations).reshape(images[i].shape)
    return FaultyPool(images=out, labels=given, true_labels=labels.copy(), fault=fault.astype(str), angle=angle,
                      warp=homography)


def _perspective(pipeline: A.Compose, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One random ``Perspective`` warp of ``image`` (H, W, C) and the pixel homography it applied."""
    single = image.shape[-1] == 1
    result = pipeline(image=image[..., 0] if single else image)
    (_, params), = result["applied_transforms"]
    homography = perspective_homography(params["matrix"], params["max_width"], params["max_height"], image.shape[:2])
    return (result["image"][..., None] if single else result["image"]), homography
