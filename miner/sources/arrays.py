"""Array sources: images stored as one (N, H, W[, C]) array, read by row ranges.

- the row readers: :class:`_RowReader` (plain file reads at an offset of a seekable stream:
  raw or gzip IDX, ``.npy``, a ``.npz`` member) and :class:`_ArrayRows` (an array already in
  memory or memory-mapped: Fortran-ordered data);
- :class:`ArraySource`, which turns stored rows into (B, H, W, C) batches (dtype, channels,
  resize when asked for) and makes a float row holding NaN or inf a :class:`.base.RowError`;
- :func:`_open_array`, the one opener of the three formats: ``_stored_idx``,
  ``_stored_npy`` and ``_stored_npz`` check a file (:func:`_image_layout` for all three,
  :func:`_image_npy_header` for ``.npy`` and ``.npz``) and say what it holds; labels come
  from :func:`.labels._resolve_labels`.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import math
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .base import _CORRUPT_STREAM, RESAMPLE, Batch, DataSource, RowError, _check_len
from .idx import _check_idx_size, _IdxHeader, _open_maybe_gz
from .labels import LabelFields, _label_fields, _map_labels, _resolve_labels

__all__ = ["ArraySource"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_MAX_READ_ROWS_BYTES = 64 << 20  # split array reads larger than this into pieces

# --------------------------------------------------------------------------- row readers


def _native(rows: np.ndarray) -> np.ndarray:
    return rows if rows.dtype.isnative else rows.astype(rows.dtype.newbyteorder("="))


class _RowReader:
    """Reads row ranges [a, b) of an (N, ...) array stored contiguously in a seekable stream."""

    def __init__(
        self,
        uri: str,
        opener: Callable[[], contextlib.AbstractContextManager],
        offset: int,
        dtype: np.dtype,
        shape: tuple[int, ...],
    ):
        self.uri = uri
        self.opener = opener
        self.offset = offset
        self.dtype = dtype
        self.shape = shape
        self.row_items = int(math.prod(shape[1:]))
        self.row_bytes = self.row_items * dtype.itemsize

    @contextlib.contextmanager
    def session(self) -> Iterator[Callable[[int, int], np.ndarray]]:
        with self.opener() as fh:
            pos = [None]

            def read(a: int, b: int) -> np.ndarray:
                start = self.offset + a * self.row_bytes
                if pos[0] != start:
                    fh.seek(start)
                need = (b - a) * self.row_bytes
                buf = np.empty(need, dtype=np.uint8)
                mv = memoryview(buf)
                got = 0
                try:
                    while got < need:
                        n = fh.readinto(mv[got:])
                        if not n:
                            raise ValueError(
                                f"{self.uri}: file ended early at rows {a}..{b} "
                                f"(changed or truncated since it was opened?)"
                            )
                        got += n
                    if b == self.shape[0] and isinstance(fh, gzip.GzipFile) and fh.read(1):
                        raise ValueError(f"{self.uri}: gzip stream has data after the last row")
                except _CORRUPT_STREAM as exc:  # corrupt; CRC at its end
                    raise ValueError(f"{self.uri}: unreadable at rows {a}..{b} ({exc})") from None
                pos[0] = start + need
                return _native(buf.view(self.dtype).reshape((b - a, *self.shape[1:])))

            yield read


class _ArrayRows:
    """Row reader over an array already accessible by slicing (memmap or in-memory)."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = array.dtype
        self.row_bytes = int(math.prod(self.shape[1:])) * self.dtype.itemsize

    @contextlib.contextmanager
    def session(self) -> Iterator[Callable[[int, int], np.ndarray]]:
        def read(a: int, b: int) -> np.ndarray:
            return _native(np.array(self.array[a:b]))

        yield read


def _zip_member_opener(path: Path, member: str):
    @contextlib.contextmanager
    def opener():
        with zipfile.ZipFile(path) as zf, zf.open(member) as fh:
            yield fh

    return opener


def _runs(sorted_idx: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs [a, b) of a sorted unique index array."""
    if sorted_idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(sorted_idx) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [sorted_idx.size]))
    return [(int(sorted_idx[s]), int(sorted_idx[e - 1]) + 1) for s, e in zip(starts, ends)]


# --------------------------------------------------------------------------- ArraySource


def _gray_from_rgb(x: np.ndarray) -> np.ndarray:
    y = np.tensordot(x[..., :3].astype(np.float32), _LUMA, axes=([-1], [0]))[..., None]
    if x.dtype == np.uint8:
        return np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return y.astype(np.float32)


def _resize_array(x: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize (B, H, W, C) uint8/float32 images per image and channel through PIL."""
    h, w = size_hw
    if x.shape[1:3] == (h, w):
        return x
    out = np.empty((x.shape[0], h, w, x.shape[3]), dtype=x.dtype)
    for i in range(x.shape[0]):
        for c in range(x.shape[3]):
            plane = x[i, :, :, c]
            im = Image.fromarray(plane) if x.dtype == np.uint8 else Image.fromarray(plane, "F")
            out[i, :, :, c] = np.asarray(im.resize((w, h), RESAMPLE))
    return out


class ArraySource(DataSource):
    """IDX / .npy / .npz images read by row ranges.

    Stored rows of another (H, W) than ``image_size`` are a ValueError unless ``resize``; a
    float row holding NaN or inf (also after conversion to float32) is a :class:`RowError`.
    """

    def __init__(self, kind, uri, reader, *, layout, channels, image_size, resize=False, **meta):
        h, w, c = layout
        if image_size is not None and tuple(image_size) != (h, w) and not resize:
            raise ValueError(
                f"{uri}: images are {h}x{w} (HxW) but image_size (the model's input) is "
                f"{image_size[0]}x{image_size[1]}; pass resize=True (hardcase mine --resize) "
                f"to resize them, or give data of the model's size"
            )
        super().__init__(kind, uri, reader.shape[0], **meta)
        self._reader = reader
        self._layout = layout  # (H, W, C) of stored rows
        self._in_dtype = reader.dtype
        self._out_dtype = (
            np.dtype(np.uint8)
            if reader.dtype.kind == "u" and reader.dtype.itemsize == 1
            else np.dtype(np.float32)
        )
        out_c = c
        if channels is not None and channels != c:
            if not ((c == 1 and channels == 3) or (c in (3, 4) and channels in (1, 3))):
                raise ValueError(
                    f"{uri}: cannot convert {c}-channel images to {channels} channels "
                    f"(supported: 1<->3, 4->3 by dropping alpha, 4->1)"
                )
            out_c = channels
        self._channels = out_c
        self._size = image_size
        oh, ow = image_size if image_size is not None else (h, w)
        self._image_shape = (int(oh), int(ow), int(out_c))
        #: the read-only memmap behind a .npy source (None for other kinds)
        self.array: np.ndarray | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self._image_shape

    @property
    def dtype(self) -> np.dtype:
        return self._out_dtype

    def _as_output_dtype(self, rows: np.ndarray) -> np.ndarray:
        """Stored rows (B, ...) as (B, H, W, C) of the yielded dtype."""
        x = rows.reshape(rows.shape[0], *self._layout)
        if x.dtype == self._out_dtype:
            return x
        with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf: an error row
            return x.astype(self._out_dtype)

    def _nonfinite_errors(
        self, rows: np.ndarray, x: np.ndarray, first: int
    ) -> tuple[np.ndarray, list[RowError]]:
        """Which rows of ``x`` (B, H, W, C) float32 are all finite (B,) bool, and an error per
        other row; ``rows`` are the same rows as stored, ``first`` the index of row 0."""
        finite = np.isfinite(x).reshape(x.shape[0], -1).all(axis=1)
        errors = []
        for r in np.flatnonzero(~finite).tolist():
            stored_bad = np.count_nonzero(~np.isfinite(rows[r]))
            if stored_bad:
                why = f"{stored_bad} of {rows[r].size} values"
            else:
                why = f"{np.count_nonzero(~np.isfinite(x[r]))} values beyond float32's range"
            errors.append(
                RowError(first + r, self.uri, f"row {first + r} contains NaN/inf values ({why})")
            )
        return finite, errors

    def _convert(self, x: np.ndarray) -> np.ndarray:
        """(B, H, W, C) rows of the yielded dtype to the yielded channels and size."""
        c = self._layout[2]
        target_c = self._channels
        if target_c < c:  # shrink channels first: less to resize
            x = _gray_from_rgb(x) if target_c == 1 else x[..., :3]
        if self._size is not None:
            x = _resize_array(x, self._size)
        if target_c > x.shape[3]:
            x = np.repeat(x, target_c, axis=3)
        return np.ascontiguousarray(x)

    @contextlib.contextmanager
    def _session(self, workers):
        with self._reader.session() as read_rows:
            max_rows = max(1, _MAX_READ_ROWS_BYTES // max(1, self._reader.row_bytes))

            def read(idx: np.ndarray) -> Batch:
                parts, kept, errors = [], [], []
                for a, b in _runs(idx):
                    for a2 in range(a, b, max_rows):
                        b2 = min(b, a2 + max_rows)
                        rows = read_rows(a2, b2)
                        x = self._as_output_dtype(rows)
                        part_idx = np.arange(a2, b2, dtype=np.int64)
                        if x.dtype.kind == "f":
                            finite, bad = self._nonfinite_errors(rows, x, a2)
                            if bad:
                                x, part_idx = x[finite], part_idx[finite]
                                errors.extend(bad)
                        parts.append(self._convert(x))
                        kept.append(part_idx)
                if parts:
                    images = parts[0] if len(parts) == 1 else np.concatenate(parts)
                    indices = kept[0] if len(kept) == 1 else np.concatenate(kept)
                else:
                    images = np.empty((0, *self._image_shape), dtype=self._out_dtype)
                    indices = np.empty(0, dtype=np.int64)
                return Batch(indices, images, errors)

            yield read


def _image_layout(
    shape: tuple[int, ...], dtype: np.dtype, where: str, image_size
) -> tuple[int, int, int]:
    """(H, W, C) of stored rows, from (N, H, W), (N, H, W, C) or flat (N, D) numeric images."""
    layout = _layout_of(shape, where, image_size)
    if dtype.kind not in "biuf" or dtype.hasobject:
        raise ValueError(f"{where}: images must be numeric (uint8 or float), got dtype {dtype}")
    return layout


def _layout_of(shape: tuple[int, ...], where: str, image_size) -> tuple[int, int, int]:
    if len(shape) == 3:
        return shape[1], shape[2], 1
    if len(shape) == 4:
        if shape[3] > 4:
            raise ValueError(
                f"{where}: images must be (N, H, W) or channels-last (N, H, W, C) with C <= 4, "
                f"got shape {shape} (channels-first data must be transposed)"
            )
        return shape[1], shape[2], shape[3]
    if len(shape) == 2:
        d = shape[1]
        if image_size is not None:
            h, w = image_size
            for c in (1, 3):
                if h * w * c == d:
                    return h, w, c
        for c in (1, 3):
            s = math.isqrt(d // c) if d % c == 0 else 0
            if s and s * s * c == d:
                return s, s, c
        raise ValueError(
            f"{where}: flat images (N, {d}) are not square; reshape to (N, H, W[, C]) "
            f"or pass image_size=(H, W) with H*W*C == {d}"
        )
    raise ValueError(f"{where}: images must be (N, H, W) or (N, H, W, C), got shape {shape}")


def _npy_header(fh, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:  # pragma: no cover - future format versions
            raise ValueError(f"unsupported .npy format version {version}")
    except ValueError as exc:
        raise ValueError(f"{where}: not a readable .npy array ({exc})") from None
    return tuple(int(s) for s in shape), bool(fortran), np.dtype(dtype)


def _image_npy_header(
    fh, header_where: str, where: str, what: str, stored_bytes: int
) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran, dtype, data offset) of a ``.npy`` stream holding a numeric array whose
    ``stored_bytes`` cover the header's shape; ``what`` names it in errors ("'x'")."""
    shape, fortran, dtype = _npy_header(fh, header_where)
    offset = fh.tell()
    if dtype.hasobject:
        raise ValueError(f"{where}: {what} is an object array, not images (dtype {dtype})")
    expected = offset + int(math.prod(shape)) * dtype.itemsize
    if stored_bytes < expected:
        raise ValueError(
            f"{where}: {what} is truncated: header {shape} {dtype} needs {expected} bytes, "
            f"found {stored_bytes}"
        )
    return shape, fortran, dtype, offset


# --------------------------------------------------------------------------- openers


@dataclass
class _StoredArray:
    """What one array file holds, validated: the rows to read and what comes with them."""

    reader: _RowReader | _ArrayRows
    layout: tuple[int, int, int]  # (H, W, C) of stored rows
    y: np.ndarray | None = None  # (N,) labels stored beside the images (a .npz's 'y')
    timestamps: list | None = None
    ids: list | None = None
    memmap: np.ndarray | None = None  # a .npy file's memmap, kept as ArraySource.array


def _open_array(
    kind: str,
    p: Path,
    labels: Any,
    class_names: list[str] | None,
    channels: int | None,
    image_size: tuple[int, int] | None,
    idx_header: _IdxHeader | None = None,
    *,
    resize: bool = False,
) -> ArraySource:
    """Open an IDX (``idx_header`` given), ``.npy`` or ``.npz`` file as an :class:`ArraySource`.

    Labels come from ``labels=`` when given, else from the file's ``y``, else none. Images of
    another (H, W) than ``image_size`` are a ValueError naming both sizes unless ``resize``.
    """
    where = str(p.absolute())
    if kind == "idx":
        stored = _stored_idx(p, idx_header, where, image_size)
    elif kind == "npy":
        stored = _stored_npy(p, where, image_size)
    else:
        stored = _stored_npz(p, where, image_size)
    y = stored.y

    def labels_in_y() -> LabelFields:
        return _label_fields(*_map_labels(y, class_names, f"{where}['y']"), f"{where}['y']")

    n = stored.reader.shape[0]
    source = ArraySource(
        kind,
        where,
        stored.reader,
        layout=stored.layout,
        channels=channels,
        image_size=image_size,
        resize=resize,
        timestamps=stored.timestamps,
        ids=stored.ids,
        **_resolve_labels(labels, class_names, n, where, None if y is None else labels_in_y),
    )
    source.array = stored.memmap
    return source


def _stored_idx(p: Path, hdr: _IdxHeader, where: str, image_size) -> _StoredArray:
    if len(hdr.shape) == 1:
        raise ValueError(
            f"{where}: this is an IDX label file (idx1, {hdr.shape[0]} entries); "
            f"open the images file and pass this one as labels="
        )
    layout = _image_layout(hdr.shape, hdr.dtype, where, image_size)
    _check_idx_size(p, hdr)
    opener = functools.partial(_open_maybe_gz, p, hdr.gz)
    return _StoredArray(_RowReader(where, opener, hdr.header_bytes, hdr.dtype, hdr.shape), layout)


def _stored_npy(p: Path, where: str, image_size) -> _StoredArray:
    with open(p, "rb") as f:
        shape, fortran, dtype, offset = _image_npy_header(
            f, where, where, "the .npy array", os.path.getsize(p)
        )
    layout = _image_layout(shape, dtype, where, image_size)
    memmap = np.load(p, mmap_mode="r", allow_pickle=False) if math.prod(shape) else None
    if fortran and memmap is not None:
        reader: _RowReader | _ArrayRows = _ArrayRows(memmap)
    else:
        reader = _RowReader(where, functools.partial(open, p, "rb"), offset, dtype, shape)
    return _StoredArray(reader, layout, memmap=memmap)


def _stored_npz(p: Path, where: str, image_size) -> _StoredArray:
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{where}: not a readable .npz archive ({exc})") from None
    with zf:
        members = {n.removesuffix(".npy"): n for n in zf.namelist()}
        if "x" not in members:
            raise ValueError(
                f"{where}: no 'x' array in the .npz (found: {', '.join(sorted(members))}); "
                f"save images as x=..., labels as y=..."
            )
        info = zf.getinfo(members["x"])
        try:
            with zf.open(info) as fh:
                shape, fortran, dtype, offset = _image_npy_header(
                    fh, f"{where}[x]", where, "'x'", info.file_size
                )
        except _CORRUPT_STREAM as exc:  # a small member is read whole: CRC
            raise ValueError(f"{where}: cannot read 'x' ({exc})") from None
    layout = _image_layout(shape, dtype, f"{where}[x]", image_size)

    def load_member(key: str) -> np.ndarray:
        """A whole member, read at once (its CRC is checked); a corrupt one names the archive."""
        try:
            with np.load(p, allow_pickle=False) as z:
                return z[key]
        except (ValueError, *_CORRUPT_STREAM) as exc:
            raise ValueError(f"{where}: cannot read '{key}' ({exc})") from None

    if fortran:  # cannot stream rows of a Fortran-ordered member: load it (documented)
        reader: _RowReader | _ArrayRows = _ArrayRows(load_member("x"))
    else:
        opener = _zip_member_opener(p, members["x"])
        reader = _RowReader(f"{where}['x']", opener, offset, dtype, shape)

    def small(key: str) -> np.ndarray | None:
        """Member ``key`` as a 1-D (N,) array, None when the archive has none."""
        if key not in members:
            return None
        arr = load_member(key)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise ValueError(f"{where}: '{key}' must be 1-D (N,), got shape {arr.shape}")
        _check_len(f"'{key}'", arr, shape[0], where)
        return arr

    y, t, ids = small("y"), small("t"), small("ids")
    return _StoredArray(
        reader,
        layout,
        y=y,
        timestamps=None if t is None else t.tolist(),
        ids=None if ids is None else ids.tolist(),
    )
