"""The models users bring, and data made for them: shared by the user-model, convention and matrix tests.

Tiny Keras models of each kind hardcase must read (a functional CNN with ``Rescaling``
inside, a Sequential CNN with logits out, a flat-input MLP, a 3-class RGB CNN), and 32x32
colour images whose class only their colour tells (:func:`coloured_shapes`).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

#: The coloured shapes' classes in output order: alphabetical, as a model trained from class
#: folders (``keras.utils.image_dataset_from_directory``) has them.
SHAPE_CLASSES = ("blue", "green", "red")


def functional_cnn_rescaling_inside(n_classes: int = 10) -> keras.Model:
    """A functional CNN that scales its own input: it wants raw 0-255 pixels."""
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv_a")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(x))


def sequential_cnn(n_classes: int = 10) -> keras.Model:
    """A Sequential CNN whose last layer outputs logits."""
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3, activation="relu", name="conv_s"),
                             keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(n_classes)])


def flat_mlp(n_classes: int = 10) -> keras.Model:
    """An MLP on flat (None, 784) input."""
    return keras.Sequential([keras.Input((784,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(n_classes, activation="softmax")])


def rgb_cnn() -> keras.Model:
    """A 3-class CNN on 32x32 RGB images."""
    return keras.Sequential([keras.Input((32, 32, 3)),
                             keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_rgb"),
                             keras.layers.MaxPooling2D(),
                             keras.layers.GlobalMaxPooling2D(),
                             keras.layers.Dense(3, activation="softmax")])


def coloured_shapes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """32x32 RGB images: a blue, green or red shape (the label: 0, 1, 2, :data:`SHAPE_CLASSES`) on a
    random grey background.

    The shape (square, disc or bar) and its place are random, so only its colour tells the
    class: read with the channels reversed (BGR), red and blue swap.

    Returns
    -------
    images : np.ndarray, uint8, shape (n, 32, 32, 3)
    labels : np.ndarray, int64, shape (n,)
    """
    rng = np.random.default_rng(seed)
    images = np.empty((n, 32, 32, 3), np.uint8)
    labels = rng.integers(0, 3, n)
    ys, xs = np.mgrid[0:32, 0:32]
    for image, label in zip(images, labels):
        image[:] = rng.integers(60, 140)
        cy, cx = rng.integers(8, 24, 2)
        mask = [(abs(ys - cy) <= 4) & (abs(xs - cx) <= 4), (ys - cy) ** 2 + (xs - cx) ** 2 <= 20,
                (abs(ys - cy) <= 1) & (abs(xs - cx) <= 7)][rng.integers(0, 3)]
        image[mask] = np.eye(3, dtype=np.uint8)[2 - label] * 255  # blue is channel 2 of RGB
    return images, labels


def train_shapes_model(path: Path, *, channel_order: str = "RGB", n: int = 600, epochs: int = 6) -> Path:
    """:func:`rgb_cnn` trained on :func:`coloured_shapes` fed 0-1, saved to ``path`` without a spec.

    ``channel_order="BGR"`` trains it on channel-reversed images, as a model trained on
    OpenCV-read files is. About 3 s on 2 cores; test accuracy above 0.9.
    """
    images, labels = coloured_shapes(n)
    if channel_order == "BGR":
        images = images[..., ::-1]
    keras.utils.set_random_seed(0)
    model = rgb_cnn()
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(images / 255.0, labels, epochs=epochs, batch_size=32, verbose=0)
    model.save(path)
    return path
