"""Fault injection: disjoint seeded shares with known true causes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

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
