"""Predictions a user already has: mining without a model.

Users of other frameworks, or of models too slow to run again, bring ``pred_probs`` (N, K) and
optionally embeddings (N, D) as ``.npy`` files, row ``i`` describing row ``i`` of the data set.
Scores, candidate selection, label issues and the causes that need no re-prediction
(``mislabel``, ``rare``, ``imbalance``) work from them; the transform search, live
re-prediction under the review sliders and saliency need the model itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hardcase.miner._validation import check_embeddings, check_pred_probs
from hardcase.miner.scores import detect_logits, softmax
from hardcase.miner.sources import DataSource
from hardcase.miner.spec import PreprocessingSpec

log = logging.getLogger(__name__)


class NoModelError(ValueError):
    """What was asked needs the model, and the run was mined from recorded predictions."""


@dataclass(frozen=True)
class RecordedPredictions:
    """Per-row model outputs read from files, in the place of a model.

    Attributes
    ----------
    pred_probs : np.ndarray, float32, shape (N, K)
        Probabilities (logits are softmaxed on loading).
    embeddings : np.ndarray, float32, shape (N, D), or None
    spec : PreprocessingSpec
        The data's image shape and the K class names (``scale`` is unused: nothing is predicted).
    path : Path
        The predictions file.
    """

    pred_probs: np.ndarray
    embeddings: np.ndarray | None
    spec: PreprocessingSpec
    path: Path

    @property
    def class_names(self) -> tuple[str, ...]:
        """The K class names, in column order."""
        return self.spec.class_names

    @property
    def n_classes(self) -> int:
        """K."""
        return self.pred_probs.shape[1]

    @property
    def embedding_dim(self) -> int | None:
        """D, or None without embeddings."""
        return None if self.embeddings is None else self.embeddings.shape[1]

    def rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``pred_probs`` (B, K) and embeddings (B, D) or None of the data rows ``indices`` (B,)."""
        embeddings = None if self.embeddings is None else self.embeddings[indices]
        return self.pred_probs[indices], embeddings


def _load_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.suffix != ".npy":
        raise ValueError(f"{path}: {what} must be a .npy array, got a {path.suffix or 'file without extension'}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path}: not a numeric .npy array ({exc})") from None


def load_recorded_predictions(
    predictions_path: str | Path,
    source: DataSource,
    *,
    embeddings_path: str | Path | None = None,
    class_names: list[str] | None = None,
) -> RecordedPredictions:
    """Read and check recorded predictions for the rows of ``source``.

    Parameters
    ----------
    predictions_path
        ``.npy`` of shape (N, K): probabilities, or logits (softmaxed, with a warning).
    source
        The data set the predictions describe, N rows.
    embeddings_path
        Optional ``.npy`` of shape (N, D).
    class_names
        The K class names; default the source's (an image folder's subfolders, a manifest's
        label values) when there are K of them, else ``"0"`` .. ``"K-1"``.

    Returns
    -------
    RecordedPredictions

    Raises
    ------
    FileNotFoundError
        A file is missing.
    ValueError
        A file is not a 2-D numeric array of N rows, holds NaN or negative probabilities, or
        the class names do not number K; each message names the file.
    """
    predictions_path = Path(predictions_path)
    n = len(source)
    raw = _load_npy(predictions_path, "predictions")
    if raw.ndim != 2 or raw.shape[0] != n:
        raise ValueError(f"{predictions_path}: predictions have shape {raw.shape}, expected ({n}, K) for the {n} rows of {source.uri}")
    outputs = np.asarray(raw, dtype=np.float64)
    if not np.isfinite(outputs).all():
        row = int(np.flatnonzero(~np.isfinite(outputs).all(axis=1))[0])
        raise ValueError(f"{predictions_path}: row {row} holds NaN or inf")
    if detect_logits(outputs):
        log.warning("%s: rows do not sum to 1; taking them as logits and applying softmax", predictions_path)
        outputs = softmax(outputs)
    try:
        pred_probs = check_pred_probs(outputs, name=str(predictions_path)).astype(np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    k = pred_probs.shape[1]

    embeddings = None
    if embeddings_path is not None:
        embeddings_path = Path(embeddings_path)
        raw_emb = _load_npy(embeddings_path, "embeddings")
        try:
            embeddings = check_embeddings(raw_emb, name=str(embeddings_path), n=n, n_name=f"the data set {source.uri}").astype(np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None

    if class_names is None:
        named = list(source.class_names) if source.class_names is not None else None
        class_names = named if named is not None and len(named) == k else [str(i) for i in range(k)]
    if len(class_names) != k:
        raise ValueError(
            f"{predictions_path} has {k} columns but {len(class_names)} class names were given "
            f"({', '.join(class_names)}); pass --class-names with one name per column"
        )
    shape = source.image_shape
    if shape is None:
        raise ValueError(f"{source.uri}: no readable image to take the image size from")
    spec = PreprocessingSpec(height=shape[0], width=shape[1], channels=shape[2], scale="0-255",
                             class_names=tuple(class_names))
    return RecordedPredictions(pred_probs=pred_probs, embeddings=embeddings, spec=spec, path=predictions_path)
