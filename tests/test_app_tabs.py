"""Gallery, Try, Triage and Export tabs: every endpoint through gradio_client on the demo store."""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest
from apputil import demo_store, served_app
from PIL import Image

from hardcase.miner.spec import PreprocessingSpec
from hardcase.review_app.workflows.probe import EmptyImageError, to_model_input
from hardcase.store import api
from hardcase.store.export import read_rows

PER_CLASS = 3
MNIST = PreprocessingSpec(height=28, width=28, channels=1, class_names=tuple("0123456789"))
TAB_ENDPOINTS = {"/gallery", "/gallery_classes", "/gallery_select", "/open_in_review", "/try_predict",
                 "/try_upload", "/try_reset", "/triage", "/open_disagreement", "/retrain_report", "/export",
                 "/export_image_folder"}


@pytest.fixture(scope="module")
def served(tmp_path_factory, demo_model_path):
    """The demo run served by the full app, with a gradio_client on it."""
    from gradio_client import Client

    from hardcase.review_app.workflows.review import ReviewService

    folder = tmp_path_factory.mktemp("tabs")
    store = demo_store(folder, demo_model_path, per_class=PER_CLASS)
    with served_app(ReviewService(store)) as app:
        client = Client(app.local_url, verbose=False)
        yield store, client, folder
        client.close()
    store.dispose()


@pytest.fixture(scope="module")
def reviewed(served):
    """Alice and Bob review three candidates: they agree on two and disagree on one."""
    store, client, _ = served
    with store.Session.begin() as session:
        run = api.require_run(session, "demo")
        ids = list(session.scalars(select_candidates(run.id)))[:3]
    decisions = {"alice": [("augment", None), ("rare", None), ("mislabel", "7")],
                 "bob": [("augment", None), ("augment", None), ("mislabel", "7")]}
    for reviewer, judged in decisions.items():
        for candidate_id, (cause, label) in zip(ids, judged):
            with store.Session.begin() as session:
                version = api.get_candidate(session, candidate_id).version
            client.predict(candidate_id, cause, label, "", 20 if cause == "augment" else 0, 0, 0, 1, version,
                           reviewer, api_name="/submit_review")
    return ids


def select_candidates(run_id):
    from sqlalchemy import select

    from hardcase.store.schema import Candidate

    return select(Candidate.id).where(Candidate.run_id == run_id).order_by(Candidate.rank)


def _canvas_png(path, image):
    Image.fromarray(image).save(path)
    return path


def _sketch(path):
    from gradio_client import handle_file

    return {"background": None, "layers": [], "composite": handle_file(str(path)), "id": None}


def test_every_tab_endpoint_is_named(served):
    _, client, _ = served
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert TAB_ENDPOINTS <= named


# --- Gallery --------------------------------------------------------------------------------------
def test_gallery_shows_candidates_per_class_with_captions(served, reviewed):
    store, client, _ = served
    items, summary = client.predict("demo", "any", "all", api_name="/gallery")
    assert len(items) == 10 * PER_CLASS and "30 of 30" in summary
    captions = [item["caption"] for item in items]
    assert all(re.match(r"#\d+ · \d→\d", c) for c in captions)
    assert any("✔ mislabel→7" in c for c in captions)  # decided cause and label shown

    items, _ = client.predict("demo", "3", "all", api_name="/gallery")
    shown = [int(item["caption"][1:].split(" ")[0]) for item in items]
    with store.Session.begin() as session:
        assert {api.get_candidate(session, k).class_name for k in shown} == {"3"} and len(shown) == PER_CLASS
    items, summary = client.predict("demo", "any", "reviewed", api_name="/gallery")
    assert len(items) == len(reviewed)
    classes = client.predict("demo", api_name="/gallery_classes")
    assert classes["value"] == "any" and [c[0] for c in classes["choices"]] == ["any", *"0123456789"]


def test_gallery_opens_a_candidate_in_the_review_tab(served, reviewed):
    from gradio_client.exceptions import AppError

    _, client, _ = served
    assert tuple(client.predict(reviewed[1], api_name="/open_in_review")) == (reviewed[1], "demo")
    with pytest.raises(AppError, match="no candidate with id 99999"):
        client.predict(99999, api_name="/open_in_review")
    with pytest.raises(AppError, match="select a candidate in the gallery"):
        client.predict(api_name="/gallery_select")  # a click carries the item; an API call does not
    with pytest.raises(AppError, match="not in the list of choices"):  # runs are dropdown choices
        client.predict("nosuch", "any", "all", api_name="/gallery")
    with pytest.raises(AppError, match="choose a mining run"):
        client.predict(None, "any", "all", api_name="/gallery")


# --- Try ------------------------------------------------------------------------------------------
def test_sketch_conversion_follows_mnist_convention():
    canvas = np.zeros((280, 280, 4), np.uint8)  # black strokes on a transparent canvas
    canvas[40:240, 100:130] = (0, 0, 0, 255)
    canvas[40:70, 60:130] = (0, 0, 0, 255)
    out = to_model_input(canvas, MNIST)
    assert out.shape == (28, 28, 1) and out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and out.max() == 255  # white digit on black
    rows, cols = np.nonzero(out[..., 0] > 40)
    assert rows.max() - rows.min() + 1 <= 21  # fitted into the central 20x20
    weights = out[..., 0].astype(float)
    centre = np.array([(np.indices((28, 28))[k] * weights).sum() / weights.sum() for k in (0, 1)])
    assert np.allclose(centre, 13.5, atol=0.6)  # centre of mass in the middle

    white_on_black = np.where(canvas[..., 3] > 0, 255, 0).astype(np.uint8)
    assert np.abs(to_model_input(white_on_black, MNIST).astype(int) - out).max() <= 1  # either polarity
    rgb = to_model_input(canvas, PreprocessingSpec(height=32, width=32, channels=3))
    assert rgb.shape == (32, 32, 3)
    with pytest.raises(EmptyImageError):
        to_model_input(np.zeros((280, 280, 4), np.uint8), MNIST)


def test_try_predicts_a_drawing_under_the_sliders(served, tmp_path):
    from gradio_client.exceptions import AppError

    _, client, _ = served
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[40:240, 125:150] = (0, 0, 0, 255)  # a vertical stroke: a "1"
    path = _canvas_png(tmp_path / "one.png", canvas)
    image, probabilities, note = client.predict("demo", _sketch(path), True, 0, 0, 0, 1, api_name="/try_predict")
    assert probabilities["label"] == "1" and "**1**" in note and note.endswith("as drawn")
    assert np.asarray(Image.open(image)).shape[:2] == (280, 280)  # the 28x28 input, upscaled crisply
    _, turned, note = client.predict("demo", _sketch(path), True, 90, 0, 0, 1, api_name="/try_predict")
    assert turned["label"] != "1" and "after rotating +90°" in note
    moved, _, note = client.predict("demo", _sketch(path), True, 0, 0, 0, 1, 0.25, 0, api_name="/try_predict")
    assert "shifting 25% right" in note
    _, _, note = client.predict("demo", _sketch(path), True, 0, 0, 0, 1, 0, 0, 1.4, 20, api_name="/try_predict")
    assert "stretching wider by 1.40 and shearing +20°" in note
    assert not np.array_equal(np.asarray(Image.open(moved)), np.asarray(Image.open(image)))

    empty = _canvas_png(tmp_path / "empty.png", np.zeros((280, 280, 4), np.uint8))
    image, probabilities, note = client.predict("demo", _sketch(empty), True, 0, 0, 0, 1, api_name="/try_predict")
    assert image is None and "empty" in note
    with pytest.raises(AppError, match="choose a mining run"):
        client.predict(None, _sketch(path), True, 0, 0, 0, 1, api_name="/try_predict")
    with pytest.raises(AppError, match="greater than maximum"):
        client.predict("demo", _sketch(path), True, 0, 0, 0, 9, api_name="/try_predict")
    assert tuple(client.predict(api_name="/try_reset")) == (0, 0, 0, 1, 0, 0, 1, 0)
    from gradio_client import handle_file

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not pixels")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(not_an_image)), api_name="/try_upload")


def test_try_an_upload_gives_the_review_prediction(served, reviewed, tmp_path):
    """A candidate upscaled and inverted (dark on light, as a scan), uploaded, predicts as in the review tab."""
    store, client, _ = served
    from hardcase.review_app.workflows.images import decode_png

    with store.Session.begin() as session:
        view = api.get_candidate(session, reviewed[0])
    digit = decode_png(view.image_png)[..., 0]
    scan = 255 - np.repeat(np.repeat(digit, 10, axis=0), 10, axis=1)
    path = _canvas_png(tmp_path / "scan.png", scan)
    from gradio_client import handle_file

    uploaded = client.predict(handle_file(str(path)), api_name="/try_upload")  # becomes the sketch
    assert np.asarray(Image.open(uploaded["composite"])).shape[:2] == (280, 280)
    _, tried, _ = client.predict("demo", _sketch(uploaded["composite"]), False, 0, 0, 0, 1, api_name="/try_predict")
    expected = client.predict(reviewed[0], 0, 0, 1, 0, api_name="/predict_transformed")
    by_label = {c["label"]: c["confidence"] for c in tried["confidences"]}
    top = max(expected, key=expected.get)
    assert tried["label"] == top and by_label[top] == pytest.approx(expected[top], abs=1e-3)


# --- Triage ---------------------------------------------------------------------------------------
def test_triage_plots_and_disagreements(served, reviewed):
    from gradio_client.exceptions import AppError

    _, client, _ = served
    summary, *figures, table = client.predict("demo", api_name="/triage")
    assert "3 of 30 candidates reviewed" in summary and "**1 disagreements**" in summary
    assert len(figures) == 5
    assert all(f["type"] == "matplotlib" and f["plot"].startswith("data:image/png;base64,") for f in figures)
    assert [row[0] for row in table["data"]] == [reviewed[1]]
    assert "alice: rare" in table["data"][0][4] and "bob: augment" in table["data"][0][4]
    with pytest.raises(AppError, match="select a row"):
        client.predict(api_name="/open_disagreement")
    with pytest.raises(AppError, match="choose a mining run"):
        client.predict(None, api_name="/triage")


def test_triage_shows_the_runs_latest_retrain_report(served, reviewed, demo_model_path, mnist_small, tmp_path):
    """No report before a retrain; after ``run_retrain`` on the run, its Markdown, plots and files."""
    import json
    from pathlib import Path

    from gradio_client.exceptions import AppError

    from hardcase.review_app.workflows.retrain import RetrainOptions, run_retrain

    store, client, _ = served
    text, plots, files = client.predict("demo", api_name="/retrain_report")
    assert "No retrain report for **demo**" in text
    # the empty plots and files are hidden (component updates)
    assert plots["visible"] is False and not plots["value"] and files["visible"] is False and not files["value"]
    train_x, train_y, pool_x, pool_y = mnist_small
    np.savez(tmp_path / "train.npz", x=train_x[:200], y=train_y[:200])
    np.savez(tmp_path / "heldout.npz", x=pool_x[:120], y=pool_y[:120])
    report = run_retrain(store, RetrainOptions(
        model_path=str(demo_model_path), train_data=str(tmp_path / "train.npz"), run_name="demo",
        out=str(tmp_path / "new.keras"), evals={"heldout": str(tmp_path / "heldout.npz")}, epochs=1, stress=False),
        echo=lambda _: None)

    text, plots, files = client.predict("demo", api_name="/retrain_report")
    assert plots["visible"] is True and files["visible"] is True
    plots, files = plots["value"], [f if isinstance(f, str) else f["path"] for f in files["value"]]
    assert "Latest of 1 retrain report of **demo**" in text and "## Before / after" in text
    held = report["sets"]["heldout"]
    assert (f"| heldout | 120 | {100 * held['before']['accuracy']:.1f} | {100 * held['after']['accuracy']:.1f} "
            f"| {held['flips']['fixed']} | {held['flips']['broken']} |") in text
    assert [item["caption"] for item in plots] == ["accuracy before / after per set", "per-class recall before / after"]
    assert all(Path(item["image"]).read_bytes()[:4] == b"\x89PNG" for item in plots)
    by_suffix = {Path(f).name.split(".", 1)[1]: f for f in files}
    assert set(by_suffix) == {"report.json", "report.md"}
    assert json.loads(Path(by_suffix["report.json"]).read_text())["sets"]["heldout"]["n"] == 120
    with pytest.raises(AppError, match="choose a mining run"):
        client.predict(None, api_name="/retrain_report")


# --- Export ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_fix_list(served, reviewed, fmt):
    _, client, _ = served
    path, note = client.predict("demo", "fixes", fmt, api_name="/export")
    assert path.endswith(f"demo-fixes.{fmt}") and "3 rows of fixes" in note
    columns, rows = read_rows(path)
    fixes = [dict(zip(columns, row)) for row in rows]
    assert [fix["final_cause"] for fix in fixes] == ["augment", "augment", "mislabel"]  # latest judgment wins
    assert fixes[2]["final_label"] == "7" and fixes[0]["transform"]["rotate"] == 20


def test_export_mistakes_are_gradio_errors(served):
    from gradio_client.exceptions import AppError

    _, client, _ = served
    with pytest.raises(AppError, match="'xlsx'.* is not in the list of choices"):
        client.predict("demo", "fixes", "xlsx", api_name="/export")
    with pytest.raises(AppError, match="choose a format"):
        client.predict("demo", "fixes", None, api_name="/export")
    with pytest.raises(AppError, match="choose a mining run"):
        client.predict(None, api_name="/export_image_folder")


def test_export_image_folder_loads_with_keras(served, reviewed, tmp_path):
    import keras

    store, client, _ = served
    path, note = client.predict("demo", api_name="/export_image_folder")
    assert path.endswith("demo-relabeled.zip") and note.startswith("3 images")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path)
    root = tmp_path / "demo-relabeled"
    with store.Session.begin() as session:
        views = [api.get_candidate(session, k) for k in reviewed]
    expected = {f"demo-relabeled/{v.decided_label or v.given_label}/{v.sample_id}.png" for v in views}
    assert expected <= set(names) and (root / "labels.csv").exists()
    dataset = keras.utils.image_dataset_from_directory(root, color_mode="grayscale", image_size=(28, 28),
                                                       batch_size=8, shuffle=False)
    assert dataset.class_names == [str(k) for k in range(10)]
    images, labels = next(iter(dataset))
    assert images.shape == (3, 28, 28, 1)
    loaded = sorted(dataset.class_names[int(k)] for k in labels.numpy())
    assert loaded == sorted(v.decided_label or v.given_label for v in views)
    assert "7" in loaded  # the mislabel decision moved its image to the new class


def test_review_outputs_are_named_once_with_the_status_line_last():
    # _show fills the outputs by name, and undo / decide replace the last one with their message
    from hardcase.models.transforms import FIELDS
    from hardcase.review_app.app.handlers.review import SHOWN

    assert len(set(SHOWN)) == len(SHOWN)
    assert set(FIELDS) <= set(SHOWN) and SHOWN[-1] == "status"
