"""Load a user's Keras classifier safely and run it fast: probabilities and embeddings.

:func:`load_classifier` reads a ``.keras`` / ``.h5`` file (in Keras' safe mode: no arbitrary
Python code from the file) or a SavedModel directory, with its preprocessing spec, and returns
a :class:`KerasClassifier`, the Keras implementation of the
:class:`hardcase.miner.protocols.Classifier` protocol the workflows are written against.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from hardcase.miner.protocols import UntrustedModelError
from hardcase.miner.scores import detect_logits, softmax
from hardcase.miner.sources.hashing import file_hash
from hardcase.miner.spec import PreprocessingSpec, as_uint8, spec_path_for

__all__ = ["KerasClassifier", "ModelOutputError", "UntrustedModelError", "check_input_fits", "detect_spec", "file_hash",
           "load_classifier", "model_layout"]

_PASS_THROUGH = (keras.layers.Dropout, keras.layers.Activation, keras.layers.Softmax)


class ModelOutputError(ValueError):
    """The model produced outputs that cannot be used (NaN or infinite values)."""


def _load_keras_model(path: Path, *, trust_model: bool = False) -> keras.Model:
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise ValueError(f"{path} is a directory but not a SavedModel (no saved_model.pb)")
        if not trust_model:
            # nothing like Keras' safe_mode exists for a SavedModel: its graph may write files,
            # read others or open connections on every prediction
            raise UntrustedModelError(
                f"{path} is a SavedModel: running it runs its whole TensorFlow graph, which may do anything "
                "on this machine (write files, open connections); pass --trust-model if you trust who made "
                "it, or export it as a .keras file")
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


def _shape_text(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def detect_spec(
    model: keras.Model,
    *,
    size: Sequence[int] | None = None,
    channels: int | None = None,
) -> PreprocessingSpec:
    """A spec from the model's input and output shapes: scale 0-1, classes named ``"0" .. "K-1"``.

    An image input (None, H, W, C) or (None, H, W) (then C = 1) gives its size. A flat input
    (None, D), e.g. an MLP's, gives no image shape: ``size`` (and ``channels``) say it, with
    H * W * C = D; without a size, a D that is a perfect square (after dividing by
    ``channels``, default 1) is taken as a square image, with a warning (784 -> 28 x 28 x 1).

    Parameters
    ----------
    model : keras.Model
        One input and outputs of shape (None, K).
    size : (int, int) or (int, int, int), optional
        ``(height, width)`` or ``(height, width, channels)`` of the images; used where the
        model's input does not say them (a flat input, or unknown sizes).
    channels : int, optional
        1 or 3, likewise.

    Returns
    -------
    PreprocessingSpec

    Raises
    ------
    ValueError
        The input is neither an image batch nor a flat vector, a size is unknown and not
        given, or a flat D is not a square and no ``size`` is given (the message names D).

    Warns
    -----
    UserWarning
        A flat input was taken as a square grayscale (or ``channels``) image.
    """
    input_shape = tuple(model.inputs[0].shape)
    height, width, size_channels = _split_size(size)
    channels = channels if channels is not None else size_channels
    if len(input_shape) == 2:
        values = input_shape[1]
        if values is None:
            raise ValueError(f"model input shape {_shape_text(input_shape)} has an unknown width; cannot read images")
        if height is None:
            per_channel = values // (channels or 1)
            side = math.isqrt(per_channel)
            if side * side != per_channel or per_channel * (channels or 1) != values:
                raise ValueError(
                    f"model takes a flat input of D = {values} values, not an image, and {values} is not a square "
                    f"number of pixels; pass --size HxW[xC] with H * W * C = {values}"
                )
            height = width = side
            channels = channels or 1
            warnings.warn(
                f"model takes a flat input of D = {values} values: assuming {side}x{side}x{channels} images "
                f"(pass --size HxW[xC] if not)",
                stacklevel=2,
            )
        elif channels is None:
            channels = values // (height * width) if values % (height * width) == 0 else 1
    elif len(input_shape) in (3, 4):
        model_height, model_width = input_shape[1], input_shape[2]
        model_channels = input_shape[3] if len(input_shape) == 4 else 1
        height = model_height if model_height is not None else height
        width = model_width if model_width is not None else width
        channels = model_channels if model_channels is not None else channels
    else:
        raise ValueError(
            f"model input shape {_shape_text(input_shape)} is neither an image batch (N, H, W[, C]) nor flat (N, D)"
        )
    if None in (height, width, channels):
        raise ValueError(
            f"model input shape {_shape_text(input_shape)} has an unknown size; pass --size HxW and --channels"
        )
    n_classes = int(model.outputs[0].shape[-1])
    return PreprocessingSpec(
        height=int(height),
        width=int(width),
        channels=int(channels),
        scale="0-1",
        class_names=tuple(str(k) for k in range(n_classes)),
    )


def _split_size(size: Sequence[int] | None) -> tuple[int | None, int | None, int | None]:
    """``(height, width, channels)`` of a 2- or 3-long size (channels None for 2), all None for None."""
    if size is None:
        return None, None, None
    size = tuple(size)
    if len(size) not in (2, 3) or not all(isinstance(v, int | np.integer) and v > 0 for v in size):
        raise ValueError(f"size must be (height, width) or (height, width, channels) of positive integers, got {size!r}")
    return int(size[0]), int(size[1]), (int(size[2]) if len(size) == 3 else None)


def check_input_fits(model: keras.Model, spec: PreprocessingSpec) -> None:
    """Check that images of ``spec.image_shape`` can be fed to the model's input.

    An image input (None, H, W, C) or (None, H, W) must match H, W and C where it states
    them; a flat input (None, D) must have D = H * W * C.

    Raises
    ------
    ValueError
        One line naming both shapes.
    """
    dims = tuple(model.inputs[0].shape[1:])
    height, width, channels = spec.image_shape
    if len(dims) == 1:
        fits = dims[0] is None or dims[0] == height * width * channels
    elif len(dims) == 2:
        fits = channels == 1 and all(d is None or d == s for d, s in zip(dims, (height, width)))
    elif len(dims) == 3:
        fits = all(d is None or d == s for d, s in zip(dims, (height, width, channels)))
    else:
        fits = False
    if not fits:
        raise ValueError(
            f"images of {height}x{width}x{channels} (= {height * width * channels} values) do not fit the model's "
            f"input {_shape_text((None, *dims))}; give --size HxW[xC] and --channels that match the model"
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


def model_layout(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Images laid out as ``model``'s input takes them (values unchanged).

    The one place the image layout (N, H, W, C) meets a model's: classifying, saliency,
    training and retraining all go through it.

    Parameters
    ----------
    model : keras.Model
        One input: (None, D) flat, (None, H, W) without a channel axis, or (None, H, W, C).
    images : np.ndarray, shape (N, H, W, C)
        Any dtype.

    Returns
    -------
    np.ndarray, the same dtype
        (N, D) for a flat input (D = H * W * C, row-major: rows, then columns, then
        channels), (N, H, W) for an input without a channel axis, else (N, H, W, C).
    """
    rank = len(model.inputs[0].shape)
    if rank == 2:
        return images.reshape(len(images), -1)
    return images[..., 0] if rank == 3 else images


def _with_class_names(model: keras.Model, spec: PreprocessingSpec) -> PreprocessingSpec:
    """``spec`` naming the model's K outputs (``"0" .. "K-1"`` when it names none).

    Raises
    ------
    ValueError
        The spec names another number of classes than the model has outputs.
    """
    n_outputs = int(model.outputs[0].shape[-1])
    if spec.class_names and len(spec.class_names) != n_outputs:
        raise ValueError(f"model has {n_outputs} outputs but the spec names {len(spec.class_names)} classes")
    if not spec.class_names:
        spec = spec.with_overrides(class_names=[str(k) for k in range(n_outputs)])
    return spec


class KerasClassifier:
    """A Keras image classifier with its preprocessing spec (a :class:`~hardcase.miner.protocols.Classifier`).

    ``predict_proba`` and ``embed`` take uint8 images (N, H, W, C) as stored and shown, apply
    the spec and run one compiled ``tf.function`` returning probabilities and the embedding
    together, so mining costs one forward pass.

    The model's input may be an image batch (None, H, W, C) or (None, H, W), or flat
    (None, D) with D = H * W * C (an MLP): images are reshaped to the model's layout just
    before the model (:meth:`to_model_layout`), so everything else (sliders, saliency) works
    on (H, W, C) images.

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
        message gives both), the spec's image shape does not fit the model's input (one
        line naming both, :func:`check_input_fits`), or ``embedding_layer`` is not a layer
        of the model.

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
        spec = _with_class_names(model, spec)
        check_input_fits(model, spec)
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

    def with_spec(self, spec: PreprocessingSpec) -> KerasClassifier:
        """The same model read through another spec (e.g. another input convention).

        The Keras model is shared, not copied; the class-count and input checks run again.
        A spec of the same image shape also shares the compiled forward pass (the scaling
        and channel order are applied outside the traced graph's weights), so trying the
        input conventions costs no retracing.
        """
        if not isinstance(spec, PreprocessingSpec) or spec.image_shape != self._spec.image_shape:
            return KerasClassifier(self._model, spec, embedding_layer=self.embedding_layer, path=self.path)
        twin = copy.copy(self)
        twin._spec = _with_class_names(self._model, spec)
        return twin

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
        blank = self.to_model_layout(np.zeros((1, *self.spec.image_shape), np.uint8))
        self._forward_pixels(tf.convert_to_tensor(blank), multiplier, offset)

    @property
    def n_classes(self) -> int:
        """K, the number of outputs."""
        return len(self.spec.class_names)

    def to_model_layout(self, images: np.ndarray) -> np.ndarray:
        """Images (N, H, W, C) laid out as the model's input takes them (:func:`model_layout`)."""
        return model_layout(self.model, images)

    def _model_input(self, images: np.ndarray) -> np.ndarray:
        """uint8 pixels shaped as the model's input, channels in its order; scaling happens in the graph."""
        images = as_uint8(images)
        if images.ndim == 3:
            images = images[..., None]
        if images.shape[1:] != self.spec.image_shape:
            raise ValueError(
                f"images have shape {images.shape[1:]} but the model expects {self.spec.image_shape}"
            )
        return np.ascontiguousarray(self.to_model_layout(self.spec.ordered(images)))

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
    size: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    trust_model: bool = False,
    channel_order: str | None = None,
) -> KerasClassifier:
    """Load a ``.keras`` / ``.h5`` file or a SavedModel directory with its preprocessing spec.

    ``.keras`` and ``.h5`` files load with ``safe_mode`` (no Python code from the file); a
    SavedModel directory runs its own graph, so it loads only with ``trust_model=True``
    (:class:`UntrustedModelError` otherwise).

    The spec is ``spec`` when given, else the one stored beside the model
    (``<model>.spec.json``, :func:`~hardcase.miner.spec.spec_path_for`), else the one
    detected from the model's input and output shapes (:func:`detect_spec`); ``scale``,
    ``channels``, ``size``, ``class_names`` and ``channel_order`` override its fields. The classifier is built
    with the result, so a spec naming another number of classes than the model has outputs,
    or images that do not fit the model's input, are refused here, before any data is read.

    A flat-input model (None, D), e.g. an MLP, needs the image shape from the spec file or
    ``size`` (and ``channels``) with H * W * C = D; without them a square D is taken as a
    square grayscale image, with a warning (see :func:`detect_spec`).

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
    size : (int, int) or (int, int, int), optional
        ``(height, width)`` or ``(height, width, channels)`` (as ``--size HxW[xC]``; a
        channel count here and ``channels`` must agree).
    class_names : sequence of str, optional
        One per model output.
    trust_model : bool
        Load a SavedModel directory (its graph runs as it is).
    channel_order : str, optional
        ``"RGB"`` or ``"BGR"`` (a colour model trained on channel-reversed images).

    Returns
    -------
    KerasClassifier

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        An unsupported file, an unsafe model (e.g. a lambda layer), an invalid spec file
        or override, a spec whose class count differs from the model's outputs, or an image
        shape that does not fit the model's input (one line naming both shapes).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if spec is not None and not isinstance(spec, PreprocessingSpec):
        raise TypeError(f"spec must be a PreprocessingSpec, got {type(spec).__name__}")
    height, width, size_channels = _split_size(size)
    if channels is not None and size_channels is not None and channels != size_channels:
        raise ValueError(f"size says {size_channels} channels but channels is {channels}")
    channels = channels if channels is not None else size_channels
    model = _load_keras_model(path, trust_model=trust_model)
    if spec is None:
        sidecar = spec_path_for(path)
        spec = PreprocessingSpec.load(sidecar) if sidecar.exists() else detect_spec(model, size=size, channels=channels)
    spec = spec.with_overrides(
        scale=scale, channels=channels, height=height, width=width, class_names=class_names,
        channel_order=channel_order,
    )
    return KerasClassifier(model, spec, embedding_layer=embedding_layer, path=path)
