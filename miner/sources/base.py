"""What every data source shares: the sample types, :class:`DataSource`, batching, argument checks.

- :class:`RowError` and :class:`Batch`: what iteration yields;
- :class:`DataSource`: metadata, labels (and :meth:`DataSource.labels_for`, the one place that
  maps a source's labels onto a model's classes), ``iter_batches`` and ``read`` on top of the
  ``_session`` each kind implements;
- the index batching behind ``iter_batches`` (``start``, ``skip``);
- the checks of ``open_source``'s arguments (path, class names, image size, channels) and the
  constants the format modules share.

Nothing here imports another module of the package.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS", "RESAMPLE", "Batch", "DataSource", "RowError"]

#: Image file extensions picked up in folders (case-insensitive).
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
#: Resampling filter used for every resize (image files and arrays).
RESAMPLE = Image.Resampling.BILINEAR
#: Default limit on an image file's decoded size, width * height, checked from its header:
#: a 40-megapixel photo decodes to 120 MB of RGB; a larger file is an error row, never decoded.
MAX_PIXELS = 40_000_000

_KINDS = ("idx", "npy", "npz", "folder", "manifest")
#: What a truncated or corrupt compressed stream raises while it is read (gzip, zip members:
#: their CRC is checked at the end); each becomes a ValueError naming the file and rows.
_CORRUPT_STREAM = (EOFError, OSError, zlib.error, zipfile.BadZipFile)
_UNKNOWN_CLASS_HINT = "pass --class-names or a model spec whose class names include it"

# --------------------------------------------------------------------------- argument checks


def _existing(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"not found: {p}")
    return p


def _normalize_class_names(class_names: Any, where: str = "class_names") -> list[str] | None:
    """Class names as a list of distinct non-empty strings (a str is split at commas)."""
    if class_names is None:
        return None
    if isinstance(class_names, str):
        names = [c.strip() for c in class_names.split(",")]
    else:
        names = [str(c) for c in class_names]
    if not names or any(n == "" for n in names):
        raise ValueError(f"{where}: class names must be non-empty strings, got {names!r}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{where}: duplicate class names {dup}")
    return names


def _known_list(class_names: Sequence[str]) -> str:
    """Class names for an error message, the first 50 of a long list."""
    shown = list(class_names[:50])
    more = f" ... ({len(class_names)} in all)" if len(class_names) > 50 else ""
    return f"{shown}{more}"


def _normalize_size(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)):
        image_size = (int(image_size), int(image_size))
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be positive, got {(h, w)}")
    return h, w


def _normalize_channels(channels: Any) -> int | None:
    if channels is None:
        return None
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    return int(channels)


def _normalize_flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _normalize_max_pixels(max_pixels: Any) -> int:
    if isinstance(max_pixels, (bool, np.bool_)) or not isinstance(max_pixels, (int, np.integer)):
        raise TypeError(f"max_pixels must be an int (width * height), got {max_pixels!r}")
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    return int(max_pixels)


def _megapixels(pixels: int) -> str:
    """``pixels`` in megapixels for a message: '169 Mpx', '40 Mpx', '0.0012 Mpx'."""
    mpx = pixels / 1e6
    return f"{mpx:.0f} Mpx" if mpx >= 100 else f"{mpx:.3g} Mpx"


def _check_len(name: str, values: Any, n: int, where: str) -> None:
    if len(values) != n:
        raise ValueError(f"{where}: {name} has {len(values)} entries but there are {n} images")


def _first_row(mask: np.ndarray) -> int | None:
    """Position of the first True of a boolean array (N,), None when there is none."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _check_labels_below(
    labels: np.ndarray, class_names: Sequence[str], where_row: Callable[[int], str], whose: str
) -> None:
    """ValueError naming the first row of ``labels`` (N,) that is no index into ``class_names``
    (``where_row(i)`` names row i, ``whose`` the class names: "" or "the model's ")."""
    row = _first_row(labels >= len(class_names))
    if row is not None:
        raise ValueError(
            f"{where_row(row)}: label {int(labels[row])} is outside 0..{len(class_names) - 1}"
            f" for {whose}{len(class_names)} class names {_known_list(class_names)}"
        )


def _one_line(exc: BaseException) -> str:
    """An exception as one short line, for a :class:`RowError`."""
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    msg = " ".join(str(exc).split()) or repr(exc)
    msg = f"{type(exc).__name__}: {msg}"
    return msg if len(msg) <= 300 else msg[:297] + "..."


# --------------------------------------------------------------------------- small types


@dataclass(frozen=True)
class RowError:
    """One sample that could not be read: its 0-based ``source_index``, path/uri and why."""

    source_index: int
    uri: str
    reason: str


@dataclass
class Batch:
    """Images read from a source.

    ``indices`` (B,) int64 are the source indices of ``images`` (B, H, W, C) (uint8 or
    float32) row by row; ``errors`` are the visited indices that could not be read. A batch
    may hold zero images when every visited file failed.
    """

    indices: np.ndarray
    images: np.ndarray
    errors: list[RowError] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.indices.shape[0])


# --------------------------------------------------------------------------- index batching


def _skip_mask(skip: Any, n: int) -> np.ndarray | None:
    """``skip`` (indices or a boolean mask of length ``n``) as a boolean mask (n,), or None."""
    if skip is None:
        return None
    if isinstance(skip, (np.ndarray, list, tuple, range)):
        arr = np.asarray(skip)  # a boolean mask or indices
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise ValueError(f"skip mask has shape {arr.shape}, expected ({n},)")
            return arr
        if arr.size and arr.dtype.kind not in "iu":
            raise TypeError(f"skip must hold int indices or be a boolean mask, got {arr.dtype}")
        idx = arr.astype(np.int64).reshape(-1)
    else:
        idx = np.fromiter((int(i) for i in skip), dtype=np.int64)
    mask = np.zeros(n, dtype=bool)
    idx = idx[(idx >= 0) & (idx < n)]
    mask[idx] = True
    return mask


def _index_batches(
    n: int, start: int, mask: np.ndarray | None, batch_size: int
) -> Iterator[np.ndarray]:
    """Ascending batches of up to ``batch_size`` indices in start..n-1 not set in ``mask``."""
    pending = np.empty(0, dtype=np.int64)
    pos = start
    window = max(batch_size, 4096)
    while pos < n:
        stop = min(n, pos + window)
        chunk = np.arange(pos, stop, dtype=np.int64)
        if mask is not None:
            chunk = chunk[~mask[pos:stop]]
        pending = np.concatenate((pending, chunk)) if pending.size else chunk
        pos = stop
        while pending.size >= batch_size:
            yield pending[:batch_size]
            pending = pending[batch_size:]
    if pending.size:
        yield pending


# --------------------------------------------------------------------------- DataSource


class DataSource:
    """A sized, batch-iterable collection of images with optional labels/timestamps/ids.

    Attributes: ``kind`` ('idx'|'npy'|'npz'|'folder'|'manifest'), ``uri`` (absolute path),
    ``class_names`` (list[str] | None), ``labels`` (int64 (N,), -1 = unknown),
    ``timestamps`` (list | None), ``ids`` (list | None), ``uris`` (per-sample paths | None),
    ``labels_uri`` (where labels came from, or None), ``dtype`` of yielded images.
    Subclasses implement ``image_shape``, ``dtype`` and ``_session``.
    """

    kind: str

    def __init__(
        self,
        kind: str,
        uri: str,
        n: int,
        *,
        labels: np.ndarray | None,
        class_names: list[str] | None,
        timestamps: list | None = None,
        ids: list | None = None,
        uris: list[str] | None = None,
        labels_uri: str | None = None,
    ):
        assert kind in _KINDS
        self.kind = kind
        self.uri = uri
        self._n = int(n)
        self.class_names = class_names
        self._labels = (
            np.full(self._n, -1, dtype=np.int64) if labels is None else labels.astype(np.int64)
        )
        self._labels.setflags(write=False)
        self.timestamps = timestamps
        self.ids = ids
        self.uris = uris
        self.labels_uri = labels_uri

    # -- metadata ---------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return (
            f"<DataSource kind={self.kind} n={self._n} uri={self.uri!r} "
            f"classes={None if self.class_names is None else len(self.class_names)} "
            f"labeled={self.has_labels}>"
        )

    @property
    def labels(self) -> np.ndarray:
        """int64 (N,) label indices into ``class_names``, -1 where unknown (read-only)."""
        return self._labels

    @property
    def has_labels(self) -> bool:
        return bool(self._n and (self._labels >= 0).any())

    @property
    def label_names(self) -> list[str | None]:
        """Per-sample label as a class name (or the index as text without class names)."""
        names = self.class_names
        out: list[str | None] = []
        for k in self._labels.tolist():
            if k < 0:
                out.append(None)
            elif names is not None:
                out.append(names[k])
            else:
                out.append(str(k))
        return out

    def row_uris(self, indices: Iterable[int]) -> list[str]:
        """Where each row comes from: its file (folders, manifests), or ``<file>#<row>`` (arrays)."""
        if self.uris is not None:
            return [self.uris[i] for i in indices]
        return [f"{self.uri}#{i}" for i in indices]

    def labels_for(self, class_names: Sequence[str]) -> np.ndarray:
        """The source's labels as indices into a model's classes.

        Parameters
        ----------
        class_names : sequence of str, length K
            The model's classes in its output order (a str is split at commas, as for
            ``open_source``).

        Returns
        -------
        np.ndarray
            int64 of shape (N,): ``class_names`` index of each row's label, -1 where the row
            has no label (all -1 for an unlabelled source). A new, writable array.

        Raises
        ------
        TypeError
            ``class_names`` is None.
        ValueError
            ``class_names`` is empty or repeats a name; a row's label is a class name that is
            not in ``class_names`` (names of the source's own class list that no row uses are
            ignored); or, for a source with integer labels and no class names, a label
            ``>= K``. The message names the first such row, the source file and the value.
        """
        if class_names is None:
            raise TypeError(f"{self.uri}: labels_for needs the model's class names, got None")
        model_classes = _normalize_class_names(class_names, f"{self.uri}: labels_for")
        labels = self._labels
        if self.class_names is None:
            _check_labels_below(labels, model_classes, self._where_row, "the model's ")
            return labels.copy()
        position = {name: k for k, name in enumerate(model_classes)}
        # one entry per source class, then -1 at the end for the unknown label -1
        table = np.array(
            [position.get(name, -1) for name in self.class_names] + [-1], dtype=np.int64
        )
        mapped = table[labels]
        row = _first_row((mapped < 0) & (labels >= 0))
        if row is not None:
            name = self.class_names[int(labels[row])]
            raise ValueError(
                f"{self._where_row(row)}: label {name!r} is not one of the model's classes "
                f"{_known_list(model_classes)}; {_UNKNOWN_CLASS_HINT}"
            )
        return mapped

    def _where_row(self, row: int) -> str:
        """'<uri>: row <i>' plus the row's own file and the labels file when they differ."""
        where = f"{self.uri}: row {row}"
        if self.uris is not None:
            where += f" ({self.uris[row]})"
        if self.labels_uri is not None and self.labels_uri != self.uri:
            where += f" (labels from {self.labels_uri})"
        return where

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(H, W, C) of yielded images, or None when it cannot be known (no readable image)."""
        raise NotImplementedError

    @property
    def dtype(self) -> np.dtype:
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON-able summary to store with a run."""
        return {
            "kind": self.kind,
            "uri": self.uri,
            "n": self._n,
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "dtype": self.dtype.name,
            "class_names": self.class_names,
            "has_labels": self.has_labels,
            "labels_uri": self.labels_uri,
            "has_timestamps": self.timestamps is not None,
            "has_ids": self.ids is not None,
        }

    # -- reading ------------------------------------------------------------
    def iter_batches(
        self,
        batch_size: int,
        *,
        start: int = 0,
        skip: Iterable[int] | np.ndarray | None = None,
        workers: int | None = None,
    ) -> Iterator[Batch]:
        """Yield :class:`Batch` es covering source indices ``start..N-1`` in order.

        Each batch visits up to ``batch_size`` indices; indices in ``skip`` (a set/iterable of
        ints or a boolean mask of length N, e.g. the samples a killed run already stored) are
        neither read nor yielded. ``workers`` threads decode image files (default: 1 for small
        images, where threads cost more than they save, else up to 4, measured ~2x on 640x480
        JPEGs); arrays ignore it. Every visited index ends up either in ``indices`` or in ``errors``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"batch_size must be an int, got {batch_size!r}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= start <= self._n:
            raise ValueError(f"start must be in 0..{self._n}, got {start}")
        mask = _skip_mask(skip, self._n)
        return self._iterate(int(batch_size), int(start), mask, workers)

    def _iterate(self, batch_size, start, mask, workers) -> Iterator[Batch]:
        with self._session(workers) as read:
            for idx in _index_batches(self._n, start, mask, batch_size):
                yield read(idx)

    def read(self, indices: Iterable[int], *, workers: int | None = None) -> Batch:
        """Random access: read the given source indices (order kept; duplicates allowed)."""
        idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
        idx = idx.astype(np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self._n):
            raise IndexError(f"{self.uri}: indices must be in 0..{self._n - 1}")
        uniq = np.unique(idx)
        with self._session(workers) as read:
            b = read(uniq)
        row_of = {int(i): r for r, i in enumerate(b.indices.tolist())}
        keep = [i for i in idx.tolist() if i in row_of]
        rows = np.asarray([row_of[i] for i in keep], dtype=np.int64)
        return Batch(np.asarray(keep, dtype=np.int64), b.images[rows], b.errors)

    @contextlib.contextmanager
    def _session(self, workers: int | None) -> Iterator[Callable[[np.ndarray], Batch]]:
        """A reader ``idx (B,) int64 ascending -> Batch``, open for the ``with`` block."""
        raise NotImplementedError
        yield  # pragma: no cover
