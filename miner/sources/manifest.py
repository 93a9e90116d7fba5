"""Manifest sources: a ``.csv``/``.tsv`` (header row) or ``.jsonl``/``.ndjson``/``.json`` file
listing image paths, with optional label, timestamp and id columns.

Column names and their aliases are in :data:`_COLUMNS`; relative paths are relative to the
manifest's folder; a CSV whose first cell is an image path is read as headerless
``path[,label[,timestamp]]``. Errors name the manifest and the line (or JSON array item).

A manifest comes from outside: a row whose path resolves (symlinks followed) outside the
manifest's folder - ``../../etc/passwd``, ``/etc/shadow``, a symlink pointing out - is an
error row and is never opened, unless ``allow_outside_root``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .base import IMAGE_EXTENSIONS
from .imagefiles import ImageFileSource
from .labels import LabelFields, _as_int_string, _label_fields, _map_labels, _resolve_labels

_COLUMNS = {
    "path": ("path", "file", "filename", "filepath", "image", "image_path"),
    "label": ("label", "class", "class_name", "y"),
    "timestamp": ("timestamp", "t", "time", "ts", "batch", "batch_id"),
    "id": ("id", "sample_id"),
}


def _pick_columns(keys: Iterable[str]) -> dict[str, str]:
    """Canonical column name -> the manifest's own spelling, for the columns present."""
    lower = {k.strip().lower(): k for k in keys if k is not None}
    found = {}
    for canon, aliases in _COLUMNS.items():
        for a in aliases:
            if a in lower:
                found[canon] = lower[a]
                break
    return found


def _parse_timestamp(v: Any) -> Any:
    """A timestamp cell: int or float when it reads as one, else the text (None when empty)."""
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
                raise ValueError(f"{where}: {unit} {ln}: expected an object with a 'path' key")
            keys.update(obj.keys())
            rows.append(obj)
            lines.append(ln)
        cols = _pick_columns(keys)
        if rows and "path" not in cols:
            raise ValueError(f"{where}: no 'path' key (found: {', '.join(sorted(keys))})")
        return rows, lines, cols
    raise ValueError(f"{where}: unsupported manifest type {suffix!r}")


def _outside_root(path: str, root: str) -> str | None:
    """Where ``path`` really leads when that is outside the real folder ``root``, else None."""
    real = os.path.realpath(path)
    return None if os.path.commonpath([real, root]) == root else real


def _open_manifest(
    p: Path,
    labels,
    class_names,
    channels,
    image_size,
    *,
    max_pixels: int,
    allow_outside_root: bool,
) -> ImageFileSource:
    where = str(p.absolute())
    rows, lines, cols = _read_manifest_rows(p)
    if not rows:
        raise ValueError(f"{where}: manifest has no rows")
    unit = "item" if p.suffix.lower() == ".json" else "line"
    base = p.absolute().parent
    root = os.path.realpath(base)
    paths: list[str] = []
    refused: dict[int, str] = {}
    for i, (row, ln) in enumerate(zip(rows, lines)):
        v = row.get(cols["path"])
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"{where}: {unit} {ln}: empty or missing path")
        fp = Path(v.strip())
        paths.append(str(fp if fp.is_absolute() else base / fp))
        real = None if allow_outside_root else _outside_root(paths[-1], root)
        if real is not None:
            refused[i] = (
                f"{unit} {ln}: path {v.strip()!r} leads to {real}, outside the manifest's folder "
                f"{root}; not opened (allow_outside_root=True, hardcase mine --allow-outside-root, "
                f"reads it)"
            )

    def label_column() -> LabelFields:
        values = [row.get(cols["label"]) for row in rows]
        mapped = _map_labels(values, class_names, where, lambda i: f"{unit} {lines[i]}")
        return _label_fields(*mapped, where)

    found = label_column if "label" in cols else None
    ts = [_parse_timestamp(r.get(cols["timestamp"])) for r in rows] if "timestamp" in cols else None
    ids = [r.get(cols["id"]) for r in rows] if "id" in cols else None
    return ImageFileSource(
        "manifest",
        where,
        paths,
        channels=channels,
        image_size=image_size,
        max_pixels=max_pixels,
        refused=refused,
        timestamps=ts,
        ids=ids,
        **_resolve_labels(labels, class_names, len(paths), where, found),
    )
