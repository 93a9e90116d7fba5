"""Data sources: every input format hardcase reads, streamed in bounded batches.

``open_source(path)`` looks at what ``path`` is and returns a :class:`DataSource`:

===========  ==============================================================================
kind         input
===========  ==============================================================================
``idx``      an IDX file as MNIST ships it, raw or gzip-compressed (detected by content, not
             by name): images (N, H, W) or (N, H, W, C); labels from an idx1 file via
             ``labels=``.
``npy``      a ``.npy`` array (N, H, W) or (N, H, W, C), uint8 or float, opened with
             ``np.load(mmap_mode='r')``; labels via ``labels=``. A 2-D (N, D) array is read as
             square images when D is s*s (C=1) or s*s*3 (C=3), or when ``image_size`` gives
             H*W*C == D.
``npz``      a ``.npz`` with ``x`` (images as for ``.npy``), optional ``y`` (int indices or class
             names), optional ``t`` (timestamps or batch ids), optional ``ids``.
``folder``   a directory ``root/<class>/**/*.png|jpg|jpeg|bmp|gif|webp|tif|tiff``. Classes are
             the sub-directories (hidden ones ignored), sorted by name - the same order as
             ``keras.utils.image_dataset_from_directory`` - unless ``class_names`` is given
             (then a folder not in it is an error). A directory with image files and no
             sub-directories is an unlabeled source.
``manifest`` a ``.csv``/``.tsv`` (header row) or ``.jsonl``/``.ndjson``/``.json`` file with
             ``path`` and optional ``label``, ``timestamp``, ``id`` (aliases: ``file``,
             ``filename``, ``image`` for path; ``class``, ``y`` for label; ``t``, ``time``,
             ``batch`` for timestamp; ``sample_id`` for id). Relative paths are relative to the
             manifest's folder. A CSV whose first cell is an image path is read as headerless
             ``path[,label[,timestamp]]``.
===========  ==============================================================================

Labels
    ``source.labels`` is always an int64 array (N,) with -1 where the label is unknown;
    ``source.has_labels`` says whether any label is known. Labels may be integer indices or
    class names. Names are mapped through ``class_names`` when given (an unknown name is a
    ValueError naming the row, the name and the known names); without ``class_names`` the
    sorted distinct names become the class names. A string that is not a known name but
    reads as an integer (``"3"``) is an index. Empty / null / NaN labels are unknown (-1).
    An explicit ``labels=`` argument overrides labels found in the data (``y``, folders,
    manifest column).

Images
    ``iter_batches`` yields :class:`Batch` objects with images shaped (B, H, W, C): uint8 for
    image files and uint8 arrays, float32 for float (and non-uint8 integer) arrays. Pixel
    values are not rescaled: scaling belongs to the model's preprocessing spec.

    * ``channels``: 1 (PIL mode ``'L'``, luminance ITU-R 601-2) or 3 (``'RGB'``; a single
      channel is replicated, alpha is dropped). For image files without ``channels`` the
      first readable image decides: grayscale modes give 1, everything else 3.
    * ``image_size=(H, W)``: resized with :data:`RESAMPLE` (PIL bilinear, which antialiases
      when shrinking - the same filter family as ``tf.image.resize``'s default); arrays are
      resized per image and channel through PIL (mode ``'L'`` for uint8, ``'F'`` for float).
      Without ``image_size`` every image file must have the size of the first readable image
      of the source (in source order, so a resumed run checks the same reference); a file of
      another size becomes an error row.
    * Image files: only the first frame of animated files is read; EXIF orientation is not
      applied (``tf.io.decode_image`` does not apply it either, so training saw the same
      pixels); 16-bit images go through PIL's own conversion to 8 bit.

Errors
    Validation problems (bad header, truncated file, unknown class name, mismatched lengths,
    impossible channel conversion...) raise ValueError / TypeError / FileNotFoundError with one
    line naming the file (and row) at ``open_source`` time, before any image is read. A
    corrupt, unreadable or missing image file does not stop iteration: it becomes a
    :class:`RowError` in its batch, so yielded images + errors == number of indices visited.

Memory
    Batches are read on demand and memory is bounded by the batch size. Arrays are read row
    range by row range with plain file reads (``.npy`` and raw IDX: at the memmap's offset, so
    resident memory does not grow with N the way touching every memmap page would); gzip IDX
    files and compressed ``.npz`` members are decompressed as a stream - a gzip IDX file's size
    is validated at open time from its trailer (a full decompression pass only when the trailer
    disagrees, to name the size found), its CRC when the stream is read to the end, and a
    backwards seek re-decompresses from the start. Image files are decoded per batch.

API
    ``open_source(path, *, labels=None, class_names=None, image_size=None, channels=None)``
    -> :class:`DataSource` with ``kind``, ``uri``, ``len()``, ``class_names``, ``has_labels``,
    ``labels``, ``label_names``, ``timestamps``, ``ids``, ``uris``, ``image_shape``, ``dtype``,
    ``labels_uri``, ``describe()``, ``iter_batches(batch_size, *, start=0, skip=None,
    workers=None)`` and ``read(indices)`` (random access, e.g. to show candidates);
    ``content_hash(image)``, ``content_hashes(images)``, ``read_idx(path)``, ``write_idx(path, array)``,
    ``load_labels(path, *, class_names=None)``.

Only numpy, Pillow and the standard library are used here.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import math
import os
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "IMAGE_EXTENSIONS",
    "RESAMPLE",
    "Batch",
    "DataSource",
    "RowError",
    "content_hash",
    "content_hashes",
    "load_labels",
    "open_source",
    "read_idx",
    "write_idx",
]

#: Image file extensions picked up in folders (case-insensitive).
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
#: Resampling filter used for every resize (image files and arrays).
RESAMPLE = Image.Resampling.BILINEAR

_KINDS = ("idx", "npy", "npz", "folder", "manifest")
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_MAX_READ_ROWS_BYTES = 64 << 20  # split array reads larger than this into pieces
_THREADED_DECODE_PIXELS = 128 * 128  # decode image files in threads from this size on
#: What a truncated or corrupt compressed stream raises while it is read (gzip, zip members:
#: their CRC is checked at the end); each becomes a ValueError naming the file and rows.
_CORRUPT_STREAM = (EOFError, OSError, zlib.error, zipfile.BadZipFile)

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


# --------------------------------------------------------------------------- hashing


def content_hash(image: np.ndarray) -> str:
    """sha256 hex digest of an image's dtype, shape and bytes.

    Stable across runs, platforms and memory layouts: the array is hashed C-contiguous and
    little-endian, so a strided view or a big-endian copy hashes like the plain array, while
    the same bytes with another shape or dtype hash differently.
    """
    return content_hashes(np.asarray(image)[None])[0]


def content_hashes(images: np.ndarray) -> list[str]:
    """:func:`content_hash` of every image of a batch (B, ...): one digest per image.

    The recipe: sha256 of the little-endian dtype string and the image shape, then the image's
    C-contiguous bytes. The batch is made contiguous and little-endian once and that prefix is
    hashed once, so a whole pool is hashed at a fraction of the per-image cost.
    """
    arr = np.asarray(images)
    if arr.dtype.hasobject:
        raise TypeError(f"content_hash: object arrays cannot be hashed (dtype {arr.dtype})")
    if arr.ndim < 1:
        raise ValueError(f"content_hashes: expected a batch of shape (B, ...), got shape {arr.shape}")
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


# --------------------------------------------------------------------------- IDX

_IDX_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZ_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class _IdxHeader:
    dtype: np.dtype  # big-endian
    shape: tuple[int, ...]
    header_bytes: int
    gz: bool

    @property
    def data_bytes(self) -> int:
        return int(math.prod(self.shape)) * self.dtype.itemsize


def _is_gz(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZ_MAGIC


def _open_maybe_gz(path: Path, gz: bool):
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _idx_header(path: Path) -> _IdxHeader | None:
    """Parse an IDX header, or None when the file does not look like IDX at all."""
    gz = _is_gz(path)
    try:
        with _open_maybe_gz(path, gz) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_CODES:
                return None
            ndim = head[3]
            if not 1 <= ndim <= 8:
                return None
            dims_raw = f.read(4 * ndim)
    except (OSError, EOFError) as exc:  # unreadable gzip header etc.
        if gz:
            raise ValueError(f"{path}: not a readable gzip file ({exc})") from None
        raise
    if len(dims_raw) < 4 * ndim:
        raise ValueError(
            f"{path}: truncated IDX header: expected {4 + 4 * ndim} bytes, "
            f"found {4 + len(dims_raw)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
    return _IdxHeader(_IDX_CODES[head[2]], shape, 4 + 4 * ndim, gz)


def _gzip_trailer_size(path: Path) -> int | None:
    """ISIZE of a gzip file's last member (uncompressed size mod 2^32), None if too short."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < 18:  # 10-byte header + 8-byte trailer
            return None
        f.seek(-4, os.SEEK_END)
        return int.from_bytes(f.read(4), "little")


def _check_idx_size(path: Path, hdr: _IdxHeader) -> None:
    """Raise a ValueError naming the file when its payload is not exactly what the header says."""
    expected = hdr.header_bytes + hdr.data_bytes
    if not hdr.gz:
        actual = os.path.getsize(path)
    elif _gzip_trailer_size(path) == expected % 2**32:
        # the gzip trailer records the payload size (mod 2^32): O(1) instead of a full
        # decompression pass; the stream's CRC is still verified when it is read to the end
        return
    else:  # one streamed decompression pass, nothing kept: the exact size for the message
        actual = 0
        try:
            with gzip.open(path, "rb") as f:
                while chunk := f.read(1 << 22):
                    actual += len(chunk)
        except _CORRUPT_STREAM as exc:
            raise ValueError(
                f"{path}: truncated or corrupt gzip stream ({exc}); IDX header {hdr.shape} "
                f"needs {expected} bytes, only {actual} could be decompressed"
            ) from None
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing data"
        raise ValueError(
            f"{path}: IDX file {what}: header {hdr.shape} {hdr.dtype.name} needs "
            f"{expected} bytes{' decompressed' if hdr.gz else ''}, found {actual}"
        )


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a whole IDX file (raw or gzip, detected by content) into a native-endian array."""
    p = _existing(path)
    hdr = _idx_header(p)
    if hdr is None:
        raise ValueError(f"{p}: not an IDX file (bad magic number)")
    _check_idx_size(p, hdr)
    try:
        with _open_maybe_gz(p, hdr.gz) as f:
            f.seek(hdr.header_bytes)
            buf = f.read(hdr.data_bytes)
            # reading past the payload makes gzip verify the stream's CRC and length
            if f.read(1):
                raise ValueError(f"{p}: IDX file has trailing data after {hdr.data_bytes} payload bytes")
    except _CORRUPT_STREAM as exc:
        raise ValueError(f"{p}: truncated or corrupt {'gzip stream' if hdr.gz else 'file'} ({exc})") from None
    if len(buf) != hdr.data_bytes:
        raise ValueError(f"{p}: IDX file truncated: header {hdr.shape} needs {hdr.data_bytes} bytes, found {len(buf)}")
    arr = np.frombuffer(buf, dtype=hdr.dtype).reshape(hdr.shape)
    return arr.astype(hdr.dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as IDX (gzip-compressed when ``path`` ends with ``.gz``).

    Supported dtypes: uint8, int8, int16, int32, float32, float64. Other integer or bool
    arrays are stored in the smallest of uint8/int16/int32 that holds their values (so int64
    labels 0-9 give an MNIST-style idx1 uint8 file); anything else is a TypeError.
    """
    p = Path(path)
    arr = np.asarray(array)
    if arr.ndim < 1 or arr.ndim > 255:
        raise ValueError(f"write_idx {p}: need an array with 1..255 dimensions, got {arr.ndim}")
    if any(int(s) >= 2**32 for s in arr.shape):
        raise ValueError(f"write_idx {p}: dimension too large for IDX: {arr.shape}")
    kind_size = {(dt.kind, dt.itemsize): code for code, dt in _IDX_CODES.items()}
    code = kind_size.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        if arr.dtype.kind in "biu":
            lo = int(arr.min()) if arr.size else 0
            hi = int(arr.max()) if arr.size else 0
            for cand in (np.uint8, np.int16, np.int32):
                info = np.iinfo(cand)
                if info.min <= lo and hi <= info.max:
                    arr = arr.astype(cand)
                    break
            else:
                raise TypeError(f"write_idx {p}: integer values {lo}..{hi} do not fit int32")
        elif arr.dtype == np.float16:
            arr = arr.astype(np.float32)
        else:
            raise TypeError(f"write_idx {p}: dtype {arr.dtype} has no IDX type code")
        code = kind_size[(arr.dtype.kind, arr.dtype.itemsize)]
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    data = np.ascontiguousarray(arr, dtype=_IDX_CODES[code]).tobytes()
    opener = gzip.open if p.name.lower().endswith(".gz") else open
    with opener(p, "wb") as f:
        f.write(header)
        f.write(data)
    return p


# --------------------------------------------------------------------------- npy headers


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


# --------------------------------------------------------------------------- row readers


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
                out = buf.view(self.dtype).reshape((b - a, *self.shape[1:]))
                if not out.dtype.isnative:
                    out = out.astype(out.dtype.newbyteorder("="))
                return out

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
            out = np.array(self.array[a:b])
            if not out.dtype.isnative:
                out = out.astype(out.dtype.newbyteorder("="))
            return out

        yield read


def _file_opener(path: Path, gz: bool = False):
    def opener():
        return gzip.open(path, "rb") if gz else open(path, "rb")

    return opener


def _zip_member_opener(path: Path, member: str):
    @contextlib.contextmanager
    def opener():
        with zipfile.ZipFile(path) as zf, zf.open(member) as fh:
            yield fh

    return opener


# --------------------------------------------------------------------------- labels


def _normalize_class_names(class_names: Any, where: str = "class_names") -> list[str] | None:
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
    shown = list(class_names[:50])
    more = f" ... ({len(class_names)} in all)" if len(class_names) > 50 else ""
    return f"{shown}{more}"


def _as_int_string(s: str) -> int | None:
    s = s.strip()
    if s.lstrip("+-").isdigit():
        return int(s)
    return None


def _map_labels(
    values: Any,
    class_names: list[str] | None,
    where: str,
    row_name: Callable[[int], str] = lambda i: f"row {i}",
) -> tuple[np.ndarray, list[str] | None]:
    """Turn label values (ints, integral floats, names, None/'' for unknown) into int64 indices."""
    arr = values if isinstance(values, np.ndarray) else None
    if arr is not None and arr.dtype.kind in "biu":
        out = arr.astype(np.int64).reshape(-1)
    elif arr is not None and arr.dtype.kind == "f":
        flat = arr.reshape(-1).astype(np.float64)
        bad = np.flatnonzero(np.isfinite(flat) & (flat != np.round(flat)))
        if bad.size:
            i = int(bad[0])
            raise TypeError(f"{where}: {row_name(i)}: label {float(flat[i])!r} is not an integer")
        out = np.where(np.isfinite(flat), flat, -1).astype(np.int64)
        inf = np.flatnonzero(np.isinf(flat))
        if inf.size:
            raise TypeError(f"{where}: {row_name(int(inf[0]))}: label is infinite")
    else:
        seq = arr.reshape(-1).tolist() if arr is not None else list(values)
        if arr is not None and arr.dtype.kind == "S":
            seq = [v.decode("utf-8") for v in seq]
        out = np.full(len(seq), -1, dtype=np.int64)
        lookup = {n: k for k, n in enumerate(class_names)} if class_names is not None else None
        names: dict[int, str] = {}
        has_int = False
        for i, v in enumerate(seq):
            if v is None:
                continue
            if isinstance(v, bool):
                raise TypeError(f"{where}: {row_name(i)}: label {v!r} is a boolean")
            if isinstance(v, (int, np.integer)):
                out[i] = int(v)
                has_int = True
                continue
            if isinstance(v, (float, np.floating)):
                if math.isnan(v):
                    continue
                if not float(v).is_integer():
                    raise TypeError(f"{where}: {row_name(i)}: label {v!r} is not an integer")
                out[i] = int(v)
                has_int = True
                continue
            if not isinstance(v, str):
                raise TypeError(f"{where}: {row_name(i)}: unsupported label {v!r}")
            s = v.strip()
            if s == "":
                continue
            if lookup is not None:
                if s in lookup:
                    out[i] = lookup[s]
                    continue
                k = _as_int_string(s)
                if k is None:
                    raise ValueError(
                        f"{where}: {row_name(i)}: unknown class name {s!r}; known class names: "
                        f"{_known_list(class_names)}"
                    )
                out[i] = k
                has_int = True
            else:
                names[i] = s
        if lookup is None and names:
            ints = {i: _as_int_string(s) for i, s in names.items()}
            if all(k is not None for k in ints.values()):
                for i, k in ints.items():
                    out[i] = k
            elif has_int:
                i_name = next(i for i, k in ints.items() if k is None)
                raise ValueError(
                    f"{where}: {row_name(i_name)}: label {names[i_name]!r} is a class name but "
                    f"other rows are integer indices; pass class_names to map names to indices"
                )
            else:
                class_names = sorted(set(names.values()))
                lookup = {n: k for k, n in enumerate(class_names)}
                for i, s in names.items():
                    out[i] = lookup[s]
    neg = np.flatnonzero(out < -1)
    if neg.size:
        i = int(neg[0])
        raise ValueError(
            f"{where}: {row_name(i)}: negative label {int(out[i])} (use -1 or empty for unknown)"
        )
    if class_names is not None:
        big = np.flatnonzero(out >= len(class_names))
        if big.size:
            i = int(big[0])
            raise ValueError(
                f"{where}: {row_name(i)}: label {int(out[i])} is outside 0..{len(class_names) - 1}"
                f" for {len(class_names)} class names {_known_list(class_names)}"
            )
    return out, class_names


def load_labels(
    path: str | os.PathLike, *, class_names: Sequence[str] | str | None = None
) -> tuple[np.ndarray, list[str] | None]:
    """Read a labels file: idx1 (raw or gz), ``.npy`` (ints or names) or ``.txt`` (one per line).

    Returns (int64 labels with -1 for unknown, class names or None). See the module docstring
    for how names and indices are mapped.
    """
    p = _existing(path)
    names = _normalize_class_names(class_names)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            values = np.load(p, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{p}: cannot read labels ({exc})") from None
    elif suffix in (".txt", ".lst"):
        with open(p, encoding="utf-8-sig") as f:
            values = [line.strip() for line in f.read().splitlines()]
        while values and values[-1] == "":
            values.pop()
        return _map_labels(values, names, str(p), lambda i: f"line {i + 1}")
    else:
        hdr = _idx_header(p)
        if hdr is None:
            raise ValueError(
                f"{p}: unrecognized labels file; expected an idx1 file (raw or .gz), "
                f".npy or .txt (one label per line)"
            )
        values = read_idx(p)
    if values.ndim != 1 and not (values.ndim == 2 and values.shape[1] == 1):
        raise ValueError(f"{p}: labels must be 1-D (N,), got shape {values.shape}")
    return _map_labels(values, names, str(p))


# --------------------------------------------------------------------------- helpers


def _existing(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"not found: {p}")
    return p


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


def _skip_mask(skip: Any, n: int) -> np.ndarray | None:
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


def _runs(sorted_idx: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs [a, b) of a sorted unique index array."""
    if sorted_idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(sorted_idx) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [sorted_idx.size]))
    return [(int(sorted_idx[s]), int(sorted_idx[e - 1]) + 1) for s, e in zip(starts, ends)]


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    msg = " ".join(str(exc).split()) or repr(exc)
    msg = f"{type(exc).__name__}: {msg}"
    return msg if len(msg) <= 300 else msg[:297] + "..."


# --------------------------------------------------------------------------- DataSource


class DataSource:
    """A sized, batch-iterable collection of images with optional labels/timestamps/ids.

    Attributes: ``kind`` ('idx'|'npy'|'npz'|'folder'|'manifest'), ``uri`` (absolute path),
    ``class_names`` (list[str] | None), ``labels`` (int64 (N,), -1 = unknown),
    ``timestamps`` (list | None), ``ids`` (list | None), ``uris`` (per-sample paths | None),
    ``labels_uri`` (where labels came from, or None), ``dtype`` of yielded images.
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
        """int64 (N,) label indices, -1 where unknown (read-only)."""
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
        raise NotImplementedError
        yield  # pragma: no cover


# --------------------------------------------------------------------------- array sources


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
    """IDX / .npy / .npz images read by row ranges."""

    def __init__(self, kind, uri, reader, *, layout, channels, image_size, **meta):
        super().__init__(kind, uri, reader.shape[0], **meta)
        self._reader = reader
        self._layout = layout  # (H, W, C) of stored rows
        self._in_dtype = reader.dtype
        self._out_dtype = (
            np.dtype(np.uint8)
            if reader.dtype.kind == "u" and reader.dtype.itemsize == 1
            else np.dtype(np.float32)
        )
        h, w, c = layout
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

    def _convert(self, rows: np.ndarray) -> np.ndarray:
        h, w, c = self._layout
        x = rows.reshape(rows.shape[0], h, w, c)
        if x.dtype != self._out_dtype:
            x = x.astype(self._out_dtype)
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
                parts = []
                for a, b in _runs(idx):
                    for a2 in range(a, b, max_rows):
                        parts.append(self._convert(read_rows(a2, min(b, a2 + max_rows))))
                if parts:
                    images = parts[0] if len(parts) == 1 else np.concatenate(parts)
                else:
                    images = np.empty((0, *self._image_shape), dtype=self._out_dtype)
                return Batch(idx.astype(np.int64), images, [])

            yield read


def _layout_of(shape: tuple[int, ...], where: str, image_size) -> tuple[int, int, int]:
    """(H, W, C) of stored rows, from (N, H, W), (N, H, W, C) or flat (N, D)."""
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


def _check_image_dtype(dtype: np.dtype, where: str) -> None:
    if dtype.kind not in "biuf" or dtype.hasobject:
        raise TypeError(f"{where}: images must be numeric (uint8 or float), got dtype {dtype}")


def _check_len(name: str, values: Any, n: int, where: str) -> None:
    if len(values) != n:
        raise ValueError(f"{where}: {name} has {len(values)} entries but there are {n} images")


def _external_labels(labels, class_names, n, where):
    """labels= argument: a path (idx1/.npy/.txt) or an array-like."""
    if isinstance(labels, (str, os.PathLike)):
        arr, names = load_labels(labels, class_names=class_names)
        src = str(Path(labels).absolute())
    else:
        arr, names = _map_labels(
            labels if isinstance(labels, np.ndarray) else list(labels),
            class_names,
            f"{where} (labels)",
        )
        src = None
    if arr.shape[0] != n:
        raise ValueError(f"{src or 'labels'}: {arr.shape[0]} labels but {where} has {n} images")
    return arr, names, src


def _open_idx(p: Path, hdr: _IdxHeader, labels, class_names, channels, image_size):
    where = str(p.absolute())
    if len(hdr.shape) == 1:
        raise ValueError(
            f"{where}: this is an IDX label file (idx1, {hdr.shape[0]} entries); "
            f"open the images file and pass this one as labels="
        )
    layout = _layout_of(hdr.shape, where, image_size)
    _check_image_dtype(hdr.dtype, where)
    _check_idx_size(p, hdr)
    reader = _RowReader(where, _file_opener(p, hdr.gz), hdr.header_bytes, hdr.dtype, hdr.shape)
    n = hdr.shape[0]
    lab = src = None
    names = class_names
    if labels is not None:
        lab, names, src = _external_labels(labels, class_names, n, where)
    return ArraySource(
        "idx",
        where,
        reader,
        layout=layout,
        channels=channels,
        image_size=image_size,
        labels=lab,
        class_names=names,
        labels_uri=src,
    )


def _open_npy(p: Path, labels, class_names, channels, image_size):
    where = str(p.absolute())
    with open(p, "rb") as f:
        shape, fortran, dtype = _npy_header(f, where)
        offset = f.tell()
    if dtype.hasobject:
        raise TypeError(f"{where}: object arrays are not images (dtype {dtype})")
    expected = offset + int(math.prod(shape)) * dtype.itemsize
    actual = os.path.getsize(p)
    if actual < expected:
        raise ValueError(
            f"{where}: .npy file truncated: header {shape} {dtype} needs {expected} bytes, "
            f"found {actual}"
        )
    layout = _layout_of(shape, where, image_size)
    _check_image_dtype(dtype, where)
    arr = np.load(p, mmap_mode="r", allow_pickle=False) if math.prod(shape) else None
    if fortran and arr is not None:
        reader: Any = _ArrayRows(arr)
    else:
        reader = _RowReader(where, _file_opener(p), offset, dtype, shape)
    n = shape[0]
    lab = src = None
    names = class_names
    if labels is not None:
        lab, names, src = _external_labels(labels, class_names, n, where)
    src_obj = ArraySource(
        "npy",
        where,
        reader,
        layout=layout,
        channels=channels,
        image_size=image_size,
        labels=lab,
        class_names=names,
        labels_uri=src,
    )
    src_obj.array = arr
    return src_obj


def _open_npz(p: Path, labels, class_names, channels, image_size):
    where = str(p.absolute())
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
                shape, fortran, dtype = _npy_header(fh, f"{where}[x]")
                offset = fh.tell()
        except _CORRUPT_STREAM as exc:  # a small member is read whole: CRC
            raise ValueError(f"{where}: cannot read 'x' ({exc})") from None
        expected = offset + int(math.prod(shape)) * dtype.itemsize
        if info.file_size < expected:
            raise ValueError(
                f"{where}: 'x' is truncated: header {shape} {dtype} needs {expected} bytes, "
                f"found {info.file_size}"
            )
    if dtype.hasobject:
        raise TypeError(f"{where}: 'x' is an object array, not images")
    layout = _layout_of(shape, f"{where}[x]", image_size)
    _check_image_dtype(dtype, f"{where}[x]")
    def load_member(key: str) -> np.ndarray:
        """A whole member, read at once (its CRC is checked); a corrupt one names the archive."""
        try:
            with np.load(p, allow_pickle=False) as z:
                return z[key]
        except (ValueError, *_CORRUPT_STREAM) as exc:
            raise ValueError(f"{where}: cannot read '{key}' ({exc})") from None

    if fortran:  # cannot stream rows of a Fortran-ordered member: load it (documented)
        reader: Any = _ArrayRows(load_member("x"))
    else:
        reader = _RowReader(f"{where}['x']", _zip_member_opener(p, members["x"]), offset, dtype, shape)
    n = shape[0]

    def small(key: str):
        if key not in members:
            return None
        arr = load_member(key)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise ValueError(f"{where}: '{key}' must be 1-D (N,), got shape {arr.shape}")
        _check_len(f"'{key}'", arr, n, where)
        return arr

    y, t, ids = small("y"), small("t"), small("ids")
    lab = src = None
    names = class_names
    if labels is not None:
        lab, names, src = _external_labels(labels, class_names, n, where)
    elif y is not None:
        lab, names = _map_labels(y, class_names, f"{where}['y']")
        src = f"{where}['y']"
    return ArraySource(
        "npz",
        where,
        reader,
        layout=layout,
        channels=channels,
        image_size=image_size,
        labels=lab,
        class_names=names,
        labels_uri=src,
        timestamps=None if t is None else t.tolist(),
        ids=None if ids is None else ids.tolist(),
    )


# --------------------------------------------------------------------------- image-file sources


class _SizeMismatch(Exception):
    pass


def _peek(path: str, channels: int | None) -> tuple[int, int, int] | None:
    """(H, W, C) of a decodable image file, None when it cannot be decoded."""
    try:
        with Image.open(path) as im:
            c = channels or (1 if im.mode in _GRAY_MODES else 3)
            im.load()
            w, h = im.size
    except Exception:
        return None
    return h, w, c


class ImageFileSource(DataSource):
    """Folder or manifest: one image file per sample, decoded per batch with PIL."""

    def __init__(self, kind, uri, uris, *, channels, image_size, **meta):
        super().__init__(kind, uri, len(uris), uris=uris, **meta)
        self._channels = channels
        self._size = image_size
        self._ref: tuple[int, int, int] | None = None  # (H, W, C)
        self._probed = False
        self._ref_pixels = 0  # pixels of the first readable file before resizing

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    def _probe(self) -> tuple[int, int, int] | None:
        """Reference (H, W, C): from arguments, else the first readable image in source order."""
        if self._probed:
            return self._ref
        for path in self.uris or []:
            found = _peek(path, self._channels)
            if found is not None:
                h, w, c = found
                self._ref = (*(self._size or (h, w)), c)
                self._ref_pixels = h * w
                break
        if self._size is not None and self._channels is not None:
            self._ref = (*self._size, self._channels)
        self._probed = True
        return self._ref

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        return self._probe()

    def _decode(self, path: str, ref: tuple[int, int, int]) -> np.ndarray:
        h, w, c = ref
        with Image.open(path) as im:
            im = im.convert("L" if c == 1 else "RGB")
        if im.size != (w, h):
            if self._size is None:
                raise _SizeMismatch(
                    f"size {im.size[1]}x{im.size[0]} (HxW) differs from the first image's "
                    f"{h}x{w}; pass image_size to resize"
                )
            im = im.resize((w, h), RESAMPLE)
        arr = np.asarray(im, dtype=np.uint8)
        return arr[..., None] if arr.ndim == 2 else arr

    @contextlib.contextmanager
    def _session(self, workers):
        ref = self._probe()
        if workers is None:  # threads pay off for large files only (PIL decodes without the GIL)
            big = self._ref_pixels >= _THREADED_DECODE_PIXELS
            workers = min(4, os.cpu_count() or 1) if big else 1
        nworkers = max(1, int(workers))
        pool = ThreadPoolExecutor(nworkers) if nworkers > 1 else None
        uris = self.uris or []

        def one(i: int):
            if ref is None:
                return RowError(i, uris[i], "no readable image in the source")
            try:
                return self._decode(uris[i], ref)
            except _SizeMismatch as exc:
                return RowError(i, uris[i], str(exc))
            except Exception as exc:
                return RowError(i, uris[i], _one_line(exc))

        def read(idx: np.ndarray) -> Batch:
            ilist = idx.tolist()
            results = list(pool.map(one, ilist)) if pool and len(ilist) > 1 else map(one, ilist)
            ok_idx, imgs, errors = [], [], []
            for i, r in zip(ilist, results):
                if isinstance(r, RowError):
                    errors.append(r)
                else:
                    ok_idx.append(i)
                    imgs.append(r)
            shape = ref if ref is not None else (0, 0, self._channels or 1)
            images = np.stack(imgs) if imgs else np.empty((0, *shape), dtype=np.uint8)
            return Batch(np.asarray(ok_idx, dtype=np.int64), images, errors)

        try:
            yield read
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)


def _is_image_file(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _walk_images(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            fp = Path(dirpath) / fn
            if _is_image_file(fp):
                out.append(fp)
    return out


def _open_folder(root: Path, labels, class_names, channels, image_size):
    where = str(root.absolute())
    entries = sorted(root.iterdir(), key=lambda e: e.name)
    subdirs = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
    loose = [e for e in entries if e.is_file() and _is_image_file(e)]
    if subdirs and loose:
        raise ValueError(
            f"{where}: image files next to class folders (e.g. {loose[0].name}); move them "
            f"into a class folder or remove them"
        )
    if subdirs:
        folder_names = [d.name for d in subdirs]
        if class_names is not None:
            unknown = [f for f in folder_names if f not in class_names]
            if unknown:
                raise ValueError(
                    f"{where}: folder {unknown[0]!r} is not one of the class names "
                    f"{_known_list(class_names)}"
                )
            names = class_names
        else:
            names = folder_names
        lookup = {n: k for k, n in enumerate(names)}
        paths: list[str] = []
        labs: list[int] = []
        for d in subdirs:
            files = _walk_images(d)
            paths.extend(str(f.absolute()) for f in files)
            labs.extend([lookup[d.name]] * len(files))
        lab = np.asarray(labs, dtype=np.int64)
        src = where
    else:
        paths = [str(f.absolute()) for f in loose]
        names, lab, src = class_names, None, None
    if not paths:
        raise ValueError(f"{where}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    if labels is not None:
        lab, names, src = _external_labels(labels, class_names, len(paths), where)
    return ImageFileSource(
        "folder",
        where,
        paths,
        channels=channels,
        image_size=image_size,
        labels=lab,
        class_names=names,
        labels_uri=src,
    )


_COLUMNS = {
    "path": ("path", "file", "filename", "filepath", "image", "image_path"),
    "label": ("label", "class", "class_name", "y"),
    "timestamp": ("timestamp", "t", "time", "ts", "batch", "batch_id"),
    "id": ("id", "sample_id"),
}


def _pick_columns(keys: Iterable[str]) -> dict[str, str]:
    lower = {k.strip().lower(): k for k in keys if k is not None}
    found = {}
    for canon, aliases in _COLUMNS.items():
        for a in aliases:
            if a in lower:
                found[canon] = lower[a]
                break
    return found


def _parse_timestamp(v: Any) -> Any:
    if not isinstance(v, str):
        return v
    s = v.strip()
    if s == "":
        return None
    k = _as_int_string(s)
    if k is not None:
        return k
    try:
        return float(s)
    except ValueError:
        return s


def _read_manifest_rows(p: Path) -> tuple[list[dict], list[int], dict[str, str]]:
    """Rows (dicts), their line numbers and the column mapping."""
    where = str(p)
    suffix = p.suffix.lower()
    rows: list[dict] = []
    lines: list[int] = []
    if suffix in (".csv", ".tsv"):
        delim = "\t" if suffix == ".tsv" else ","
        with open(p, newline="", encoding="utf-8-sig") as f:
            text = f.read()
        reader = csv.reader(io.StringIO(text), delimiter=delim)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{where}: empty manifest")
        cols = _pick_columns(header)
        if "path" not in cols:
            first = header[0].strip() if header else ""
            if Path(first).suffix.lower() in IMAGE_EXTENSIONS:  # headerless path[,label[,ts]]
                header = ["path", "label", "timestamp"][: len(header)]
                reader = csv.reader(io.StringIO(text), delimiter=delim)
                cols = _pick_columns(header)
            else:
                raise ValueError(
                    f"{where}: no 'path' column in the header (found: {', '.join(header)}); "
                    f"expected path,label[,timestamp]"
                )
        for rec in reader:
            if not rec or all(c.strip() == "" for c in rec):
                continue
            if len(rec) > len(header):
                raise ValueError(
                    f"{where}: line {reader.line_num}: {len(rec)} fields, header has {len(header)}"
                )
            rows.append(dict(zip(header, rec)))
            lines.append(reader.line_num)
        return rows, lines, cols
    if suffix in (".jsonl", ".ndjson", ".json"):
        with open(p, encoding="utf-8-sig") as f:
            text = f.read()
        if suffix == ".json" and text.lstrip().startswith("["):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: invalid JSON ({exc})") from None
            items = list(enumerate(data, start=1))
            unit = "item"
        else:
            items = []
            for ln, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    items.append((ln, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{where}: line {ln}: invalid JSON ({exc.msg})") from None
            unit = "line"
        keys: set[str] = set()
        for ln, obj in items:
            if not isinstance(obj, dict):
                raise TypeError(f"{where}: {unit} {ln}: expected an object with a 'path' key")
            keys.update(obj.keys())
            rows.append(obj)
            lines.append(ln)
        cols = _pick_columns(keys)
        if rows and "path" not in cols:
            raise ValueError(f"{where}: no 'path' key (found: {', '.join(sorted(keys))})")
        return rows, lines, cols
    raise ValueError(f"{where}: unsupported manifest type {suffix!r}")


def _open_manifest(p: Path, labels, class_names, channels, image_size):
    where = str(p.absolute())
    rows, lines, cols = _read_manifest_rows(p)
    if not rows:
        raise ValueError(f"{where}: manifest has no rows")
    unit = "item" if p.suffix.lower() == ".json" else "line"
    base = p.absolute().parent
    paths: list[str] = []
    for row, ln in zip(rows, lines):
        v = row.get(cols["path"])
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"{where}: {unit} {ln}: empty or missing path")
        fp = Path(v.strip())
        paths.append(str(fp if fp.is_absolute() else base / fp))
    n = len(paths)
    lab = None
    names = class_names
    src = None
    if labels is not None:
        lab, names, src = _external_labels(labels, class_names, n, where)
    elif "label" in cols:
        values = [row.get(cols["label"]) for row in rows]
        lab, names = _map_labels(values, class_names, where, lambda i: f"{unit} {lines[i]}")
        src = where
    ts = [_parse_timestamp(r.get(cols["timestamp"])) for r in rows] if "timestamp" in cols else None
    ids = [r.get(cols["id"]) for r in rows] if "id" in cols else None
    return ImageFileSource(
        "manifest",
        where,
        paths,
        channels=channels,
        image_size=image_size,
        labels=lab,
        class_names=names,
        labels_uri=src,
        timestamps=ts,
        ids=ids,
    )


# --------------------------------------------------------------------------- dispatch


def open_source(
    path: str | os.PathLike,
    *,
    labels: str | os.PathLike | Sequence | np.ndarray | None = None,
    class_names: Sequence[str] | str | None = None,
    image_size: tuple[int, int] | int | None = None,
    channels: int | None = None,
) -> DataSource:
    """Open ``path`` as a data source (see the module docstring for formats and rules).

    ``labels``: a labels file (idx1 raw/gz, .npy, .txt) or an array-like of N labels;
    overrides labels found in the data. ``class_names``: list (or comma-separated string) of
    class names, index = position. ``image_size``: (H, W) to resize to. ``channels``: 1 or 3.
    All validation happens here; iteration only reports per-image read errors.
    """
    p = _existing(path)
    names = _normalize_class_names(class_names)
    size = _normalize_size(image_size)
    ch = _normalize_channels(channels)
    if p.is_dir():
        return _open_folder(p, labels, names, ch, size)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return _open_npy(p, labels, names, ch, size)
    if suffix == ".npz":
        return _open_npz(p, labels, names, ch, size)
    if suffix in (".csv", ".tsv", ".jsonl", ".ndjson", ".json"):
        return _open_manifest(p, labels, names, ch, size)
    hdr = _idx_header(p)
    if hdr is not None:
        return _open_idx(p, hdr, labels, names, ch, size)
    raise ValueError(
        f"{p}: unrecognized data source; expected an IDX file (raw or .gz), .npy, .npz, "
        f"a folder of class folders, or a .csv/.jsonl manifest"
    )
