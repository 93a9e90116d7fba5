"""Load a user's Keras classifier safely and run it fast: probabilities and embeddings.

:func:`load_classifier` reads a ``.keras`` / ``.h5`` file (in Keras' safe mode: no arbitrary
Python code from the file) or a SavedModel directory, with its preprocessing spec, and returns
a :class:`KerasClassifier`, the Keras implementation of the
:class:`hardcase.miner.protocols.Classifier` protocol the workflows are written against.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from hardcase.miner.scores import detect_logits, softmax
from hardcase.miner.spec import PreprocessingSpec, as_uint8, spec_path_for

__all__ = ["KerasClassifier", "ModelOutputError", "detect_spec", "file_hash", "load_classifier"]

_PASS_THROUGH = (keras.layers.Dropout, keras.layers.Activation, keras.layers.Softmax)


class ModelOutputError(ValueError):
    """The model produced outputs that cannot be used (NaN or infinite values)."""


def file_hash(path: str | os.PathLike) -> str:
    """The sha256 of a model: of its file, or of every file of a SavedModel directory.

    Parameters
    ----------
    path : str or PathLike
        A model file, or a directory (its files are hashed in sorted order, each preceded
        by its relative path, so renaming a file changes the hash).

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _load_keras_model(path: Path) -> keras.Model:
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise ValueError(f"{path} is a directory but not a SavedModel (no saved_model.pb)")
        layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        spec = next(iter(signature.structured_input_signature[1].values()))
        inputs = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype.name)
        outputs = layer(inputs)
        if isinstance(outputs, dict):
            outputs = next(iter(outputs.values()))
        return keras.Model(inputs, outputs, name=path.name)
    if path.suffix not in (".keras", ".h5", ".hdf5"):
        raise ValueError(f"unsupported model file {path}: expected .keras, .h5 or a SavedModel directory")
    # safe_mode refuses to deserialize arbitrary Python code (lambda layers) from the file
    return keras.saving.load_model(path, compile=False, safe_mode=True)


def detect_spec(model: keras.Model) -> PreprocessingSpec:
    """A spec from the model's input and output shapes: scale 0-1, classes named ``"0" .. "K-1"``.

    Parameters
    ----------
    model : keras.Model
        With one input of shape (None, H, W, C) or (None, H, W) (then C = 1), all sizes
        known, and outputs of shape (None, K).

    Returns
    -------
    PreprocessingSpec

    Raises
    ------
    ValueError
        The input is not an image batch, or a size is unknown.
    """
    input_shape = tuple(model.inputs[0].shape)
    if len(input_shape) == 3:
        height, width, channels = input_shape[1], input_shape[2], 1
    elif len(input_shape) == 4:
        height, width, channels = input_shape[1:]
    else:
        raise ValueError(f"model input shape {input_shape} is not an image batch (N, H, W[, C])")
    if None in (height, width, channels):
        raise ValueError(f"model input shape {input_shape} has an unknown size; pass --size and --channels")
    n_classes = int(model.outputs[0].shape[-1])
    return PreprocessingSpec(
        height=int(height),
        width=int(width),
        channels=int(channels),
        scale="0-1",
        class_names=tuple(str(k) for k in range(n_classes)),
    )


def _embedding_layer(model: keras.Model, name: str | None) -> keras.layers.Layer | None:
    if name is not None:
        try:
            return model.get_layer(name)
        except ValueError:
            names = [layer.name for layer in model.layers]
            raise ValueError(f"model has no layer named {name!r}; layers: {', '.join(names)}") from None
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    # walk back past the output layer and anything that only reshapes its activations
    index = len(layers) - 1
    while index >= 0 and isinstance(layers[index], _PASS_THROUGH):
        index -= 1
    index -= 1
    while index >= 0 and isinstance(layers[index], _PASS_THROUGH):
        index -= 1
    return layers[index] if index >= 0 else None


class KerasClassifier:
    """A Keras image classifier with its preprocessing spec (a :class:`~hardcase.miner.protocols.Classifier`).

    ``predict_proba`` and ``embed`` take uint8 images (N, H, W, C) as stored and shown, apply
    the spec and run one compiled ``tf.function`` returning probabilities and the embedding
    together, so mining costs one forward pass.

    Parameters
    ----------
    model : keras.Model
        One image input, one output of K class scores (probabilities or logits: logits are
        detected on the first batch and softmaxed, with a warning).
    spec : PreprocessingSpec
        Input size, channels and scaling, and the K class names; with no class names the
        outputs are named ``"0" .. "K-1"``.
    embedding_layer : str, optional
        The layer whose (flattened) output is the embedding; default the layer before the
        output layer, skipping dropout, activation and softmax layers. A SavedModel has
        none.
    path : Path, optional
        Where the model was loaded from (kept as ``path``).

    Raises
    ------
    ValueError
        ``spec`` names a different number of classes than the model has outputs (the
        message gives both), or ``embedding_layer`` is not a layer of the model.

    Notes
    -----
    ``spec`` and ``model`` are read-only: to use another spec, build a new classifier
    (``load_classifier(path, spec=...)``), so the class-count check always runs.
    """

    def __init__(
        self,
        model: keras.Model,
        spec: PreprocessingSpec,
        *,
        embedding_layer: str | None = None,
        path: Path | None = None,
    ) -> None:
        if not isinstance(spec, PreprocessingSpec):
            raise TypeError(f"spec must be a PreprocessingSpec, got {type(spec).__name__}")
        n_outputs = int(model.outputs[0].shape[-1])
        if spec.class_names and len(spec.class_names) != n_outputs:
            raise ValueError(
                f"model has {n_outputs} outputs but the spec names {len(spec.class_names)} classes"
            )
        if not spec.class_names:
            spec = spec.with_overrides(class_names=[str(k) for k in range(n_outputs)])
        self._model = model
        self._spec = spec
        self.path = path
        #: Whether the model outputs logits (softmax applied); None until the first batch.
        self.outputs_are_logits: bool | None = None
        layer = _embedding_layer(model, embedding_layer)
        outputs = [model.outputs[0]]
        if layer is not None:
            outputs.append(keras.layers.Flatten()(layer.output) if len(layer.output.shape) > 2 else layer.output)
        #: Name of the embedding layer, or None.
        self.embedding_layer = layer.name if layer is not None else None
        self._joint = keras.Model(model.inputs, outputs if len(outputs) > 1 else outputs[0])
        input_shape = (None, *model.inputs[0].shape[1:])
        input_dtype = model.inputs[0].dtype
        self._forward = tf.function(
            lambda x: self._joint(x, training=False),
            input_signature=[tf.TensorSpec(input_shape, input_dtype)],
        )

        def forward_pixels(pixels, multiplier, offset):
            # scaling inside the graph: uint8 crosses into TensorFlow, 4x less than float32
            x = tf.cast(pixels, tf.float32) * multiplier + offset
            return self._joint(tf.cast(x, input_dtype), training=False)

        self._forward_pixels = tf.function(
            forward_pixels,
            input_signature=[tf.TensorSpec(input_shape, tf.uint8), tf.TensorSpec((), tf.float32),
                             tf.TensorSpec((), tf.float32)],
        )

    @property
    def spec(self) -> PreprocessingSpec:
        """The preprocessing spec the classifier was built with (read-only)."""
        return self._spec

    @property
    def model(self) -> keras.Model:
        """The Keras model as loaded (read-only): for retraining and saliency."""
        return self._model

    @property
    def class_names(self) -> tuple[str, ...]:
        """Name of each output column, in order: ``spec.class_names``."""
        return self.spec.class_names

    @property
    def embedding_dim(self) -> int | None:
        """Width D of the embeddings, or None without an embedding layer."""
        return int(self._joint.outputs[1].shape[-1]) if self.embedding_layer is not None else None

    def warm_up(self) -> None:
        """Trace the compiled forward pass now (on a thread, it overlaps other start-up work).

        Optional: the first batch traces it otherwise.
        """
        multiplier, offset = self.spec.affine()
        blank = tf.zeros((1, *self.model.inputs[0].shape[1:]), tf.uint8)
        self._forward_pixels(blank, multiplier, offset)

    @property
    def n_classes(self) -> int:
        """K, the number of outputs."""
        return len(self.spec.class_names)

    def _model_input(self, images: np.ndarray) -> np.ndarray:
        """uint8 pixels shaped as the model's input; scaling happens in the graph."""
        images = as_uint8(images)
        if images.ndim == 3:
            images = images[..., None]
        if images.shape[1:] != self.spec.image_shape:
            raise ValueError(
                f"images have shape {images.shape[1:]} but the model expects {self.spec.image_shape}"
            )
        if len(self.model.inputs[0].shape) == 3:
            images = images[..., 0]
        return np.ascontiguousarray(images)

    def _to_probabilities(self, outputs: np.ndarray, batch_label: str) -> np.ndarray:
        outputs = np.asarray(outputs, dtype=np.float64)
        if not np.all(np.isfinite(outputs)):
            bad = int(np.argwhere(~np.isfinite(outputs))[0][0])
            raise ModelOutputError(f"model output is NaN or infinite in {batch_label}, row {bad}")
        if self.outputs_are_logits is None:
            self.outputs_are_logits = detect_logits(outputs)
            if self.outputs_are_logits:
                warnings.warn(
                    "model outputs do not sum to 1 (logits?); applying softmax", stacklevel=3
                )
        if self.outputs_are_logits:
            outputs = softmax(outputs)
        return outputs.astype(np.float32)

    def predict_and_embed_batch(self, images: np.ndarray, *, batch_label: str = "batch") -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and embeddings of one batch, from one forward pass.

        Parameters
        ----------
        images : np.ndarray, shape (B, H, W, C) or (B, H, W)
            uint8 pixels, or any numeric array :func:`~hardcase.miner.spec.as_uint8` reads;
            (H, W, C) must be ``spec.image_shape``.
        batch_label : str
            Names the batch in errors.

        Returns
        -------
        pred_probs : np.ndarray, float32, shape (B, K)
        embeddings : np.ndarray, float32, shape (B, D), or None
            None without an embedding layer.

        Raises
        ------
        ValueError
            The images have another shape than ``spec.image_shape``.
        ModelOutputError
            The model's output is NaN or infinite (the message names ``batch_label`` and the row).
        """
        multiplier, offset = self.spec.affine()
        results = self._forward_pixels(tf.convert_to_tensor(self._model_input(images)), multiplier, offset)
        if self.embedding_layer is None:
            return self._to_probabilities(results.numpy(), batch_label), None
        probs = self._to_probabilities(results[0].numpy(), batch_label)
        embedding = results[1].numpy().astype(np.float32)
        return probs, embedding

    def iter_predictions(self, images: np.ndarray, *, batch_size: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """:meth:`predict_and_embed_batch` on successive batches of ``batch_size`` rows.

        Parameters
        ----------
        images : np.ndarray, shape (N, H, W, C) or (N, H, W)
            Or anything sliceable by rows that gives such arrays.
        batch_size : int

        Yields
        ------
        pred_probs : np.ndarray, float32, shape (B, K)
        embeddings : np.ndarray, float32, shape (B, D), or None
        """
        for start in range(0, len(images), batch_size):
            yield self.predict_and_embed_batch(
                images[start : start + batch_size], batch_label=f"batch starting at row {start}"
            )

    def predict_proba(self, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        images : np.ndarray, uint8, shape (N, H, W, C) or (N, H, W)
        batch_size : int
            Rows per forward pass.

        Returns
        -------
        np.ndarray, float32, shape (N, K)
            (0, K) for no images.
        """
        parts = [probs for probs, _ in self.iter_predictions(images, batch_size=batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.n_classes), np.float32)

    def embed(self, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Embeddings from the embedding layer (the penultimate one by default).

        Parameters
        ----------
        images : np.ndarray, uint8, shape (N, H, W, C) or (N, H, W)
            At least one image.
        batch_size : int
            Rows per forward pass.

        Returns
        -------
        np.ndarray, float32, shape (N, D)

        Raises
        ------
        ValueError
            The classifier has no embedding layer.
        """
        if self.embedding_layer is None:
            raise ValueError("this model has no embedding layer (a SavedModel exposes only its outputs)")
        return np.concatenate([emb for _, emb in self.iter_predictions(images, batch_size=batch_size)])


def load_classifier(
    path: str | os.PathLike,
    *,
    spec: PreprocessingSpec | None = None,
    embedding_layer: str | None = None,
    scale: str | None = None,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    class_names: Sequence[str] | None = None,
) -> KerasClassifier:
    """Load a ``.keras`` / ``.h5`` file or a SavedModel directory with its preprocessing spec.

    The spec is ``spec`` when given, else the one stored beside the model
    (``<model>.spec.json``, :func:`~hardcase.miner.spec.spec_path_for`), else the one
    detected from the model's input and output shapes (:func:`detect_spec`); ``scale``,
    ``channels``, ``size`` and ``class_names`` override its fields. The classifier is built
    with the result, so a spec naming another number of classes than the model has outputs
    is refused.

    Parameters
    ----------
    path : str or PathLike
    spec : PreprocessingSpec, optional
        E.g. the spec stored with a model version.
    embedding_layer : str, optional
        See :class:`KerasClassifier`.
    scale : str, optional
        ``"0-1"``, ``"0-255"`` or ``"-1-1"``.
    channels : int, optional
        1 or 3.
    size : (int, int), optional
        ``(height, width)``.
    class_names : sequence of str, optional
        One per model output.

    Returns
    -------
    KerasClassifier

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        An unsupported file, an unsafe model (e.g. a lambda layer), an invalid spec file
        or override, or a spec whose class count differs from the model's outputs.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if spec is not None and not isinstance(spec, PreprocessingSpec):
        raise TypeError(f"spec must be a PreprocessingSpec, got {type(spec).__name__}")
    model = _load_keras_model(path)
    if spec is None:
        sidecar = spec_path_for(path)
        spec = PreprocessingSpec.load(sidecar) if sidecar.exists() else detect_spec(model)
    height, width = size if size is not None else (None, None)
    spec = spec.with_overrides(
        scale=scale, channels=channels, height=height, width=width, class_names=class_names
    )
    return KerasClassifier(model, spec, embedding_layer=embedding_layer, path=path)
