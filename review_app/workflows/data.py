"""Opening a user's data set the way a model sees it."""

from __future__ import annotations

from pathlib import Path

from hardcase.miner.sources import DataSource, open_source
from hardcase.miner.spec import PreprocessingSpec


def open_for_model(path: str | Path, spec: PreprocessingSpec, *, labels: str | Path | None = None) -> DataSource:
    """Open the data at ``path`` at the model's input size and channels.

    Parameters
    ----------
    path
        Any format :func:`hardcase.miner.sources.open_source` reads.
    spec
        The model's preprocessing spec: images are read at ``(spec.height, spec.width)`` with
        ``spec.channels``; an image folder's subfolders are matched against
        ``spec.class_names``.
    labels
        A separate labels file, for formats that carry none.

    Returns
    -------
    DataSource
        Map its labels onto the model's classes with ``source.labels_for(spec.class_names)``.
    """
    return open_source(
        path,
        labels=labels,
        class_names=list(spec.class_names) if Path(path).is_dir() else None,
        image_size=(spec.height, spec.width),
        channels=spec.channels,
    )
