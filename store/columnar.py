"""Per-sample values of long streams, kept in Parquet files beside the database.

A monitored stream has far more samples than reviewers will ever see, so the values of each of
its samples (confidence, predicted class, out-of-distribution score...) live in one Parquet
file per window, not one SQL row each; the database keeps the file's path relative to the
artifacts folder (``monitor_windows.samples_path``).

Columns are one-dimensional (one value per sample) or two-dimensional (one vector per sample,
e.g. class probabilities, stored as fixed-size lists). :func:`read_columns` reads only files
inside the artifacts folder, symlinks followed, so a stored path cannot point elsewhere.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def _arrow_column(name: str, values: np.ndarray | list) -> pa.Array:
    array = np.asarray(values)
    if array.ndim == 1:
        return pa.array(array)
    if array.ndim == 2:
        return pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1)), array.shape[1])
    raise ValueError(f"column {name!r} has {array.ndim} dimensions; columns have 1 or 2")


def write_columns(path: str | os.PathLike[str], columns: Mapping[str, np.ndarray | list]) -> Path:
    """Write equally long columns to a Parquet file, atomically.

    The file is written to a temporary file in the same folder and renamed into place, so a
    reader never sees half a file and a crash leaves the previous file (if any) as it was.

    Parameters
    ----------
    path
        The Parquet file; its folder is created if missing.
    columns
        Column name -> values, one per sample (a 2-D array holds one vector per sample).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        No columns, a column of another length than the first (named), or a column with more
        than two dimensions.
    """
    if not columns:
        raise ValueError("write_columns needs at least one column")
    arrays = {str(name): _arrow_column(str(name), values) for name, values in columns.items()}
    first_name, first = next(iter(arrays.items()))
    for name, array in arrays.items():
        if len(array) != len(first):
            raise ValueError(
                f"column {name!r} has {len(array)} values, column {first_name!r} has {len(first)}"
            )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(handle)
    try:
        pq.write_table(pa.table(arrays), temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def _numpy_column(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks()
    if pa.types.is_fixed_size_list(array.type):
        flat = array.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(array), array.type.list_size)
    return array.to_numpy(zero_copy_only=False)


def read_columns(path: str | os.PathLike[str], *, root: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a file written by :func:`write_columns`, refusing any file outside ``root``.

    Parameters
    ----------
    path
        The Parquet file, relative to ``root`` (as stored) or absolute.
    root
        The artifacts folder: the file must resolve inside it, symlinks followed.

    Returns
    -------
    dict of str -> numpy.ndarray
        The columns in their written order (2-D for the vector columns).

    Raises
    ------
    ValueError
        ``path`` resolves outside ``root``.
    """
    real_root = os.path.realpath(root)
    real_path = os.path.realpath(os.path.join(real_root, path))
    if os.path.commonpath([real_root, real_path]) != real_root or real_path == real_root:
        raise ValueError(f"{os.fspath(path)!r} resolves to {real_path!r}, outside {real_root!r}")
    table = pq.read_table(real_path)
    return {name: _numpy_column(table.column(name)) for name in table.column_names}
