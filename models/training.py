"""Training and retraining Keras classifiers on uint8 image arrays."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import albumentations as A
import keras
import numpy as np

from hardcase.miner.scores import detect_logits
from hardcase.miner.spec import PreprocessingSpec, spec_path_for
from hardcase.models.classifier import model_layout


def build_demo_cnn(input_shape: tuple[int, int, int], n_classes: int, *, seed: int = 0) -> keras.Model:
    """A small MNIST CNN: two conv + max-pool blocks (32, 64 filters), a 128-unit embedding, softmax.

    The initial weights come from ``seed``, so training the result with a seed is repeatable.

    Parameters
    ----------
    input_shape : (int, int, int)
        ``(height, width, channels)``, e.g. ``spec.image_shape``.
    n_classes : int
        K, the width of the softmax output.
    seed : int

    Returns
    -------
    keras.Model
        Input ``"image"`` (None, H, W, C) float, outputs ``"probs"`` (None, K); the layer
        ``"embedding"`` (128 units) is what a classifier embeds with.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, activation="relu", name="embedding")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="hardcase_demo_cnn")


class _AugmentedBatches(keras.utils.PyDataset):
    """Batches of (prepared images, labels[, weights]) with an albumentations pipeline applied.

    With ``augment_mask`` the pipeline runs only on the rows where it is true (the others are
    shown as they are); without it, on every row.
    """

    def __init__(self, images, labels, spec, batch_size, pipeline, seed, sample_weight=None, augment_mask=None,
                 layout=None):
        super().__init__()
        self.images, self.labels, self.spec = images, labels, spec
        self.layout = layout
        self.batch_size, self.pipeline = batch_size, pipeline
        self.sample_weight = sample_weight
        self.augment_mask = augment_mask
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(images))
        if pipeline is not None:
            pipeline.set_random_seed(seed)  # the augmentations, too, are the same for the same seed

    def __len__(self) -> int:
        return int(np.ceil(len(self.images) / self.batch_size))

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.images))

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        batch = self.images[rows]
        if self.pipeline is not None:
            if self.augment_mask is None:
                batch = np.stack([_augment(self.pipeline, image) for image in batch])
            else:
                batch = np.stack([_augment(self.pipeline, image) if flag else image
                                  for image, flag in zip(batch, self.augment_mask[rows])])
        x = self.spec.prepare(batch)
        if self.layout is not None:
            x = self.layout(x)
        if self.sample_weight is None:
            return x, self.labels[rows]
        return x, self.labels[rows], self.sample_weight[rows]


def _augment(pipeline: A.Compose, image: np.ndarray) -> np.ndarray:
    if image.shape[-1] == 1:
        return pipeline(image=image[..., 0])["image"][..., None]
    return pipeline(image=image)["image"]


class _StepProgress(keras.callbacks.Callback):
    """A tqdm bar over every training step of a ``fit``, showing the running loss and accuracy."""

    def __init__(self, total_steps: int, description: str) -> None:
        super().__init__()
        from tqdm import tqdm

        self._bar = tqdm(total=total_steps, desc=description, unit="step")

    def on_train_batch_end(self, batch, logs=None) -> None:
        self._bar.update(1)
        if logs and batch % 10 == 0:
            self._bar.set_postfix({key: f"{float(value):.3f}" for key, value in logs.items()}, refresh=False)

    def on_train_end(self, logs=None) -> None:
        self._bar.close()


def train_classifier(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    spec: PreprocessingSpec,
    *,
    epochs: int = 8,
    batch_size: int = 64,
    seed: int = 0,
    learning_rate: float = 2e-3,
    pipeline: A.Compose | None = None,
    class_weight: dict[int, float] | None = None,
    sample_weight: np.ndarray | None = None,
    augment_mask: np.ndarray | None = None,
    progress: str | None = None,
) -> keras.callbacks.History:
    """Fit ``model`` (compiled here: Adam, sparse categorical cross-entropy) on uint8 images.

    Seeded: the same inputs give the same model.

    Parameters
    ----------
    model : keras.Model
        Outputs probabilities or logits (N, K) (told apart on the first batch); its input
        may be flat (:func:`~hardcase.models.classifier.model_layout`).
    images : np.ndarray, uint8, shape (N, H, W, C)
    labels : np.ndarray, int, shape (N,)
        Class indices 0 .. K-1.
    spec : PreprocessingSpec
        Scales each batch (:meth:`~hardcase.miner.spec.PreprocessingSpec.prepare`).
    epochs, batch_size, seed, learning_rate : int, int, int, float
    pipeline : albumentations.Compose, optional
        Augments each batch on the fly (the rows of ``augment_mask`` only, when given).
    class_weight : dict of int to float, optional
        Loss weight per class index; folded into ``sample_weight`` when both are given.
    sample_weight : np.ndarray, float, shape (N,), optional
    augment_mask : np.ndarray, bool, shape (N,), optional
        The rows ``pipeline`` disturbs; without it, every row.
    progress : str, optional
        Show a progress bar over every training step (on stderr) with this description;
        None trains silently.

    Returns
    -------
    keras.callbacks.History

    Raises
    ------
    ValueError
        ``augment_mask`` has another shape than (N,).
    """
    keras.utils.set_random_seed(seed)
    layout = partial(model_layout, model)  # a flat-input model (an MLP) takes each image as one vector
    # a model whose last layer gives logits (no softmax) is trained on them, not on "probabilities"
    first = layout(spec.prepare(np.asarray(images[:batch_size])))
    from_logits = bool(len(first)) and detect_logits(np.asarray(model(first, training=False), np.float64))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=["accuracy"],
    )
    if sample_weight is not None and class_weight is not None:
        sample_weight = sample_weight * np.array([class_weight.get(int(y), 1.0) for y in labels])
        class_weight = None
    if augment_mask is not None:
        augment_mask = np.asarray(augment_mask, dtype=bool)
        if augment_mask.shape != (len(images),):
            raise ValueError(f"augment_mask has shape {augment_mask.shape}, expected ({len(images)},)")
    data = _AugmentedBatches(images, labels.astype(np.int64), spec, batch_size, pipeline, seed, sample_weight,
                             augment_mask, layout=layout)
    callbacks = [] if progress is None else [_StepProgress(epochs * len(data), progress)]
    return model.fit(data, epochs=epochs, class_weight=class_weight, verbose=0, callbacks=callbacks)


def save_with_spec(model: keras.Model, spec: PreprocessingSpec, path: Path) -> None:
    """Save a model as ``.keras`` with its ``.spec.json`` beside it (the model written atomically).

    Parameters
    ----------
    model : keras.Model
    spec : PreprocessingSpec
        Written to :func:`~hardcase.miner.spec.spec_path_for` ``(path)``.
    path : Path
        The ``.keras`` file; its folder is created when missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    model.save(temporary)
    spec.save(spec_path_for(path))
    os.replace(temporary, path)
