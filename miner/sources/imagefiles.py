"""Image-file sources: one image file per sample (folders, manifests), decoded per batch with PIL.

:class:`ImageFileSource` holds the per-sample paths; the first readable image fixes the
reference (H, W, C) unless ``image_size`` and ``channels`` do, and a file that cannot be read
or has another size becomes a :class:`RowError` in its batch instead of stopping iteration.
So does a file whose header declares more than ``max_pixels`` (width * height; checked before
anything is decoded), a float image holding NaN or inf, and a row its opener refused (a
manifest path outside the manifest's folder). Decoding runs in threads for large images (PIL
releases the GIL while it decodes).
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from .base import MAX_PIXELS, RESAMPLE, Batch, DataSource, RowError, _megapixels, _one_line

__all__ = ["ImageFileSource"]

_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_THREADED_DECODE_PIXELS = 128 * 128  # decode image files in threads from this size on


class _Unusable(Exception):
    """A readable file this source will not use: another size, too large, NaN or inf."""


def _check_pixels(im: Image.Image, max_pixels: int) -> None:
    """Raise :class:`_Unusable` when ``im``'s header declares more than ``max_pixels``."""
    w, h = im.size
    if w * h > max_pixels:
        raise _Unusable(
            f"{h}x{w} (HxW) = {_megapixels(w * h)} exceeds the {_megapixels(max_pixels)} limit "
            f"(max_pixels; hardcase mine --max-pixels); not decoded"
        )


def _peek(path: str, channels: int | None, max_pixels: int) -> tuple[int, int, int] | None:
    """(H, W, C) of a decodable image file within ``max_pixels``, else None."""
    try:
        with Image.open(path) as im:
            _check_pixels(im, max_pixels)
            c = channels or (1 if im.mode in _GRAY_MODES else 3)
            im.load()
            w, h = im.size
    except Exception:
        return None
    return h, w, c


class ImageFileSource(DataSource):
    """Folder or manifest: one image file per sample, decoded per batch with PIL.

    ``max_pixels`` bounds width * height read from each file's header before decoding;
    ``refused`` maps rows that must not be opened to the reason, reported as their error.
    Image files of another size are resized to ``image_size`` when it is given.
    """

    def __init__(
        self,
        kind,
        uri,
        uris,
        *,
        channels,
        image_size,
        max_pixels: int = MAX_PIXELS,
        refused: dict[int, str] | None = None,
        **meta,
    ):
        super().__init__(kind, uri, len(uris), uris=uris, **meta)
        self._channels = channels
        self._size = image_size
        self._max_pixels = max_pixels
        self._refused = dict(refused or {})
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
        for i, path in enumerate(self.uris or []):
            if i in self._refused:
                continue
            found = _peek(path, self._channels, self._max_pixels)
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
            _check_pixels(im, self._max_pixels)
            if im.mode == "F":  # float TIFFs: NaN or inf would be cast to some pixel value
                bad = np.count_nonzero(~np.isfinite(np.asarray(im)))
                if bad:
                    raise _Unusable(
                        f"contains NaN/inf values ({bad} of {im.size[0] * im.size[1]} pixels)"
                    )
            im = im.convert("L" if c == 1 else "RGB")
        if im.size != (w, h):
            if self._size is None:
                raise _Unusable(
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
            if i in self._refused:
                return RowError(i, uris[i], self._refused[i])
            if ref is None:
                return RowError(i, uris[i], "no readable image in the source")
            try:
                return self._decode(uris[i], ref)
            except _Unusable as exc:
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
