"""The environment a window was scored in: library versions and the model file's hash.

Recorded per window (no TensorFlow import: versions come from the installed distributions'
metadata), so a library upgrade or a swapped model file between two windows shows.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from hardcase.miner.sources.hashing import file_hash

__all__ = ["environment_changes", "environment_record"]

#: Record key -> the distributions that may provide it (first installed wins).
PACKAGES = {
    "numpy": ("numpy",),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tf-nightly"),
    "keras": ("keras",),
    "scikit-learn": ("scikit-learn",),
    "scipy": ("scipy",),
    "opencv": ("opencv-python-headless", "opencv-python"),
    "albumentations": ("albumentations",),
}


def _version(candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def environment_record(model_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Python and library versions, and the SHA-256 of the model file (or SavedModel folder).

    Returns
    -------
    dict
        ``python``, one key per :data:`PACKAGES` entry (None when not installed), and
        ``model_sha256`` / ``model_path`` when ``model_path`` is given.
    """
    record: dict[str, Any] = {"python": platform.python_version()}
    record.update({key: _version(names) for key, names in PACKAGES.items()})
    if model_path is not None:
        path = Path(model_path)
        if not path.exists():
            raise FileNotFoundError(f"model not found: {path}")
        record["model_path"] = str(path)
        record["model_sha256"] = file_hash(path)  # the hash the store keys model versions by
    return record


def environment_changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, list]:
    """Keys whose values differ between two records: ``{key: [before, after]}`` (``model_path`` ignored)."""
    if not before or not after:
        return {}
    keys = (set(before) | set(after)) - {"model_path"}
    return {key: [before.get(key), after.get(key)] for key in sorted(keys) if before.get(key) != after.get(key)}
