"""Concurrent predictions are batched per model, each caller getting its own row."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from hardcase.review_app.workflows.batching import PredictionBatcher


class SlowModel:
    """Row sums as 'probabilities'; each call takes 50 ms and may not overlap another."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.running = threading.Lock()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        assert self.running.acquire(blocking=False), "the model was called from two threads at once"
        try:
            time.sleep(0.05)
            self.batch_sizes.append(len(images))
            return images.reshape(len(images), -1).sum(axis=1, keepdims=True)
        finally:
            self.running.release()


def _concurrently(batcher, calls):
    results, errors = {}, []
    start = threading.Barrier(len(calls))

    def call(index, key, model, image):
        start.wait()
        try:
            results[index] = batcher.run(key, model, image)
        except Exception as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(index, *args)) for index, args in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results, errors


def test_eight_concurrent_calls_share_model_calls_and_get_their_own_rows():
    model, batcher = SlowModel(), PredictionBatcher()
    images = [np.full((4, 4), float(index)) for index in range(8)]
    results, errors = _concurrently(batcher, [("m", model, image) for image in images])
    assert errors == []
    assert {index: float(value[0]) for index, value in results.items()} == {i: 16.0 * i for i in range(8)}
    assert sum(model.batch_sizes) == 8 and len(model.batch_sizes) <= 3  # one alone, then the rest together


def test_requests_of_two_models_are_never_mixed_and_the_model_never_overlaps():
    first, second = SlowModel(), SlowModel()
    batcher = PredictionBatcher()
    calls = [("a", first, np.ones((2, 2))) if index % 2 else ("b", second, np.zeros((2, 2))) for index in range(10)]
    results, errors = _concurrently(batcher, calls)
    assert errors == []
    assert all(float(results[index][0]) == (4.0 if index % 2 else 0.0) for index in range(10))
    assert sum(first.batch_sizes) == 5 and sum(second.batch_sizes) == 5


def test_a_failing_batch_fails_each_of_its_callers_and_the_next_runs():
    batcher = PredictionBatcher()

    def broken(images):
        raise ValueError("model exploded")

    with pytest.raises(ValueError, match="model exploded"):
        batcher.run("m", broken, np.zeros(3))
    assert float(batcher.run("m", lambda images: images.sum(axis=1), np.ones(3))) == 3.0


def test_calls_one_after_another_are_each_their_own_batch():
    batcher = PredictionBatcher()
    for index in range(20):
        assert float(batcher.run("m", lambda images: images.sum(axis=1), np.full(2, index))) == 2.0 * index
    assert batcher.batches_run == 20
