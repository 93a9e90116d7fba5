"""Input validation for the public functions of :mod:`miner`.

Every public function checks its inputs once, here, and then hands validated
arrays to private ``_compute_*`` helpers that assume valid input. Errors are
``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong shape or
value) and name the offending argument, what was wrong with it and where (row,
column, index), so that a user can find the bad value in their own data.
"""

from __future__ import annotations

import numbers

import numpy as np

#: Rows of ``pred_probs`` must sum to 1 within this absolute tolerance. The same
#: tolerance decides :func:`miner.scores.detect_logits`, so outputs that are not
#: detected as logits always pass :func:`check_pred_probs`.
PROB_SUM_ATOL = 1e-3

#: Rows checked at a time when scanning large arrays for NaN/inf (bounds the
#: temporary memory of the scan).
_CHUNK_ROWS = 65536

_SOFTMAX_HINT = "if these are logits, apply miner.scores.softmax first"


def _as_array(value, name: str) -> np.ndarray:
    """``np.asarray`` that turns ragged or otherwise unconvertible input into a TypeError."""
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(
            f"{name} must be a numpy array (or convertible to one), "
            f"got {type(value).__name__}: {exc}"
        ) from None


def _describe(arr: np.ndarray) -> str:
    return f"shape {arr.shape} and dtype {arr.dtype}"


def _require_numeric(arr: np.ndarray, name: str, *, allow_int: bool = True) -> None:
    kinds = "fiu" if allow_int else "f"
    if arr.dtype.kind not in kinds:
        wanted = "a real-valued numeric" if allow_int else "a floating-point"
        raise TypeError(f"{name} must be {wanted} array, got {_describe(arr)}")


def _require_integer(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got {_describe(arr)}")


def _nonfinite_message(arr: np.ndarray, name: str, row: int) -> str:
    """Message for the first non-finite entry of ``arr[row]`` (1-D or 2-D ``arr``)."""
    if arr.ndim == 1:
        value = arr[row]
        what = "NaN" if np.isnan(value) else str(value)
        return f"{name} contains {what} at index {row}"
    row_values = arr[row]
    col = int(np.flatnonzero(~np.isfinite(row_values))[0])
    what = "NaN" if np.isnan(row_values[col]) else str(row_values[col])
    return f"{name} row {row} contains {what} (column {col})"


def _first_nonfinite_row(arr: np.ndarray) -> int | None:
    """Index of the first row of a float array holding NaN or +-inf, else None.

    2-D arrays are scanned in chunks of rows via a row sum (NaN and inf
    propagate through sums); rows whose sum is not finite are re-checked
    exactly, so an overflowing sum of finite values is not reported.
    """
    if arr.dtype.kind != "f" or arr.size == 0:
        return None
    if arr.ndim == 1:
        bad = np.flatnonzero(~np.isfinite(arr))
        return int(bad[0]) if bad.size else None
    for start in range(0, arr.shape[0], _CHUNK_ROWS):
        chunk = arr[start : start + _CHUNK_ROWS]
        suspicious = np.flatnonzero(~np.isfinite(np.add.reduce(chunk, axis=1)))
        for r in suspicious:
            if not np.isfinite(chunk[r]).all():
                return start + int(r)
    return None


def check_pred_probs(pred_probs, *, name: str = "pred_probs", atol: float = PROB_SUM_ATOL):
    """Validate predicted probabilities and return them as float64.

    Parameters
    ----------
    pred_probs : array_like, shape (N, K)
        One row of class probabilities per example, K >= 2, entries >= 0, rows
        summing to 1 within ``atol``. N may be 0.
    name : str
        Name used in error messages.
    atol : float
        Tolerance on the row sums.

    Returns
    -------
    np.ndarray, shape (N, K), float64

    Raises
    ------
    TypeError
        Not numeric.
    ValueError
        Not 2-D, fewer than 2 columns, NaN/inf, negative entries, or a row that
        does not sum to 1 (the message suggests :func:`miner.scores.softmax`).
    """
    arr = _as_array(pred_probs, name)
    _require_numeric(arr, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D with shape (N, K), got {_describe(arr)}")
    n, k = arr.shape
    if k < 2:
        raise ValueError(f"{name} must have at least K=2 columns (classes), got shape {arr.shape}")
    arr = np.asarray(arr, dtype=np.float64)
    if n == 0:
        return arr
    bad_row = _first_nonfinite_row(arr)
    if bad_row is not None:
        raise ValueError(_nonfinite_message(arr, name, bad_row))
    neg_rows, neg_cols = np.nonzero(arr < 0)
    if neg_rows.size:
        r, c = int(neg_rows[0]), int(neg_cols[0])
        raise ValueError(
            f"{name} row {r} has negative value {float(arr[r, c])!r} in column {c}; "
            f"probabilities must be >= 0 ({_SOFTMAX_HINT})"
        )
    sums = arr.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > atol)
    if off.size:
        r = int(off[0])
        raise ValueError(
            f"{name} row {r} sums to {sums[r]:.6g}, not 1 (tolerance {atol:g}); "
            f"{off.size} of {n} rows are off ({_SOFTMAX_HINT})"
        )
    return arr


def check_outputs(outputs, *, name: str = "outputs") -> np.ndarray:
    """Validate raw model outputs (probabilities or logits) and return them as float.

    Parameters
    ----------
    outputs : array_like, shape (N, K)
        Finite real numbers, K >= 1.

    Returns
    -------
    np.ndarray, shape (N, K)
        float32 inputs stay float32; everything else becomes float64.
    """
    arr = _as_array(outputs, name)
    _require_numeric(arr, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D with shape (N, K), got {_describe(arr)}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column, got shape {arr.shape}")
    arr = arr.astype(np.result_type(arr.dtype, np.float32), copy=False)
    bad_row = _first_nonfinite_row(arr)
    if bad_row is not None:
        raise ValueError(_nonfinite_message(arr, name, bad_row))
    return arr


def check_labels(
    labels,
    *,
    n: int,
    n_classes: int,
    allow_unknown: bool = True,
    name: str = "labels",
    other: str = "pred_probs",
) -> np.ndarray:
    """Validate class labels and return them as int64.

    Parameters
    ----------
    labels : array_like, shape (N,)
        Integer class indices in ``0 .. K-1``; ``-1`` marks an unknown label
        when ``allow_unknown``.
    n : int
        Expected length N (rows of ``other``).
    n_classes : int
        Number of classes K (columns of ``other``).
    allow_unknown : bool
        Whether ``-1`` is accepted.
    name, other : str
        Names used in error messages.

    Returns
    -------
    np.ndarray, shape (N,), int64
    """
    arr = _as_array(labels, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D with shape (N,), got {_describe(arr)}")
    if arr.size == 0 and arr.dtype.kind == "f":
        arr = arr.astype(np.int64)  # np.asarray([]) is float64
    _require_integer(arr, name)
    if arr.shape[0] != n:
        raise ValueError(f"{name} has length {arr.shape[0]} but {other} has N={n} rows")
    arr = arr.astype(np.int64, copy=False)
    low = -1 if allow_unknown else 0
    bad = np.flatnonzero((arr < low) | (arr >= n_classes))
    if bad.size:
        i = int(bad[0])
        v = int(arr[i])
        if v >= n_classes:
            raise ValueError(
                f"{name} has value {v} at index {i} but {other} has K={n_classes} columns"
            )
        allowed = (
            "-1 (unknown label) is the only negative value allowed"
            if allow_unknown
            else ("labels must be in 0..K-1 here (no unknown labels)")
        )
        raise ValueError(f"{name} has value {v} at index {i}; {allowed}")
    return arr


def check_thresholds(thresholds, *, n_classes: int, name: str = "thresholds") -> np.ndarray:
    """Validate per-class thresholds: shape (K,), finite, within [0, 1]; returns float64."""
    arr = _as_array(thresholds, name)
    _require_numeric(arr, name)
    if arr.shape != (n_classes,):
        raise ValueError(
            f"{name} must have shape (K,) = ({n_classes},) to match pred_probs, got shape "
            f"{arr.shape}"
        )
    arr = arr.astype(np.float64, copy=False)
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0) | (arr > 1))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name} has value {float(arr[i])!r} at class {i}; must be finite and in [0, 1]"
        )
    return arr


def check_class_sums(counts, sums, *, tol: float = PROB_SUM_ATOL) -> tuple[np.ndarray, np.ndarray]:
    """Validate per-class (counts, sums of self-confidence); returns (int64, float64) arrays.

    ``counts``: shape (K,), K >= 1, non-negative integers. ``sums``: shape (K,), finite,
    within ``[0, counts]`` (up to ``tol`` times the count: probabilities are accepted within PROB_SUM_ATOL).
    """
    c = _as_array(counts, "counts")
    _require_integer(c, "counts")
    if c.ndim != 1 or c.shape[0] < 1:
        raise ValueError(f"counts must have shape (K,) with K >= 1, got shape {c.shape}")
    c = c.astype(np.int64)
    neg = np.flatnonzero(c < 0)
    if neg.size:
        raise ValueError(f"counts has {int(c[neg[0]])} at class {int(neg[0])}; must be >= 0")
    s = _as_array(sums, "sums")
    _require_numeric(s, "sums")
    if s.shape != c.shape:
        raise ValueError(f"sums must have the shape of counts {c.shape}, got {s.shape}")
    s = s.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(s) | (s < -tol * c) | (s > c * (1 + tol)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"sums has {float(s[i])!r} at class {i} for a count of {int(c[i])}; must be finite "
            f"and in [0, count]"
        )
    return c, s


def check_embeddings(
    embeddings, *, name: str = "embeddings", n: int | None = None, n_name: str = "hardness"
) -> np.ndarray:
    """Validate embeddings and return them as C-contiguous float32.

    No copy is made when the input already is C-contiguous float32.

    Parameters
    ----------
    embeddings : array_like, shape (N, D)
        Finite real numbers, D >= 1.
    n : int, optional
        Expected number of rows (the length of ``n_name``).

    Returns
    -------
    np.ndarray, shape (N, D), float32
    """
    arr = _as_array(embeddings, name)
    _require_numeric(arr, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D with shape (N, D), got {_describe(arr)}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column (D >= 1), got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows but {n_name} has N={n} entries")
    if arr.dtype.kind == "f":
        bad_row = _first_nonfinite_row(arr)
        if bad_row is not None:
            raise ValueError(_nonfinite_message(arr, name, bad_row))
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if out is not arr and arr.dtype.itemsize > 4:
        # float64 values beyond the float32 range become inf on conversion
        bad_row = _first_nonfinite_row(out)
        if bad_row is not None:
            raise ValueError(
                f"{name} row {bad_row} has a value too large for float32 "
                f"(max abs {np.abs(arr[bad_row]).max():.3g})"
            )
    return out


def check_row_array(values, *, name: str, n: int, n_name: str):
    """Validate the shape of an (N, D) array read a few rows at a time; returns it as given when it
    already has a 2-D shape (a memory map stays a memory map), else as an array. The values of
    the rows read are checked where they are read (:func:`check_embeddings`)."""
    arr = values if hasattr(values, "shape") and len(values.shape) == 2 else np.asarray(values)
    if len(arr.shape) != 2:
        raise ValueError(f"{name} must be 2-D with shape (N, D), got shape {np.shape(arr)}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows but {n_name} has N={n} rows")
    return arr


def check_values_1d(values, *, name: str, n: int | None = None, n_name: str = "",
                    bounds: tuple[float, float] | None = None) -> np.ndarray:
    """Validate a finite real 1-D array (e.g. hardness scores), within ``bounds`` when given; returns float64."""
    arr = _as_array(values, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D with shape (N,), got {_describe(arr)}")
    _require_numeric(arr, name)
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has length {arr.shape[0]} but {n_name} has N={n} entries")
    arr = arr.astype(np.float64, copy=False)
    bad_row = _first_nonfinite_row(arr)
    if bad_row is not None:
        raise ValueError(_nonfinite_message(arr, name, bad_row))
    if bounds is not None:
        outside = np.flatnonzero((arr < bounds[0]) | (arr > bounds[1]))
        if outside.size:
            row = int(outside[0])
            raise ValueError(f"{name} must lie in [{bounds[0]:g}, {bounds[1]:g}], got {arr[row]} at row {row}")
    return arr


def check_int_array_1d(values, *, name: str, n: int | None = None, n_name: str = "") -> np.ndarray:
    """Validate a 1-D integer array (e.g. groups); returns int64."""
    arr = _as_array(values, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D with shape (N,), got {_describe(arr)}")
    if arr.size == 0 and arr.dtype.kind == "f":
        arr = arr.astype(np.int64)
    _require_integer(arr, name)
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has length {arr.shape[0]} but {n_name} has N={n} entries")
    return arr.astype(np.int64, copy=False)


def check_indices(indices, *, name: str, n: int, n_name: str = "embeddings") -> np.ndarray:
    """Validate 1-D integer indices into an axis of length ``n``; returns unique int64 (sorted)."""
    arr = _as_array(indices, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got {_describe(arr)}")
    if arr.size == 0 and arr.dtype.kind == "f":
        arr = arr.astype(np.int64)
    _require_integer(arr, name)
    arr = arr.astype(np.int64, copy=False)
    bad = np.flatnonzero((arr < 0) | (arr >= n))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name} has value {int(arr[i])} at position {i} but {n_name} has N={n} rows"
        )
    return np.unique(arr)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_positive_int(value, *, name: str) -> int:
    """Validate an integer >= 1 (bools rejected) and return it as ``int``."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def check_nonnegative_int(value, *, name: str) -> int:
    """Validate an integer >= 0 (bools rejected) and return it as ``int``."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def check_fraction(value, *, name: str) -> float:
    """Validate a real number in [0, 1] (bools rejected) and return it as ``float``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number in [0, 1], got {type(value).__name__} {value!r}"
        )
    value = float(value)
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def check_choice(value, *, name: str, choices: tuple[str, ...]) -> str:
    """Validate that ``value`` is one of the strings ``choices`` and return it."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value
