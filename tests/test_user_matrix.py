"""The matrix of users (issue 15): each kind of model a user brings, on each kind of data.

Models: the demo CNN (spec file beside it), a functional CNN with ``Rescaling`` inside (wants
0-255), a Sequential CNN (logits out), an MLP on flat input, and a 3-class RGB CNN on 32x32
coloured shapes; none but the demo has a spec. Data: a ``.npz``, an image folder with named
class folders, a CSV manifest, and predictions recorded beforehand (with the ``.npz``).

For each pair, as a user would run it: ``mine`` without scale or class flags; the review
endpoints through the handlers (``/predict_transformed``, the saliency preview, apply
suggestion, decisions); ``export`` of every kind; a one-epoch ``retrain``. The ground truth is
each model's real accuracy, computed here by feeding it by hand the way it was trained: mining
and retraining must report exactly that, so the convention they chose is the right one.
"""

from __future__ import annotations

import csv
import shutil
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import keras
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select
from usermodels import (
    SHAPE_CLASSES,
    coloured_shapes,
    flat_mlp,
    functional_cnn_rescaling_inside,
    sequential_cnn,
    train_shapes_model,
)

from hardcase.models.classifier import load_classifier
from hardcase.models.transforms import Transform, apply_transform
from hardcase.review_app.workflows.exports import write_image_folder_zip
from hardcase.review_app.workflows.mining import MiningOptions, mine
from hardcase.review_app.workflows.retrain import RetrainOptions, run_retrain
from hardcase.review_app.workflows.review import ReviewService
from hardcase.store import api
from hardcase.store.db import open_store
from hardcase.store.export import EXPORTS, export_rows
from hardcase.store.schema import Candidate

N_POOL = 60
N_TRAIN = 200
DATA_KINDS = ("npz", "folder", "manifest", "predictions")
MODEL_KINDS = ("demo", "rescaling", "sequential", "mlp", "rgb")
#: What the convention check must settle on for each model (the demo's is given by its spec file).
EXPECTED_CONVENTION = {"demo": "0-1", "rescaling": "0-255", "sequential": "0-1", "mlp": "0-1", "rgb": "0-1"}


@dataclass(frozen=True)
class DataSet:
    """One labelled pool in every data form, and training data, for one family of models."""

    folder: Path
    pool: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # int (N,), indices into names
    names: tuple[str, ...]
    train_npz: Path

    def path(self, kind: str) -> Path:
        return self.folder / {"npz": "pool.npz", "folder": "classes", "manifest": "pool.csv",
                              "predictions": "pool.npz"}[kind]


def _write_dataset(folder: Path, pool: np.ndarray, labels: np.ndarray, names, train_x, train_y) -> DataSet:
    """``pool.npz``, ``classes/<name>/<i>.png`` and ``pool.csv`` (path,label) holding the same pool.

    The .npz files hold the labels as class names (``y`` of str), so the names reach the run
    without a flag, as from the folder's and the manifest's."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "pool.npz", x=pool, y=np.asarray(names)[labels])
    np.savez(folder / "train.npz", x=train_x, y=np.asarray(names)[train_y])
    with (folder / "pool.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for i, (image, label) in enumerate(zip(pool, labels)):
            relative = Path("classes") / names[label] / f"{i:03d}.png"
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(folder / relative)
            writer.writerow([str(relative), names[label]])
    return DataSet(folder, pool, labels, tuple(names), folder / "train.npz")


@pytest.fixture(scope="module")
def digits(mnist_small, tmp_path_factory) -> DataSet:
    train_x, train_y, pool_x, pool_y = mnist_small
    pool_rows, train_rows = _shuffled(len(pool_x), N_POOL), _shuffled(len(train_x), N_TRAIN)  # both sorted by class
    return _write_dataset(tmp_path_factory.mktemp("digits"), pool_x[pool_rows], pool_y[pool_rows],
                          tuple("0123456789"), train_x[train_rows], train_y[train_rows])


def _shuffled(n: int, size: int) -> np.ndarray:
    """``size`` rows of ``n`` in a fixed random order (the MNIST splits are sorted by class)."""
    return np.random.default_rng(0).permutation(n)[:size]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> DataSet:
    pool, labels = coloured_shapes(N_POOL, seed=7)
    train_x, train_y = coloured_shapes(N_TRAIN, seed=8)
    return _write_dataset(tmp_path_factory.mktemp("shapes"), pool, labels, SHAPE_CLASSES, train_x, train_y)


_LOADED: dict[Path, keras.Model] = {}


@dataclass(frozen=True)
class UserModel:
    """A model as a user saved it, and how it really reads images (the ground truth)."""

    path: Path
    family: str  # "digits" or "shapes"
    real_input: object  # uint8 (N, H, W, C) -> what the model was trained on

    def real_probs(self, images: np.ndarray) -> np.ndarray:
        """The model's outputs (probabilities, or the Sequential CNN's logits), fed by hand."""
        if self.path not in _LOADED:
            _LOADED[self.path] = keras.models.load_model(self.path)
        return np.asarray(_LOADED[self.path](self.real_input(images), training=False), np.float64)

    def real_accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(self.real_probs(images).argmax(axis=1) == labels))


def _fit(model: keras.Model, x: np.ndarray, y: np.ndarray, *, epochs: int, logits: bool = False) -> keras.Model:
    keras.utils.set_random_seed(0)
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=logits))
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def _probabilities(outputs: np.ndarray) -> np.ndarray:
    """Softmax of logits (the Sequential CNN's); probabilities pass through."""
    if np.all(outputs >= 0) and np.isclose(outputs.sum(), 1.0, atol=1e-3):
        return outputs
    exp = np.exp(outputs - outputs.max())
    return exp / exp.sum()


def _zero_one(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def user_models(demo_model_path, mnist_small, tmp_path_factory) -> dict[str, UserModel]:
    """Each model trained for a moment on the MNIST training split (the shapes model on shapes), saved
    without a spec (the demo's spec file is copied beside it)."""
    folder = tmp_path_factory.mktemp("models")
    train_x, train_y, _, _ = mnist_small
    rows = _shuffled(len(train_x), 1500)
    x, y = train_x[rows], train_y[rows]
    shutil.copy(demo_model_path, folder / "demo.keras")
    shutil.copy(demo_model_path.with_suffix(".spec.json"), folder / "demo.spec.json")
    _fit(functional_cnn_rescaling_inside(), x.astype(np.float32), y, epochs=3).save(folder / "rescaling.keras")
    _fit(sequential_cnn(), _zero_one(x), y, epochs=4, logits=True).save(folder / "sequential.keras")
    _fit(flat_mlp(), _zero_one(x).reshape(len(x), -1), y, epochs=4).save(folder / "mlp.keras")
    train_shapes_model(folder / "rgb.keras")
    return {
        "demo": UserModel(folder / "demo.keras", "digits", _zero_one),
        "rescaling": UserModel(folder / "rescaling.keras", "digits", lambda images: images.astype(np.float32)),
        "sequential": UserModel(folder / "sequential.keras", "digits", _zero_one),
        "mlp": UserModel(folder / "mlp.keras", "digits", lambda images: _zero_one(images).reshape(len(images), -1)),
        "rgb": UserModel(folder / "rgb.keras", "shapes", _zero_one),
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matrix")
    opened = open_store(f"sqlite:///{folder / 'matrix.db'}")
    yield opened, folder
    opened.dispose()


#: One line per pair, printed at the end (``pytest -s``): what the convention check picked.
MATRIX: dict[tuple[str, str], str] = {}
#: The pairs where a suggested transform was applied to the sliders.
SUGGESTED: dict[tuple[str, str], bool] = {}


def _mine(store, folder: Path, model: UserModel, data: DataSet, kind: str, run: str, model_kind: str):
    """Mine as a user would: no --scale, --invert or --class-names; recorded predictions (and
    embeddings) computed beforehand with the model, the way it really reads images."""
    options = MiningOptions(run_name=run, model_path=str(model.path), data_path=str(data.path(kind)),
                            budget=6, per_class=None, suggest=True, train_data=str(data.train_npz))
    if kind == "predictions":
        np.save(data.folder / f"{run}-probs.npy", model.real_probs(data.pool).astype(np.float32))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            embeddings = load_classifier(model.path, scale=EXPECTED_CONVENTION[model_kind]).embed(data.pool)
        np.save(data.folder / f"{run}-emb.npy", embeddings)
        options.model_path = None
        options.predictions_path = str(data.folder / f"{run}-probs.npy")
        options.embeddings_path = str(data.folder / f"{run}-emb.npy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the MLP's square-image assumption, the logits notice
        return mine(store, options, artifacts_dir=folder / "artifacts", progress=False)


PAIRS = [(model, data) for model in MODEL_KINDS for data in DATA_KINDS]


@pytest.mark.parametrize("model_kind, data_kind", PAIRS, ids=[f"{m}-{d}" for m, d in PAIRS])
def test_a_user_mines_reviews_exports_and_retrains(model_kind, data_kind, user_models, digits, shapes, store,
                                                   tmp_path):
    from hardcase.review_app.app.handlers.review import Handlers

    store, folder = store
    model = user_models[model_kind]
    data = digits if model.family == "digits" else shapes
    run = f"{model_kind}-{data_kind}"
    real = model.real_accuracy(data.pool, data.labels)
    assert real > 0.5, f"{run}: the fixture model itself is too weak to tell conventions apart ({real:.2f})"

    # --- mine: the accuracy under the convention chosen is the model's real accuracy
    report = _mine(store, folder, model, data, data_kind, run, model_kind)
    assert report.n_scored == N_POOL and report.n_errors == 0
    assert report.accuracy == pytest.approx(real, abs=1e-9), report.summary()
    with store.snapshot() as session:
        version = api.model_version(session, api.require_run(session, run))
        spec, class_names = dict(version.spec), list(version.class_names)
    assert class_names == list(data.names)
    if data_kind == "predictions":
        MATRIX[(model_kind, data_kind)] = f"recorded predictions (no convention to check), accuracy {real:.3f}"
    else:
        picked = report.convention.split(": ")[1].split(" (")[0]
        assert picked == EXPECTED_CONVENTION[model_kind] == spec["scale"], report.convention
        MATRIX[(model_kind, data_kind)] = f"{report.convention}"

    # --- the review endpoints
    service = ReviewService(store)
    handlers = Handlers(service)
    with store.snapshot() as session:
        run_id = api.require_run(session, run).id
        ids = list(session.scalars(select(Candidate.id).where(Candidate.run_id == run_id).order_by(Candidate.rank)))
    assert len(ids) >= 3
    candidate_id = ids[0]
    image = service.image(candidate_id)
    real_probs = _probabilities(model.real_probs(image[None])[0])
    if data_kind == "predictions":
        shown = handlers.predict_transformed(candidate_id)  # the recorded probabilities, as they were
        np.testing.assert_allclose([shown[n] for n in class_names], real_probs, atol=1e-5)
        with pytest.raises(Exception, match="need the model"):
            handlers.predict_transformed(candidate_id, rotate=20)
        assert handlers.saliency_method(candidate_id).startswith("no saliency")
    else:
        shown = handlers.predict_transformed(candidate_id)
        np.testing.assert_allclose([shown[n] for n in class_names], real_probs, atol=1e-4)
        turned = handlers.predict_transformed(candidate_id, rotate=20)
        expected = _probabilities(model.real_probs(apply_transform(image, Transform(rotate=20))[None])[0])
        np.testing.assert_allclose([turned[n] for n in class_names], expected, atol=1e-4)
        overlay, preview = handlers.preview_transformed(candidate_id, 20, 0, 0, 1, True)
        assert overlay.ndim == 3 and overlay.shape[-1] == 3
        assert preview == pytest.approx(turned, abs=1e-5)
        method = handlers.saliency_method(candidate_id)
        assert method.startswith("Saliency: **") and ("HiResCAM" in method or "gradient x input" in method), method
    # apply suggestion: the sliders of the suggested transform, or left untouched without one
    suggested = next((cid for cid in ids if service.suggested_transform(cid) is not None), ids[0])
    sliders = handlers.apply_suggestion(suggested)
    assert len(sliders) == 8
    if service.suggested_transform(suggested) is not None:
        assert all(isinstance(v, float | int) for v in sliders)
        SUGGESTED[(model_kind, data_kind)] = True
    else:
        assert all(v == gr.skip() for v in sliders)

    # decisions: a relabel, a rare sample, an augment with the sliders' transform
    first = service.candidate(ids[0])
    other_class = class_names[(class_names.index(first.given_label) + 1) % len(class_names)]
    for cid, (cause, label) in zip(ids, [("mislabel", other_class), ("rare", None), ("augment", None)]):
        handlers.submit_review(cid, cause, label, "", 15 if cause == "augment" else 0, 0, 0, 1, 0, "matrix")
    decided = 3

    # --- export of every kind
    for what in EXPORTS:
        columns, rows = export_rows(store, run, what)
        assert rows or what == "errors", what
        if "uri" in columns:
            uris = [dict(zip(columns, row))["uri"] for row in rows]
            if data_kind in ("folder", "manifest"):
                assert all(Path(uri).is_file() for uri in uris), (what, uris[:2])
            else:
                assert all(uri.startswith(str(data.path(data_kind).resolve())) and "#" in uri for uri in uris)
    zipped = write_image_folder_zip(store, run, tmp_path)
    with zipfile.ZipFile(zipped.path) as archive:
        assert sum(name.endswith(".png") for name in archive.namelist()) == zipped.n_images == decided

    # --- a tiny retrain: the model before it is read as it was mined
    out = tmp_path / "retrained.keras"
    said: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_retrain(store, RetrainOptions(
            model_path=str(model.path), train_data=str(data.train_npz), run_name=run, out=str(out),
            evals={"pool": str(data.path(data_kind))}, epochs=1, stress=False, batch_size=64),
            echo=said.append)
    assert out.exists()
    if data_kind == "predictions":  # no model read the data when mining: retrain checks the convention itself
        checked = next(line for line in said if line.startswith("input convention"))
        assert checked.split(": ")[1].split(" (")[0] == EXPECTED_CONVENTION[model_kind], checked
        MATRIX[(model_kind, data_kind)] += f"; retrain's own check: {checked.split(' (')[0]}"
    assert result["sets"]["pool"]["before"]["accuracy"] == pytest.approx(real, abs=1e-9)
    assert result["training"]["pool_samples"]["mislabel"] + result["training"]["pool_samples"]["augment"] >= 1
    # "collect more like these" names where the rare sample and its neighbours come from
    collect = (out.parent / "retrained.report.md").read_text().split("## Collect more like these")[1]
    rare_uri = service.candidate(ids[1]).uri
    assert rare_uri and rare_uri in collect and "source index" not in collect, collect
    if data_kind in ("folder", "manifest"):
        assert str((data.folder / "classes").resolve()) in rare_uri
    else:
        assert rare_uri.startswith(f"{data.path(data_kind).resolve()}#")


CLI_PAIRS = [("rescaling", "folder"), ("rescaling", "predictions"), ("rgb", "manifest")]


@pytest.mark.parametrize("model_kind, data_kind", CLI_PAIRS, ids=[f"{m}-{d}" for m, d in CLI_PAIRS])
def test_the_same_through_the_command_line(model_kind, data_kind, user_models, digits, shapes, tmp_path, capsys):
    """mine, export of every kind and retrain as typed, without scale or class flags."""
    import json

    from hardcase.review_app.cli import main

    model = user_models[model_kind]
    data = digits if model.family == "digits" else shapes
    real = model.real_accuracy(data.pool, data.labels)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    if data_kind == "predictions":
        np.save(tmp_path / "probs.npy", model.real_probs(data.pool).astype(np.float32))
        scorer = ["--predictions", str(tmp_path / "probs.npy")]
    else:
        scorer = ["--model", str(model.path)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["mine", *scorer, "--data", str(data.path(data_kind)), "--db", db, "--run", "cli",
                     "--budget", "6", "--train-data", str(data.train_npz), "--quiet"]) == 0
    mined = capsys.readouterr().out
    assert f"{N_POOL} scored + 0 errors" in mined and f"accuracy on labelled samples {real:.3f}" in mined, mined
    if data_kind != "predictions":
        assert f"input convention {'detected' if model_kind == 'rescaling' else 'checked'}: " \
               f"{EXPECTED_CONVENTION[model_kind]} (" in mined, mined

    store = open_store(db)
    try:
        service = ReviewService(store)
        with store.snapshot() as session:
            run_id = api.require_run(session, "cli").id
            ids = list(session.scalars(select(Candidate.id).where(Candidate.run_id == run_id)
                                       .order_by(Candidate.rank)))
        names = service.class_names("cli")
        given = service.candidate(ids[0]).given_label
        service.submit_review(ids[0], reviewer="cli", cause="mislabel", new_label=names[names.index(given) - 1],
                              note="", transform=Transform(), seen_version=0)
        service.submit_review(ids[1], reviewer="cli", cause="rare", new_label=None, note="", transform=Transform(),
                              seen_version=0)
    finally:
        store.dispose()
    for what in [*EXPORTS, "images"]:
        out = tmp_path / (f"{what}.zip" if what == "images" else f"{what}.csv")
        assert main(["export", "--db", db, "--run", "cli", "--what", what, "--out", str(out)]) == 0
        assert out.exists()
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["retrain", "--model", str(model.path), "--train-data", str(data.train_npz), "--db", db,
                     "--run", "cli", "--eval", f"pool={data.path(data_kind)}", "--out", str(tmp_path / "new.keras"),
                     "--epochs", "1", "--no-stress"]) == 0
    report = json.loads((tmp_path / "new.report.json").read_text())
    assert report["sets"]["pool"]["before"]["accuracy"] == pytest.approx(real, abs=1e-9)
    assert report["training"]["pool_samples"]["mislabel"] == 1


def test_print_the_matrix():
    """The matrix as it ran (``pytest -s``)."""
    for (model_kind, data_kind), line in MATRIX.items():
        applied = "; a suggested transform applied" if SUGGESTED.get((model_kind, data_kind)) else ""
        print(f"{model_kind:10s} x {data_kind:11s}: {line}{applied}")
