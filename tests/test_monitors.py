"""Production monitors (hardcase.miner.monitors) on constructed data with a known truth: no TensorFlow."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from hardcase.miner.monitors import (
    AccuracyEstimator,
    ClusterHealthMonitor,
    ConfidenceMonitor,
    EmbeddingDriftMonitor,
    InputIntegrityMonitor,
    KSOutputTest,
    LabelShiftMonitor,
    NotFittedError,
    OODMonitor,
    WindowMonitor,
    calibrate_threshold,
    statistical_cause,
)

K, D, WINDOW = 4, 6, 100
CENTERS = 4.0 * np.eye(K, D)


def world(n: int, seed: int, *, shift=0.0, noise=1.0, drop_class=None, dim=None):
    """A calibrated model on Gaussian class clusters: (probs, embeddings, labels, images).

    The predicted probabilities are a softmax of the negative squared distances to the class
    centres, and the true label is drawn from them, so the model is calibrated by construction
    (P(correct | probs) = max probs). Images are 8x8 uint8 blobs whose brightness follows the class.
    """
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, K, size=n)
    if drop_class is not None:
        classes = rng.choice([c for c in range(K) if c != drop_class], size=n)
    emb = CENTERS[classes] + shift + noise * rng.normal(size=(n, D))
    d2 = ((emb[:, None, :] - CENTERS[None]) ** 2).sum(axis=2)
    logits = -d2 / 4.0
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(K, p=p) for p in probs])
    images = np.zeros((n, 8, 8), dtype=np.uint8)
    images[:, 2:6, 2:6] = (120 + 30 * classes[:, None, None] + rng.integers(0, 40, size=(n, 4, 4))).astype(np.uint8)
    if drop_class is not None:
        pred = probs.argmax(axis=1)
        keep = pred != drop_class
        return probs[keep], emb[keep], labels[keep], images[keep]
    return probs, emb, labels, images


@pytest.fixture(scope="module")
def reference():
    return world(2000, seed=0)


@pytest.fixture(scope="module")
def monitor(reference):
    probs, emb, labels, images = reference
    return WindowMonitor(window_size=WINDOW, alpha=0.002, n_bootstrap=100, n_components=D, n_permutations=20,
                         class_names=["a", "b", "c", "d"], random_state=0).fit(
        probs, emb, labels=labels, images=images, environment={"python": "3.x", "numpy": "1"})


def common(**extra):
    return {"window_size": WINDOW, "n_bootstrap": 100, "alpha": 0.001, "random_state": 0} | extra


# ----------------------------------------------------------------------------- no drift: no alert


def test_undisturbed_windows_raise_no_alert(monitor):
    for seed in range(1, 11):
        probs, emb, labels, images = world(WINDOW, seed=seed)
        report = monitor.score(probs, emb, images=images, labels=labels, environment={"python": "3.x", "numpy": "1"},
                               window=seed)
        assert not report.alert, report.messages()
        assert report.alerts == ()
        assert report.true_accuracy is not None and report.estimated_accuracy is not None


def test_reference_rows_themselves_raise_no_alert(reference, monitor):
    probs, emb, labels, images = reference
    for start in (0, 700, 1500):
        rows = slice(start, start + WINDOW)
        report = monitor.score(probs[rows], emb[rows], images=images[rows], labels=labels[rows])
        assert not report.alert, report.messages()


# ----------------------------------------------------------------------------- embedding signals


def test_shifted_gaussian_alerts_drift_ood_and_cluster_health(reference):
    probs, emb, _, _ = reference
    w_probs, w_emb, _, _ = world(WINDOW, seed=5, shift=1.5, noise=2.0)
    drift = EmbeddingDriftMonitor(n_components=D, n_permutations=50, **common()).fit(emb)
    ood = OODMonitor(n_components=D, **common()).fit(emb, probs)
    gmm = OODMonitor(method="gmm", n_mixture=K, n_components=D, **common()).fit(emb, probs)
    health = ClusterHealthMonitor(n_components=D, **common()).fit(emb, probs)
    ks = EmbeddingDriftMonitor(method="ks", n_components=D, **common()).fit(emb)
    _, r = drift.score(w_emb)
    assert r.alert and r.excess > 0 and r.p_value is not None and r.p_value < 0.05
    assert "MMD" in r.message
    _, r = ks.score(w_emb)
    assert r.alert and r.statistic < r.threshold.value
    for mon in (ood, gmm):
        scores, r = mon.score(w_emb, w_probs)
        assert r.alert and r.statistic > r.threshold.value
        assert scores.shape == (WINDOW,)
    _, r = health.score(w_emb, w_probs)
    assert r.alert and r.statistic < r.threshold.value and r.classes_moved
    # and the same monitors stay quiet on an undisturbed window
    _, q_emb, _, _ = world(WINDOW, seed=6)
    q_probs = world(WINDOW, seed=6)[0]
    assert not drift.score(q_emb)[1].alert
    assert not ood.score(q_emb, q_probs)[1].alert
    assert not health.score(q_emb, q_probs)[1].alert


def test_ood_values_are_per_sample_scores_higher_further_out(reference):
    probs, emb, _, _ = reference
    ood = OODMonitor(n_components=D, **common()).fit(emb, probs)
    near = CENTERS[:2]
    far = CENTERS[:2] + 25.0
    scores, result = ood.score(np.vstack([near, far]))
    assert scores.shape == (4,)
    assert scores[2:].min() > ood.cutoff_ > scores[:2].max()
    assert result.statistic == pytest.approx(0.5)


def test_ood_threshold_is_the_beta_binomial_quantile(reference):
    probs, emb, _, _ = reference
    ood = OODMonitor(n_components=D, quantile=0.01, **common()).fit(emb, probs)
    a, b = ood.exceedance_
    count = ood.threshold_.value * WINDOW
    assert sps.betabinom.sf(count, WINDOW, a, b) <= 0.001 < sps.betabinom.sf(count - 1, WINDOW, a, b)


def test_window_monitor_projects_embeddings_in_one_reference_plane(reference, monitor):
    _, emb, _, _ = reference
    assert monitor.projection_ is not None and monitor.projection_.n_components_ == 2
    xy = monitor.project(emb[:50])
    assert xy.shape == (50, 2) and np.isfinite(xy).all()
    np.testing.assert_allclose(monitor.project(emb[:50]), xy)  # fitted once: windows compare
    with pytest.raises(ValueError, match="D=3"):
        monitor.project(np.zeros((5, 3)))


# ----------------------------------------------------------------------------- output signals


def test_removed_class_is_a_label_shift_naming_it(reference, monitor):
    probs, _, _, _ = reference
    mon = LabelShiftMonitor(**common()).fit(probs)
    w_probs, w_emb, w_labels, w_images = world(3 * WINDOW, seed=7, drop_class=2)
    w_probs, w_emb, w_labels, w_images = w_probs[:WINDOW], w_emb[:WINDOW], w_labels[:WINDOW], w_images[:WINDOW]
    share, r = mon.score(w_probs)
    assert r.alert and r.classes_moved[0] == 2 and share[2] == 0
    assert "class 2 0%" in r.message
    report = monitor.score(w_probs, w_emb, labels=w_labels, images=w_images)
    assert "label_shift" in report.alerts
    assert report.signals["label_shift"].classes_moved[0] == 2
    assert any(line.startswith("[label_shift]") and "classes first: c" in line for line in report.messages())


def test_lowered_confidence_of_one_class_names_it_first(reference):
    probs, _, _, _ = reference
    mon = ConfidenceMonitor(**common()).fit(probs)
    w_probs = world(WINDOW, seed=8)[0].copy()
    rows = w_probs.argmax(axis=1) == 1
    top = w_probs[rows].max(axis=1, keepdims=True)
    # halfway to uniform: the same predicted class, a lower confidence
    w_probs[rows] = 0.6 * w_probs[rows] + 0.4 / K
    assert (w_probs[rows].argmax(axis=1) == 1).all() and (w_probs[rows].max(axis=1) < top[:, 0]).all()
    _, r = mon.score(w_probs)
    assert r.alert and r.classes_moved[0] == 1
    assert "class 1" in r.message
    assert not mon.score(world(WINDOW, seed=9)[0])[1].alert


@pytest.mark.parametrize("method", ["atc", "atc_mc", "cbpe"])
def test_accuracy_estimators_track_a_calibrated_model(reference, method):
    probs, _, labels, _ = reference
    est = AccuracyEstimator(method=method, **common()).fit(probs, labels)
    errors, covered = [], []
    for seed in range(20):  # windows like the reference: the interval holds the truth
        w_probs, _, w_labels, _ = world(WINDOW, seed=100 + seed)
        values, r = est.score(w_probs, w_labels)
        low, high = r.detail["interval"]
        covered.append(low <= r.detail["true_accuracy"] <= high)
        errors.append(abs(r.statistic - r.detail["true_accuracy"]))
        assert values.shape == (WINDOW,) and low <= r.statistic <= high
    assert np.mean(covered) >= 0.85, covered
    assert np.mean(errors) < 0.04, errors
    shifted = []
    for seed, (shift, noise) in enumerate([(0.0, 1.3), (0.5, 1.6), (0.0, 2.0)] * 2):  # harder windows
        w_probs, _, w_labels, _ = world(3 * WINDOW, seed=20 + seed, shift=shift, noise=noise)
        _, r = est.score(w_probs, w_labels)
        shifted.append(abs(r.statistic - r.detail["true_accuracy"]))
    assert np.mean(shifted) < 0.05, shifted


def test_accuracy_alert_on_a_collapse(reference):
    probs, _, labels, _ = reference
    est = AccuracyEstimator(**common()).fit(probs, labels)
    w_probs, _, w_labels, _ = world(WINDOW, seed=30, noise=2.5)
    _, r = est.score(w_probs, w_labels)
    assert r.alert and r.detail["true_accuracy"] < est.reference_accuracy_ - 0.05
    assert "estimated accuracy" in r.message


def test_ks_outputs_anchor(reference):
    probs, _, _, _ = reference
    fixed = KSOutputTest(alpha=0.05).fit(probs)
    calibrated = KSOutputTest(alpha=0.001, calibrate=True, window_size=WINDOW, n_bootstrap=100).fit(probs)
    shifted = world(3 * WINDOW, seed=31, drop_class=0)[0][:WINDOW]
    for mon in (fixed, calibrated):
        p, r = mon.score(shifted)
        assert p.shape == (K,) and r.alert
    assert calibrated.threshold_.value < 0.05


# ----------------------------------------------------------------------------- integrity


@pytest.fixture(scope="module")
def integrity(reference):
    probs, _, _, images = reference
    return InputIntegrityMonitor(**common()).fit(images, probs)


@pytest.mark.parametrize("change, failed", [
    ("floats", "dtype"),
    ("inverted", "mean_intensity"),
    ("blank", "constant_share"),
    ("nan", "nonfinite"),
    ("shape", "shape"),
])
def test_integrity_catches_pipeline_changes(reference, integrity, monitor, change, failed):
    w_probs, w_emb, _, images = world(WINDOW, seed=40)
    if change == "floats":
        images = images.astype(np.float32) / 255.0
    elif change == "inverted":
        images = 255 - images
    elif change == "blank":
        images = images.copy()
        images[: WINDOW // 5] = 0
    elif change == "nan":
        images = images.astype(np.float64)
        images[3, 0, 0] = np.nan
    elif change == "shape":
        images = np.zeros((WINDOW, 10, 10), dtype=np.uint8) + images[:, :1, :1]
    _, r = integrity.score(images, w_probs)
    assert r.alert and failed in r.detail["failed"], r.detail["failed"]
    assert failed in r.detail["pipeline"] or change == "nan" and "nonfinite" in r.detail["pipeline"]
    report = monitor.score(w_probs, w_emb, images=images)
    assert "integrity" in report.alerts
    cause = statistical_cause(report)
    assert cause is not None and cause.kind == "pipeline"


def test_integrity_quiet_on_undisturbed_and_names_a_class_whose_inputs_moved(integrity):
    w_probs, _, _, images = world(WINDOW, seed=41)
    _, r = integrity.score(images, w_probs)
    assert not r.alert, r.detail["failed"]
    dimmer = images.copy()
    rows = w_probs.argmax(axis=1) == 3
    dimmer[rows] = (dimmer[rows] * 0.8).astype(np.uint8)
    _, r = integrity.score(dimmer, w_probs)
    assert r.alert and r.classes_moved[0] == 3 and "class 3" in r.message


def test_a_small_soft_move_is_no_pipeline_cause_by_default(reference, monitor):
    w_probs, w_emb, _, images = world(WINDOW, seed=42)
    softer = (images.astype(np.float64) * 0.93).astype(np.uint8)  # a few standard errors, not a units change
    report = monitor.score(w_probs, w_emb, images=softer)
    integ = report.signals["integrity"]
    assert integ.alert and not integ.detail["pipeline"], integ.detail
    assert statistical_cause(report) is None
    assert statistical_cause(report, soft=True).kind == "pipeline"


def test_environment_change_is_the_cause(monitor):
    w_probs, w_emb, _, images = world(WINDOW, seed=43)
    report = monitor.score(w_probs, w_emb, images=images, environment={"python": "3.x", "numpy": "2"})
    assert report.alert and report.environment_changes == {"numpy": ["1", "2"]}
    assert statistical_cause(report).kind == "environment"


# ----------------------------------------------------------------------------- threshold calibration


def test_calibrate_threshold_gives_the_normal_quantile():
    # 2000 "bootstrap statistics" at the normal quantiles: mean 0, sd 1, no skew (their maximum,
    # 3.5, is below the quantiles asked for, so the floor beyond the bootstrap range is not hit)
    values = sps.norm.ppf((np.arange(2000) + 0.5) / 2000)
    values /= values.std(ddof=1)
    for alpha in (0.0001, 0.00001):
        above = calibrate_threshold(values, side="above", alpha=alpha)
        below = calibrate_threshold(values, side="below", alpha=alpha)
        z = sps.norm.isf(alpha)
        assert above.value == pytest.approx(z, abs=1e-6)
        assert below.value == pytest.approx(-z, abs=1e-6)
        assert above.passed(z + 0.1) and not above.passed(z - 0.1)
        assert below.passed(-z - 0.1) and not below.passed(-z + 0.1)
        assert above.severity(z) == pytest.approx(z) and above.excess(z + 1) == pytest.approx(1.0)


def test_calibrate_threshold_never_inside_the_bootstrap_range_and_widens_long_tails():
    rng = np.random.default_rng(1)
    few = rng.normal(size=20)
    assert calibrate_threshold(few, side="above", alpha=0.4).value > few.max()
    skewed = rng.exponential(size=50_000)
    t = calibrate_threshold(skewed, side="above", alpha=0.001)
    assert np.mean(rng.exponential(size=200_000) > t.value) <= 0.001
    assert t.value > skewed.mean() + sps.norm.isf(0.001) * skewed.std()
    assert calibrate_threshold(few, side="above", alpha=0.01, spread_factor=2.0).spread == pytest.approx(
        2 * few.std(ddof=1))
    with pytest.raises(ValueError, match="side"):
        calibrate_threshold(few, side="up", alpha=0.01)
    with pytest.raises(ValueError, match="alpha"):
        calibrate_threshold(few, side="above", alpha=0.0)


def test_false_alert_rate_over_many_null_windows_is_at_most_alpha(reference):
    probs, emb, labels, _ = reference
    alpha = 0.02
    label_shift = LabelShiftMonitor(**common(alpha=alpha, n_bootstrap=200)).fit(probs)
    confidence = ConfidenceMonitor(**common(alpha=alpha, n_bootstrap=200)).fit(probs)
    accuracy = AccuracyEstimator(**common(alpha=alpha, n_bootstrap=200)).fit(probs, labels)
    pool = world(20_000, seed=50)[0]
    windows = np.random.default_rng(51).integers(0, len(pool), size=(400, WINDOW))
    for mon in (label_shift, confidence, accuracy):
        rate = np.mean([mon.score(pool[w])[1].alert for w in windows])
        # at most alpha, with two binomial standard errors of slack for 400 windows
        assert rate <= alpha + 2 * np.sqrt(alpha * (1 - alpha) / len(windows)), (type(mon).__name__, rate)


# ----------------------------------------------------------------------------- contract and validation


@pytest.mark.parametrize("mon, args", [
    (LabelShiftMonitor(), ("probs",)),
    (ConfidenceMonitor(), ("probs",)),
    (AccuracyEstimator(), ("probs",)),
    (KSOutputTest(), ("probs",)),
    (ClusterHealthMonitor(), ("emb", "probs")),
    (EmbeddingDriftMonitor(), ("emb",)),
    (OODMonitor(), ("emb",)),
    (InputIntegrityMonitor(), ("images",)),
    (WindowMonitor(), ("probs",)),
])
def test_scoring_before_fit_raises_not_fitted(reference, mon, args):
    probs, emb, _, images = reference
    data = {"probs": probs[:10], "emb": emb[:10], "images": images[:10]}
    with pytest.raises(NotFittedError, match="not fitted"):
        mon.score(*(data[a] for a in args))


def test_fit_returns_self_and_learned_attributes_end_in_underscore(reference):
    probs, emb, labels, _ = reference
    mon = ConfidenceMonitor(**common())
    assert mon.fit(probs) is mon
    assert not hasattr(ConfidenceMonitor(), "threshold_")
    assert mon.get_params()["window_size"] == WINDOW


def test_wrong_number_of_classes_is_a_value_error_naming_k(monitor, reference):
    probs, emb, labels, _ = reference
    wrong = np.full((WINDOW, K + 1), 1.0 / (K + 1))
    with pytest.raises(ValueError, match="K=4"):
        monitor.score(wrong, emb[:WINDOW])
    with pytest.raises(ValueError, match="K=4"):
        LabelShiftMonitor(**common()).fit(probs).score(wrong)
    with pytest.raises(ValueError, match="D=6"):
        monitor.score(probs[:WINDOW], np.zeros((WINDOW, D + 2)))
    with pytest.raises(ValueError, match="class_names has 2"):
        WindowMonitor(class_names=["a", "b"]).fit(probs)


def test_empty_window_is_a_value_error(monitor, reference):
    probs, emb, _, images = reference
    with pytest.raises(ValueError, match="no rows"):
        monitor.score(np.zeros((0, K)))
    for mon, args in ((LabelShiftMonitor(**common()).fit(probs), (np.zeros((0, K)),)),
                      (AccuracyEstimator(**common()).fit(probs, reference[2]), (np.zeros((0, K)),)),
                      (EmbeddingDriftMonitor(n_components=D, **common()).fit(emb), (np.zeros((0, D)),)),
                      (InputIntegrityMonitor(**common()).fit(images), (images[:0],))):
        with pytest.raises(ValueError, match="no rows"):
            mon.score(*args)


def test_bad_settings_are_value_errors_naming_the_value(reference):
    probs, emb, labels, _ = reference
    with pytest.raises(ValueError, match="'median'"):
        AccuracyEstimator(method="median").fit(probs, labels)
    with pytest.raises(ValueError, match="'lof'"):
        OODMonitor(method="lof").fit(emb)
    with pytest.raises(ValueError, match="alpha"):
        ConfidenceMonitor(alpha=1.5).fit(probs)
    with pytest.raises(ValueError, match="unknown names"):
        WindowMonitor(signals=["confidence", "vibes"]).fit(probs)
    with pytest.raises(ValueError, match="labels"):
        WindowMonitor(signals=["accuracy"]).fit(probs)


def test_report_is_json_able_and_messages_say_how_far_past(monitor):
    w_probs, w_emb, w_labels, images = world(WINDOW, seed=60, shift=1.5, noise=2.0)
    report = monitor.score(w_probs, w_emb, images=images, labels=w_labels, window=3)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["window"] == 3 and data["alert"] and data["alerts"]
    assert set(data["signals"]) == set(monitor.signals_)
    lines = report.messages()
    assert len(lines) >= len(report.alerts)
    for name, line in zip(report.alerts, lines, strict=False):
        assert line.startswith(f"[{name}]")
        assert "threshold" in line
    assert report.accuracy_interval[0] <= report.estimated_accuracy <= report.accuracy_interval[1]
