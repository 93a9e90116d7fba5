"""Where a run's files live: ``<artifacts>/<run name>/``, and only there."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["RUN_NAME_PATTERN", "run_folder"]

#: A run name is also a folder name: letters, digits, ``.``, ``_``, ``-`` (not starting with a
#: dot), so ``--run ../../evil`` or ``--run /etc`` cannot write outside the artifacts folder.
RUN_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


def run_folder(artifacts_dir: str | Path, run_name: str) -> Path:
    """The folder of ``run_name``'s files inside ``artifacts_dir`` (not created).

    Raises
    ------
    ValueError
        The name could lead elsewhere (a path separator, ``..``, a leading dot) or holds other
        characters than letters, digits, ``.``, ``_`` and ``-``.
    """
    if not isinstance(run_name, str) or not RUN_NAME_PATTERN.fullmatch(run_name):
        raise ValueError(
            f"run name {run_name!r} cannot name a folder: use 1 to 200 letters, digits, '.', '_' or '-', "
            "not starting with a dot"
        )
    root = Path(artifacts_dir).resolve()
    folder = (root / run_name).resolve()
    if folder.parent != root:  # a symlink planted at <artifacts>/<run> leading elsewhere
        raise ValueError(f"{root / run_name} leads outside the artifacts folder {root}")
    return folder
