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
    RESAMPLE,
    Batch,
    DataSource,
    RowError,
    _existing,
    _normalize_channels,
    _normalize_class_names,
    _normalize_size,
)
from .folder import _open_folder
from .hashing import content_hash, content_hashes
from .idx import _idx_header, read_idx, write_idx
from .imagefiles import ImageFileSource
from .labels import load_labels
from .manifest import _open_manifest

__all__ = [
    "IMAGE_EXTENSIONS",
    "RESAMPLE",
    "ArraySource",
    "Batch",
    "DataSource",
    "ImageFileSource",
    "RowError",
    "content_hash",
    "content_hashes",
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
        (H, W) to resize every image to.
    channels : {1, 3}, optional
        Channels of the yielded images.

    Returns
    -------
    DataSource
        N samples, yielding images (B, H, W, C) and labels (N,).
    """
    p = _existing(path)
    names = _normalize_class_names(class_names)
    size = _normalize_size(image_size)
    ch = _normalize_channels(channels)
    if p.is_dir():
        return _open_folder(p, labels, names, ch, size)
    suffix = p.suffix.lower()
    if suffix in (".npy", ".npz"):
        return _open_array(suffix[1:], p, labels, names, ch, size)
    if suffix in _MANIFEST_SUFFIXES:
        return _open_manifest(p, labels, names, ch, size)
    hdr = _idx_header(p)
    if hdr is not None:
        return _open_array("idx", p, labels, names, ch, size, idx_header=hdr)
    raise ValueError(
        f"{p}: unrecognized data source; expected an IDX file (raw or .gz), .npy, .npz, "
        f"a folder of class folders, or a .csv/.jsonl manifest"
    )
