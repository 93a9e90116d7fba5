"""Loaded classifiers, one per stored model version, shared by every workflow of a server.

Loading a Keras model takes seconds and hundreds of megabytes, so the review service, the Try
tab and anything else that predicts for a run go through one :class:`ClassifierCache`. A model
is loaded with the preprocessing spec stored with its version (``load_classifier(path,
spec=...)``), so the class-count check of the classifier always runs. TensorFlow is imported
only when the first model is loaded: a server starts without it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hardcase.miner.protocols import Classifier


class ClassifierCache:
    """Thread-safe map from a model version's id to its loaded classifier."""

    def __init__(self, *, trust_model: bool = False) -> None:
        #: load SavedModel directories, whose graphs run on every prediction (``serve --trust-model``)
        self.trust_model = trust_model
        self._lock = threading.Lock()
        self._loaded: dict[int, Classifier] = {}

    def get(self, version_id: int, path: str | Path, spec: dict[str, Any]) -> Classifier:
        """The classifier of model version ``version_id``, loading it on first use.

        Parameters
        ----------
        version_id
            The store's ``ModelVersion.id`` (the cache key).
        path
            The model file or SavedModel directory recorded with the version.
        spec
            The version's stored preprocessing spec (``PreprocessingSpec.to_dict()``).

        Raises
        ------
        FileNotFoundError
            The model file is gone.
        """
        with self._lock:
            if version_id not in self._loaded:
                if not Path(path).exists():
                    raise FileNotFoundError(f"the run's model file is missing: {path}")
                from hardcase.miner.spec import PreprocessingSpec
                from hardcase.models.classifier import load_classifier

                self._loaded[version_id] = load_classifier(path, spec=PreprocessingSpec.from_dict(spec),
                                                           trust_model=self.trust_model)
            return self._loaded[version_id]
