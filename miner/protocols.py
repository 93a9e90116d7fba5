"""What the workflows need of a classifier: the seam between them and any model framework.

Mining, cause suggestion (the transform search), the review service and the Try tab only
ever call what :class:`Classifier` lists, so they can be typed, and tested, against it rather
than against Keras. :class:`hardcase.models.classifier.KerasClassifier` is the implementation
(load one with :func:`hardcase.models.classifier.load_classifier`).

Images cross the seam as uint8 0-255 arrays (N, H, W, C) (or (N, H, W) for one channel),
shaped as ``spec.image_shape``: the form they are stored and shown in
(:func:`hardcase.miner.spec.as_uint8` makes it). The classifier applies its spec's scaling
itself. Probabilities are float32 (N, K) with rows summing to 1 (a classifier whose model
outputs logits applies the softmax); embeddings are float32 (N, D).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np

from hardcase.miner.spec import PreprocessingSpec

__all__ = ["Classifier", "UntrustedModelError"]


@runtime_checkable
class Classifier(Protocol):
    """An image classifier with its preprocessing spec: probabilities and embeddings of uint8 images.

    ``isinstance(x, Classifier)`` checks that ``x`` has every member below (not their
    signatures). ``spec`` is read-only: a classifier is built with its spec, which must name
    as many classes as the model has outputs (``load_classifier(path, spec=...)``).
    """

    @property
    def spec(self) -> PreprocessingSpec:
        """The input size, channels, scaling and class names the classifier was built with."""
        ...

    @property
    def class_names(self) -> tuple[str, ...]:
        """Name of each output column, in order: ``spec.class_names`` (K of them)."""
        ...

    @property
    def n_classes(self) -> int:
        """K, the number of outputs."""
        ...

    @property
    def embedding_dim(self) -> int | None:
        """D, the width of the embeddings, or None when the classifier has no embedding."""
        ...

    def warm_up(self) -> None:
        """Prepare the forward pass (e.g. trace a graph) so the first batch is not slow.

        Safe to call from another thread while start-up continues; calling it is optional.
        """
        ...

    def predict_and_embed_batch(
        self, images: np.ndarray, *, batch_label: str = "batch"
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and embeddings of one batch, from one forward pass.

        Parameters
        ----------
        images : np.ndarray, uint8, shape (B, H, W, C) or (B, H, W)
        batch_label : str
            Names the batch in errors (e.g. ``"batch starting at row 512"``).

        Returns
        -------
        pred_probs : np.ndarray, float32, shape (B, K)
        embeddings : np.ndarray, float32, shape (B, D), or None
            None when the classifier has no embedding (``embedding_dim is None``).

        Raises
        ------
        ValueError
            The images do not have ``spec.image_shape``, or the model's outputs are NaN or
            infinite (the message names ``batch_label`` and the row).
        """
        ...

    def iter_predictions(
        self, images: np.ndarray, *, batch_size: int = 256
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """:meth:`predict_and_embed_batch` on successive batches of ``batch_size`` rows.

        Parameters
        ----------
        images : np.ndarray, uint8, shape (N, H, W, C) or (N, H, W)
            Or anything sliceable by rows that gives such arrays.
        batch_size : int

        Yields
        ------
        pred_probs : np.ndarray, float32, shape (B, K)
        embeddings : np.ndarray, float32, shape (B, D), or None
        """
        ...

    def predict_proba(self, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        images : np.ndarray, uint8, shape (N, H, W, C) or (N, H, W)
        batch_size : int
            Rows per forward pass.

        Returns
        -------
        np.ndarray, float32, shape (N, K)
        """
        ...

    def embed(self, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Embeddings.

        Parameters
        ----------
        images : np.ndarray, uint8, shape (N, H, W, C) or (N, H, W)
        batch_size : int
            Rows per forward pass.

        Returns
        -------
        np.ndarray, float32, shape (N, D)

        Raises
        ------
        ValueError
            The classifier has no embedding.
        """
        ...


class UntrustedModelError(ValueError):
    """A model that runs its own code when loaded or called (a SavedModel's graph) was given
    without the user saying they trust it (``--trust-model``)."""
