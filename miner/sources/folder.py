"""Folder sources: ``root/<class>/**/<image>``, one class per sub-folder, or a flat folder of
unlabelled images.

Classes are the sub-folders (hidden ones ignored) sorted by name, the order of
``keras.utils.image_dataset_from_directory``, unless ``class_names`` is given; then a folder
that is not one of them is an error, and labels index ``class_names``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import IMAGE_EXTENSIONS, _known_list
from .imagefiles import ImageFileSource
from .labels import LabelFields, _label_fields, _resolve_labels


def _is_image_file(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _walk_images(folder: Path) -> list[Path]:
    """Image files below ``folder`` in sorted order, hidden files and folders left out."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            fp = Path(dirpath) / fn
            if _is_image_file(fp):
                out.append(fp)
    return out


def _class_folders(
    subdirs: list[Path], class_names: list[str] | None, where: str
) -> tuple[list[str], LabelFields]:
    """Paths of the images in the class folders and their labels (by folder)."""
    folder_names = [d.name for d in subdirs]
    if class_names is not None:
        unknown = [f for f in folder_names if f not in class_names]
        if unknown:
            raise ValueError(
                f"{where}: folder {unknown[0]!r} is not one of the class names "
                f"{_known_list(class_names)}; pass --class-names or a model spec whose class names include it"
            )
        names = class_names
    else:
        names = folder_names
    position = {n: k for k, n in enumerate(names)}
    paths: list[str] = []
    labels: list[int] = []
    for d in subdirs:
        files = _walk_images(d)
        paths.extend(str(f.absolute()) for f in files)
        labels.extend([position[d.name]] * len(files))
    return paths, _label_fields(np.asarray(labels, dtype=np.int64), names, where)


def _open_folder(
    root: Path, labels, class_names, channels, image_size, *, max_pixels: int
) -> ImageFileSource:
    where = str(root.absolute())
    entries = sorted(root.iterdir(), key=lambda e: e.name)
    subdirs = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
    loose = [e for e in entries if e.is_file() and _is_image_file(e)]
    if subdirs and loose:
        raise ValueError(
            f"{where}: image files next to class folders (e.g. {loose[0].name}); move them "
            f"into a class folder or remove them"
        )
    folder_labels: LabelFields | None = None
    if subdirs:
        paths, folder_labels = _class_folders(subdirs, class_names, where)
    else:
        paths = [str(f.absolute()) for f in loose]
    if not paths:
        raise ValueError(f"{where}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    found = None if folder_labels is None else lambda: folder_labels
    return ImageFileSource(
        "folder",
        where,
        paths,
        channels=channels,
        image_size=image_size,
        max_pixels=max_pixels,
        **_resolve_labels(labels, class_names, len(paths), where, found),
    )
