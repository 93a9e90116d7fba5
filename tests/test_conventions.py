"""The input-convention check: a model's real scaling and polarity are found before mining."""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pytest
from usermodels import coloured_shapes, train_shapes_model

from hardcase.miner.spec import PreprocessingSpec, spec_path_for
from hardcase.models.classifier import load_classifier
from hardcase.review_app.workflows.conventions import (
    ConventionError,
    candidate_specs,
    check_convention,
)
from hardcase.review_app.workflows.mining import MiningInputError, MiningOptions, mine
from hardcase.store import api
from hardcase.store.db import open_store


@pytest.fixture(scope="module")
def rescaling_model(demo_model_path, tmp_path_factory):
    """The demo CNN behind a Rescaling(1/255) layer: it wants raw 0-255 pixels. Saved without a spec."""
    demo = keras.models.load_model(demo_model_path)
    wrapped = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255), demo])
    path = tmp_path_factory.mktemp("rescaling") / "rescaling.keras"
    wrapped.save(path)
    return path


@pytest.fixture(scope="module")
def pool(mnist_small, tmp_path_factory):
    _, _, pool_x, pool_y = mnist_small
    folder = tmp_path_factory.mktemp("pool")
    np.savez(folder / "pool.npz", x=pool_x[:300], y=pool_y[:300])
    np.savez(folder / "inverted.npz", x=255 - pool_x[:300], y=pool_y[:300])
    return folder, pool_x[:300], pool_y[:300]


def _accuracy(classifier, images, labels):
    return float(np.mean(classifier.predict_proba(images).argmax(axis=1) == labels))


def test_candidate_specs_cover_every_scaling_and_polarity():
    spec = PreprocessingSpec(height=4, width=4, channels=1, scale="0-1")
    variants = candidate_specs(spec)
    assert variants[0] == spec and len(variants) == 6 == len({v.convention for v in variants})
    # the inversion is folded into the affine map: (255 - x) / 255
    m, o = spec.with_overrides(invert=True).affine()
    assert np.isclose(0 * m + o, 1.0) and np.isclose(255 * m + o, 0.0)


def test_detected_spec_takes_the_convention_the_model_really_has(rescaling_model, pool):
    _, images, labels = pool
    classifier = load_classifier(rescaling_model)  # detected: 0-1, as every model without a spec
    assert classifier.spec.convention == "0-1"
    check = check_convention(classifier, images, labels, spec_given=False)
    assert check.changed and check.spec.convention == "0-255"
    real = _accuracy(load_classifier(rescaling_model, scale="0-255"), images, labels)
    assert check.accuracies["0-255"] == pytest.approx(real) and real > 0.8
    assert check.accuracies["0-1"] < 0.3


def test_a_given_spec_far_off_stops_with_the_flag_to_pass(rescaling_model, pool):
    _, images, labels = pool
    classifier = load_classifier(rescaling_model, scale="0-1")
    with pytest.raises(ConventionError, match=r"says its input is 0-1.*0-255 gives 0\.\d+: pass --scale 0-255"):
        check_convention(classifier, images, labels, spec_given=True)


def test_a_right_spec_is_kept(demo_model_path, pool):
    _, images, labels = pool
    check = check_convention(load_classifier(demo_model_path), images, labels, spec_given=True)
    assert not check.changed and check.spec.convention == "0-1"


def test_mining_records_the_detected_convention_and_scores_with_it(rescaling_model, pool, tmp_path):
    folder, images, labels = pool
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        options = MiningOptions(run_name="r", model_path=str(rescaling_model), data_path=str(folder / "pool.npz"),
                                per_class=2, suggest=False)
        report = mine(store, options, artifacts_dir=tmp_path / "art", progress=False)
        assert "input convention detected: 0-255" in report.summary()
        real = _accuracy(load_classifier(rescaling_model, scale="0-255"), images, labels)
        assert report.accuracy == pytest.approx(real, abs=1e-9)
        with store.Session.begin() as session:
            version = api.model_version(session, api.require_run(session, "r"))
            assert version.spec["scale"] == "0-255" and version.spec["invert"] is False
        # every later command reads the recorded spec: retraining loads the model through it
        from hardcase.review_app.workflows.retrain import run_spec

        assert run_spec(store, "r").convention == "0-255"
    finally:
        store.dispose()


def test_inverted_data_is_detected_and_a_wrong_given_spec_stops_mining(demo_model_path, pool, tmp_path):
    folder, images, labels = pool
    model = tmp_path / "demo.keras"
    shutil.copy(demo_model_path, model)  # no spec beside it: the convention is detected
    store = open_store(f"sqlite:///{tmp_path / 'i.db'}")
    try:
        report = mine(store, MiningOptions(run_name="inv", model_path=str(model), data_path=str(folder / "inverted.npz"),
                                           per_class=2, suggest=False),
                      artifacts_dir=tmp_path / "art", progress=False)
        assert "input convention detected: 0-1, inverted" in report.summary() and report.accuracy > 0.8
        shutil.copy(spec_path_for(demo_model_path), spec_path_for(model))  # now the spec is given
        with pytest.raises(MiningInputError, match="pass --scale 0-1 --invert"):
            mine(store, MiningOptions(run_name="inv2", model_path=str(model), data_path=str(folder / "inverted.npz"),
                                      per_class=2, suggest=False),
                 artifacts_dir=tmp_path / "art", progress=False)
    finally:
        store.dispose()


def test_a_model_without_class_names_takes_the_folders_names(tmp_path):
    """root/circle, root/square, root/triangle and a 3-output model with no spec: the folders name the classes."""
    from PIL import Image

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "shapes.keras")
    rng = np.random.default_rng(0)
    for name in ("triangle", "circle", "square"):
        (tmp_path / "root" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "root" / name / f"{i}.png")
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        report = mine(store, MiningOptions(run_name="shapes", model_path=str(tmp_path / "shapes.keras"),
                                           data_path=str(tmp_path / "root"), per_class=1, suggest=False),
                      artifacts_dir=tmp_path / "art", progress=False)
        assert report.n_scored == 12
        with store.Session.begin() as session:
            version = api.model_version(session, api.require_run(session, "shapes"))
            assert version.class_names == ["circle", "square", "triangle"]
        # a folder the model's given class names lack names the flag that fixes it
        with pytest.raises(ValueError, match="folder 'circle' is not one of the class names.*--class-names"):
            mine(store, MiningOptions(run_name="named", model_path=str(tmp_path / "shapes.keras"),
                                      data_path=str(tmp_path / "root"), class_names=["a", "b", "c"], suggest=False),
                 artifacts_dir=tmp_path / "art", progress=False)
    finally:
        store.dispose()


def test_a_flat_input_model_mines_images_of_the_size_given(tmp_path):
    """An MLP on (None, 48) inputs mines 4x4 RGB images with --size 4x4x3; a size that does not fit is one line."""
    import subprocess
    import sys

    from hardcase.review_app.cli import _size

    assert _size("4x4x3") == (4, 4, 3) and _size("28") == (28, 28)
    model = keras.Sequential([keras.Input((48,)), keras.layers.Dense(2, activation="softmax")])
    model.save(tmp_path / "mlp.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rgb.npz", x=rng.integers(0, 256, (20, 4, 4, 3), dtype=np.uint8), y=rng.integers(0, 2, 20))

    def run(size, name):
        return subprocess.run(
            [sys.executable, "-m", "hardcase.review_app.cli", "mine", "--model", str(tmp_path / "mlp.keras"),
             "--data", str(tmp_path / "rgb.npz"), "--size", size, "--db", f"sqlite:///{tmp_path / 'f.db'}",
             "--run", name, "--per-class", "2", "--no-suggest", "--quiet"],
            capture_output=True, text=True, timeout=300,
        )

    ok = run("4x4x3", "flat")
    assert ok.returncode == 0, ok.stderr
    assert "20 scored + 0 errors = 20 samples" in ok.stdout
    wrong = run("5x5x3", "wrong")
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr


# --- channel order -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bgr_shapes_model(tmp_path_factory):
    """The 3-class colour model trained on channel-reversed images (as read by OpenCV); no spec beside it."""
    return train_shapes_model(tmp_path_factory.mktemp("bgr") / "bgr_shapes.keras", channel_order="BGR")


def test_colour_candidates_also_try_the_other_channel_order():
    spec = PreprocessingSpec(height=4, width=4, channels=3)
    variants = candidate_specs(spec)
    assert variants[0] == spec and len(variants) == 12 == len({v.convention for v in variants})
    assert {v.channel_order for v in variants} == {"RGB", "BGR"}
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    bgr = spec.with_overrides(channel_order="BGR")
    np.testing.assert_array_equal(bgr.prepare(images), spec.prepare(images)[..., ::-1])
    # grayscale has one channel order only, and a spec recorded before the field existed reads as RGB
    assert len(candidate_specs(spec.with_overrides(channels=1))) == 6
    old = {key: value for key, value in bgr.to_dict().items() if key != "channel_order"}
    assert PreprocessingSpec.from_dict(old).channel_order == "RGB"
    assert PreprocessingSpec.from_dict(bgr.to_dict()) == bgr
    with pytest.raises(ValueError, match="BGR needs 3 channels"):
        PreprocessingSpec(height=4, width=4, channels=1, channel_order="BGR")


def test_a_bgr_colour_model_is_detected_and_a_given_rgb_spec_stops(bgr_shapes_model):
    images, labels = coloured_shapes(150, seed=3)  # stored RGB, as every image source gives them
    classifier = load_classifier(bgr_shapes_model)
    assert classifier.spec.convention == "0-1"
    check = check_convention(classifier, images, labels, spec_given=False)
    assert check.changed and check.spec.convention == "0-1, BGR" and check.spec.channel_order == "BGR"
    real = _accuracy(load_classifier(bgr_shapes_model, channel_order="BGR"), images, labels)
    by_hand = float(np.mean(keras.models.load_model(bgr_shapes_model).predict(images[..., ::-1] / 255.0, verbose=0)
                            .argmax(axis=1) == labels))
    assert check.accuracies["0-1, BGR"] == pytest.approx(real) == pytest.approx(by_hand, abs=1e-9) and real > 0.9
    # red and blue swap under the wrong order: only the green third stays right
    assert check.accuracies["0-1"] < 0.5
    with pytest.raises(ConventionError, match=r'says its input is 0-1,.*0-1, BGR gives .*"channel_order": "BGR"'):
        check_convention(classifier, images, labels, spec_given=True)
    # the model trained on RGB keeps RGB
    rgb_model = train_shapes_model(bgr_shapes_model.parent / "rgb_shapes.keras")
    kept = check_convention(load_classifier(rgb_model), images, labels, spec_given=False)
    assert not kept.changed and kept.spec.channel_order == "RGB" and kept.accuracies["0-1"] > 0.9
