"""Concurrent predictions of the review server, run as batches.

Eight reviewers dragging sliders send eight single-image predictions at once. The model is
not safe to call from several threads at once (Keras), and calling it once per image would
queue them one behind the other; batched, the eight cost little more than one.
:class:`PredictionBatcher` runs whatever requests are waiting as one call: the first thread to
find the model idle becomes the leader, takes every waiting request of the same model (up to
:data:`MAX_BATCH`), predicts them together and hands each caller its row; callers arriving
meanwhile wait for the next batch. Nothing waits on a timer, so a lone reviewer pays nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["MAX_BATCH", "PredictionBatcher"]

#: Images predicted in one call at most.
MAX_BATCH = 32


@dataclass
class _Request:
    key: object
    image: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: BaseException | None = None


class PredictionBatcher:
    """Batch concurrent single-image calls per model (see the module docstring).

    Parameters
    ----------
    max_batch
        Images predicted in one call at most.
    """

    def __init__(self, *, max_batch: int = MAX_BATCH) -> None:
        self.max_batch = max_batch
        self._waiting: list[_Request] = []
        self._changed = threading.Condition()
        self._busy = False
        self.batches_run = 0
        """How many model calls were made (for tests and benchmarks)."""

    def run(self, key: object, predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray):
        """``predict(images[None])[0]`` for ``image``, batched with concurrent calls of the same ``key``.

        Parameters
        ----------
        key
            Which model: requests are batched only with requests of the same key.
        predict
            ``(B, ...) -> (B, ...)``: the model's batched call (one per batch, not thread-safe).
        image
            One input, without the batch axis.

        Returns
        -------
        The row of ``predict``'s output for ``image``. An exception of ``predict`` reaches every
        caller of that batch.
        """
        request = _Request(key, image)
        with self._changed:
            self._waiting.append(request)
            while not request.done.is_set() and self._busy:
                self._changed.wait()
            if not request.done.is_set():  # the model is idle: lead a batch of what is waiting
                self._busy = True
                others = [r for r in self._waiting if r.key == request.key and r is not request]
                batch = [request, *others[: self.max_batch - 1]]
                taken = {id(r) for r in batch}
                self._waiting = [r for r in self._waiting if id(r) not in taken]
            else:
                batch = None
        if batch is not None:
            try:
                self._predict_batch(batch, predict)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()
        if request.error is not None:
            raise request.error
        return request.result

    def _predict_batch(self, batch: list[_Request], predict) -> None:
        try:
            outputs = predict(np.stack([r.image for r in batch]))
            self.batches_run += 1
            for row, r in enumerate(batch):
                r.result = outputs[row]
        except BaseException as exc:  # every caller of the batch hears of it
            for r in batch:
                r.error = exc
        finally:
            for r in batch:
                r.done.set()
