"""Opening a user's data set the way a model sees it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hardcase.miner.sources import DataSource, open_source
from hardcase.miner.spec import PreprocessingSpec

#: The reading options a mining run stores in its params, so later readers open its data alike.
READ_OPTIONS = ("resize", "max_pixels", "allow_outside_root")


def read_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`READ_OPTIONS` a run's stored ``params`` hold, as keyword arguments of
    :func:`open_for_model` (older runs store none: the defaults apply)."""
    return {key: params[key] for key in READ_OPTIONS if params.get(key) is not None}


def open_for_model(
    path: str | Path,
    spec: PreprocessingSpec | None,
    *,
    class_names: list[str] | None = None,
    labels: str | Path | None = None,
    resize: bool = False,
    max_pixels: int | None = None,
    allow_outside_root: bool = False,
) -> DataSource:
    """Open the data at ``path`` at the model's input size and channels.

    Parameters
    ----------
    path
        Any format :func:`hardcase.miner.sources.open_source` reads.
    spec
        The model's preprocessing spec: images are read at ``(spec.height, spec.width)`` with
        ``spec.channels``; an image folder's subfolders are matched against
        ``spec.class_names``. None (no model: recorded predictions) reads the images as stored.
    class_names
        Without a spec, the class names an image folder's subfolders are matched against
        (default: the sorted subfolder names).
    labels
        A separate labels file, for formats that carry none.
    resize
        Resize arrays whose size is not the model's (else a ValueError naming both sizes);
        image files are always resized to the model's size.
    max_pixels
        Largest width * height of an image file (from its header); None: the sources' default,
        :data:`hardcase.miner.sources.MAX_PIXELS`.
    allow_outside_root
        Read manifest rows whose paths lead outside the manifest's folder.

    Returns
    -------
    DataSource
        Map its labels onto the model's classes with ``source.labels_for(spec.class_names)``.
    """
    if spec is not None:
        class_names = list(spec.class_names) if Path(path).is_dir() else None
    return open_source(
        path,
        labels=labels,
        class_names=class_names,
        image_size=None if spec is None else (spec.height, spec.width),
        channels=None if spec is None else spec.channels,
        resize=resize,
        allow_outside_root=allow_outside_root,
        **({} if max_pixels is None else {"max_pixels": max_pixels}),
    )
