"""Where the model looks: Grad-CAM on the last convolution, gradient x input otherwise."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from hardcase.models.classifier import Classifier

_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)


def last_conv_layer(model: keras.Model) -> keras.layers.Layer | None:
    """The last convolutional layer of ``model``, or None."""
    for layer in reversed(model.layers):
        if isinstance(layer, _CONV):
            return layer
    return None


class Saliency:
    """Saliency maps for one classifier; builds its gradient model once."""

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier
        model = classifier.model
        layer = last_conv_layer(model)
        self.method = "grad-cam" if layer is not None else "gradient x input"
        outputs = [model.outputs[0]] + ([layer.output] if layer is not None else [])
        self._model = keras.Model(model.inputs, outputs)

    def heatmap(self, image: np.ndarray, class_index: int) -> np.ndarray:
        """A map in [0, 1] of shape (H, W) for uint8 ``image`` (H, W, C) and the given class."""
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
    """Blend a [0, 1] heat map (H, W) over a uint8 image (H, W, C) as red-yellow; returns RGB uint8."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[-1] == 1 else image
    colour = np.stack([np.ones_like(heat), heat, np.zeros_like(heat)], axis=-1) * 255.0
    mix = (1 - alpha * heat[..., None]) * rgb + alpha * heat[..., None] * colour
    return np.clip(mix, 0, 255).astype(np.uint8)
