"""Label values: integer indices or class names, from the data or a labels file, as int64 indices.

- :func:`_map_labels`: label values (ints, integral floats, names, None/'' for unknown) to
  int64 indices (N,) and the class names they index;
- :func:`load_labels`: a labels file (idx1 raw/gz, ``.npy``, ``.txt``);
- :func:`_resolve_labels`: the rule every format follows, ``labels=`` over labels in the data.

Mapping these indices onto a *model's* classes is :meth:`DataSource.labels_for`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    _check_labels_below,
    _existing,
    _first_row,
    _known_list,
    _normalize_class_names,
)
from .idx import _idx_header, read_idx

__all__ = ["load_labels"]

#: The label keywords of a :class:`DataSource`: ``labels`` (int64 (N,) or None),
#: ``class_names`` (list or None) and ``labels_uri`` (where the labels came from, or None).
LabelFields = dict[str, Any]


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
    """Turn label values (ints, integral floats, names, None/'' for unknown) into int64 indices.

    Names index ``class_names`` when given (an unknown name is a ValueError); without
    ``class_names`` the sorted distinct names become the class names. A string that is not a
    known name but reads as an integer (``"3"``) is an index.

    Parameters
    ----------
    values : np.ndarray or sequence, length N
        The labels, one per sample.
    class_names : list of str or None
        Known class names, index = position.
    where : str
        The file (or file and member) for error messages.
    row_name : callable
        Row position -> how messages name it (``"row 3"``, ``"line 4"``).

    Returns
    -------
    labels : np.ndarray
        int64 (N,), -1 where unknown.
    class_names : list of str or None
        ``class_names``, or the names found when it was None.
    """
    arr = values if isinstance(values, np.ndarray) else None
    if arr is not None and arr.dtype.kind in "biu":
        out = arr.astype(np.int64).reshape(-1)
    elif arr is not None and arr.dtype.kind == "f":
        flat = arr.reshape(-1).astype(np.float64)
        i = _first_row(np.isfinite(flat) & (flat != np.round(flat)))
        if i is not None:
            raise ValueError(f"{where}: {row_name(i)}: label {float(flat[i])!r} is not an integer")
        out = np.where(np.isfinite(flat), flat, -1).astype(np.int64)
        i = _first_row(np.isinf(flat))
        if i is not None:
            raise ValueError(f"{where}: {row_name(i)}: label is infinite")
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
                raise ValueError(f"{where}: {row_name(i)}: label {v!r} is a boolean")
            if isinstance(v, (int, np.integer)):
                out[i] = int(v)
                has_int = True
                continue
            if isinstance(v, (float, np.floating)):
                if math.isnan(v):
                    continue
                if not float(v).is_integer():
                    raise ValueError(f"{where}: {row_name(i)}: label {v!r} is not an integer")
                out[i] = int(v)
                has_int = True
                continue
            if not isinstance(v, str):
                raise ValueError(f"{where}: {row_name(i)}: unsupported label {v!r}")
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
    i = _first_row(out < -1)
    if i is not None:
        raise ValueError(
            f"{where}: {row_name(i)}: negative label {int(out[i])} (use -1 or empty for unknown)"
        )
    if class_names is not None:
        _check_labels_below(out, class_names, lambda i: f"{where}: {row_name(i)}", "")
    return out, class_names


def load_labels(
    path: str | os.PathLike, *, class_names: Sequence[str] | str | None = None
) -> tuple[np.ndarray, list[str] | None]:
    """Read a labels file: idx1 (raw or gz), ``.npy`` (ints or names) or ``.txt`` (one per line).

    Parameters
    ----------
    path : str or os.PathLike
        The labels file, N labels.
    class_names : sequence of str, or str, optional
        Known class names (a str is split at commas); see :func:`_map_labels` for the rules.

    Returns
    -------
    labels : np.ndarray
        int64 (N,), -1 where unknown.
    class_names : list of str or None
        The class names the labels index, when known.
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


def _label_fields(
    labels: np.ndarray | None, class_names: list[str] | None, labels_uri: str | None
) -> LabelFields:
    return {"labels": labels, "class_names": class_names, "labels_uri": labels_uri}


def _external_labels(labels, class_names, n, where) -> LabelFields:
    """labels= argument: a path (idx1/.npy/.txt) or an array-like of ``n`` labels."""
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
    return _label_fields(arr, names, src)


def _resolve_labels(
    labels: Any,
    class_names: list[str] | None,
    n: int,
    where: str,
    found: Callable[[], LabelFields] | None = None,
) -> LabelFields:
    """The label keywords of a :class:`DataSource` of ``n`` samples: from ``labels=`` when
    given, which overrides what ``found()`` reads in the data (folders, a label column, ``y``);
    else none at all."""
    if labels is not None:
        return _external_labels(labels, class_names, n, where)
    if found is not None:
        return found()
    return _label_fields(None, class_names, None)
