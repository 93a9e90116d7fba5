"""The Monitor tab: monitor_views on a constructed monitor run with known values, every endpoint through
gradio_client, a tampered samples_path refused, and the tab in a real browser (Debian's chromium)."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
from conftest import ARTIFACTS
from sqlalchemy import update

from hardcase.review_app.workflows import monitor_views as views
from hardcase.review_app.workflows.images import encode_png
from hardcase.store import api
from hardcase.store.columnar import write_columns
from hardcase.store.db import open_store
from hardcase.store.schema import MonitorWindow

RUN = "stream-a"
CLASSES = ["car", "truck", "bus", "bike"]
N = 50  # samples a window
N_WINDOWS = 6
ESTIMATED = [0.92, 0.91, 0.90, 0.74, 0.88, 0.70]
TRUE = [0.93, 0.90, 0.89, 0.71, None, None]
OOD_CUTOFF = 2.0
OOD_IN_WINDOW_3 = 10
TRANSFORM = "One shared rotation of +20° restores 80% of the low-confidence samples: the camera moved."
RARE = "No transform restores the low-confidence samples: new kinds of data."
SIGNALS = {  # signal: (side, threshold, statistics by window, alerting windows, {window: classes moved})
    "confidence": ("below", 0.80, [0.90, 0.89, 0.83, 0.62, 0.86, 0.81], {3}, {2: ["truck"], 3: ["truck", "bus"]}),
    "ood": ("above", 0.06, [0.01, 0.02, 0.03, 0.20, 0.04, 0.05], {3}, {3: ["bus"]}),
    "embedding_drift": ("above", 0.10, [0.02, 0.03, 0.05, 0.09, 0.06, 0.31], {5}, {5: ["bike"]}),
}
WINDOWS = {  # window: (alert signals, classes moved, root cause, its sentence, candidates sent to review)
    2: ([], ["truck"], None, None, 0),
    3: (["confidence", "ood"], ["truck", "bus"], "transform", TRANSFORM, 4),
    5: (["embedding_drift"], ["bike"], "rare", RARE, 3),
}
WAIT = 30_000


def _samples(rng, index):
    predicted = rng.integers(0, len(CLASSES), N)
    centres = np.array([[0, 0], [4, 0], [0, 4], [4, 4]], float)
    xy = centres[predicted] + rng.normal(0, 0.4 + 0.3 * index, (N, 2))  # the clusters blur window by window
    ood = rng.uniform(0.0, 1.5, N)
    if index == 3:
        ood[:OOD_IN_WINDOW_3] = rng.uniform(2.5, 4.0, OOD_IN_WINDOW_3)
    return {
        "source_index": np.arange(index * N, (index + 1) * N), "uri": [f"stream/{i}.png" for i in range(N)],
        "t": [str(index)] * N, "predicted": predicted, "confidence": rng.uniform(0.4, 1.0, N),
        "hardness_score": rng.uniform(0, 1, N), "ood_score": ood, "x": xy[:, 0], "y": xy[:, 1],
        "label": np.full(N, -1),
    }


def build_monitor_store(folder):
    """A SQLite store with monitor run ``stream-a`` (six windows, 3 and 5 alerting), its Parquet files
    and the review run of the same name holding the alerting windows' candidates."""
    rng = np.random.default_rng(0)
    artifacts = folder / "artifacts"
    run_dir = artifacts / RUN
    store = open_store(f"sqlite:///{folder / 'hardcase.db'}")
    n_stream = N * N_WINDOWS
    probs = rng.dirichlet(np.ones(len(CLASSES)), n_stream)
    write_columns(run_dir / "reference_map.parquet", {
        "x": rng.normal(0, 0.4, 400) + np.repeat([0, 4, 0, 4], 100),
        "y": rng.normal(0, 0.4, 400) + np.repeat([0, 0, 4, 4], 100),
        "predicted": np.repeat(np.arange(4), 100), "label": np.repeat(np.arange(4), 100)})
    np.save(run_dir / "pred_probs.npy", probs)  # the review run's recorded predictions (no model needed)
    with store.Session.begin() as session:
        reference = api.get_or_create_dataset(session, name="reference", uri="/data/ref", kind="folder",
                                              class_names=CLASSES, n_samples=400)
        stream = api.get_or_create_dataset(session, name="stream", uri="/data/stream", kind="folder",
                                           class_names=CLASSES, n_samples=n_stream)
        model = api.register_model(session, name="model.keras", path="/models/model.keras", file_hash="ab" * 32,
                                   spec={}, class_names=CLASSES)
        monitor = api.create_monitor_run(
            session, name=RUN, model_version_id=model.id, reference_dataset_id=reference.id,
            stream_dataset_id=stream.id, params={"artifacts_dir": str(artifacts.resolve())},
            window_by="count", window_size=N)
        review = api.create_run(session, name=RUN, dataset_id=stream.id, model_version_id=model.id,
                                params={"monitor": RUN, "predictions": "recorded"},
                                embeddings_path=str(run_dir / "embeddings.npy"))
        api.set_review_run(session, monitor.id, review.id)
        rank = 1
        for index in range(N_WINDOWS):
            samples_path = f"windows/window-{index:06d}.parquet"
            write_columns(run_dir / samples_path, _samples(rng, index))
            alert_signals, moved, cause, sentence, n_review = WINDOWS.get(index, ([], [], None, None, 0))
            window_id = api.add_window(
                session, monitor.id, window_index=index, window_key=None, first_index=index * N,
                last_index=index * N + N - 1, n=N, n_errors=0, estimated_accuracy=ESTIMATED[index],
                accuracy_interval=(ESTIMATED[index] - 0.04, ESTIMATED[index] + 0.04), true_accuracy=TRUE[index],
                alert=bool(alert_signals), alert_signals=alert_signals, classes_moved=moved, root_cause=cause,
                root_cause_message=sentence, root_cause_detail=None,
                report={"signals": {"ood": {"detail": {"cutoff": OOD_CUTOFF}}}}, samples_path=samples_path,
                signals=[{"signal": name, "statistic": stats[index], "threshold": threshold, "side": side,
                          "alert": index in alerting, "classes_moved": by_window.get(index, []),
                          "severity": 1.0, "message": f"{name} {stats[index]}"}
                         for name, (side, threshold, stats, alerting, by_window) in SIGNALS.items()])
            if not n_review:
                continue
            rows = list(range(index * N, index * N + n_review))
            sample_ids = api.upsert_samples(
                session, stream.id, source_index=rows, content_hash=[f"{row:064x}" for row in rows],
                uri=[f"stream/{row}.png" for row in rows], given_label=[None] * n_review)
            top = probs[rows].argmax(axis=1)
            api.add_score_columns(
                session, review.id, sample_id=sample_ids, predicted_label=[CLASSES[k] for k in top],
                confidence=probs[rows].max(axis=1), margin=np.full(n_review, 0.1), entropy=np.full(n_review, 1.0),
                hardness_score=np.full(n_review, 0.5))
            image = (rng.uniform(0, 255, (28, 28, 1))).astype(np.uint8)
            api.add_candidates(session, review.id, [
                {"sample_id": sample_id, "rank": rank + k, "class_name": CLASSES[top[k]], "hardness_score": 0.5,
                 "image_png": encode_png(image), "monitor_window_id": window_id}
                for k, sample_id in enumerate(sample_ids)])
            rank += n_review
    return store


@pytest.fixture(scope="module")
def monitor_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("monitor")
    (folder / "artifacts" / RUN).mkdir(parents=True)
    store = build_monitor_store(folder)
    yield store, folder
    store.dispose()


@contextmanager
def _served(service):
    from hardcase.review_app.app import build_app, launch_options

    app = build_app(service)
    app.queue(max_size=64)
    options = launch_options(port=0)
    options.pop("server_port")
    try:
        app.launch(prevent_thread_lock=True, quiet=True, **options)
        yield app
    finally:
        app.close()


@pytest.fixture(scope="module")
def served(monitor_store):
    from gradio_client import Client

    from hardcase.review_app.workflows.review import ReviewService

    store, folder = monitor_store
    with _served(ReviewService(store)) as app:
        client = Client(app.local_url, verbose=False)
        yield app, client
        client.close()


@contextmanager
def _tampered(store, window_index, samples_path):
    """Window ``window_index``'s stored samples_path replaced (as by someone editing the database)."""
    with store.Session.begin() as session:
        row = session.query(MonitorWindow).filter_by(window_index=window_index).one()
        saved = row.samples_path
        session.execute(update(MonitorWindow).where(MonitorWindow.id == row.id).values(samples_path=samples_path))
    try:
        yield
    finally:
        with store.Session.begin() as session:
            session.execute(update(MonitorWindow).where(MonitorWindow.window_index == window_index)
                            .values(samples_path=saved))


def _window_candidates(store, window_index):
    with store.Session.begin() as session:
        monitor = api.require_monitor_run(session, RUN)
        window = next(w for w in api.list_windows(session, monitor.id) if w.window_index == window_index)
        return api.window_candidate_ids(session, window.id)


# --- monitor_views ----------------------------------------------------------------------------------
def test_monitor_views_return_the_known_values(monitor_store):
    store, folder = monitor_store
    assert views.monitor_run_names(store) == [RUN]
    assert views.largest_window_index(store) == N_WINDOWS - 1
    data = views.load_monitor(store, RUN)
    assert data.class_names == CLASSES and data.review_run == RUN
    assert [w.index for w in data.windows] == list(range(N_WINDOWS))

    summary = views.summarize(data)
    assert (summary.n_windows, summary.n_alerts, summary.first_alert.index) == (6, 2, 3)
    assert summary.latest.estimated_accuracy == pytest.approx(0.70) and summary.latest_true.index == 3
    text = summary.text(RUN)
    assert "6 windows" in text and "**2 alerts**" in text and "first alert at window 3 (rows 150–199)" in text
    assert "estimated accuracy 0.70 (0.66–0.74) at window 5" in text and "true accuracy 0.71 at window 3" in text

    rows = views.alert_rows(data)
    assert [r.as_list() for r in rows] == [
        [3, "rows 150–199", "confidence, ood", "truck, bus", TRANSFORM, 4],
        [5, "rows 250–299", "embedding_drift", "bike", RARE, 3],
    ]
    assert RARE in views.root_cause_text(data) and "window 5" in views.root_cause_text(data)
    assert TRANSFORM in views.root_cause_text(data, 3) and "transform" in views.root_cause_text(data, 3)
    assert "raised no alert" in views.root_cause_text(data, 1)
    assert views.first_candidate(data, 3) == _window_candidates(store, 3)[0]
    assert views.first_candidate(data, 5) == _window_candidates(store, 5)[0]
    with pytest.raises(views.MonitorViewError, match="window 1 raised no alert"):
        views.first_candidate(data, 1)
    with pytest.raises(views.MonitorViewError, match="has no window 9; its windows are 0–5"):
        views.first_candidate(data, 9)

    series = {s.signal: s for s in views.signal_series(data)}
    assert list(series) == ["confidence", "ood", "embedding_drift"]  # MONITOR_SIGNALS order
    assert series["ood"].statistic.tolist() == SIGNALS["ood"][2] and series["ood"].side == "above"
    assert np.flatnonzero(series["embedding_drift"].alert).tolist() == [5]
    assert np.all(series["confidence"].threshold == 0.80)

    moves = views.canary_classes(data)
    assert [(m.class_name, m.first_window, m.canary) for m in moves] == [
        ("truck", 2, True), ("bus", 3, False), ("bike", 5, False)]
    assert moves[0].windows == (2, 3) and moves[0].alert_windows == (3,)  # moved at 2 before the alert at 3
    classes, windows, matrix = views.canary_matrix(data, moves)
    assert classes == ["truck", "bus", "bike"] and windows.tolist() == list(range(6))
    assert matrix.tolist() == [[0, 0, 1, 2, 0, 0], [0, 0, 0, 2, 0, 0], [0, 0, 0, 0, 0, 2]]

    window_map = views.load_window_map(data, 3)
    assert window_map.n_total == N and len(window_map.xy) == N and window_map.n_ood == OOD_IN_WINDOW_3
    assert window_map.ood[:OOD_IN_WINDOW_3].all() and not window_map.ood[OOD_IN_WINDOW_3:].any()
    assert window_map.reference_xy.shape == (400, 2) and "10 out of distribution" in window_map.caption()
    small = views.load_window_map(data, 3, max_points=20)
    assert len(small.xy) == 20 and len(small.reference_xy) == 20 and "20 of 50 samples" in small.caption()
    with pytest.raises(views.MonitorViewError, match="no window 6"):
        views.load_window_map(data, 6)


def test_a_tampered_samples_path_is_refused(monitor_store, tmp_path):
    store, folder = monitor_store
    outside = write_columns(folder / "outside.parquet", _samples(np.random.default_rng(1), 0))
    escape = folder / "artifacts" / RUN / "windows" / "escape.parquet"
    escape.symlink_to(outside)
    try:
        for path in ("../../outside.parquet", str(outside), "windows/escape.parquet"):
            with _tampered(store, 1, path):
                data = views.load_monitor(store, RUN)
                with pytest.raises(views.MonitorViewError, match=r"window 1's samples file .* refused: .*outside"):
                    views.load_window_map(data, 1)
    finally:
        escape.unlink()
    with _tampered(store, 1, "windows/missing.parquet"):
        with pytest.raises(views.MonitorViewError, match="cannot be read"):
            views.load_window_map(views.load_monitor(store, RUN), 1)


def test_handlers_say_one_thing_on_user_mistakes(monitor_store):
    import gradio as gr

    from hardcase.review_app.app.handlers.monitor import MonitorHandlers
    from hardcase.review_app.workflows.review import ReviewService

    handlers = MonitorHandlers(ReviewService(monitor_store[0]))
    figure, caption, status = handlers.window_map(RUN, 9)
    assert status == "⚠️ monitor run 'stream-a' has no window 9; its windows are 0–5" and caption == ""
    assert isinstance(figure, type(gr.skip()))  # the map drawn before stays
    outputs = handlers.refresh(None)
    assert outputs[1] == "⚠️ choose a monitor run first" and len(outputs) == 9
    *_, status = handlers.open_alert(RUN, 2)
    assert status == "⚠️ window 2 raised no alert: none of its samples went to review"


def test_without_monitor_runs_the_tab_says_how_to_start_one(tmp_path):
    from hardcase.review_app.app.handlers.monitor import MonitorHandlers
    from hardcase.review_app.workflows.review import ReviewService

    store = open_store(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        run, status, summary, *_ = MonitorHandlers(ReviewService(store)).refresh(None)
        assert run["choices"] == [] and status == ""
        assert summary == views.START_HINT and "hardcase monitor --model ... --reference ... --stream ... --run NAME" in summary
    finally:
        store.dispose()


# --- through gradio_client --------------------------------------------------------------------------
def test_monitor_endpoints(served, monitor_store):
    _, client = served
    store, _ = monitor_store
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/monitor", "/monitor_map", "/pick_alert", "/open_alert"} <= named

    run, status, summary, timelines, accuracy, canaries, alerts, root_cause, window = client.predict(
        RUN, api_name="/monitor")
    assert status == "" and "**2 alerts**" in summary and "canary class: **truck**" in summary
    assert RARE in root_cause and "Latest alert, window 5" in root_cause
    for figure in (timelines, accuracy, canaries):
        assert figure["type"] == "matplotlib" and figure["plot"].startswith("data:image/png;base64,")
    assert [row[0] for row in alerts["data"]] == [3, 5] and alerts["data"][0][4] == TRANSFORM
    assert window["value"] == 5 and (window["minimum"], window["maximum"]) == (0, 5)  # the slider follows the run

    figure, caption, status = client.predict(RUN, 3, api_name="/monitor_map")
    assert figure["type"] == "matplotlib" and figure["plot"].startswith("data:image/png;base64,")
    assert "**Window 3**" in caption and "10 out of distribution" in caption and status == ""

    candidate_id, review_run, root_cause, window, status = client.predict(RUN, 3, api_name="/open_alert")
    assert candidate_id == _window_candidates(store, 3)[0] and status == ""
    assert review_run["value"] == RUN and TRANSFORM in root_cause and window == 3

    *_, status = client.predict(RUN, 1, api_name="/open_alert")
    assert "window 1 raised no alert" in status
    assert client.predict(None, api_name="/monitor")[1] == "⚠️ choose a monitor run first"
    assert "no monitor run named 'nosuch'; monitor runs: stream-a" in client.predict("nosuch", api_name="/monitor")[1]


def test_the_app_refuses_a_tampered_samples_path(served, monitor_store):
    _, client = served
    store, _ = monitor_store
    with _tampered(store, 1, "../../hardcase.db"):
        figure, caption, status = client.predict(RUN, 1, api_name="/monitor_map")
    assert status.startswith("⚠️ window 1's samples file '../../hardcase.db' refused:") and "outside" in status
    assert status.count("⚠️") == 1 and caption == ""


# --- in the browser ---------------------------------------------------------------------------------
@pytest.mark.browser
def test_monitor_tab_in_the_browser(browser, served, monitor_store):
    app, _ = served
    store, _ = monitor_store
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    page.goto(app.local_url)
    page.wait_for_load_state("networkidle")
    page.get_by_role("tab", name="Monitor").click()
    page.wait_for_function("document.querySelectorAll('#monitor-timelines img, #monitor-map img').length >= 2",
                           timeout=WAIT)
    assert "2 alerts" in page.locator("#monitor-summary").inner_text()
    assert RARE in page.locator("#monitor-root-cause").inner_text()
    page.wait_for_function("document.querySelector('#monitor-map-caption')?.innerText.includes('Window 5 ')",
                           timeout=WAIT)

    slider = page.locator("#monitor-window input[type=range]")
    slider.focus()
    slider.press("ArrowLeft")
    slider.press("ArrowLeft")
    page.wait_for_function("document.querySelector('#monitor-map-caption')?.innerText.includes('Window 3 ')",
                           timeout=WAIT)
    assert "10 out of distribution" in page.locator("#monitor-map-caption").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / "monitor.png"), full_page=True)

    page.locator("#monitor-alerts [role=gridcell]").filter(has_text="camera moved").first.click()
    candidate_id = _window_candidates(store, 3)[0]
    page.wait_for_function(
        "(id) => document.querySelector('[role=tab][aria-selected=true]')?.innerText.trim() === 'Review' && "
        "document.querySelector('#candidate-info')?.innerText.includes('Candidate #' + id + ' ')",
        arg=str(candidate_id), timeout=WAIT)
    page.close()
