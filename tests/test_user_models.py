"""Users bring their own models: a matrix of tiny Keras models, saved and loaded as a user would.

Each is built here, trained for a moment where ground truth is checked, saved with
``model.save(path.keras)`` and loaded through ``load_classifier`` (safe mode) with the size
and scale a user would give; then predict, ``apply_transform`` + predict, and saliency.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from usermodels import (
    SHAPE_CLASSES,
    coloured_shapes,
    flat_mlp,
    functional_cnn_rescaling_inside,
    rgb_cnn,
    sequential_cnn,
    train_shapes_model,
)

from hardcase.models.classifier import load_classifier
from hardcase.models.saliency import GRADIENT_X_INPUT, Saliency
from hardcase.models.transforms import Transform, apply_transform

MODELS = {
    # name: (builder, load_classifier keywords a user would give, image shape, method)
    "functional CNN, Rescaling inside": (functional_cnn_rescaling_inside, {"scale": "0-255"}, (28, 28, 1),
                                         "HiResCAM on layer 'conv_a'"),
    "Sequential CNN": (sequential_cnn, {}, (28, 28, 1), "HiResCAM on layer 'conv_s'"),
    "flat MLP": (flat_mlp, {"size": (28, 28), "channels": 1}, (28, 28, 1), GRADIENT_X_INPUT),
    "RGB CNN, 3 classes": (rgb_cnn, {"size": (32, 32, 3)}, (32, 32, 3), "HiResCAM on layer 'conv_rgb'"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_a_users_model_predicts_transforms_and_explains(tmp_path, name):
    build, options, shape, method = MODELS[name]
    keras.utils.set_random_seed(0)
    model = build()
    path = tmp_path / "model.keras"
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Sequential CNN outputs logits: softmaxed with a warning
        classifier = load_classifier(path, **options)
        assert classifier.spec.image_shape == shape
        images = np.random.default_rng(1).integers(0, 256, (4, *shape), dtype=np.uint8)
        probs = classifier.predict_proba(images)
    n_classes = classifier.n_classes
    assert probs.shape == (4, n_classes)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    # the same model fed by hand gives the same probabilities: the spec's scale and layout are right
    scale = 1.0 if options.get("scale") == "0-255" else 1 / 255
    by_hand = model.predict(images.reshape(4, *model.inputs[0].shape[1:]).astype(np.float32) * scale, verbose=0)
    if classifier.outputs_are_logits:
        by_hand = keras.ops.convert_to_numpy(keras.ops.softmax(by_hand))
    np.testing.assert_allclose(probs, by_hand, atol=1e-5)

    rotated = apply_transform(images[0], Transform(rotate=30, perspective=0.1))
    assert rotated.shape == shape
    assert classifier.predict_proba(rotated[None]).shape == (1, n_classes)

    saliency = Saliency(classifier)
    assert saliency.method == method
    heat = saliency.heatmap(rotated, int(probs[0].argmax()))
    assert heat.shape == shape[:2] and np.all(np.isfinite(heat))
    assert heat.min() >= 0 and heat.max() <= 1


def test_an_rgb_model_learns_coloured_shapes_and_looks_at_them(tmp_path):
    train_shapes_model(tmp_path / "shapes.keras")
    classifier = load_classifier(tmp_path / "shapes.keras", size=(32, 32, 3), class_names=SHAPE_CLASSES)
    test_images, test_labels = coloured_shapes(60, seed=1)
    assert np.mean(classifier.predict_proba(test_images).argmax(1) == test_labels) >= 0.8
    saliency = Saliency(classifier)
    shape_mask = np.any(test_images != test_images[:, :1, :1], axis=-1)
    heats = np.stack([saliency.heatmap(image, int(label)) for image, label in zip(test_images, test_labels)])
    # the shapes cover a few percent of the image; the map puts far more than that on them
    assert (heats * shape_mask).sum() / heats.sum() > 2 * shape_mask.mean()


def test_flat_models_without_a_size_assume_a_square_grayscale_image(tmp_path):
    flat_mlp().save(tmp_path / "mlp.keras")
    with pytest.warns(UserWarning, match=r"flat input of D = 784 values: assuming 28x28x1"):
        classifier = load_classifier(tmp_path / "mlp.keras")
    assert classifier.spec.image_shape == (28, 28, 1)
    keras.Sequential([keras.Input((300,)), keras.layers.Dense(2, activation="softmax")]).save(tmp_path / "odd.keras")
    with pytest.raises(ValueError, match=r"D = 300 values.*pass --size"):
        load_classifier(tmp_path / "odd.keras")
    rgb = load_classifier(tmp_path / "odd.keras", size=(10, 10, 3))
    assert rgb.spec.image_shape == (10, 10, 3)
    assert rgb.predict_proba(np.zeros((2, 10, 10, 3), np.uint8)).shape == (2, 2)


@pytest.mark.parametrize("options, message", [
    ({"size": (32, 32)}, r"images of 32x32x1 \(= 1024 values\) do not fit the model's input \(None, 28, 28, 1\)"),
    ({"channels": 3}, r"images of 28x28x3 .* do not fit the model's input \(None, 28, 28, 1\)"),
])
def test_a_size_that_does_not_fit_the_model_is_one_clear_error_at_load(tmp_path, options, message):
    sequential_cnn().save(tmp_path / "cnn.keras")
    with pytest.raises(ValueError, match=message) as raised:
        load_classifier(tmp_path / "cnn.keras", **options)
    assert "\n" not in str(raised.value)


def test_a_flat_size_that_does_not_add_up_is_refused(tmp_path):
    flat_mlp().save(tmp_path / "mlp.keras")
    with pytest.raises(ValueError, match=r"images of 32x32x1 \(= 1024 values\) do not fit the model's input \(None, 784\)"):
        load_classifier(tmp_path / "mlp.keras", size=(32, 32))
    with pytest.raises(ValueError, match="size says 3 channels but channels is 1"):
        load_classifier(tmp_path / "mlp.keras", size=(28, 28, 3), channels=1)


def test_retraining_a_logits_model_and_a_flat_model_learns(tmp_path):
    """train_classifier (which retrain uses) feeds a flat model flat vectors and trains a model without
    softmax on its logits: both learn the coloured shapes' classes (by colour) from scratch."""
    from hardcase.miner.spec import PreprocessingSpec
    from hardcase.models.retrain import predict_labels
    from hardcase.models.training import train_classifier

    images, labels = coloured_shapes(300, seed=4)
    spec = PreprocessingSpec(height=32, width=32, channels=3, class_names=SHAPE_CLASSES)
    logits_cnn = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                                   keras.layers.GlobalMaxPooling2D(), keras.layers.Dense(3)])
    flat = keras.Sequential([keras.Input((32 * 32 * 3,)), keras.layers.Dense(3, activation="softmax")])
    for model in (logits_cnn, flat):
        train_classifier(model, images, labels, spec, epochs=6, batch_size=32, learning_rate=1e-2)
        assert np.mean(predict_labels(model, spec, images) == labels) > 0.9
