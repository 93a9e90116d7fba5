"""Closing the loop: fix list -> training plan -> retrain -> report."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardcase.models.retrain import (
    DEFAULT_IMBALANCE,
    IMBALANCE_METHODS,
    PLAN_VERSION,
    AugmentFix,
    PlanError,
    TrainingPlan,
    apply_plan,
    augment_ranges,
    build_plan,
    class_weights,
    corrected_labels,
    imbalance_fix,
    plan_path_for,
    prediction_flips,
)

NAMES = [str(k) for k in range(10)]
REPO = Path(__file__).resolve().parents[1]


def _row(index, cause, given, final_label=None, transform=None):
    return {"sample_id": index + 1000, "source_index": index, "given_label": given, "final_cause": cause,
            "final_label": final_label, "transform": transform}


@pytest.fixture
def decisions():
    return [
        _row(0, "augment", "2", transform={"rotate": -52.0, "perspective": 0.0, "direction": 0.0, "scale": 1.0}),
        _row(1, "augment", "7", transform={"rotate": 31.0, "perspective": 0.15, "direction": 90.0, "scale": 1.2}),
        _row(2, "imbalance", "5"),
        _row(3, "imbalance", "5"),
        _row(4, "mislabel", "3", final_label="8"),
        _row(5, "mislabel", "1", final_label="7"),
        _row(6, "rare", "4"),
        _row(7, "not_a_failure", "0"),
    ]


@pytest.fixture
def train_labels():
    counts = [100, 100, 100, 100, 100, 10, 100, 100, 100, 100]
    return np.repeat(np.arange(10), counts)


def test_plan_has_each_family_with_its_parameters(decisions, train_labels):
    plan = build_plan(decisions, class_names=NAMES, train_labels=train_labels,
                      pool_hashes={4: "h4", 5: "h5"}, train_index_of_hash={"h4": 17},
                      neighbours={6: [9, 8]}, rare_oversample=4)
    assert plan.families == ["augment", "imbalance", "mislabel", "rare"]
    # rotation: the 90% quantile of |31|, |52| (31 + 0.9 x 21 = 49.9) with a 10% margin (54.9), rounded up to 5
    assert plan.augment.rotate_limit == 55.0
    assert plan.augment.observed["rotate"] == 52.0 and plan.augment.observed["rotate_q"] == pytest.approx(49.9)
    assert plan.augment.perspective_limit == pytest.approx(0.165)
    assert plan.augment.scale_limit == pytest.approx(0.22)
    assert plan.augment.n_decisions == 2 and plan.augment.n_without_transform == 0
    assert plan.augment.copies == 1 and plan.augment.p == 1.0
    assert "Affine(rotate=(-55, 55)" in plan.augment.describe()
    # by default both: the median class has 100 images, class 5 has 10 -> weight sqrt(10), images x round(sqrt(10))
    assert plan.imbalance.method == DEFAULT_IMBALANCE == "both"
    assert plan.imbalance.classes == ["5"] and plan.imbalance.class_weight == {"5": pytest.approx(3.1623)}
    assert plan.imbalance.oversample == {"5": 3} and plan.imbalance.logit_offset == {}
    assert plan.imbalance.train_counts["5"] == 10
    relabels = {r.source_index: r for r in plan.mislabel.relabels}
    assert relabels[4].new_label == "8" and relabels[4].train_index == 17
    assert relabels[5].train_index is None and plan.mislabel.n_in_training == 1
    assert plan.rare.samples[0].label == "4" and plan.rare.samples[0].neighbours == [9, 8]
    assert plan.rare.oversample == 4
    assert plan.provenance["decisions"]["not_a_failure"] == 1
    # JSON round trip, and the plan is printable
    again = TrainingPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    assert "augment" in plan.describe() and "collect more" in plan.describe()
    assert plan.to_dict()["rare"]["collect_more"][0]["source_index"] == 6
    ablated = plan.only("imbalance")
    assert ablated.families == ["imbalance"] and plan.only().is_empty


def test_augment_pipeline_is_the_slider_ops():
    fix = augment_ranges([{"rotate": 40.0}, None])
    pipeline = fix.pipeline()
    names = [type(op).__name__ for op in pipeline.transforms]
    assert names == ["Affine"] and fix.rotate_limit == 45.0 and fix.n_without_transform == 1
    default = augment_ranges([None, {}])
    assert default.rotate_limit == 15.0 and default.perspective_limit == pytest.approx(0.1)
    ops = default.pipeline().transforms
    assert [type(op).__name__ for op in ops] == ["OneOf", "Affine"]
    # the perspective family: the slider's one-edge tilt or a four-corner warp of the same strength
    assert [type(op).__name__ for op in ops[0].transforms] == ["TiltPerspective", "Perspective"]
    assert ops[0].transforms[0].strength == (0.0, 0.1) and tuple(ops[0].transforms[1].scale) == (0.0, 0.1)
    image = np.zeros((28, 28), np.uint8)
    assert pipeline(image=image)["image"].shape == (28, 28)
    assert AugmentFix().pipeline().transforms == []


def test_augment_range_ignores_a_few_overshooting_transforms():
    # 19 reviewers restored the label near 40 degrees; one slider was dragged to 170
    transforms = [{"rotate": (-1) ** k * (38.0 + k % 3)} for k in range(19)] + [{"rotate": 170.0}]
    fix = augment_ranges(transforms)
    assert fix.observed["rotate"] == 170.0 and fix.observed["rotate_q"] == pytest.approx(40.0)
    assert fix.rotate_limit == 45.0  # 40 x 1.1 rounded up to 5; the largest would have given 180
    assert augment_ranges(transforms, quantile=1.0).rotate_limit == 180.0
    with pytest.raises(PlanError, match="quantile"):
        augment_ranges(transforms, quantile=0.2)


def test_augment_range_covers_shifts():
    fix = augment_ranges([{"shift_x": -0.1}, {"shift_x": 0.05, "shift_y": 0.2}])
    # the larger axis of each: 0.1, 0.2 -> 90% quantile 0.19, x1.1
    assert fix.shift_limit == pytest.approx(0.209) and fix.rotate_limit == 0.0 and fix.n_without_transform == 0
    affine = fix.pipeline().transforms[-1]
    assert type(affine).__name__ == "Affine" and "translate=±0.21" in fix.describe()


def test_augmented_copies_beside_clean_originals(decisions, train_labels):
    plan = build_plan(decisions, class_names=NAMES, train_labels=train_labels,
                      imbalance_method="weights").only("augment", "imbalance")
    images = np.arange(len(train_labels), dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 1), np.uint8)
    data = apply_plan(plan, images, train_labels)
    n = len(train_labels)
    assert len(data.images) == 2 * n and data.n_augmented_copies == n
    assert data.augment_mask.tolist() == [False] * n + [True] * n
    assert (data.images[:n] == images).all() and (data.images[n:] == images).all()
    assert (data.labels[n:] == train_labels).all() and (data.sample_weight[n:] == data.sample_weight[:n]).all()
    assert data.sample_weight[:n][train_labels == 5][0] == pytest.approx(3.1623)
    in_place = apply_plan(TrainingPlan(class_names=NAMES, augment=AugmentFix(rotate_limit=10, copies=0)),
                          images, train_labels)
    assert len(in_place.images) == n and in_place.augment_mask is None and in_place.pipeline is not None


def test_training_batches_augment_only_the_masked_rows():
    import albumentations as A

    from hardcase.miner.spec import PreprocessingSpec
    from hardcase.models.training import _AugmentedBatches

    spec = PreprocessingSpec(height=4, width=4, channels=1, class_names=tuple("ab"))
    images = np.full((6, 4, 4, 1), 10, np.uint8)
    mask = np.array([False, True, False, True, True, False])
    batches = _AugmentedBatches(images, np.zeros(6, np.int64), spec, 6, A.Compose([A.InvertImg(p=1.0)]), 0,
                                augment_mask=mask)
    x, _ = batches[0]
    inverted = np.isclose(x.reshape(6, -1).mean(axis=1), spec.prepare(np.full((1, 4, 4, 1), 245, np.uint8)).mean())
    assert inverted.tolist() == mask[batches.order].tolist()


def test_same_seed_same_model_with_augmentation(mnist_small):
    from hardcase.models.demo import DEMO_SPEC
    from hardcase.models.training import build_demo_cnn, train_classifier
    from hardcase.models.transforms import augmentation_pipeline

    train_x, train_y = mnist_small[0][:256], mnist_small[1][:256]

    def weights(seed):
        model = build_demo_cnn(DEMO_SPEC.image_shape, DEMO_SPEC.n_classes, seed=seed)
        pipeline = augmentation_pipeline(rotate_limit=40, shift_limit=0.1, p=0.5)
        train_classifier(model, train_x, train_y, DEMO_SPEC, epochs=1, seed=seed, pipeline=pipeline)
        return model.get_weights()

    first, again, other = weights(3), weights(3), weights(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_version_1_plans_still_load():
    old = {"version": 1, "class_names": NAMES, "provenance": {},
           "augment": {"rotate_limit": 80.0, "perspective_limit": 0.165, "scale_limit": 0.0, "p": 0.5,
                       "observed": {"rotate": 70.0}, "n_decisions": 3, "n_without_transform": 0,
                       "albumentations": "..."}}
    plan = TrainingPlan.from_dict(old)
    assert plan.augment.copies == 0 and plan.augment.p == 0.5 and plan.augment.rotate_limit == 80.0
    with pytest.raises(PlanError, match="version"):
        TrainingPlan.from_dict({**old, "version": 99})
    # version 2 (before stretch and shear): both limits 0, the same operations as then
    two = TrainingPlan.from_dict({**old, "version": 2, "augment": {**old["augment"], "copies": 1}})
    assert (two.augment.shear_limit, two.augment.aspect_limit) == (0.0, 0.0)
    assert [type(op).__name__ for op in two.augment.pipeline().transforms] == ["OneOf", "Affine"]
    assert TrainingPlan.from_dict(two.to_dict()).to_dict()["version"] == PLAN_VERSION
    # version 3 imbalance fixes held class weights only: they load as the weights method
    three = TrainingPlan.from_dict({"version": 3, "class_names": NAMES, "imbalance": {
        "classes": ["5"], "class_weight": {"5": 3.1623}, "train_counts": {"5": 10}, "median_count": 100.0}})
    assert three.imbalance.method == "weights" and three.imbalance.oversample == {} == three.imbalance.logit_offset


def test_class_weight_arithmetic():
    counts = {"a": 100, "b": 50, "c": 200, "d": 0}
    weights, median = class_weights(counts, ["a", "b", "d"])
    assert median == 75.0
    # sqrt(75 / 50) for b; never below 1 (a: sqrt(0.75)); capped at 10 (d has no image)
    assert weights == {"a": 1.0, "b": pytest.approx(1.2247), "d": 10.0}
    assert class_weights({"a": 1000, "b": 1000, "c": 1}, ["c"])[0] == {"c": 10.0}  # sqrt(1000) = 31.6, capped


def test_imbalance_methods_arithmetic():
    counts = {"a": 100, "b": 10, "c": 100, "d": 0}  # median 55: b has r = 5.5, d none (capped at 10)
    weights = imbalance_fix(counts, ["b", "d"], method="weights")
    assert weights.class_weight == {"b": pytest.approx(2.3452), "d": 10.0}
    assert weights.oversample == {} == weights.logit_offset
    oversample = imbalance_fix(counts, ["b", "d"], method="oversample")
    assert oversample.oversample == {"b": 6, "d": 10} and oversample.class_weight == {}  # round(5.5) = 6
    both = imbalance_fix(counts, ["b"], method="both")
    assert both.class_weight == {"b": pytest.approx(2.3452)} and both.oversample == {"b": 2}  # round(sqrt(5.5))
    threshold = imbalance_fix(counts, ["b", "d"], method="threshold")
    assert threshold.logit_offset == {"b": pytest.approx(math.log(5.5), abs=1e-4), "d": pytest.approx(math.log(10), abs=1e-4)}
    assert threshold.class_weight == {} == threshold.oversample
    assert "logit +1.70 (probability x5.50)" in threshold.describe()
    with pytest.raises(PlanError, match="imbalance method"):
        imbalance_fix(counts, ["b"], method="smote")


def test_imbalance_method_reaches_the_plan_and_the_training_set(decisions, train_labels):
    with pytest.raises(PlanError, match="imbalance method"):
        build_plan(decisions, class_names=NAMES, train_labels=train_labels, imbalance_method="focal")
    images = np.arange(len(train_labels), dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 1), np.uint8)
    by_method = {}
    for method in IMBALANCE_METHODS:
        plan = build_plan(decisions, class_names=NAMES, train_labels=train_labels, imbalance_method=method)
        assert plan.imbalance.method == method
        assert TrainingPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
        by_method[method] = apply_plan(plan.only("augment", "imbalance"), images, train_labels)
    n = len(train_labels)  # 900 images, 10 of class 5 (median 100: r = 10)
    over = by_method["oversample"]
    # class 5's ten images appear 10 times each, then every row gets its augmented copy
    assert over.n_oversampled == 90 and len(over.images) == 2 * (n + 90) and over.sample_weight is None
    assert np.sum(over.labels == 5) == 2 * 100 and np.sum(over.labels == 4) == 2 * 100
    assert sorted(set(over.images[over.labels == 5][:, 0, 0, 0].tolist())) == sorted(
        set(images[train_labels == 5][:, 0, 0, 0].tolist()))
    both = by_method["both"]
    assert both.n_oversampled == 20 and both.sample_weight[both.labels == 5] == pytest.approx([3.1623] * 60)
    threshold = by_method["threshold"]
    assert threshold.sample_weight is None and threshold.n_oversampled == 0
    assert threshold.logit_offset[5] == pytest.approx(math.log(10), abs=1e-4) and threshold.logit_offset.sum() == \
        threshold.logit_offset[5]
    assert by_method["weights"].logit_offset is None


def test_decision_thresholds_move_the_output_layer_bias():
    import keras

    from hardcase.models.retrain import adjust_decision_thresholds

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(3,))
    softmax = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(inputs))
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    before = np.asarray(softmax(x))
    offset = np.array([0.0, math.log(4.0), 0.0, 0.0], np.float32)
    adjust_decision_thresholds(softmax, offset)
    after = np.asarray(softmax(x))
    # class 1's probability multiplied by 4, then renormalised
    expected = before * np.exp(offset)
    assert after == pytest.approx(expected / expected.sum(axis=1, keepdims=True), rel=1e-5)
    # logits (linear output) and a separate Softmax layer after a linear Dense work alike
    logits_layer = keras.layers.Dense(4)
    separate = keras.Model(inputs, keras.layers.Softmax()(logits_layer(inputs)))
    bias = np.asarray(logits_layer.bias).copy()
    adjust_decision_thresholds(separate, offset)
    assert np.asarray(logits_layer.bias) == pytest.approx(bias + offset)
    with pytest.raises(PlanError, match="shape"):
        adjust_decision_thresholds(softmax, offset[:3])
    relu = keras.Model(inputs, keras.layers.Dense(4, activation="relu")(inputs))
    with pytest.raises(PlanError, match="Dense output layer"):
        adjust_decision_thresholds(relu, offset)


def test_relabel_arithmetic_train_and_eval(decisions, train_labels):
    plan = build_plan(decisions, class_names=NAMES, train_labels=train_labels,
                      pool_hashes={4: "h4", 5: "h5"}, train_index_of_hash={"h4": 17}, imbalance_method="weights")
    images = np.zeros((len(train_labels), 4, 4, 1), np.uint8)
    data = apply_plan(plan.only("mislabel", "imbalance"), images, train_labels)
    assert data.n_relabelled == 1 and data.labels[17] == 8 and train_labels[17] == 0
    assert (data.labels != train_labels).sum() == 1
    # class 5 weighs sqrt(100 / 10), everything else 1 (sample weights follow the corrected labels)
    assert data.sample_weight[train_labels == 5] == pytest.approx([3.1623] * 10)
    assert data.sample_weight[17] == 1.0 and data.pipeline is None
    # an evaluation set holding the relabelled pool images gets corrected labels
    eval_labels = np.array([3, 1, 3, 2])
    fixed, changed = corrected_labels(plan, eval_labels, ["h4", "h5", "x", "y"])
    assert fixed.tolist() == [8, 7, 3, 2] and changed == 2
    flips = prediction_flips(np.array([3, 1, 0, 2]), np.array([8, 0, 3, 2]), fixed)
    assert flips == {"fixed": 2, "broken": 0, "changed": 3}


def test_rare_samples_added_and_oversampled(decisions, train_labels):
    plan = build_plan(decisions, class_names=NAMES, train_labels=train_labels, rare_oversample=3).only("rare")
    images = np.zeros((len(train_labels), 4, 4, 1), np.uint8)
    data = apply_plan(plan, images, train_labels, rare_images=np.full((1, 4, 4, 1), 7, np.uint8))
    assert data.n_added == 3 and len(data.images) == len(images) + 3
    assert data.labels[-3:].tolist() == [4, 4, 4] and (data.images[-3:] == 7).all()
    with pytest.raises(PlanError):
        apply_plan(plan, images, train_labels)


def test_unknown_label_is_a_plan_error(train_labels):
    with pytest.raises(PlanError, match="not a class"):
        build_plan([_row(0, "mislabel", "3", final_label="cat")], class_names=NAMES, train_labels=train_labels)


def test_plan_path_beside_model(tmp_path):
    assert plan_path_for(tmp_path / "new.keras") == tmp_path / "new.plan.json"


@pytest.fixture(scope="module")
def reviewed_run(tmp_path_factory, demo_model_path, mnist_small):
    """A small pool mined with the demo model, reviewed with one decision of each cause."""
    from sqlalchemy import select

    from hardcase.models.faults import inject_faults
    from hardcase.review_app.workflows.mining import MiningOptions, mine
    from hardcase.store import api
    from hardcase.store.db import open_store
    from hardcase.store.schema import Candidate, Sample

    folder = tmp_path_factory.mktemp("retrain")
    train_x, train_y, pool_x, pool_y = mnist_small
    pool = inject_faults(pool_x[:300], pool_y[:300], n_classes=10, flip=0.05, rotate=0.05, rare=0.03, seed=1)
    np.savez(folder / "pool.npz", x=pool.images, y=pool.labels)
    np.savez(folder / "train.npz", x=train_x[:300], y=train_y[:300])
    np.savez(folder / "heldout.npz", x=pool_x[300:500], y=pool_y[300:500])
    store = open_store(f"sqlite:///{folder / 'h.db'}")
    mine(store, MiningOptions(run_name="r", model_path=str(demo_model_path), data_path=str(folder / "pool.npz"),
                              per_class=3, checkpoint_seconds=0), artifacts_dir=folder / "art", progress=False)
    with store.Session.begin() as session:
        run = api.require_run(session, "r")
        candidates = session.execute(
            select(Candidate.id, Candidate.review_version, Sample.source_index)
            .join(Sample, Sample.id == Candidate.sample_id).where(Candidate.run_id == run.id)
            .order_by(Candidate.rank)
        ).all()
    causes = ["augment", "imbalance", "mislabel", "rare", "not_a_failure"]
    with store.Session.begin() as session:
        for (cid, version, index), cause in zip(candidates, causes):
            label = str((pool.labels[index] + 1) % 10) if cause == "mislabel" else None
            api.submit_review(session, cid, reviewer="oracle", cause=cause, new_label=label, seen_version=version,
                              transform={"rotate": 40.0} if cause == "augment" else None)
    yield store, folder
    store.dispose()


def test_tiny_retrain_end_to_end_writes_model_plan_and_report(reviewed_run, demo_model_path):
    from hardcase.models.classifier import load_classifier
    from hardcase.review_app.workflows.retrain import RetrainOptions, report_paths, run_retrain

    store, folder = reviewed_run
    out = folder / "new" / "retrained.keras"
    lines = []
    report = run_retrain(store, RetrainOptions(
        model_path=str(demo_model_path), train_data=str(folder / "train.npz"), run_name="r", out=str(out),
        evals={"heldout": str(folder / "heldout.npz"), "pool": str(folder / "pool.npz")},
        epochs=1, seed=0, ablate=True), echo=lines.append)
    assert lines[0].startswith("training plan:")
    assert out.exists() and out.with_suffix(".spec.json").exists()
    plan = TrainingPlan.load(plan_path_for(out))
    assert plan.families == ["augment", "imbalance", "mislabel", "rare"]
    assert plan.augment.rotate_limit == 45.0
    assert load_classifier(out).n_classes == 10
    paths = report_paths(out)
    for key in ("json", "markdown", "accuracy_png", "recall_png", "ablation_png"):
        assert paths[key].exists() and paths[key].stat().st_size > 0, key
    saved = json.loads(paths["json"].read_text())
    assert set(saved["sets"]) == {"heldout", "heldout:rotated", "heldout:perspective", "pool"}
    assert saved["sets"]["heldout"]["n"] == 200
    assert "corrected" in saved["sets"]["pool"]  # the relabelled pool sample is corrected in the pool eval
    assert saved["sets"]["pool"]["corrected"]["n_corrected"] == 1
    assert set(saved["ablation"]["gain_vs_no_plan"]) == {"augment", "imbalance", "mislabel", "rare", "all"}
    sizes = saved["ablation"]["training_images"]
    # the three reviewed pool samples (augment, imbalance, mislabel) join the 300 training images
    assert sizes["none"] == 303 and sizes["augment"] == 606 and sizes["all"] == 616  # copies cost steps: said
    text = paths["markdown"].read_text()
    assert "## Before / after" in text and "Trained on 616 images for 1 epochs (seed 0)" in text
    assert "Reviewed pool samples added to the training data: 1 augment, 1 imbalance, 1 mislabel." in text
    assert report["training"]["pool_samples"] == {"augment": 1, "imbalance": 1, "mislabel": 1}
    assert any(line.startswith("reviewed pool samples joining the training data: augment 1") for line in lines)
    assert paths["accuracy_png"].read_bytes()[:4] == b"\x89PNG"
    assert report["training"]["n_images"] == 2 * (303 + 5)  # one rare sample x5, and an augmented copy of each


def test_retrain_from_an_exported_fix_list(reviewed_run, demo_model_path, tmp_path):
    from hardcase.review_app.workflows.retrain import RetrainOptions, report_paths, run_retrain
    from hardcase.store.export import export_rows, write_rows

    store, folder = reviewed_run
    columns, rows = export_rows(store, "r", "fixes")
    fixes = write_rows(columns, [r for r in rows if r[columns.index("final_cause")] == "augment"],
                       tmp_path / "fixes.csv")
    out = tmp_path / "m.keras"
    run_retrain(store, RetrainOptions(
        model_path=str(demo_model_path), train_data=str(folder / "train.npz"), run_name="r", out=str(out),
        evals={"heldout": str(folder / "heldout.npz")}, fixes_path=str(fixes), epochs=1, stress=False, pool=False),
        echo=lambda _: None)
    assert TrainingPlan.load(plan_path_for(out)).families == ["augment"]
    saved = json.loads(report_paths(out)["json"].read_text())
    assert saved["training"]["pool_samples"] == {"augment": 0, "imbalance": 0, "mislabel": 0}  # --no-pool


@pytest.mark.skipif(os.environ.get("HARDCASE_RUN_BENCH") != "1" and os.environ.get("CI", "").lower() != "true",
                    reason="about 70 s on 2 cores: runs in CI, or locally with HARDCASE_RUN_BENCH=1")
def test_close_loop_bench_small(mnist10k_dir, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "bench" / "close_loop.py"), "--small",
                             "--no-suggestions", "--json", str(tmp_path / "bench.json")],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    table = json.loads((tmp_path / "bench.json").read_text())
    assert {"plan", "no_plan"} <= set(table["oracle"])
    assert "held-out accuracy" in result.stdout


def test_augment_ranges_cover_confirmed_stretch_and_shear():
    # two reviewers undid a four-corner warp with a stretch and a shear; one only rotated
    fix = augment_ranges([{"shear": -10.0, "aspect": 1.25}, {"shear": 6.0, "aspect": 0.8}, {"rotate": 20.0}],
                         quantile=1.0)
    assert fix.shear_limit == 11.0  # 10 x 1.1, rounded up to a degree
    assert fix.aspect_limit == pytest.approx(0.275)  # a 1.25 stretch either way, x 1.1
    assert "shear=±11" in fix.describe() and "Affine(scale_x=(0.78, 1.27))" in fix.describe()
    affine, stretch = fix.pipeline().transforms
    assert tuple(affine.shear["x"]) == (-11.0, 11.0) and affine.keep_ratio  # zoom as the slider: both axes
    # the stretch is its own operation: the width alone, over the confirmed range either way
    assert tuple(stretch.scale["x"]) == pytest.approx((1 / 1.275, 1.275)) and tuple(stretch.scale["y"]) == (1.0, 1.0)
    image = np.zeros((28, 28), np.uint8)
    image[8:20, 12:16] = 255
    widths = {int(np.ptp(np.flatnonzero(fix.pipeline()(image=image)["image"].max(axis=0) > 0))) for _ in range(12)}
    assert len(widths) > 2


def test_float_images_load_as_0_255_pixels(tmp_path):
    """A 0-1 float data set trains on its real pixels, not on 0/1 values (a near-black image)."""
    from hardcase.miner.spec import PreprocessingSpec
    from hardcase.review_app.workflows.retrain import load_images

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(6, 8, 8, 1)).astype(np.uint8)
    np.savez(tmp_path / "floats.npz", x=pixels.astype(np.float32) / 255.0, y=np.array([0, 1, 2, 0, 1, 2]))
    spec = PreprocessingSpec(height=8, width=8, channels=1, scale="0-1", class_names=("a", "b", "c"))

    images, labels = load_images(str(tmp_path / "floats.npz"), spec)

    assert images.dtype == np.uint8
    np.testing.assert_array_equal(images, pixels)
    np.testing.assert_array_equal(labels, [0, 1, 2, 0, 1, 2])


def test_training_labels_of_an_unknown_class_name_are_a_plan_error(tmp_path):
    """A folder class the model does not know stops retraining, naming it."""
    from PIL import Image

    from hardcase.miner.spec import PreprocessingSpec
    from hardcase.review_app.workflows.retrain import load_images

    for name in ("a", "zebra"):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.fromarray(np.full((8, 8), 200, dtype=np.uint8)).save(tmp_path / "data" / name / "0.png")
    spec = PreprocessingSpec(height=8, width=8, channels=1, scale="0-1", class_names=("a", "b"))

    with pytest.raises(PlanError, match="zebra"):
        load_images(str(tmp_path / "data"), spec)


def test_retrain_cli_refuses_an_unknown_imbalance_method_in_one_line(tmp_path, capsys):
    from hardcase.review_app.cli import main

    code = main(["retrain", "--db", f"sqlite:///{tmp_path / 'none.db'}", "--model", str(tmp_path / "m.keras"),
                 "--train-data", str(tmp_path / "t.npz"), "--run", "r", "--eval", f"e={tmp_path / 'e.npz'}",
                 "--out", str(tmp_path / "out.keras"), "--imbalance", "smote"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--imbalance must be one of weights, oversample, both, threshold, got 'smote'" in err[0]
