"""The IDX file format (MNIST's), raw or gzip-compressed: header parsing and size checks,
:func:`read_idx` and :func:`write_idx`.

Opening an IDX file as a data source is :mod:`.arrays`' job; this module only knows the format.
"""

from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import _CORRUPT_STREAM, _existing

__all__ = ["read_idx", "write_idx"]


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


def _open_maybe_gz(path: Path, gz: bool = False):
    """``path`` opened for binary reading, through gzip when ``gz``."""
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
    """Read a whole IDX file (raw or gzip, detected by content) into a native-endian array.

    Parameters
    ----------
    path : str or os.PathLike
        An IDX file, e.g. MNIST's images (N, 28, 28) or labels (N,).

    Returns
    -------
    np.ndarray
        The array of the shape and dtype the header gives, native byte order.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Not an IDX file, or truncated / corrupt / trailing data, naming the file.
    """
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
                raise ValueError(
                    f"{p}: IDX file has trailing data after {hdr.data_bytes} payload bytes"
                )
    except _CORRUPT_STREAM as exc:
        raise ValueError(
            f"{p}: truncated or corrupt {'gzip stream' if hdr.gz else 'file'} ({exc})"
        ) from None
    if len(buf) != hdr.data_bytes:
        raise ValueError(
            f"{p}: IDX file truncated: header {hdr.shape} needs {hdr.data_bytes} bytes, found {len(buf)}"
        )
    arr = np.frombuffer(buf, dtype=hdr.dtype).reshape(hdr.shape)
    return arr.astype(hdr.dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as IDX (gzip-compressed when ``path`` ends with ``.gz``).

    Supported dtypes: uint8, int8, int16, int32, float32, float64. Other integer or bool
    arrays are stored in the smallest of uint8/int16/int32 that holds their values (so int64
    labels 0-9 give an MNIST-style idx1 uint8 file); anything else is a TypeError.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write; a name ending in ``.gz`` is written gzip-compressed.
    array : np.ndarray
        Any shape with 1..255 dimensions, each below 2**32, e.g. images (N, H, W).

    Returns
    -------
    pathlib.Path
        ``path``.
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
