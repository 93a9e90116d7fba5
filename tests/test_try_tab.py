"""The Try tab follows the run's model: colour stays colour, the prompt and size come from its spec,
and an upload is predicted at once."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from usermodels import SHAPE_CLASSES, coloured_shapes, train_shapes_model

from hardcase.miner.spec import PreprocessingSpec
from hardcase.models.transforms import Transform
from hardcase.review_app.workflows.mining import MiningOptions, mine
from hardcase.review_app.workflows.probe import to_model_input, try_prompt
from hardcase.review_app.workflows.review import ReviewService
from hardcase.store.db import open_store

MNIST = PreprocessingSpec(height=28, width=28, channels=1, class_names=tuple("0123456789"))
SHAPES = PreprocessingSpec(height=32, width=32, channels=3, class_names=SHAPE_CLASSES)
IDENTITY = (0, 0, 0, 1, 0, 0, 1, 0)  # rotate, perspective, direction, scale, shift x, shift y, aspect, shear


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """A run of the coloured-shapes model (no spec beside it; the class names given) on 60 images."""
    folder = tmp_path_factory.mktemp("try")
    model = train_shapes_model(folder / "shapes.keras")
    images, labels = coloured_shapes(60, seed=2)
    np.savez(folder / "pool.npz", x=images, y=labels)
    store = open_store(f"sqlite:///{folder / 't.db'}")
    mine(store, MiningOptions(run_name="shapes", model_path=str(model), data_path=str(folder / "pool.npz"),
                              class_names=list(SHAPE_CLASSES), per_class=2, suggest=False),
         artifacts_dir=folder / "art", progress=False)
    yield store, folder
    store.dispose()


@pytest.fixture(scope="module")
def handlers(shapes_run):
    from hardcase.review_app.app.handlers.try_tab import TryHandlers

    return TryHandlers(ReviewService(shapes_run[0]))


def _red_disc_on_white(side: int = 320) -> np.ndarray:
    """An RGB photo-sized image: a red disc on a light grey background."""
    image = np.full((side, side, 3), 200, np.uint8)
    ys, xs = np.mgrid[0:side, 0:side]
    image[(ys - side // 2) ** 2 + (xs - side // 3) ** 2 <= (side // 8) ** 2] = (255, 0, 0)
    return image


def test_the_prompt_says_digit_only_for_a_digit_model():
    digits = try_prompt(MNIST)
    assert digits.label.startswith("Draw a digit") and digits.centring and not digits.colour
    shapes = try_prompt(SHAPES)
    assert "digit" not in shapes.label + shapes.help + shapes.empty and "MNIST" not in shapes.help
    assert "one of: blue, green, red" in shapes.label and "32x32 colour" in shapes.help
    assert not shapes.centring and shapes.colour
    # a 64x64 grayscale model is not MNIST: no centring offered, its own size said
    other = try_prompt(PreprocessingSpec(height=64, width=64, channels=1, class_names=("a", "b")))
    assert not other.centring and "64x64 grayscale" in other.help


def test_a_colour_model_gets_colour_input_at_its_size():
    red = to_model_input(_red_disc_on_white(), SHAPES, normalize=True)  # the box does not apply to colour
    assert red.shape == (32, 32, 3) and red.dtype == np.uint8
    reddest = red[np.unravel_index(np.argmax(red[..., 0].astype(int) - red[..., 2]), red.shape[:2])]
    assert reddest[0] > 200 and reddest[1] < 60 and reddest[2] < 60  # still red, not grey
    assert tuple(red[0, -1]) == (200, 200, 200)  # the background is neither inverted nor cropped away
    # RGBA: transparency becomes white, as the sketchpad shows it
    rgba = np.zeros((100, 100, 4), np.uint8)
    rgba[40:60, 40:60] = (0, 0, 255, 255)
    blue = to_model_input(rgba, SHAPES)
    assert tuple(blue[0, 0]) == (255, 255, 255) and tuple(blue[16, 16]) == (0, 0, 255)
    # a grayscale model of another size: its size, no MNIST crop (the stroke keeps its place)
    stroke = np.zeros((128, 128), np.uint8)
    stroke[:, :16] = 255
    grey = to_model_input(stroke, PreprocessingSpec(height=64, width=64, channels=1), normalize=True)
    assert grey.shape == (64, 64, 1) and grey[:, :8].min() > 200 and grey[:, 16:].max() == 0


def test_the_tab_follows_the_chosen_runs_spec(handlers):
    sketch, normalize, help_text = handlers.describe("shapes")
    assert sketch["label"].startswith("Draw one of: blue, green, red") and "digit" not in sketch["label"]
    assert sketch["brush"].color_mode == "defaults" and len(sketch["brush"].colors) > 1  # colours to draw with
    assert normalize["visible"] is False and normalize["value"] is False
    assert "32x32 colour" in help_text
    image, probabilities, note = handlers.predict("shapes", None, True, *IDENTITY)
    assert image is None and note == "Draw one of: blue, green, red or upload an image."


def test_an_upload_is_predicted_in_colour_at_once(handlers, shapes_run, tmp_path):
    _, folder = shapes_run
    for label, name in enumerate(SHAPE_CLASSES):
        images, labels = coloured_shapes(30, seed=5)
        photo = np.repeat(np.repeat(images[list(labels).index(label)], 10, axis=0), 10, axis=1)
        path = tmp_path / f"{name}.png"
        Image.fromarray(photo).save(path)
        sketch = handlers.upload(str(path))
        model_view, probabilities, note = handlers.predict("shapes", sketch, True, *IDENTITY)
        assert max(probabilities, key=probabilities.get) == name, (name, probabilities)
        assert note.startswith(f"**{name}**") and note.endswith("as drawn")
        assert model_view.shape == (256, 256, 3)  # the 32x32 colour input, upscaled crisply
    # the model sees what the review tab's model sees: the same probabilities as predicting the image itself
    service = handlers.service
    direct = service.classifier_for_run("shapes").predict_proba(images[:1])[0]
    tried = handlers.models.predict("shapes", images[0], Transform()).probabilities
    np.testing.assert_allclose([tried[name] for name in SHAPE_CLASSES], direct, atol=1e-5)


def test_the_upload_event_is_followed_by_a_prediction(shapes_run):
    """The upload's only output is the sketchpad; a private step after it fills the prediction."""
    from hardcase.review_app.app import build_app

    app = build_app(ReviewService(shapes_run[0]), run_name="shapes")
    config = app.get_config_file()
    by_id = {dep["id"]: dep for dep in config["dependencies"]}
    upload = next(dep for dep in by_id.values() if dep["api_name"] == "try_upload")
    predict = next(dep for dep in by_id.values() if dep["api_name"] == "try_predict")
    followers = [dep for dep in by_id.values() if dep.get("trigger_after") == upload["id"]]
    assert len(followers) == 1 and followers[0]["outputs"] == predict["outputs"]
    assert followers[0]["inputs"] == predict["inputs"]
    # the tab opened on the shapes run already asks for shapes, in colour
    labels = {c["props"].get("elem_id"): c["props"] for c in config["components"]}
    assert labels["try-sketch"]["label"].startswith("Draw one of: blue, green, red")
    assert labels["try-normalize"]["visible"] is False
