"""models/: spec, safe loading of every format, outputs, transforms."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from hardcase.miner.protocols import Classifier
from hardcase.miner.spec import PreprocessingSpec, as_uint8, spec_path_for
from hardcase.models.classifier import (
    KerasClassifier,
    ModelOutputError,
    detect_spec,
    file_hash,
    load_classifier,
)
from hardcase.models.transforms import (
    Transform,
    applied_shift,
    apply_transform,
    apply_transform_pipeline,
    augmentation_pipeline,
    snap_shift,
    tilt_corners,
    transform_homography,
)


# --- spec ------------------------------------------------------------------------------
def test_spec_round_trip_and_scaling(tmp_path):
    spec = PreprocessingSpec(height=28, width=28, channels=1, scale="-1-1", class_names=("a", "b"))
    path = tmp_path / "m.spec.json"
    spec.save(path)
    assert PreprocessingSpec.load(path) == spec
    pixels = np.array([[[[0]], [[255]]]], dtype=np.uint8)
    np.testing.assert_allclose(spec.prepare(pixels).ravel(), [-1.0, 1.0])
    np.testing.assert_allclose(spec.with_overrides(scale="0-1").prepare(pixels).ravel(), [0.0, 1.0])
    np.testing.assert_allclose(spec.with_overrides(scale="0-255").prepare(pixels).ravel(), [0.0, 255.0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"scale": "0-2"}, "scale must be one of"),
        ({"height": 0}, "height must be a positive integer"),
        ({"class_names": ("a", "a")}, "duplicates"),
    ],
)
def test_spec_rejects_bad_values(kwargs, message):
    base = {"height": 28, "width": 28, "channels": 1}
    with pytest.raises(ValueError, match=message):
        PreprocessingSpec(**{**base, **kwargs})


def test_as_uint8_reads_0_1_and_0_255_floats():
    assert as_uint8(np.array([0.0, 0.5, 1.0])).tolist() == [0, 128, 255]
    assert as_uint8(np.array([0.0, 128.0, 300.0])).tolist() == [0, 128, 255]
    assert as_uint8(np.array([-3.0, 2.5, 3.5])).tolist() == [0, 2, 4]  # clipped, rounded half to even
    pixels = np.array([[1, 2], [3, 4]], np.uint8)
    assert as_uint8(pixels) is pixels
    out = as_uint8(np.zeros((2, 3, 4, 1), np.float64))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4, 1)
    with pytest.raises(TypeError, match="images must be numeric"):
        as_uint8(np.array(["a"]))


def test_spec_and_protocol_live_on_the_numpy_ground_floor():
    code = ("import sys; import hardcase.miner.spec, hardcase.miner.protocols; "
            "bad = sorted(m for m in ('tensorflow', 'keras', 'gradio', 'sqlalchemy', 'hardcase.models') "
            "if m in sys.modules); print(bad); sys.exit(bool(bad))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# --- loading -----------------------------------------------------------------------------
def test_demo_model_loads_with_its_spec(demo_model_path, demo_classifier):
    assert isinstance(demo_classifier, KerasClassifier)
    assert isinstance(demo_classifier, Classifier)  # the protocol the workflows are written against
    assert spec_path_for(demo_model_path).exists()
    assert demo_classifier.spec.class_names == tuple(str(k) for k in range(10))
    assert demo_classifier.embedding_layer == "embedding"
    assert len(file_hash(demo_model_path)) == 64


def test_demo_model_is_accurate_and_embeds(demo_classifier, mnist_small):
    _, _, pool_x, pool_y = mnist_small
    probs = demo_classifier.predict_proba(pool_x)
    assert probs.shape == (1000, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert np.mean(probs.argmax(1) == pool_y) > 0.9
    embeddings = demo_classifier.embed(pool_x[:7])
    assert embeddings.shape == (7, 128)


def test_rotating_90_degrees_breaks_correct_predictions(demo_classifier, mnist_small):
    """Ground truth: upright 2-6s the model gets right become wrong when rotated 90 degrees."""
    _, _, pool_x, pool_y = mnist_small
    digits = np.isin(pool_y, [2, 3, 4, 5, 6])
    images, labels = pool_x[digits], pool_y[digits]
    upright = demo_classifier.predict_proba(images)
    right = (upright.argmax(1) == labels) & (upright.max(1) > 0.9)
    assert right.sum() > 300
    rotated = np.stack([apply_transform(image, Transform(rotate=90)) for image in images[right]])
    still_right = demo_classifier.predict_proba(rotated).argmax(1) == labels[right]
    assert still_right.mean() < 0.1


def test_h5_and_savedmodel_give_the_same_probabilities(tmp_path, demo_model_path, mnist_small):
    _, _, pool_x, _ = mnist_small
    model = keras.saving.load_model(demo_model_path)
    reference = load_classifier(demo_model_path).predict_proba(pool_x[:32])

    model.save(tmp_path / "legacy.h5")
    from_h5 = load_classifier(tmp_path / "legacy.h5")
    np.testing.assert_allclose(from_h5.predict_proba(pool_x[:32]), reference, atol=1e-5)

    model.export(tmp_path / "saved", format="tf_saved_model")
    from_saved = load_classifier(tmp_path / "saved", class_names=[str(k) for k in range(10)], trust_model=True)
    np.testing.assert_allclose(from_saved.predict_proba(pool_x[:32]), reference, atol=1e-5)
    assert from_saved.spec.image_shape == (28, 28, 1)


def test_spec_is_detected_and_overridable(tmp_path):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    x = keras.layers.Dense(8, name="features")(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    model.save(tmp_path / "rgb.keras")
    spec = detect_spec(model)
    assert spec.image_shape == (32, 32, 3) and spec.n_classes == 4
    classifier = load_classifier(tmp_path / "rgb.keras", scale="-1-1", class_names=["a", "b", "c", "d"])
    assert classifier.spec.scale == "-1-1" and classifier.class_names == ("a", "b", "c", "d")
    assert classifier.embedding_layer == "features"
    with pytest.raises(ValueError, match="has 4 outputs but the spec names 3"):
        load_classifier(tmp_path / "rgb.keras", class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        load_classifier(tmp_path / "rgb.keras", embedding_layer="nope")


def test_load_classifier_builds_with_the_given_spec_and_checks_its_class_count(tmp_path, demo_model_path):
    stored = PreprocessingSpec.load(spec_path_for(demo_model_path))
    named = stored.with_overrides(class_names=[f"digit {k}" for k in range(10)], scale="0-255")
    classifier = load_classifier(demo_model_path, spec=named)
    assert classifier.spec == named and classifier.class_names[3] == "digit 3"
    # overrides apply on top of the given spec
    assert load_classifier(demo_model_path, spec=named, scale="0-1").spec == named.with_overrides(scale="0-1")
    three = stored.with_overrides(class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="model has 10 outputs but the spec names 3 classes"):
        load_classifier(demo_model_path, spec=three)
    with pytest.raises(ValueError, match="model has 10 outputs but the spec names 3 classes"):
        KerasClassifier(classifier.model, three)
    with pytest.raises(TypeError, match="spec must be a PreprocessingSpec"):
        load_classifier(demo_model_path, spec=stored.to_dict())


def test_the_spec_of_a_classifier_is_read_only(demo_classifier):
    spec = demo_classifier.spec
    with pytest.raises(AttributeError):
        demo_classifier.spec = spec.with_overrides(class_names=["a", "b"])
    with pytest.raises(AttributeError):
        demo_classifier.model = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        demo_classifier.spec.class_names = ("a", "b")
    assert demo_classifier.spec is spec


def test_unsafe_lambda_model_is_refused(tmp_path):
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Lambda(lambda t: t * 2)(inputs)
    x = keras.layers.Flatten()(x)
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)).save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="(?i)unsafe|safe_mode|lambda"):
        load_classifier(tmp_path / "lambda.keras")


def test_missing_and_unsupported_model_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="model not found"):
        load_classifier(tmp_path / "absent.keras")
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported model file"):
        load_classifier(tmp_path / "weights.pt")


def _linear_model(bias: float) -> keras.Model:
    inputs = keras.Input((2, 2, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(3, name="hidden")(x)
    out = keras.layers.Dense(3, name="logits", bias_initializer=keras.initializers.Constant(bias))(x)
    return keras.Model(inputs, out)


def test_logits_are_detected_and_softmaxed():
    classifier = KerasClassifier(_linear_model(0.0), PreprocessingSpec(height=2, width=2, channels=1))
    images = np.random.default_rng(0).integers(0, 255, (5, 2, 2, 1), dtype=np.uint8)
    with pytest.warns(UserWarning, match="logits"):
        probs = classifier.predict_proba(images)
    assert classifier.outputs_are_logits
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(probs >= 0)


def test_nan_outputs_stop_with_the_batch_named():
    model = _linear_model(float("nan"))
    classifier = KerasClassifier(model, PreprocessingSpec(height=2, width=2, channels=1))
    images = np.zeros((4, 2, 2, 1), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ModelOutputError, match="NaN or infinite in batch starting at row 0, row 0"):
            classifier.predict_proba(images, batch_size=2)


def test_wrong_image_shape_is_a_clear_error(demo_classifier):
    with pytest.raises(ValueError, match=r"images have shape \(32, 32, 1\) but the model expects \(28, 28, 1\)"):
        demo_classifier.predict_proba(np.zeros((2, 32, 32, 1), np.uint8))


# --- transforms ----------------------------------------------------------------------------
def _blob() -> np.ndarray:
    image = np.zeros((28, 28, 1), np.uint8)
    image[4:8, 18:24] = 255
    return image


def test_rotation_matches_numpy_rot90_counter_clockwise():
    image = _blob()
    np.testing.assert_array_equal(apply_transform(image, Transform(rotate=90)), np.rot90(image, k=1))
    np.testing.assert_array_equal(apply_transform(image, Transform(rotate=-90)), np.rot90(image, k=-1))
    assert apply_transform(image, Transform()) is image


def test_tilt_perspective_is_deterministic_and_grows_with_strength():
    image = (np.add.outer(np.arange(28), 2 * np.arange(28)) * 3).astype(np.uint8)[..., None]
    weak = apply_transform(image, Transform(perspective=0.05, direction=30))
    strong = apply_transform(image, Transform(perspective=0.25, direction=30))
    np.testing.assert_array_equal(weak, apply_transform(image, Transform(perspective=0.05, direction=30)))

    def change(out):
        return np.abs(out.astype(int) - image.astype(int)).mean()

    assert 0 < change(weak) < change(strong)
    other_way = apply_transform(image, Transform(perspective=0.25, direction=210))
    assert not np.array_equal(strong, other_way)
    corners = tilt_corners((28, 28), 0.2, 0.0)
    # direction 0: the right edge (tr, br) moves toward the centre line, the left edge stays
    assert corners[1, 1] > 0 and corners[2, 1] < 28
    np.testing.assert_allclose(corners[[0, 3]], [[0, 0], [0, 28]])


def test_shift_moves_content_by_whole_pixels_after_scaling_about_the_centre():
    image = np.zeros((28, 28, 1), np.uint8)
    image[4, 4] = 255
    moved = apply_transform(image, Transform(scale=0.5, shift_x=0.25, shift_y=-0.25))
    # (4, 4) -> centre 13.5 + 0.5 * (4 - 13.5) = 8.75, then +7 px right and 7 px up
    assert np.argwhere(moved[..., 0] > 0).tolist() == [[2, 16]]
    assert Transform(shift_x=0.1).describe() == "shifting 10% right"


def test_functional_transform_is_pixel_for_pixel_the_albumentations_pipeline(rng):
    for n in range(120):
        shape = (28, 28, 1) if n % 2 else (20, 31, 3)
        image = rng.integers(0, 256, size=shape, dtype=np.uint8)
        transform = Transform(
            rotate=float(rng.uniform(-90, 90)) * (rng.random() < 0.7),
            perspective=float(rng.uniform(0, 0.35)) * (rng.random() < 0.5),
            direction=float(rng.uniform(0, 360)),
            scale=float(rng.uniform(0.5, 2)) if rng.random() < 0.5 else 1.0,
            shift_x=float(rng.uniform(-0.3, 0.3)) * (rng.random() < 0.5),
            shift_y=float(rng.uniform(-0.3, 0.3)) * (rng.random() < 0.5),
            aspect=float(rng.uniform(0.6, 1.6)) if rng.random() < 0.4 else 1.0,
            shear=float(rng.uniform(-30, 30)) * (rng.random() < 0.4),
        )
        np.testing.assert_array_equal(apply_transform(image, transform), apply_transform_pipeline(image, transform),
                                      err_msg=str(transform))


def test_transform_homography_maps_content_where_apply_transform_puts_it(rng):
    # a 3x3 bright square far from the border: its centroid after apply_transform is where the
    # homography sends the square's centre, to within interpolation (a tenth of a pixel)
    image = np.zeros((28, 28), np.uint8)
    image[12:15, 9:12] = 255
    centre = np.array([10.0, 13.0, 1.0])
    for n in range(60):
        transform = Transform(
            rotate=float(rng.uniform(-60, 60)),
            perspective=float(rng.uniform(0, 0.25)) * (n % 2),
            direction=float(rng.uniform(0, 360)),
            scale=float(rng.uniform(0.8, 1.2)),
            shift_x=snap_shift(float(rng.uniform(-0.1, 0.1)), 28),
            aspect=float(rng.uniform(0.8, 1.25)),
            shear=float(rng.uniform(-15, 15)),
        )
        out = apply_transform(image, transform).astype(np.float64)
        ys, xs = np.mgrid[0:28, 0:28]
        got = np.array([(out * xs).sum(), (out * ys).sum()]) / out.sum()
        mapped = transform_homography(transform, (28, 28)) @ centre
        np.testing.assert_allclose(got, mapped[:2] / mapped[2], atol=0.15, err_msg=str(transform))
    assert np.array_equal(transform_homography(Transform(), (28, 28)), np.eye(3))


@pytest.mark.parametrize("kwargs", [{"rotate": 200}, {"perspective": 0.9}, {"scale": 0}, {"rotate": float("nan")},
                                    {"shift_x": 0.7}, {"shift_y": -0.6}, {"aspect": 3.0}, {"shear": 60}])
def test_transform_validation(kwargs):
    with pytest.raises(ValueError, match="transform"):
        Transform(**kwargs)


def test_transform_dict_round_trip_and_description():
    transform = Transform(rotate=-40, perspective=0.1, direction=90, scale=1.1, shift_y=0.05)
    assert Transform.from_dict(transform.to_dict()) == transform
    assert Transform.from_dict({"rotate": 5}) == Transform(rotate=5)  # evidence stored before shifts existed
    assert transform.describe().startswith("rotating -40° and tilting 0.10 toward 90°")
    with pytest.raises(ValueError, match="unknown transform keys"):
        Transform.from_dict({"skew": 3})
    skewed = Transform(aspect=1.2, shear=-8)
    assert Transform.from_dict(skewed.to_dict()) == skewed and not skewed.is_identity
    assert skewed.describe() == "stretching wider by 1.20 and shearing -8°"
    assert Transform().describe() == "no transform"


def test_augmentation_pipeline_varies_images():
    image = _blob()[..., 0]
    for kwargs in ({"rotate_limit": 30, "perspective_limit": 0.1}, {"shift_limit": 0.2}, {"shear_limit": 15},
                   {"aspect_limit": 0.3}):
        pipeline = augmentation_pipeline(**kwargs, p=1.0)
        outputs = {pipeline(image=image)["image"].tobytes() for _ in range(6)}
        assert len(outputs) > 3


def test_snapped_shifts_move_the_rounded_number_of_pixels():
    image = np.zeros((28, 28, 1), np.uint8)
    image[14, 14] = 255
    for share in (0.0714, 0.107, -0.11, -0.2143, 0.25):
        snapped = snap_shift(share, 28)
        moved = apply_transform(image, Transform(shift_x=snapped))
        assert np.argwhere(moved[..., 0] > 0).tolist() == [[14, 14 + round(share * 28)]], share
        assert applied_shift(snapped, 28) == round(share * 28) / 28
    assert snap_shift(0.01, 28) == 0.0  # less than half a pixel does nothing, and says so


def test_training_shows_progress_over_every_step(capsys):
    """Long training is not silent: a bar over epochs x steps, on stderr."""
    import keras

    from hardcase.miner.spec import PreprocessingSpec
    from hardcase.models.training import train_classifier

    spec = PreprocessingSpec(height=8, width=8, channels=1, scale="0-1", class_names=("a", "b"))
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    train_classifier(model, images, rng.integers(0, 2, 40), spec, epochs=2, batch_size=10, progress="training x")
    err = capsys.readouterr().err
    assert "training x" in err and "8/8" in err
    train_classifier(model, images, rng.integers(0, 2, 40), spec, epochs=1, batch_size=10)
    assert "training x" not in capsys.readouterr().err


@pytest.mark.parametrize("transform", [Transform(rotate=45), Transform(perspective=0.3, direction=20),
                                       Transform(scale=0.6, shear=20)])
def test_uncovered_borders_take_the_colour_of_the_image_frame(transform):
    """A uniform coloured background stays that colour where a warp uncovers the border: no black corners."""
    background = (40, 160, 220)
    image = np.zeros((32, 32, 3), np.uint8)
    image[:] = background
    image[10:22, 12:20] = (250, 250, 0)
    out = apply_transform(image, transform)
    assert not np.any(out.sum(axis=-1) < 100)  # no black (or dark) pixel anywhere
    for corner in (out[0, 0], out[0, -1], out[-1, 0], out[-1, -1]):
        assert corner.tolist() == list(background)
    np.testing.assert_array_equal(out, apply_transform_pipeline(image, transform))
    gray = np.full((28, 28, 1), 90, np.uint8)
    assert apply_transform(gray, transform)[0, 0, 0] == 90
    # the explicit fill still wins
    assert apply_transform(image, Transform(rotate=45), fill=0)[0, 0].tolist() == [0, 0, 0]


def test_border_fill_is_the_frame_median_per_channel():
    from hardcase.models.transforms import border_fill

    image = np.zeros((6, 6, 3), np.uint8)
    image[:] = (10, 20, 30)
    image[0, :4] = 255  # an object crossing a third of the frame does not move the median
    assert border_fill(image) == (10.0, 20.0, 30.0)
    assert border_fill(np.zeros((6, 6), np.uint8)) == 0.0
    assert border_fill(np.full((6, 6, 1), 7, np.uint8)) == 7.0
    # stacked images (more than 4 channels) each keep their own fill
    stacked = np.stack([np.full((9, 9), v, np.uint8) for v in (0, 50, 100, 150, 200)], axis=-1)
    rotated = apply_transform(stacked, Transform(rotate=30))
    assert rotated[0, 0].tolist() == [0, 50, 100, 150, 200]


def test_a_savedmodel_that_writes_files_is_refused_without_trust(tmp_path, mnist_small, capsys):
    """A SavedModel's graph runs as it is (nothing like safe_mode): one whose serving function
    writes a file on the host is refused by mine and monitor unless --trust-model is given."""
    import tensorflow as tf

    from hardcase.models.classifier import UntrustedModelError
    from hardcase.review_app.cli import main

    marker = tmp_path / "pwned.txt"

    class Writer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)])
        def serve(self, x):
            tf.io.write_file(str(marker), "written by the model")
            return {"probs": tf.nn.softmax(tf.zeros([tf.shape(x)[0], 10]))}

    module = Writer()
    tf.saved_model.save(module, str(tmp_path / "writer"), signatures={"serving_default": module.serve})
    _, _, pool_x, pool_y = mnist_small
    np.savez(tmp_path / "data.npz", x=pool_x[:20], y=pool_y[:20])
    with pytest.raises(UntrustedModelError, match="pass --trust-model"):
        load_classifier(tmp_path / "writer")
    for command in (["mine", "--data", str(tmp_path / "data.npz")],
                    ["monitor", "--reference", str(tmp_path / "data.npz"), "--stream", str(tmp_path / "data.npz")]):
        code = main([*command, "--model", str(tmp_path / "writer"), "--db", f"sqlite:///{tmp_path / 'h.db'}",
                     "--run", "r", "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "is a SavedModel" in err and "--trust-model" in err and len(err.splitlines()) == 1
    assert not marker.exists()
    # trusted, it loads and its graph runs (the file it writes is the proof)
    load_classifier(tmp_path / "writer", trust_model=True).predict_proba(pool_x[:2])
    assert marker.read_text() == "written by the model"
