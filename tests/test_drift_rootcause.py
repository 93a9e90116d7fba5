"""The root cause of an alerting window (hardcase.models.drift.explain_window) on the demo model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from hardcase.miner.monitors import WindowMonitor
from hardcase.models.drift import explain_window

WINDOW = 150
DIRECTION = 30.0


def _bench():
    path = Path(__file__).resolve().parents[1] / "bench" / "drift_scenarios.py"
    spec = importlib.util.spec_from_file_location("drift_scenarios_for_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _angle(a: float, b: float) -> float:
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


@pytest.fixture(scope="module")
def setup(demo_classifier, mnist_small):
    _, _, pool_x, pool_y = mnist_small
    order = np.random.default_rng(0).permutation(len(pool_y))  # the pool is sorted by class
    pool_x, pool_y = pool_x[order], pool_y[order]
    ref_x, ref_y = pool_x[:-WINDOW], pool_y[:-WINDOW]
    win_x, win_y = pool_x[-WINDOW:], pool_y[-WINDOW:]
    ref_probs, ref_emb = map(np.concatenate, zip(*demo_classifier.iter_predictions(ref_x), strict=True))
    monitor = WindowMonitor(window_size=WINDOW, n_bootstrap=100, n_permutations=0, random_state=0).fit(
        ref_probs, ref_emb, labels=ref_y, images=ref_x)
    return demo_classifier, monitor, ref_x, ref_probs, win_x, win_y


def _explain(setup, raw, model_in, labels):
    clf, monitor, ref_x, ref_probs, _, _ = setup
    probs, emb = map(np.concatenate, zip(*clf.iter_predictions(model_in), strict=True))
    report = monitor.score(probs, emb, images=raw, labels=labels)
    cause = explain_window(clf, report, model_in, probs, monitor=monitor, reference_images=ref_x,
                           reference_probs=ref_probs)
    return report, cause


def test_a_tilted_camera_is_named_a_transform_with_its_direction(setup):
    bench = _bench()
    _, _, _, _, win_x, win_y = setup
    tilted = np.stack([bench.tilt(im, 0.25, DIRECTION) for im in win_x])
    report, cause = _explain(setup, tilted, tilted, win_y)
    assert report.alert, report.to_dict()["signals"]
    assert cause.kind == "transform", cause.message
    assert "perspective" in cause.camera
    assert _angle(cause.camera["direction"], DIRECTION) <= 30.0, cause.camera
    assert cause.detail["explained_share"] > cause.null_share + 0.15
    assert abs(cause.camera["perspective"] - 0.25) <= 0.05, cause.camera
    assert "camera tilted" in cause.message
    assert cause.to_dict()["kind"] == "transform"


def test_a_units_change_is_named_pipeline(setup):
    _, _, _, _, win_x, win_y = setup
    raw = win_x.astype(np.float32) / 255.0
    report, cause = _explain(setup, raw, raw.astype(np.uint8), win_y)
    assert report.alert and "integrity" in report.alerts
    assert cause.kind == "pipeline", cause.message
    assert "dtype float32" in cause.message
    assert "dtype" in cause.detail["pipeline"]


def test_an_undisturbed_window_has_nothing_to_explain(setup):
    _, _, _, _, win_x, win_y = setup
    report, cause = _explain(setup, win_x, win_x, win_y)
    assert not report.alert, report.messages()
    assert cause.kind == "none"


@pytest.mark.parametrize(("strength", "direction"), [(0.1, 30.0), (0.1, 250.0), (0.3, 120.0)])
def test_the_camera_motion_is_fitted_forward_from_the_images(setup, strength, direction):
    from hardcase.models.drift import fit_camera_motion

    bench = _bench()
    _, _, ref_x, _, win_x, _ = setup
    fit = fit_camera_motion(ref_x, np.stack([bench.tilt(im, strength, direction) for im in win_x]))
    assert fit.transform.perspective == pytest.approx(strength, abs=0.05)
    assert _angle(fit.transform.direction, direction) <= 15.0
    assert fit.explained_share > fit.null_share + 0.3


def test_an_undisturbed_window_is_no_camera_motion(setup):
    from hardcase.models.drift import fit_camera_motion

    _, _, ref_x, _, win_x, _ = setup
    fit = fit_camera_motion(ref_x, win_x)
    assert fit.explained_share < fit.null_share + 0.15
