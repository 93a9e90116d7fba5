"""The batched transform search with the demo model, on constructed ground truth: rotated
digits are restored near the inverse angle, flipped labels and dilated digits are not
"fixed", and the search costs far fewer model evaluations than an exhaustive grid."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from hardcase.miner.causes import (
    class_typicality,
    fit_class_density,
    suggest_causes,
)
from hardcase.miner.scores import confident_thresholds
from hardcase.models.transform_search import (
    SearchSpace,
    _apply_stacked,
    calibrate_null,
    class_moments,
    family_of,
    image_moments,
    judge_restorations,
    search_transforms,
)
from hardcase.models.transforms import Transform, apply_transform

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
try:
    from exhaustive_grid import (  # the benchmark baseline, not the product
        GRID_ANGLES,
        exhaustive_grid,
    )
finally:
    sys.path.pop(0)

ANGLE = 50.0


@pytest.fixture(scope="module")
def world(demo_classifier, mnist_small):
    """Training density, pool predictions and 24 typical, confidently classified pool digits."""
    train_x, train_y, pool_x, pool_y = mnist_small
    train_probs, train_emb = zip(*demo_classifier.iter_predictions(train_x))
    pool_probs, pool_emb = zip(*demo_classifier.iter_predictions(pool_x))
    train_probs, train_emb = np.concatenate(train_probs), np.concatenate(train_emb)
    pool_probs = np.concatenate(pool_probs).astype(np.float64)
    pool_probs /= pool_probs.sum(axis=1, keepdims=True)
    pool_emb = np.concatenate(pool_emb)
    density = fit_class_density(train_emb, train_y, n_classes=10)
    thresholds = confident_thresholds(pool_y, pool_probs, unknown_labels="as_predicted")
    typ = class_typicality(pool_emb, pool_y, density=density)
    typical = np.flatnonzero((pool_probs.argmax(1) == pool_y) & (pool_probs.max(1) > 0.99) & (typ.pvalue > 0.3))
    chosen = np.random.default_rng(0).choice(typical, size=24, replace=False)
    return {
        "classifier": demo_classifier, "train": (train_x, train_y, train_probs, train_emb),
        "pool": (pool_x, pool_y, pool_probs, pool_emb), "density": density, "thresholds": thresholds,
        "chosen": chosen,
    }


def test_stacked_application_is_exactly_the_per_image_transform(rng):
    gray = rng.integers(0, 256, size=(7, 28, 28, 1), dtype=np.uint8)
    rgb = rng.integers(0, 256, size=(3, 20, 24, 3), dtype=np.uint8)
    for images in (gray, rgb, gray[:1]):
        for t in (Transform(rotate=-37.5), Transform(perspective=0.15, direction=292.5),
                  Transform(rotate=10, perspective=0.08, direction=45, scale=0.8)):
            expected = np.stack([apply_transform(image, t) for image in images])
            np.testing.assert_array_equal(_apply_stacked(images, t), expected)


def test_search_space_and_families():
    space = SearchSpace()
    coarse = space.coarse()
    assert coarse[0].is_identity and len(coarse) == 1 + 12 + 8 + 2 + 6
    assert {family_of(t) for t in coarse} == {"none", "rotate", "perspective", "scale", "skew"}
    assert sorted(t.shear for t in coarse if t.shear) == [-45, -30, -15, 15, 30, 45]
    assert not [t for t in SearchSpace(max_shear=0).coarse() if t.shear]
    assert family_of(Transform(shear=5)) == "skew" and family_of(Transform(rotate=5, aspect=0.9)) == "combined"
    assert family_of(Transform(rotate=5, scale=0.8)) == "combined"
    with pytest.raises(ValueError, match="tilt strengths must be in"):
        SearchSpace(tilt_strengths=(0.5,))
    with pytest.raises(ValueError, match="max_rotation must be in"):
        SearchSpace(max_rotation=0)


def test_rotated_digits_are_restored_near_the_inverse_angle_and_called_augment(world):
    pool_x, pool_y, pool_probs, pool_emb = world["pool"]
    classifier, density, thresholds = world["classifier"], world["density"], world["thresholds"]
    rotated = np.stack([apply_transform(pool_x[i], Transform(rotate=ANGLE)) for i in world["chosen"]])
    probs, emb = classifier.predict_and_embed_batch(rotated)
    failed = probs.argmax(1) != pool_y[world["chosen"]]  # some digits (a 0) survive a rotation
    assert failed.sum() >= 8
    chosen, rotated, probs, emb = world["chosen"][failed], rotated[failed], probs[failed], emb[failed]
    evidence = search_transforms(classifier, rotated, pool_y[chosen], density=density, thresholds=thresholds)
    angle = np.array([t["rotate"] for t in evidence.transform])
    within = evidence.restores & (np.abs(angle + ANGLE) <= 10)
    assert within.mean() >= 0.7, (evidence.restores, angle)
    assert np.all(evidence.before < evidence.after)
    assert set(evidence.family[evidence.restores]) <= {"rotate", "combined"}
    assert evidence.stats["per_candidate"] < 50  # an exhaustive grid runs 286 per candidate
    assert 0 < evidence.stats["model_seconds"] < evidence.stats["seconds"]
    for smallest, t in zip(evidence.smallest, evidence.transform):
        if smallest is not None:
            assert abs(smallest["rotate"]) <= abs(t["rotate"]) + 1e-9 or smallest["perspective"] or smallest["scale"] != 1

    # the full decision: the rotated digits, as candidates of the pool, are augment
    labels = np.concatenate([pool_y, pool_y[chosen]])
    all_probs = np.concatenate([pool_probs, probs / probs.sum(1, keepdims=True)])
    all_emb = np.concatenate([pool_emb, emb])
    cand = np.arange(len(pool_y), len(labels))
    out = suggest_causes(labels, all_probs, embeddings=all_emb, density=density, candidates=cand,
                         train_labels=world["train"][1], transform_evidence=evidence, thresholds=thresholds)
    assert np.all(out.cause[within] == "augment")
    assert "rotating" in out.evidence[int(np.flatnonzero(within)[0])]["text"]


def test_sheared_digits_are_restored_by_the_opposite_shear(world):
    pool_x, pool_y, _, _ = world["pool"]
    classifier, density, thresholds = world["classifier"], world["density"], world["thresholds"]
    sheared = np.stack([apply_transform(pool_x[i], Transform(shear=40.0)) for i in world["chosen"]])
    failed = classifier.predict_proba(sheared).argmax(1) != pool_y[world["chosen"]]
    assert failed.sum() >= 4
    chosen, sheared = world["chosen"][failed], sheared[failed]
    evidence = search_transforms(classifier, sheared, pool_y[chosen], density=density, thresholds=thresholds)
    shear = np.array([t["shear"] for t in evidence.transform])
    # the opposite shear, alone or with a small correction, gives the digit back
    assert np.mean((evidence.predicted_after == pool_y[chosen]) & (shear <= -20)) >= 0.6, (shear, evidence.after)


def test_flipped_labels_are_mislabel_with_the_right_label_and_not_fixed(world):
    pool_x, pool_y, pool_probs, pool_emb = world["pool"]
    chosen = world["chosen"][:12]
    labels = pool_y.copy()
    labels[chosen] = (pool_y[chosen] + 1 + np.arange(len(chosen)) % 9) % 10
    evidence = search_transforms(world["classifier"], pool_x[chosen], labels[chosen], density=world["density"],
                                 thresholds=world["thresholds"])
    assert evidence.restores.sum() <= 2  # a search maximizing confidence alone "fixes" far more
    # the false-fix calibration on clean training images rejects what is left
    train_x, train_y, train_probs, _ = world["train"]
    null = calibrate_null(world["classifier"], train_x, train_probs, train_y, density=world["density"],
                          thresholds=world["thresholds"], n=40)
    calibrated = search_transforms(world["classifier"], pool_x[chosen], labels[chosen], density=world["density"],
                                   thresholds=world["thresholds"], null=null)
    assert calibrated.restores.sum() <= 1, (calibrated.restores.sum(), null.threshold)
    out = suggest_causes(labels, pool_probs, embeddings=pool_emb, density=world["density"], candidates=chosen,
                         transform_evidence=evidence)
    assert np.mean(out.cause == "mislabel") >= 0.9
    right = (out.cause == "mislabel") & (out.suggested_label == pool_y[chosen])
    assert right.sum() == (out.cause == "mislabel").sum()
    text = out.evidence[int(np.flatnonzero(right)[0])]["text"]
    assert "nearest training images are" in text and "labelled" in text


def test_dilated_digits_far_from_all_training_embeddings_are_rare(world):
    pool_x, pool_y, pool_probs, pool_emb = world["pool"]
    classifier, density = world["classifier"], world["density"]
    candidates = world["chosen"][:12]
    kernel = np.ones((3, 3), np.uint8)
    dilated = np.stack([cv2.dilate(pool_x[i], kernel, iterations=3).reshape(pool_x[i].shape) for i in candidates])
    probs, emb = classifier.predict_and_embed_batch(dilated)
    probs = probs / probs.sum(1, keepdims=True)
    far = np.all(
        [class_typicality(emb, np.full(len(emb), c), density=density).pvalue < 0.05 for c in range(10)], axis=0
    )
    assert far.sum() >= 6
    dilated, probs, emb, given = dilated[far], probs[far], emb[far], pool_y[candidates][far]
    evidence = search_transforms(classifier, dilated, given, density=density, thresholds=world["thresholds"])
    labels = np.concatenate([pool_y, given])
    cand = np.arange(len(pool_y), len(labels))
    out = suggest_causes(labels, np.concatenate([pool_probs, probs]), embeddings=np.concatenate([pool_emb, emb]),
                         density=density, candidates=cand, transform_evidence=evidence,
                         thresholds=world["thresholds"])
    assert np.mean(out.cause == "rare") >= 0.75, out.cause
    rare = int(np.flatnonzero(out.cause == "rare")[0])
    assert out.evidence[rare]["density"]["percentile"] > 95
    assert out.evidence[rare]["text"].startswith("unlike the training data")


def test_correct_images_need_no_transform_and_the_null_and_grid_work(world):
    train_x, train_y, train_probs, _ = world["train"]
    pool_x, pool_y, _, _ = world["pool"]
    chosen = world["chosen"][:4]
    classifier, density, thresholds = world["classifier"], world["density"], world["thresholds"]
    evidence = search_transforms(classifier, pool_x[chosen], pool_y[chosen], density=density, thresholds=thresholds)
    assert not evidence.restores.any() and set(evidence.family) == {"none"}
    assert all(s is None for s in evidence.smallest)

    null = calibrate_null(classifier, train_x, train_probs, train_y, density=density, thresholds=thresholds, n=16)
    assert len(null.statistic) == 16 and 0 <= null.rate <= 1 and null.threshold >= 0
    assert null.stats["per_candidate"] > 0

    rotated = np.stack([apply_transform(pool_x[i], Transform(rotate=-ANGLE)) for i in chosen])
    grid = exhaustive_grid(classifier, rotated, pool_y[chosen])
    assert grid.evaluations == 4 * (1 + len([a for a in GRID_ANGLES if a]) + 256)
    assert np.mean(grid.predicted_after == pool_y[chosen]) >= 0.75
    assert len(grid.transform) == 4 and grid.seconds >= grid.model_seconds > 0


def test_judging_restored_images_applies_the_search_tests(world):
    # typical digits judged as their own class pass; the same digits judged as another class,
    # or rotated by 50 degrees, do not; a null threshold above every statistic rejects all
    pool_x, pool_y, _, _ = world["pool"]
    chosen = world["chosen"][:12]
    classifier, density, thresholds = world["classifier"], world["density"], world["thresholds"]
    own = judge_restorations(classifier, pool_x[chosen], pool_y[chosen], density=density, thresholds=thresholds)
    assert own.restores.mean() >= 0.9 and np.all(own.restores <= own.confident_typical & own.stable)
    assert np.array_equal(own.predicted, pool_y[chosen]) and np.all(own.typicality > 0.05)
    wrong = judge_restorations(classifier, pool_x[chosen], (pool_y[chosen] + 1) % 10, density=density,
                               thresholds=thresholds)
    assert not wrong.restores.any()
    rotated = np.stack([apply_transform(pool_x[i], Transform(rotate=ANGLE)) for i in chosen])
    tilted = judge_restorations(classifier, rotated, pool_y[chosen], density=density, thresholds=thresholds)
    assert tilted.restores.sum() <= 3
    strict = judge_restorations(classifier, pool_x[chosen], pool_y[chosen], density=density, thresholds=thresholds,
                                null_threshold=1.0)
    assert not strict.restores.any() and np.array_equal(strict.confident_typical, own.confident_typical)


def test_image_and_class_moments_on_constructed_images():
    images = np.zeros((3, 10, 20), np.uint8)
    images[0, 2, 4] = 255  # one pixel: centroid at its centre, no spread
    images[1, 5, 0] = images[1, 5, 10] = 100  # two pixels 10 apart: spread 5 px
    moments = image_moments(images)
    np.testing.assert_allclose(moments[0], [4.5 / 20, 2.5 / 10, 0.0])
    np.testing.assert_allclose(moments[1], [5.5 / 20, 5.5 / 10, 5 / np.sqrt(200)])
    assert moments[2, :2].tolist() == [0.5, 0.5] and np.isnan(moments[2, 2])  # blank: centre, no spread
    table = class_moments(moments, np.array([0, 0, 1]), n_classes=3)
    np.testing.assert_allclose(table.centroid[0], np.median(moments[:2, :2], axis=0))
    # class 1 has only a blank image and class 2 none: both get the overall median
    np.testing.assert_allclose(table.spread[1:], np.median(moments[:2, 2]))
    with pytest.raises(ValueError, match="moments must have shape"):
        class_moments(moments[:, :2], np.zeros(3), n_classes=1)
    with pytest.raises(ValueError, match="no reference image has any intensity"):
        class_moments(moments[2:], np.zeros(1), n_classes=1)


def test_zoomed_and_shifted_digits_are_restored_by_the_moment_fit(world):
    """A digit enlarged 1.4x and moved off-centre (as a hard perspective warp does): the guided
    search proposes the inverse zoom and shift; without the reference moments far fewer restore."""
    train_x, train_y, _, _ = world["train"]
    pool_x, pool_y, _, _ = world["pool"]
    classifier, density, thresholds = world["classifier"], world["density"], world["thresholds"]
    warp = Transform(scale=1.4, shift_x=0.14, shift_y=-0.14)
    warped = np.stack([apply_transform(pool_x[i], warp) for i in world["chosen"]])
    failed = classifier.predict_proba(warped).argmax(1) != pool_y[world["chosen"]]
    assert failed.sum() >= 6
    warped, targets = warped[failed], pool_y[world["chosen"]][failed]
    moments = class_moments(image_moments(train_x), train_y, n_classes=10)
    guided = search_transforms(classifier, warped, targets, density=density, thresholds=thresholds, moments=moments)
    plain = search_transforms(classifier, warped, targets, density=density, thresholds=thresholds)
    assert guided.restores.mean() >= 0.7, guided.transform
    assert guided.restores.sum() > plain.restores.sum()
    fits = [t for t, ok in zip(guided.transform, guided.restores) if ok and t["scale"] != 1]
    assert len(fits) >= 0.5 * guided.restores.sum()
    for t in fits:  # the inverse: zoom ~1/1.4, content moved back left and down (whole pixels)
        assert 0.55 <= t["scale"] <= 0.9 and t["shift_x"] <= 0 <= t["shift_y"], t
    assert np.mean([t["shift_x"] < 0 < t["shift_y"] for t in fits]) >= 0.6, fits


def test_search_inputs_are_checked(world):
    classifier = world["classifier"]
    images = world["pool"][0][:2]
    with pytest.raises(ValueError, match=r"targets must have shape \(M,\) = \(2,\)"):
        search_transforms(classifier, images, np.array([1]), density=None)
    with pytest.raises(ValueError, match="targets has value 10 at index 1; classes are 0..9"):
        search_transforms(classifier, images, np.array([1, 10]), density=None)
    with pytest.raises(TypeError, match="images must be uint8"):
        search_transforms(classifier, images.astype(np.float32), np.array([1, 2]), density=None)
    with pytest.raises(TypeError, match="targets must be integer class indices"):
        search_transforms(classifier, images, np.array([1.0, 2.0]), density=None)
    with pytest.raises(ValueError, match=r"thresholds must have shape \(K,\) = \(10,\)"):
        search_transforms(classifier, images, np.array([1, 2]), density=None, thresholds=np.ones(3))
    # without a density the typicality test is skipped, the rest works
    evidence = search_transforms(classifier, images, np.array([1, 2]), density=None)
    assert len(evidence) == 2 and np.all(np.isnan(evidence.typicality))
