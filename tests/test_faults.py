"""Fault injection: disjoint seeded shares with known true causes."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
from conftest import IN_CI, REPO

from hardcase.models.faults import inject_faults


def test_faults_are_disjoint_seeded_and_as_described(mnist_small):
    _, _, images, labels = mnist_small
    pool = inject_faults(images, labels, n_classes=10, flip=0.1, rotate=0.1, perspective=0.1, rare=0.1, seed=3)
    counts = {kind: int((pool.fault == kind).sum()) for kind in ("clean", "flip", "rotate", "perspective", "rare")}
    assert counts == {"clean": 600, "flip": 100, "rotate": 100, "perspective": 100, "rare": 100}
    flipped = pool.fault == "flip"
    assert np.all(pool.labels[flipped] != pool.true_labels[flipped])
    assert np.all(pool.labels[~flipped] == pool.true_labels[~flipped])
    np.testing.assert_array_equal(pool.images[flipped], images[flipped])
    rotated = pool.fault == "rotate"
    assert np.all((np.abs(pool.angle[rotated]) >= 35) & (np.abs(pool.angle[rotated]) <= 70))
    assert np.all(pool.angle[~rotated] == 0)
    rare = pool.fault == "rare"
    assert np.all(pool.images[rare].reshape(100, -1).astype(bool).sum(1) > images[rare].reshape(100, -1).astype(bool).sum(1))
    assert set(pool.true_cause) == {"clean", "mislabel", "augment", "rare"}
    again = inject_faults(images, labels, n_classes=10, flip=0.1, rotate=0.1, perspective=0.1, rare=0.1, seed=3)
    np.testing.assert_array_equal(again.images, pool.images)


def test_geometric_faults_record_the_homography_they_applied_and_can_be_undone(mnist_small):
    _, _, images, labels = mnist_small
    pool = inject_faults(images, labels, n_classes=10, flip=0.1, rotate=0.1, perspective=0.1, rare=0.1, seed=3)
    height, width = images.shape[1:3]
    for kind in ("rotate", "perspective"):
        rows = np.flatnonzero(pool.fault == kind)
        # the recorded homography reproduces the faulted image from the original exactly
        redone = np.stack([cv2.warpPerspective(images[i, ..., 0], pool.warp[i], (width, height), flags=cv2.INTER_LINEAR)
                           for i in rows])
        np.testing.assert_array_equal(redone, pool.images[rows, ..., 0])
        # undoing it gives the original back up to what the warp lost (far closer than the faulted image)
        faulted = np.abs(pool.images[rows].astype(int) - images[rows]).mean()
        undone = np.abs(pool.undone(rows).astype(int) - images[rows]).mean()
        assert undone < 0.3 * faulted, (kind, undone, faulted)
    others = np.flatnonzero(~np.isin(pool.fault, ["rotate", "perspective"]))
    assert np.array_equal(pool.warp[others], np.tile(np.eye(3), (len(others), 1, 1)))
    np.testing.assert_array_equal(pool.undone(others), pool.images[others])


def test_fault_shares_are_validated(mnist_small):
    _, _, images, labels = mnist_small
    with pytest.raises(ValueError, match="add up to 1.25"):
        inject_faults(images, labels, n_classes=10, flip=0.6, rotate=0.6)
    with pytest.raises(ValueError, match="fault share rare must be in"):
        inject_faults(images, labels, n_classes=10, rare=-0.1)


def test_new_fault_kinds_have_their_cause_and_change_what_they_say(mnist_small):
    from hardcase.models.faults import CAUSE_OF_FAULT, lookalike_classes

    _, _, images, labels = mnist_small
    shares = {"confuse": 0.1, "shear": 0.1, "thin": 0.1, "blur": 0.1, "occlusion": 0.1, "intensity": 0.1}
    pool = inject_faults(images, labels, n_classes=10, flip=0.0, rotate=0.0, perspective=0.0, rare=0.0, seed=5,
                         **shares)
    assert {kind: int((pool.fault == kind).sum()) for kind in shares} == dict.fromkeys(shares, 100)
    # a systematic confusion: every confused label is its class's look-alike, never the class itself
    lookalike = lookalike_classes(images, labels, n_classes=10)
    assert (lookalike != np.arange(10)).all()
    confused = pool.fault == "confuse"
    np.testing.assert_array_equal(pool.labels[confused], lookalike[labels[confused]])
    assert np.all(pool.labels[~confused] == labels[~confused])
    ink = lambda rows, imgs: imgs[rows].reshape(len(rows), -1).astype(bool).sum(1)  # noqa: E731
    thin = np.flatnonzero(pool.fault == "thin")
    assert (ink(thin, pool.images) < ink(thin, images)).all()
    blur = np.flatnonzero(pool.fault == "blur")
    assert (pool.images[blur].reshape(100, -1).max(1) < images[blur].reshape(100, -1).max(1)).mean() > 0.9
    occluded = np.flatnonzero(pool.fault == "occlusion")
    assert (pool.images[occluded].astype(int).sum((1, 2, 3)) < images[occluded].astype(int).sum((1, 2, 3))).all()
    washed = np.flatnonzero(pool.fault == "intensity")
    assert (pool.images[washed].min((1, 2, 3)) >= 96).all() and (pool.images[washed].max((1, 2, 3)) <= 224).all()
    # a shear is geometric: its homography is recorded and the oracle undoes it
    sheared = np.flatnonzero(pool.fault == "shear")
    faulted = np.abs(pool.images[sheared].astype(int) - images[sheared]).mean()
    undone = np.abs(pool.undone(sheared).astype(int) - images[sheared]).mean()
    assert undone < 0.3 * faulted
    assert {CAUSE_OF_FAULT[kind] for kind in shares} == {"mislabel", "augment", "rare"}
    assert set(pool.true_cause[confused]) == {"mislabel"} and set(pool.true_cause[sheared]) == {"augment"}


@pytest.mark.parametrize("dataset", ["mnist", "fashion", "digits"])
def test_one_small_scenario_per_dataset_ranks_wrong_labels_and_faults_on_ground_truth(dataset, tmp_path):
    """The smallest grid scenario of ``bench/faults.py --scenarios`` per dataset: a demo CNN trained
    briefly (100 images a class, 3 epochs), 1,500 pool images with 10% rotated 75-120 degrees and
    5% flipped. The exported label quality finds more of the flipped labels among its k lowest
    than the plain self-confidence and than Cleanlab's find_label_issues (the rotations, which the
    self-confidence also doubts, are what it must see past); the hardness finds as many injected
    faults among the 5% hardest as the self-confidence."""
    sys.path.insert(0, str(REPO / "bench"))
    import fault_scenarios as grid

    from hardcase.miner.causes import fit_class_density
    from hardcase.models.classifier import load_classifier

    if dataset == "fashion" and not (grid.fashion_folder() / "t10k-images-idx3-ubyte.gz").exists():
        message = f"Fashion-MNIST is not installed at {grid.fashion_folder()} (apt-get install dataset-fashion-mnist)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    data = grid.load_dataset(dataset, pool_size=1500, train_per_class=100, seed=0)
    path, _, (train_x, train_y) = grid.trained_model("cnn", data, epochs=3, seed=0, folder=tmp_path)
    classifier = load_classifier(path)
    _, train_emb = classifier.predict_and_embed_batch(train_x)
    density = fit_class_density(train_emb.astype(np.float32), train_y, n_classes=10)
    pool = inject_faults(data.pool_images, data.pool_labels, n_classes=10, flip=0.05, rotate=0.10, perspective=0.0,
                         rare=0.0, angle_range=(75.0, 120.0), seed=0)
    probs, emb = classifier.predict_and_embed_batch(pool.images)
    probs = probs.astype(np.float64) / probs.sum(axis=1, keepdims=True)
    emb = emb.astype(np.float32)
    wrong = pool.labels != pool.true_labels
    ranks = grid.label_rankings(pool.labels, probs, pool_emb=emb, density=density,
                                pool_density=fit_class_density(emb, pool.labels, n_classes=10), wrong=wrong)
    assert ranks["k"] == 75
    assert ranks["exported"] > ranks["self_confidence"], ranks
    assert ranks["exported"] > ranks["cleanlab_find"], ranks
    hardest = grid.hardest_shares(pool.labels, probs, pool.fault != "clean", 0.05)
    assert hardest["hardness"] >= hardest["self_confidence"] > hardest["max_probability"], hardest


def test_mining_exports_the_benchmarked_label_quality_and_the_mislabel_filter_follows_it(tmp_path, demo_model_path,
                                                                                          mnist_small):
    """Mining with training data and cause suggestion stores the contrast label quality with the
    training reference (what the benchmark measures as ``exported``), which finds more of the
    flipped labels among its k lowest than the self-confidence beside large rotations; the review queue's mislabel filter and the gallery walk candidates lowest first."""
    from sqlalchemy import select

    from hardcase.miner.causes import fit_class_density
    from hardcase.miner.causes.label_issues import pool_label_quality_score
    from hardcase.review_app.workflows.gallery import gallery_entries
    from hardcase.review_app.workflows.mining import MiningOptions, mine
    from hardcase.review_app.workflows.suggest import TRAIN_CACHE
    from hardcase.store import api
    from hardcase.store.db import open_store
    from hardcase.store.schema import Candidate, Score

    train_x, train_y, pool_x, pool_y = mnist_small
    pool = inject_faults(pool_x, pool_y, n_classes=10, flip=0.04, rotate=0.06, perspective=0.0, rare=0.0,
                         angle_range=(75.0, 120.0), seed=2)
    np.savez(tmp_path / "train.npz", x=train_x, y=train_y)
    np.savez(tmp_path / "pool.npz", x=pool.images, y=pool.labels)
    store = open_store(f"sqlite:///{tmp_path / 'm.db'}")
    art = tmp_path / "art"
    mine(store, MiningOptions(run_name="m", model_path=str(demo_model_path), data_path=str(tmp_path / "pool.npz"),
                              train_data=str(tmp_path / "train.npz"), per_class=3, seed=0),
         artifacts_dir=art, progress=False)
    with store.Session.begin() as session:
        run = api.require_run(session, "m")
        rows = session.execute(select(Candidate.id, Candidate.rank, Candidate.sample_id)
                               .where(Candidate.run_id == run.id)).all()
        quality = dict(session.execute(select(Score.sample_id, Score.label_quality_score)
                                       .where(Score.run_id == run.id)).all())
        api.set_suggestions(session, run.id, [
            {"candidate_id": row.id, "suggested_cause": "mislabel", "suggested_label": None,
             "suggestion_confidence": 0.5, "evidence": {}} for row in rows])
        run_id = run.id
    probs = np.load(art / "m" / "pred_probs.npy").astype(np.float64)
    probs /= probs.sum(axis=1, keepdims=True)
    with np.load(art / "m" / TRAIN_CACHE) as cache:
        density = fit_class_density(cache["embeddings"].astype(np.float32), cache["labels"], n_classes=10)
    expected = pool_label_quality_score(pool.labels, probs, embeddings=np.load(art / "m" / "embeddings.npy"),
                                        train_density=density)
    sample_ids = np.load(art / "m" / "sample_ids.npy")
    stored = np.array([quality[int(i)] for i in sample_ids])
    np.testing.assert_allclose(stored, expected, rtol=1e-6)
    flipped = pool.fault == "flip"
    k = int(flipped.sum())
    self_confidence = probs[np.arange(len(probs)), pool.labels]
    precision = {name: flipped[np.argsort(score, kind="stable")[:k]].mean()
                 for name, score in (("stored", stored), ("self_confidence", self_confidence))}
    assert precision["stored"] > precision["self_confidence"], precision
    # the mislabel filter: every candidate once, by stored label quality (ties by rank)
    seen, after = [], None
    while True:
        with store.Session.begin() as session:
            view = api.next_candidate(session, run_id, reviewer="ana", suggested_cause="mislabel", after_rank=after)
        if view is None:
            break
        seen.append(view.id)
        after = view.rank
    by_id = {row.id: (quality[row.sample_id], row.rank) for row in rows}
    assert seen == sorted(by_id, key=lambda i: by_id[i])
    entries, _ = gallery_entries(store, "m", class_name=None)
    for name in {entry.class_name for entry in entries}:
        shown = [by_id[entry.candidate_id] for entry in entries if entry.class_name == name]
        assert shown == sorted(shown)
    store.dispose()
