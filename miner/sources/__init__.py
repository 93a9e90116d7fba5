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
             manifest's folder; a path that resolves (symlinks followed) outside that folder
             is an error row, never opened, unless ``allow_outside_root=True``. A CSV whose
             first cell is an image path is read as headerless ``path[,label[,timestamp]]``.
===========  ==============================================================================

Labels
    ``source.labels`` is always an int64 array (N,) with -1 where the label is unknown;
    ``source.has_labels`` says whether any label is known; ``source.labels_for(model_classes)``
    gives them as indices into a model's classes (by name when the source has class names). Labels may be integer indices or
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
    * ``image_size=(H, W)``: image files (folders, manifests) of another size are resized
      with :data:`RESAMPLE` (PIL bilinear, which antialiases when shrinking - the same filter
      family as ``tf.image.resize``'s default), as ``image_dataset_from_directory`` does:
      photos come in many sizes. Arrays hold one size for all rows, so one that differs from
      ``image_size`` is a ValueError naming the file and both sizes unless ``resize=True``
      (then per image and channel through PIL, mode ``'L'`` for uint8, ``'F'`` for float).
      Without ``image_size`` every image file must have the size of the first readable image
      of the source (in source order, so a resumed run checks the same reference); a file of
      another size becomes an error row.
    * ``max_pixels`` (default :data:`MAX_PIXELS`, 40 megapixels): an image file whose header
      declares a larger width * height is an error row and is never decoded (a small PNG can
      declare 13000x13000, 169 MB decoded). Pillow's own decompression-bomb check (an error
      above about 179 megapixels) still applies.
    * Float data (IDX floats, ``.npy``, ``.npz``, float TIFFs): a row holding NaN or inf
      (also a float64 value beyond float32) is an error row, not cast to some pixel value.
    * Image files: only the first frame of animated files is read; EXIF orientation is not
      applied (``tf.io.decode_image`` does not apply it either, so training saw the same
      pixels); 16-bit images go through PIL's own conversion to 8 bit.

Errors
    Problems of the data (bad header, truncated file, object or non-numeric array, unknown
    class name, non-integer label, mismatched lengths, impossible channel conversion, an
    array of another size than ``image_size``...) raise ValueError (FileNotFoundError for a
    missing path) with one line naming the file (and row) at ``open_source`` time, before any
    image is read; TypeError is kept for arguments of the wrong type. A corrupt, unreadable,
    missing, oversized or refused image file, or a float row holding NaN or inf, does not stop
    iteration: it becomes a :class:`RowError` in its batch, so yielded images + errors ==
    number of indices visited.

Memory
    Batches are read on demand and memory is bounded by the batch size. Arrays are read row
    range by row range with plain file reads (``.npy`` and raw IDX: at the memmap's offset, so
    resident memory does not grow with N the way touching every memmap page would); gzip IDX
    files and compressed ``.npz`` members are decompressed as a stream - a gzip IDX file's size
    is validated at open time from its trailer (a full decompression pass only when the trailer
    disagrees, to name the size found), its CRC when the stream is read to the end, and a
    backwards seek re-decompresses from the start. Image files are decoded per batch.

API
    ``open_source(path, *, labels=None, class_names=None, image_size=None, channels=None,
    resize=False, max_pixels=MAX_PIXELS, allow_outside_root=False)``
    -> :class:`DataSource` with ``kind``, ``uri``, ``len()``, ``class_names``, ``has_labels``,
    ``labels``, ``label_names``, ``timestamps``, ``ids``, ``uris``, ``image_shape``, ``dtype``,
    ``labels_uri``, ``describe()``, ``labels_for(class_names)`` (the labels as indices into a
    model's classes), ``iter_batches(batch_size, *, start=0, skip=None, workers=None)`` and
    ``read(indices)`` (random access, e.g. to show candidates); ``content_hash(image)``,
    ``content_hashes(images)``, ``read_idx(path)``, ``write_idx(path, array)``,
    ``load_labels(path, *, class_names=None)``.

Modules
    ``base`` (:class:`DataSource`, :class:`Batch`, :class:`RowError`, batching, argument
    checks), ``hashing``, ``idx`` (the IDX format), ``labels`` (label values and labels
    files), ``arrays`` (IDX / ``.npy`` / ``.npz`` sources), ``imagefiles`` (decoding image
    files), ``folder``, ``manifest``; this module dispatches on the path.

Only numpy, Pillow and the standard library are used here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .arrays import ArraySource, _open_array
from .base import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    RESAMPLE,
    Batch,
    DataSource,
    RowError,
    _existing,
    _normalize_channels,
    _normalize_class_names,
    _normalize_flag,
    _normalize_max_pixels,
    _normalize_size,
)
from .folder import _open_folder
from .hashing import content_hash, content_hashes, file_hash
from .idx import _idx_header, read_idx, write_idx
from .imagefiles import ImageFileSource
from .labels import load_labels
from .manifest import _open_manifest

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "RESAMPLE",
    "ArraySource",
    "Batch",
    "DataSource",
    "ImageFileSource",
    "RowError",
    "content_hash",
    "content_hashes",
    "file_hash",
    "load_labels",
    "open_source",
    "read_idx",
    "write_idx",
]

_MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")


def open_source(
    path: str | os.PathLike,
    *,
    labels: str | os.PathLike | Sequence | np.ndarray | None = None,
    class_names: Sequence[str] | str | None = None,
    image_size: tuple[int, int] | int | None = None,
    channels: int | None = None,
    resize: bool = False,
    max_pixels: int = MAX_PIXELS,
    allow_outside_root: bool = False,
) -> DataSource:
    """Open ``path`` as a data source (see the module docstring for formats and rules).

    All validation happens here; iteration only reports per-image read errors.

    Parameters
    ----------
    path : str or os.PathLike
        A folder, a ``.npy``/``.npz`` file, a manifest (``.csv``, ``.tsv``, ``.jsonl``,
        ``.ndjson``, ``.json``) or an IDX file (raw or gzip, recognised by its header).
    labels : str, os.PathLike or array-like of N labels, optional
        A labels file (idx1 raw/gz, ``.npy``, ``.txt``) or the labels themselves; overrides
        labels found in the data.
    class_names : sequence of str, or str, optional
        Class names, index = position (a str is split at commas).
    image_size : (int, int) or int, optional
        (H, W) of the yielded images. Image files of another size are resized to it; arrays
        must have it unless ``resize``.
    channels : {1, 3}, optional
        Channels of the yielded images.
    resize : bool, default False
        Resize arrays (IDX, ``.npy``, ``.npz``) whose (H, W) differs from ``image_size``
        instead of refusing them.
    max_pixels : int, default MAX_PIXELS (40,000,000)
        Largest width * height of an image file, read from its header; a larger file is an
        error row, not decoded.
    allow_outside_root : bool, default False
        Let a manifest's paths lead outside the manifest's folder (else such rows are error
        rows and the files are not opened).

    Returns
    -------
    DataSource
        N samples, yielding images (B, H, W, C) and labels (N,).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    TypeError
        ``resize`` or ``allow_outside_root`` is not a bool, ``max_pixels`` not an int.
    ValueError
        A malformed argument or file, naming the file (and row): see Errors in the module
        docstring; an array whose (H, W) differs from ``image_size`` without ``resize``,
        naming both sizes.
    """
    p = _existing(path)
    names = _normalize_class_names(class_names)
    size = _normalize_size(image_size)
    ch = _normalize_channels(channels)
    resize = _normalize_flag(resize, "resize")
    max_pixels = _normalize_max_pixels(max_pixels)
    allow_outside_root = _normalize_flag(allow_outside_root, "allow_outside_root")
    if p.is_dir():
        return _open_folder(p, labels, names, ch, size, max_pixels=max_pixels)
    suffix = p.suffix.lower()
    if suffix in (".npy", ".npz"):
        return _open_array(suffix[1:], p, labels, names, ch, size, resize=resize)
    if suffix in _MANIFEST_SUFFIXES:
        return _open_manifest(
            p,
            labels,
            names,
            ch,
            size,
            max_pixels=max_pixels,
            allow_outside_root=allow_outside_root,
        )
    hdr = _idx_header(p)
    if hdr is not None:
        return _open_array("idx", p, labels, names, ch, size, idx_header=hdr, resize=resize)
    raise ValueError(
        f"{p}: unrecognized data source; expected an IDX file (raw or .gz), .npy, .npz, "
        f"a folder of class folders, or a .csv/.jsonl manifest"
    )
