"""Known-cause fault injection, for benchmarks and tests: every sample gets a true cause.

Disjoint, seeded subsets of a labelled pool are disturbed. Each fault kind has one true cause
(:data:`CAUSE_OF_FAULT`):

``mislabel``
    ``flip``: the label replaced by one drawn uniformly from the other classes;
    ``confuse``: the label replaced by the class's look-alike (a systematic confusion, as
    annotators make between similar classes; :func:`lookalike_classes`).
``augment`` (geometric: a transform undoes them; the homography applied is recorded, so
:meth:`FaultyPool.undone` inverts it exactly)
    ``rotate`` (``angle_range``), ``perspective`` (albumentations' ``Perspective``),
    ``shear`` (horizontal shear, ``shear_range`` degrees).
``rare`` (a style the training data never shows; no geometric transform undoes it)
    ``rare``: strokes thickened by dilation; ``thin``: strokes thinned by erosion; ``blur``:
    Gaussian blur; ``occlusion``: a square patch set to the background; ``intensity``:
    contrast halved and the background lifted (a grey, washed-out capture).

The rest stay ``clean``.
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

#: The true cause of each fault kind (``clean`` has none).
CAUSE_OF_FAULT = {
    "clean": "clean",
    "flip": "mislabel",
    "confuse": "mislabel",
    "rotate": "augment",
    "perspective": "augment",
    "shear": "augment",
    "rare": "rare",
    "thin": "rare",
    "blur": "rare",
    "occlusion": "rare",
    "intensity": "rare",
}
#: Fault kinds in the order shares are assigned (the first four as before they were added,
#: so pools drawn with only those are unchanged).
FAULT_KINDS = ("flip", "rotate", "perspective", "rare", "confuse", "shear", "thin", "blur", "occlusion", "intensity")
#: Kinds whose recorded homography :meth:`FaultyPool.undone` inverts.
GEOMETRIC = ("rotate", "perspective", "shear")
#: Kinds that change the label, not the image.
LABEL_FAULTS = ("flip", "confuse")


@dataclass(frozen=True)
class FaultyPool:
    """A pool with injected faults.

    Attributes
    ----------
    images : ndarray, uint8 (N, H, W, C)
    labels : ndarray, int (N,)
        Given labels (changed where ``fault`` is ``flip`` or ``confuse``).
    true_labels : ndarray, int (N,)
    fault : ndarray of str (N,)
        ``clean`` or one of :data:`FAULT_KINDS`.
    angle : ndarray, float (N,)
        Rotation applied (0 where none).
    warp : ndarray, float64 (N, 3, 3)
        The pixel homography each geometric fault applied (identity elsewhere).
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
            if self.fault[i] in GEOMETRIC:
                inverse = np.linalg.inv(self.warp[i])
                for c in range(out.shape[3]):
                    out[row, ..., c] = cv2.warpPerspective(self.images[i, ..., c], inverse, (width, height),
                                                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return out

    @property
    def true_cause(self) -> np.ndarray:
        """``clean``, ``mislabel``, ``augment`` or ``rare`` per sample (:data:`CAUSE_OF_FAULT`)."""
        return np.array([CAUSE_OF_FAULT[f] for f in self.fault])


def lookalike_classes(images: np.ndarray, labels: np.ndarray, *, n_classes: int) -> np.ndarray:
    """Each class's look-alike: the other class whose mean image is nearest (Euclidean, pixels).

    What an annotator confuses a class with is the class that looks most like it; the mean
    images measure that from the data alone (MNIST: 4 and 9, 3 and 5; Fashion-MNIST: shirt and
    T-shirt, pullover and coat), with no model and no list made by hand.

    Parameters
    ----------
    images : np.ndarray, uint8, shape (N, H, W, C)
    labels : np.ndarray, int, shape (N,)
        True labels in ``0 .. K-1``.
    n_classes : int
        K; a class with no image gets the nearest class to the overall mean.

    Returns
    -------
    np.ndarray, int64, shape (K,)
        ``lookalike[k] != k``.
    """
    flat = images.reshape(len(images), -1).astype(np.float64)
    overall = flat.mean(axis=0)
    means = np.stack([flat[labels == k].mean(axis=0) if np.any(labels == k) else overall for k in range(n_classes)])
    distance = ((means[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(distance, np.inf)
    return distance.argmin(axis=1).astype(np.int64)


def inject_faults(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    n_classes: int,
    flip: float = 0.03,
    rotate: float = 0.04,
    perspective: float = 0.03,
    rare: float = 0.02,
    confuse: float = 0.0,
    shear: float = 0.0,
    thin: float = 0.0,
    blur: float = 0.0,
    occlusion: float = 0.0,
    intensity: float = 0.0,
    angle_range: tuple[float, float] = (35.0, 70.0),
    perspective_scale: tuple[float, float] = (0.12, 0.18),
    shear_range: tuple[float, float] = (25.0, 40.0),
    dilations: int = 2,
    blur_sigma: tuple[float, float] = (1.2, 2.0),
    occlusion_side: tuple[float, float] = (0.3, 0.45),
    lookalike: np.ndarray | None = None,
    seed: int = 0,
) -> FaultyPool:
    """Inject disjoint faults into shares of a labelled pool (seeded: the same arguments, the same pool).

    Parameters
    ----------
    images : np.ndarray, uint8, shape (N, H, W, C)
        Bright strokes on a dark background (as MNIST).
    labels : np.ndarray, int, shape (N,)
        The true labels.
    n_classes : int
        K: a flipped label is drawn uniformly from the K - 1 other classes.
    flip, rotate, perspective, rare, confuse, shear, thin, blur, occlusion, intensity : float
        Shares of the pool given each fault (module docstring), each in [0, 1], together at most 1.
    angle_range : (float, float)
        Rotations are drawn from this range of degrees, either way.
    perspective_scale : (float, float)
        ``scale`` of albumentations' ``Perspective`` (how far the corners move).
    shear_range : (float, float)
        Horizontal shears are drawn from this range of degrees, either way.
    dilations : int
        Iterations of the 3 x 3 dilation that thickens the strokes of ``rare`` images.
    blur_sigma : (float, float)
        Standard deviation of the Gaussian blur, in pixels.
    occlusion_side : (float, float)
        Side of the occluding square as a share of the image side; its centre is drawn among
        the image's bright pixels, so it covers part of the object.
    lookalike : np.ndarray, int, shape (K,), optional
        The class each ``confuse`` label becomes; default :func:`lookalike_classes` of this pool.
    seed : int

    Returns
    -------
    FaultyPool

    Raises
    ------
    ValueError
        A share outside [0, 1], or shares adding up to more than 1.
    """
    shares = {"flip": flip, "rotate": rotate, "perspective": perspective, "rare": rare, "confuse": confuse,
              "shear": shear, "thin": thin, "blur": blur, "occlusion": occlusion, "intensity": intensity}
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
    for name in FAULT_KINDS:
        count = int(round(shares[name] * n))
        fault[order[start : start + count]] = name
        start += count
    if confuse > 0 and lookalike is None:
        lookalike = lookalike_classes(images, labels, n_classes=n_classes)

    out = images.copy()
    given = labels.copy()
    angle = np.zeros(n, dtype=np.float32)
    homography = np.tile(np.eye(3), (n, 1, 1))
    warp = A.Compose(
        [A.Perspective(scale=perspective_scale, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0)], seed=seed,
        save_applied_params=True,
    )
    kernel = np.ones((3, 3), np.uint8)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    height, width = images.shape[1:3]
    for i in np.flatnonzero(fault != "clean"):
        kind = fault[i]
        shape = images[i].shape
        if kind == "flip":
            given[i] = (labels[i] + rng.integers(1, n_classes)) % n_classes
        elif kind == "confuse":
            given[i] = lookalike[labels[i]]
        elif kind == "rotate":
            angle[i] = float(rng.uniform(*angle_range) * rng.choice([-1, 1]))
            rotation = Transform(rotate=float(angle[i]))
            out[i] = apply_transform(images[i], rotation)
            homography[i] = transform_homography(rotation, images.shape[1:3])
        elif kind == "shear":
            sheared = Transform(shear=float(rng.uniform(*shear_range) * rng.choice([-1, 1])))
            out[i] = apply_transform(images[i], sheared)
            homography[i] = transform_homography(sheared, images.shape[1:3])
        elif kind == "perspective":
            out[i], homography[i] = _perspective(warp, images[i])
        elif kind == "rare":
            out[i] = cv2.dilate(images[i], kernel, iterations=dilations).reshape(shape)
        elif kind == "thin":
            out[i] = cv2.erode(images[i], cross, iterations=1).reshape(shape)
        elif kind == "blur":
            out[i] = cv2.GaussianBlur(images[i], (0, 0), float(rng.uniform(*blur_sigma))).reshape(shape)
        elif kind == "occlusion":
            out[i] = _occlude(images[i], rng, occlusion_side, height, width)
        else:  # intensity
            out[i] = np.clip(images[i].astype(np.float64) * 0.5 + 96.0, 0, 255).astype(np.uint8)
    return FaultyPool(images=out, labels=given, true_labels=labels.copy(), fault=fault.astype(str), angle=angle,
                      warp=homography)


def _occlude(image: np.ndarray, rng: np.random.Generator, side: tuple[float, float], height: int,
             width: int) -> np.ndarray:
    """``image`` (H, W, C) with a square of background over part of its object."""
    size = max(2, int(round(rng.uniform(*side) * min(height, width))))
    bright = np.argwhere(image.max(axis=-1) > image.max() / 2) if image.max() > 0 else np.empty((0, 2), int)
    cy, cx = bright[rng.integers(len(bright))] if len(bright) else (height // 2, width // 2)
    top, left = int(np.clip(cy - size // 2, 0, height - size)), int(np.clip(cx - size // 2, 0, width - size))
    out = image.copy()
    out[top : top + size, left : left + size] = 0
    return out


def _perspective(pipeline: A.Compose, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One random ``Perspective`` warp of ``image`` (H, W, C) and the pixel homography it applied."""
    single = image.shape[-1] == 1
    result = pipeline(image=image[..., 0] if single else image)
    (_, params), = result["applied_transforms"]
    homography = perspective_homography(params["matrix"], params["max_width"], params["max_height"], image.shape[:2])
    return (result["image"][..., None] if single else result["image"]), homography
