"""Where the model looks: Grad-CAM on the last convolution, gradient x input otherwise.

Needs the Keras model itself (gradients), so it takes a
:class:`~hardcase.models.classifier.KerasClassifier`, not any
:class:`~hardcase.miner.protocols.Classifier`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from hardcase.models.classifier import KerasClassifier

__all__ = ["Saliency", "last_conv_layer", "overlay"]

_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)


def last_conv_layer(model: keras.Model) -> keras.layers.Layer | None:
    """The last convolutional layer of ``model`` (1-D, 2-D, separable or depthwise), or None."""
    for layer in reversed(model.layers):
        if isinstance(layer, _CONV):
            return layer
    return None


class Saliency:
    """Saliency maps for one classifier; builds its gradient model once.

    Parameters
    ----------
    classifier : KerasClassifier

    Attributes
    ----------
    method : str
        ``"grad-cam"`` (Grad-CAM on the model's last convolutional layer) or, for a model
        without one, ``"gradient x input"``.
    """

    def __init__(self, classifier: KerasClassifier) -> None:
        self.classifier = classifier
        model = classifier.model
        layer = last_conv_layer(model)
        self.method = "grad-cam" if layer is not None else "gradient x input"
        outputs = [model.outputs[0]] + ([layer.output] if layer is not None else [])
        self._model = keras.Model(model.inputs, outputs)

    def heatmap(self, image: np.ndarray, class_index: int) -> np.ndarray:
        """Where the model looks for ``class_index`` in one image.

        Parameters
        ----------
        image : np.ndarray, uint8, shape (H, W, C)
            Shaped as the classifier's ``spec.image_shape``.
        class_index : int
            The output (0 .. K-1) whose score is explained.

        Returns
        -------
        np.ndarray, float, shape (H, W)
            In [0, 1], 1 at the strongest; all zeros when nothing contributes.
        """
        multiplier, offset = self.classifier.spec.affine()
        x = tf.convert_to_tensor(image[None].astype(np.float32) * multiplier + offset)
        if len(self.classifier.model.inputs[0].shape) == 3:
            x = x[..., 0]
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = self._model(x, training=False)
            score = outputs[0][:, class_index]
            target = outputs[1] if self.method == "grad-cam" else x
        gradients = tape.gradient(score, target)
        if self.method == "grad-cam":
            weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
            cam = tf.nn.relu(tf.reduce_sum(weights * target, axis=-1))[0].numpy()
        else:
            product = (gradients * x)[0].numpy()
            cam = np.abs(product if product.ndim == 2 else product.sum(axis=-1))
        cam = np.asarray(tf.image.resize(cam[..., None], image.shape[:2], method="bilinear"))[..., 0]
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
