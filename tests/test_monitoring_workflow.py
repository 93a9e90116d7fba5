"""``hardcase monitor`` end to end on a small drifting stream: windows stored, alerts explained,
samples routed into review, resume after a crash, a stream that grows, the windows export."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from hardcase.review_app.cli import main

WINDOW = 150
CLEAN_WINDOWS = 4
TILT_DIRECTION = 30.0


def _tilt(images: np.ndarray, strength: float, direction: float) -> np.ndarray:
    """A perspective tilt toward ``direction`` (the drift benchmark's camera)."""
    import albumentations.augmentations.geometric.functional as fg
    import cv2

    from hardcase.models.transforms import tilt_corners

    out = np.empty_like(images)
    for i, image in enumerate(images):
        points = tilt_corners(image.shape[:2], strength, math.radians(direction))
        matrix, width, height = fg.compute_perspective_params(points, image.shape[:2])
        out[i, ..., 0] = fg.perspective(image[..., 0], matrix, width, height, 0, cv2.BORDER_CONSTANT, True,
                                        cv2.INTER_LINEAR)
    return out


@pytest.fixture(scope="module")
def drift_data(tmp_path_factory, mnist_small, mnist10k_dir):
    """The reference (the demo model's held-out pool) and a stream: 4 clean windows of MNIST
    test images, then 4 whose camera tilts more and more."""
    from hardcase.miner.sources import read_idx

    folder = tmp_path_factory.mktemp("drift")
    _, _, pool_x, pool_y = mnist_small
    np.savez(folder / "reference.npz", x=pool_x, y=pool_y)
    test_x = read_idx(mnist10k_dir / "t10k-images-idx3-ubyte.gz")[..., None].astype(np.uint8)
    test_y = read_idx(mnist10k_dir / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    order = np.random.default_rng(0).permutation(len(test_x))[: 2 * CLEAN_WINDOWS * WINDOW]
    x, y = test_x[order].copy(), test_y[order]
    for w in range(CLEAN_WINDOWS, 2 * CLEAN_WINDOWS):
        rows = slice(w * WINDOW, (w + 1) * WINDOW)
        x[rows] = _tilt(x[rows], 0.25 + 0.05 * (w - CLEAN_WINDOWS), TILT_DIRECTION)
    t = np.repeat(np.arange(2 * CLEAN_WINDOWS) * 10, WINDOW)
    np.savez(folder / "stream.npz", x=x, y=y, t=t)
    np.savez(folder / "stream_head.npz", x=x[: CLEAN_WINDOWS * WINDOW], y=y[: CLEAN_WINDOWS * WINDOW])
    return folder


def _monitor(tmp_path, model, data, stream, run="cam", *extra):
    return main(["monitor", "--model", str(model), "--reference", str(data / "reference.npz"),
                 "--stream", str(stream), "--db", f"sqlite:///{tmp_path / 'h.db'}", "--run", run, "--quiet",
                 *extra])


def _windows(tmp_path, run="cam"):
    out = tmp_path / f"{run}_windows.csv"
    assert main(["export", "--db", f"sqlite:///{tmp_path / 'h.db'}", "--run", run, "--what", "windows",
                 "--out", str(out)]) == 0
    with open(out, newline="") as handle:
        return list(csv.DictReader(handle))


def test_tilting_camera_is_alerted_explained_and_sent_to_review(tmp_path, demo_model_path, drift_data, capsys):
    assert _monitor(tmp_path, demo_model_path, drift_data, drift_data / "stream.npz", "cam",
                    "--window", str(WINDOW), "--review", "6") == 0
    printed = capsys.readouterr().out
    assert "monitor run 'cam': 8 new windows" in printed
    rows = _windows(tmp_path)
    assert [int(r["window"]) for r in rows] == list(range(8))
    assert [(int(r["first_index"]), int(r["last_index"]), int(r["n"])) for r in rows[:2]] == [
        (0, WINDOW - 1, WINDOW), (WINDOW, 2 * WINDOW - 1, WINDOW)]
    alerts = [r["alert"] in ("True", "true", "1") for r in rows]
    assert not any(alerts[:CLEAN_WINDOWS]), rows[:CLEAN_WINDOWS]
    assert all(alerts[-2:]), rows[-2:]
    # the estimate follows the true accuracy, which the stream's labels give: close on clean
    # windows, and down with it as the camera tilts (confidence-based estimates lag a severe
    # covariate shift: the model stays sure of digits it now gets wrong)
    estimated = [float(r["estimated_accuracy"]) for r in rows]
    true = [float(r["true_accuracy"]) for r in rows]
    assert all(abs(e - t) < 0.05 for e, t in zip(estimated[:CLEAN_WINDOWS], true[:CLEAN_WINDOWS]))
    assert estimated[-1] < min(estimated[:CLEAN_WINDOWS]) - 0.05 and true[-1] < min(true[:CLEAN_WINDOWS])
    causes = {r["root_cause"] for r in rows if r["root_cause"]}
    assert "transform" in causes, [r["root_cause_message"] for r in rows]

    from hardcase.store import api
    from hardcase.store.db import open_store
    from hardcase.store.schema import Candidate, MonitorWindow

    store = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    with store.snapshot() as session:
        run = api.require_run(session, "cam")
        candidates = session.query(Candidate).filter(Candidate.run_id == run.id).all()
        windows = {w.id: w for w in session.query(MonitorWindow).all()}
        assert run.status == "done"
        assert len(candidates) == 6 * sum(alerts)
        assert {windows[c.monitor_window_id].window_index for c in candidates} == {
            i for i, a in enumerate(alerts) if a}
        # cause suggestion ran over them, as over mined candidates
        assert all(c.suggested_cause is not None for c in candidates)


def test_a_crashed_run_resumes_and_a_grown_stream_continues(tmp_path, demo_model_path, drift_data, monkeypatch,
                                                             capsys):
    from hardcase.review_app.workflows import monitoring

    with np.load(drift_data / "stream.npz") as full:
        x, y = full["x"], full["y"]
    stream = tmp_path / "stream.npz"
    np.savez(stream, x=x[: CLEAN_WINDOWS * WINDOW], y=y[: CLEAN_WINDOWS * WINDOW])
    real = monitoring.write_columns

    def disk_full_at_window_2(path, columns):
        if path.name == "window-000002.parquet":
            raise OSError("No space left on device")
        return real(path, columns)

    monkeypatch.setattr(monitoring, "write_columns", disk_full_at_window_2)
    assert _monitor(tmp_path, demo_model_path, drift_data, stream, "grow", "--window", str(WINDOW)) == 1
    err = capsys.readouterr().err.strip()
    assert "No space left on device" in err and len(err.splitlines()) == 1
    monkeypatch.setattr(monitoring, "write_columns", real)
    assert [int(r["window"]) for r in _windows(tmp_path, "grow")] == [0, 1]

    assert _monitor(tmp_path, demo_model_path, drift_data, stream, "grow", "--window", str(WINDOW)) == 0
    assert "2 new windows (windows of 150) after 2 stored" in capsys.readouterr().out
    assert [int(r["window"]) for r in _windows(tmp_path, "grow")] == [0, 1, 2, 3]

    # the stream grows in place: only the new windows are scored, a partial one waits
    np.savez(stream, x=x[: 6 * WINDOW + 40], y=y[: 6 * WINDOW + 40])
    assert _monitor(tmp_path, demo_model_path, drift_data, stream, "grow", "--window", str(WINDOW)) == 0
    out = capsys.readouterr().out
    assert "2 new windows (windows of 150) after 4 stored" in out and "40 samples wait for a full window" in out
    rows = _windows(tmp_path, "grow")
    assert [int(r["first_index"]) for r in rows] == [i * WINDOW for i in range(6)]
    # nothing changes when nothing new arrived
    assert _monitor(tmp_path, demo_model_path, drift_data, stream, "grow", "--window", str(WINDOW)) == 0
    assert "0 new windows" in capsys.readouterr().out
    # a stream may only grow
    np.savez(stream, x=x[:WINDOW], y=y[:WINDOW])
    assert _monitor(tmp_path, demo_model_path, drift_data, stream, "grow", "--window", str(WINDOW)) == 2
    assert "may only grow" in capsys.readouterr().err


def test_by_t_windows_follow_the_timestamps(tmp_path, demo_model_path, drift_data):
    assert _monitor(tmp_path, demo_model_path, drift_data, drift_data / "stream.npz", "byt", "--by", "t",
                    "--review", "0") == 0
    rows = _windows(tmp_path, "byt")
    assert [r["window_key"] for r in rows] == [str(10 * i) for i in range(8)]
    assert all(int(r["n"]) == WINDOW for r in rows)


@pytest.mark.parametrize(
    ("stream", "extra", "message"),
    [
        ("stream_head.npz", ["--by", "t"], "--by t needs timestamps"),
        ("stream.npz", ["--window", "5"], "--window must be at least 10"),
        ("stream.npz", ["--alpha", "2"], "--alpha must be in (0, 1)"),
    ],
)
def test_input_mistakes_are_one_line_and_exit_2(tmp_path, demo_model_path, drift_data, capsys, stream, extra,
                                                message):
    assert _monitor(tmp_path, demo_model_path, drift_data, drift_data / stream, "bad", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_mining_run_name_is_refused(tmp_path, demo_model_path, drift_data, capsys):
    from hardcase.store import api
    from hardcase.store.db import open_store

    store = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    with store.Session.begin() as session:
        data = api.get_or_create_dataset(session, name="d", uri="d", kind="npz", class_names=None, n_samples=1)
        model = api.register_model(session, name="m", path="m", file_hash="0" * 64, spec={}, class_names=["a"])
        api.create_run(session, name="taken", dataset_id=data.id, model_version_id=model.id, params={})
    assert _monitor(tmp_path, demo_model_path, drift_data, drift_data / "stream.npz", "taken") == 2
    assert "taken by a mining run" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../../evil", "/etc", ".hidden", "a/b", ""])
def test_run_names_that_lead_outside_the_artifacts_folder_are_refused(tmp_path, name, capsys):
    for command in (["monitor", "--model", "m.keras", "--reference", "r.npz", "--stream", "s.npz"],
                    ["mine", "--model", "m.keras", "--data", "d.npz"]):
        assert main([*command, "--db", f"sqlite:///{tmp_path / 'h.db'}", "--run", name]) == 2
        err = capsys.readouterr().err.strip()
        assert "cannot name a folder" in err and len(err.splitlines()) == 1
    assert not (tmp_path.parent / "evil").exists()
    assert not (tmp_path / "h.db").exists()  # refused before anything was opened


def test_a_symlinked_run_folder_is_refused(tmp_path):
    from hardcase.review_app.workflows.artifacts import run_folder

    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "cam").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="leads outside the artifacts folder"):
        run_folder(artifacts, "cam")
    assert run_folder(artifacts, "other") == (artifacts / "other").resolve()
