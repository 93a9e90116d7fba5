"""Content hashes: of images (the identity of a sample across runs, files and formats) and of
files (the identity of a model version)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

__all__ = ["content_hash", "content_hashes", "file_hash"]


def content_hash(image: np.ndarray) -> str:
    """sha256 hex digest of an image's dtype, shape and bytes.

    Stable across runs, platforms and memory layouts: the array is hashed C-contiguous and
    little-endian, so a strided view or a big-endian copy hashes like the plain array, while
    the same bytes with another shape or dtype hash differently.

    Parameters
    ----------
    image : np.ndarray
        One image of any shape, e.g. (H, W, C); not an object array.

    Returns
    -------
    str
        64 hex characters.
    """
    return content_hashes(np.asarray(image)[None])[0]


def content_hashes(images: np.ndarray) -> list[str]:
    """:func:`content_hash` of every image of a batch: one digest per image.

    The recipe: sha256 of the little-endian dtype string and the image shape, then the image's
    C-contiguous bytes. The batch is made contiguous and little-endian once and that prefix is
    hashed once, so a whole pool is hashed at a fraction of the per-image cost.

    Parameters
    ----------
    images : np.ndarray
        A batch of shape (B, ...), e.g. (B, H, W, C); not an object array.

    Returns
    -------
    list of str
        B hex digests, in row order.
    """
    arr = np.asarray(images)
    if arr.dtype.hasobject:
        raise TypeError(f"content_hash: object arrays cannot be hashed (dtype {arr.dtype})")
    if arr.ndim < 1:
        raise ValueError(
            f"content_hashes: expected a batch of shape (B, ...), got shape {arr.shape}"
        )
    le = arr.dtype if arr.dtype.byteorder == "|" else arr.dtype.newbyteorder("<")
    arr = np.ascontiguousarray(arr, dtype=le)  # dtype.str is then "|u1", "<f4", ...
    # a scalar image hashes with shape (1,), as it did when hashed on its own (pinned hashes)
    item_shape = tuple(int(s) for s in arr.shape[1:]) or (1,)
    prefix = hashlib.sha256(f"{arr.dtype.str}{item_shape}".encode())
    rows = memoryview(arr.reshape(len(arr), -1)).cast("B") if arr.size else None
    if rows is None:
        return [prefix.hexdigest() for _ in range(len(arr))]
    row_bytes = arr[0].nbytes
    out = []
    for start in range(0, row_bytes * len(arr), row_bytes):
        h = prefix.copy()
        h.update(rows[start : start + row_bytes])
        out.append(h.hexdigest())
    return out


def file_hash(path: str | os.PathLike) -> str:
    """The sha256 of a model: of its file, or of every file of a SavedModel directory.

    Parameters
    ----------
    path : str or PathLike
        A model file, or a directory (its files are hashed in sorted order, each preceded
        by its relative path, so renaming a file changes the hash).

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
