"""Where a run's files live: ``<artifacts>/<run name>/``, and only there; and the memory-mapped
arrays kept there, with their disk space reserved before anything is written to them."""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["RUN_NAME_PATTERN", "ArrayShapeError", "NoSpaceError", "ScoringArrays", "discard_run", "open_run_arrays",
           "open_scoring_arrays", "run_folder"]

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


class NoSpaceError(OSError):
    """The device cannot hold a run's arrays. Raised before any of them is written, so the run
    can be resumed once space is freed."""

    def __str__(self) -> str:
        return str(self.strerror)


class ArrayShapeError(ValueError):
    """A run's existing array has another shape than this invocation needs (other data, other model)."""


#: Bytes left free beside the arrays: the database and the exports share the device.
SPACE_MARGIN = 16 * 1024 * 1024


def open_run_arrays(folder: Path, arrays: dict[str, tuple], *, resume: bool = True, grow: bool = False) -> dict:
    """Open (or create) the ``.npy`` memory maps of a run, their blocks reserved on disk first.

    A memory map on a full disk does not fail when written: the process dies of ``SIGBUS``
    ("Bus error", exit 135) with nothing said. So the missing space is checked first and then
    reserved (``posix_fallocate``) for every new file; if the device cannot hold them, the
    files made here are removed and :class:`NoSpaceError` names what is needed and what is free.

    Parameters
    ----------
    folder
        The run's folder (made if missing).
    arrays
        ``{file name: (dtype, shape)}``.
    resume
        Open files that already exist (``r+``) instead of replacing them.
    grow
        An existing file with fewer rows (and otherwise the same shape) is copied into a
        larger one: a monitored stream grows between invocations.

    Returns
    -------
    dict
        ``{file name: numpy.memmap}`` in the order given.

    Raises
    ------
    NoSpaceError
        Not enough free space for the new or grown files.
    ArrayShapeError
        An existing file has another shape (and cannot grow into this one).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plans: dict[str, str] = {}
    needed = 0
    for name, (dtype, shape) in arrays.items():
        path = folder / name
        if resume and path.exists():
            old_shape = np.load(path, mmap_mode="r").shape
            if old_shape == tuple(shape):
                plans[name] = "open"
                continue
            if not (grow and old_shape[1:] == tuple(shape[1:]) and old_shape[0] < shape[0]):
                raise ArrayShapeError(f"{path} has shape {old_shape}, expected {tuple(shape)}; use a new --run")
            plans[name] = "grow"
        else:
            plans[name] = "create"
        needed += int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if needed:
        free = shutil.disk_usage(folder).free
        if free < needed + SPACE_MARGIN:
            raise _no_space(folder, needed, free)
    opened: dict = {}
    made: list[Path] = []
    try:
        for name, (dtype, shape) in arrays.items():
            path = folder / name
            if plans[name] == "open":
                opened[name] = np.lib.format.open_memmap(path, mode="r+")
                continue
            target = path.with_name(f".{name}.grow.npy") if plans[name] == "grow" else path
            made.append(target)
            array = np.lib.format.open_memmap(target, mode="w+", dtype=dtype, shape=tuple(shape))
            _reserve(target, folder, needed)
            if plans[name] == "grow":
                old = np.load(path, mmap_mode="r")
                array[: old.shape[0]] = old
                array.flush()
                del old, array
                os.replace(target, path)
                made.remove(target)
                array = np.lib.format.open_memmap(path, mode="r+")
            opened[name] = array
    except BaseException:
        opened.clear()
        for path in made:
            path.unlink(missing_ok=True)
        raise
    return opened


class ScoringArrays(NamedTuple):
    """A run's scoring outputs, as mining writes them and cause suggestion reads them."""

    pred_probs: np.ndarray
    """(N, K) float32."""
    sample_ids: np.ndarray
    """(N,) int64: each row's sample id in the store."""
    done: np.ndarray
    """(N,) uint8: 0 not yet read, 1 scored, 2 unreadable (an error row)."""
    embeddings: np.ndarray | None
    """(N, D) float16; None for a run without embeddings."""


def open_scoring_arrays(folder: Path, n: int, n_classes: int, dim: int | None, *, resume: bool = True,
                        grow: bool = False) -> ScoringArrays:
    """The scoring outputs of a run of ``n`` rows in ``folder`` (``pred_probs.npy``,
    ``sample_ids.npy``, ``done.npy``, ``embeddings.npy`` when ``dim``), through
    :func:`open_run_arrays` (``resume`` and ``grow`` as there)."""
    arrays = {"pred_probs.npy": (np.float32, (n, n_classes)), "sample_ids.npy": (np.int64, (n,)),
              "done.npy": (np.uint8, (n,))}
    if dim:
        arrays["embeddings.npy"] = (np.float16, (n, dim))
    opened = open_run_arrays(folder, arrays, resume=resume, grow=grow)
    return ScoringArrays(opened["pred_probs.npy"], opened["sample_ids.npy"], opened["done.npy"],
                         opened.get("embeddings.npy"))


def _reserve(path: Path, folder: Path, needed: int) -> None:
    with open(path, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _no_space(folder, needed, shutil.disk_usage(folder).free) from None
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a filesystem without fallocate: checked above
                raise


def _no_space(folder: Path, needed: int, free: int) -> NoSpaceError:
    return NoSpaceError(
        errno.ENOSPC,
        f"no space left on device: the run's arrays need {_megabytes(needed + SPACE_MARGIN)} in {folder}, "
        f"{_megabytes(free)} free; free some space and run the same command again to resume",
    )


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def discard_run(store, artifacts_dir: str | Path, run_name: str) -> bool:
    """Forget a run nobody has reviewed (``hardcase mine --replace``): its rows in the store
    (:func:`hardcase.store.runs.delete_run`, which refuses a run with reviews) and its folder
    of arrays. Returns False when there was no such run.
    """
    from hardcase.store import api

    folder = run_folder(artifacts_dir, run_name)
    with store.Session.begin() as session:
        if api.get_run(session, run_name) is None:
            return False
        api.delete_run(session, run_name)
    if folder.is_dir():
        shutil.rmtree(folder)
    return True
