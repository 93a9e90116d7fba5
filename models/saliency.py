"""Where the model looks: HiResCAM on the last convolution, gradient x input otherwise.

Works for functional, Sequential and nested Keras models, with image or flat inputs. Both
methods are one formula, the positive part of the channel sum of gradient x activation,
taken at two places:

- a model with a 2-D convolution anywhere (also inside a nested model) gets **HiResCAM**
  (Draelos & Carin 2020), the element-wise form of Grad-CAM (Selvaraju et al. 2017), on its
  last one: the feature maps times the class score's gradient at each position, summed over
  channels, ReLU'd and resized to the image. Grad-CAM proper first averages the gradient over
  positions; on a max-pooled model that spreads a floor over the whole background (a digit in
  a corner of a 40 x 40 canvas kept a median 72% of the map, down to 29%; element-wise keeps
  at least 99%, tests/test_saliency.py). For global-average-pooled models the two are equal;
- a model without one (an MLP) gets **gradient x input**: the class score's gradient times
  the input's difference from a black image (the plain input for 0-1 and 0-255 scales),
  summed over channels, its positive part (the pixels that raise the score, as Grad-CAM's
  ReLU keeps), reshaped back to (H, W) for flat inputs. The absolute value, often shown,
  follows the input's brightness more than the model: it fails the parameter-randomisation
  test (Adebayo et al. 2018) where the positive part passes.

The class score is the class logit minus the mean logit. For a softmax output it is
``log p_k - mean_j log p_j``, which equals it, so the map does not fade away where the model
is confident (the gradient of a probability near 1 is near 0).

:attr:`Saliency.method` names what was used, for the UI: ``"HiResCAM on layer 'conv2'"`` or
``"gradient x input"``.

Needs the Keras model itself (gradients), so it takes a
:class:`~hardcase.models.classifier.KerasClassifier`, not any
:class:`~hardcase.miner.protocols.Classifier`.

Maps are not compared with a ground truth at run time; tests/test_saliency.py checks both
methods on digits pasted in a canvas corner (mass inside the digit's box) and under
re-initialised top layers (the Spearman correlation with the trained map drops).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from hardcase.models.classifier import KerasClassifier

__all__ = ["GRADIENT_X_INPUT", "Saliency", "last_conv_layer", "overlay"]

#: :attr:`Saliency.method` of a model without a 2-D convolution.
GRADIENT_X_INPUT = "gradient x input"

_CONV_2D = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)


def _sublayers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers of a nested model (Sequential or functional), else none."""
    return list(layer.layers) if isinstance(layer, keras.Model) else []


def last_conv_layer(model: keras.Model) -> keras.layers.Layer | None:
    """The last 2-D convolution of ``model`` (plain, separable or depthwise), looking inside nested models.

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    keras.layers.Layer or None
        None when the model has no 2-D convolution.
    """
    for layer in reversed(model.layers):
        if isinstance(layer, _CONV_2D):
            return layer
        inner = last_conv_layer(layer) if _sublayers(layer) else None
        if inner is not None:
            return inner
    return None


def _contains(model: keras.layers.Layer, target: keras.layers.Layer) -> bool:
    return any(layer is target or _contains(layer, target) for layer in _sublayers(model))


def _call_capturing(layer: keras.layers.Layer, inputs, target: keras.layers.Layer, captured: list):
    """Call ``layer`` on ``inputs``, inlining nested models so ``target``'s output lands in ``captured``.

    The layers are called again on the new tensors (weights shared), so the result is one
    graph from the new input to both the target's output and the model's output: Keras
    cannot give ``target.output`` of a layer inside a nested or Sequential model as a
    tensor of the outer model's input.
    """
    if layer is target:
        outputs = layer(inputs)
        captured.append(outputs)
        return outputs
    if not _contains(layer, target):
        return layer(inputs)
    if isinstance(layer, keras.Sequential):
        for inner in layer.layers:
            inputs = _call_capturing(inner, inputs, target, captured)
        return inputs

    def call(inner, *args, **kwargs):
        # a nested model's node carries mask=None, which its own layers do not need
        if len(args) == 1 and all(value is None for value in kwargs.values()):
            return _call_capturing(inner, args[0], target, captured)
        return inner(*args, **kwargs)

    structure = [inputs] if isinstance(layer.input, list | tuple) else inputs
    rebuilt = keras.models.clone_model(layer, input_tensors=structure, clone_function=lambda inner: inner,
                                       call_function=call)
    return rebuilt.outputs[0] if len(rebuilt.outputs) == 1 else rebuilt.outputs


class Saliency:
    """Saliency maps for one classifier; builds its gradient model once.

    Parameters
    ----------
    classifier : KerasClassifier
        Any Keras classifier: functional, Sequential or nested; image or flat input.

    Attributes
    ----------
    method : str
        What :meth:`heatmap` computes, in words for the UI: ``"HiResCAM on layer '<name>'"``
        (the model's last 2-D convolution, found inside nested models too) or
        ``"gradient x input"`` (:data:`GRADIENT_X_INPUT`; a model without one).
    layer_name : str or None
        The convolution's name; None for gradient x input.

    Raises
    ------
    TypeError
        ``classifier`` is not a :class:`KerasClassifier`.
    """

    def __init__(self, classifier: KerasClassifier) -> None:
        if not isinstance(classifier, KerasClassifier):
            raise TypeError(f"saliency needs a KerasClassifier (gradients), got {type(classifier).__name__}")
        self.classifier = classifier
        model = classifier.model
        layer = last_conv_layer(model)
        self.layer_name = layer.name if layer is not None else None
        self.method = f"HiResCAM on layer '{layer.name}'" if layer is not None else GRADIENT_X_INPUT
        input_shape = (*self._model_input_dims(),)
        fresh = keras.Input(shape=input_shape, dtype=model.inputs[0].dtype)
        if layer is None:
            self._gradient_model = model
        else:
            captured: list = []
            outputs = _call_capturing(model, fresh, layer, captured)
            if len(captured) != 1:
                raise ValueError(f"layer {layer.name!r} is called {len(captured)} times in the model; "
                                 "HiResCAM needs exactly one call")
            self._gradient_model = keras.Model(fresh, [captured[0], outputs])
        self._outputs_are_probabilities = self._probabilities_out()
        self._explain = tf.function(
            self._explain_graph,
            input_signature=[tf.TensorSpec((1, *input_shape), tf.float32), tf.TensorSpec((), tf.int32),
                             tf.TensorSpec((), tf.float32)],
        )

    def _model_input_dims(self) -> tuple[int, ...]:
        """The model's input shape without the batch axis, unknown sizes taken from the spec."""
        image_layout = self.classifier.to_model_layout(np.zeros((1, *self.classifier.spec.image_shape)))
        return tuple(image_layout.shape[1:])

    def _probabilities_out(self) -> bool:
        """Whether the model outputs probabilities (non-negative rows summing to 1), judged on a blank image."""
        if self.classifier.outputs_are_logits is not None:
            return not self.classifier.outputs_are_logits
        blank = np.zeros((1, *self._model_input_dims()), np.float32)
        outputs = np.asarray(self.classifier.model(blank, training=False), np.float64)
        return bool(np.all(outputs >= 0) and np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3))

    def _class_score(self, outputs: tf.Tensor, class_index: tf.Tensor) -> tf.Tensor:
        """Logit of ``class_index`` minus the mean logit (from log-probabilities for a softmax output)."""
        outputs = tf.cast(outputs, tf.float32)
        if self._outputs_are_probabilities:
            outputs = tf.math.log(tf.maximum(outputs, 1e-30))
        return outputs[:, class_index] - tf.reduce_mean(outputs, axis=-1)

    def _explain_graph(self, x: tf.Tensor, class_index: tf.Tensor, black: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)
            if self.layer_name is None:
                score = self._class_score(self._gradient_model(x, training=False), class_index)
            else:
                activations, outputs = self._gradient_model(x, training=False)
                score = self._class_score(outputs, class_index)
        if self.layer_name is None:
            return tape.gradient(score, x)[0] * (x[0] - black)
        return tf.nn.relu(tf.reduce_sum(tape.gradient(score, activations) * activations, axis=-1))[0]

    def heatmap(self, image: np.ndarray, class_index: int) -> np.ndarray:
        """Where the model looks for ``class_index`` in one image.

        Parameters
        ----------
        image : np.ndarray, uint8, shape (H, W, C) or (H, W)
            Shaped as the classifier's ``spec.image_shape`` (for a flat-input model too:
            the image, not the vector).
        class_index : int
            The output (0 .. K-1) whose score is explained.

        Returns
        -------
        np.ndarray, float32, shape (H, W)
            In [0, 1], 1 at the strongest; all zeros when nothing contributes.

        Raises
        ------
        ValueError
            ``image`` is not shaped as ``spec.image_shape``, or ``class_index`` is out of range.
        """
        spec = self.classifier.spec
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        if image.shape != spec.image_shape:
            raise ValueError(f"image has shape {image.shape} but the model expects {spec.image_shape}")
        if not 0 <= int(class_index) < self.classifier.n_classes:
            raise ValueError(f"class_index must be in 0 .. {self.classifier.n_classes - 1}, got {class_index}")
        x = self.classifier.to_model_layout(spec.prepare(image[None]))
        black = np.float32(spec.affine()[1])
        explained = self._explain(tf.convert_to_tensor(x), tf.constant(int(class_index), tf.int32),
                                  tf.constant(black)).numpy()
        if self.layer_name is None:
            cam = explained.reshape(spec.image_shape).sum(axis=-1)
        else:
            cam = np.asarray(tf.image.resize(explained[..., None], spec.image_shape[:2], method="bilinear"))[..., 0]
        cam = np.maximum(cam, 0).astype(np.float32)
        peak = cam.max()
        return cam / peak if peak > 0 else cam


def overlay(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """Blend a heat map over an image, red (weak) to yellow (strong).

    Parameters
    ----------
    image : np.ndarray, uint8, shape (H, W, C)
        C is 1 (shown as gray) or 3.
    heat : np.ndarray, float, shape (H, W)
        In [0, 1], e.g. from :meth:`Saliency.heatmap`.
    alpha : float
        Opacity of the colour where the heat is 1 (the image shows through where it is 0).

    Returns
    -------
    np.ndarray, uint8, shape (H, W, 3)
    """
    rgb = np.repeat(image, 3, axis=2) if image.shape[-1] == 1 else image
    colour = np.stack([np.ones_like(heat), heat, np.zeros_like(heat)], axis=-1) * 255.0
    mix = (1 - alpha * heat[..., None]) * rgb + alpha * heat[..., None] * colour
    return np.clip(mix, 0, 255).astype(np.uint8)
