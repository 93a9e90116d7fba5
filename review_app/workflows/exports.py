"""Export files of the Export tab, without Gradio: the fix list and the relabeled image folder.

The relabeled data is a zip of an image-folder tree::

    <run>-relabeled/<class>/<sample_id>.png
    <run>-relabeled/labels.csv

loadable with ``keras.utils.image_dataset_from_directory("<run>-relabeled", ...)``. It holds
every candidate with a final decision (the rows of the fix list), labelled with the
reviewers' new label if they gave one, else the given label; candidates with neither are
left out. Every class of the run's model gets a folder, even an empty one, so the folders'
alphanumeric order (Keras' label order) matches the model's for single-character class
names; ``labels.csv`` lists sample, source index, given and final label, decision and path.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from hardcase.store import api
from hardcase.store.db import Store
from hardcase.store.export import FORMATS, export_rows, write_rows
from hardcase.store.schema import Candidate

#: Anything but letters and digits of any script, ``.``, ``_`` and ``-``: separators, spaces,
#: control and shell characters.
_UNSAFE = re.compile(r"[^\w.-]+")


def safe_name(name: str) -> str:
    """``name`` usable as one path component (no separators, no leading dot); letters of any
    script are kept (``"chat noir"`` -> ``"chat_noir"``, ``"猫"`` -> ``"猫"``)."""
    cleaned = _UNSAFE.sub("_", unicodedata.normalize("NFC", str(name))).lstrip(".")
    return cleaned or "_"


def class_folders(class_names) -> dict[str, str]:
    """One distinct folder name per class: :func:`safe_name`, and where two classes would share
    a folder (``"a/b"`` and ``"a_b"``, or ``"Cat"`` and ``"cat"`` on a case-insensitive disk)
    the later one gets ``-2``, ``-3``..."""
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for name in class_names:
        base = candidate = safe_name(name)
        suffix = 1
        while candidate.casefold() in taken:
            suffix += 1
            candidate = f"{base}-{suffix}"
        folders[name] = candidate
        taken.add(candidate.casefold())
    return folders


def write_fix_list(store: Store, run_name: str, folder: Path, *, what: str = "fixes", fmt: str = "csv",
                   progress: Callable[[int, int], None] | None = None) -> tuple[Path, int]:
    """Write one export (``store.export.EXPORTS``) of a run as ``<run>-<what>.<fmt>``;
    ``progress(done, total)`` follows the rows written (:func:`~hardcase.store.export.write_rows`).

    Returns
    -------
    (path, n_rows)
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    columns, rows = export_rows(store, run_name, what)
    path = write_rows(columns, rows, Path(folder) / f"{safe_name(run_name)}-{what}.{fmt}", fmt, progress=progress)
    return path, len(rows)


@dataclass(frozen=True)
class ImageFolderReport:
    """What :func:`write_image_folder_zip` wrote."""

    path: Path
    root: str
    n_images: int
    per_class: dict[str, int]
    n_unlabelled: int


def write_image_folder_zip(store: Store, run_name: str, folder: Path) -> ImageFolderReport:
    """Zip the run's reviewed candidates as ``<root>/<class>/<sample_id>.png`` (module docstring).

    Raises
    ------
    store.errors.StoreError
        No such run.
    """
    columns, rows = export_rows(store, run_name, "fixes")
    fixes = [dict(zip(columns, row)) for row in rows]
    with store.snapshot() as session:
        run = api.require_run(session, run_name)
        class_names = list(api.model_version(session, run).class_names)
        wanted = {fix["sample_id"] for fix in fixes}
        images = {
            sample_id: png
            for sample_id, png in session.execute(
                select(Candidate.sample_id, Candidate.image_png).where(Candidate.run_id == run.id)
            )
            if sample_id in wanted
        }
    root = f"{safe_name(run_name)}-relabeled"
    folders = class_folders(class_names)
    per_class = dict.fromkeys(class_names, 0)
    unlabelled = 0
    path = Path(folder) / f"{root}.zip"
    partial = path.with_name(path.name + ".partial")
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerow(["sample_id", "source_index", "given_label", "final_label", "final_cause", "path"])
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in class_names:
            archive.writestr(f"{root}/{folders[name]}/", b"")
        for fix in fixes:
            label = fix["final_label"] or fix["given_label"]
            if label is None:
                unlabelled += 1
                continue
            if label not in folders:
                folders = class_folders([*folders, label])
                per_class[label] = 0
                archive.writestr(f"{root}/{folders[label]}/", b"")
            member = f"{root}/{folders[label]}/{fix['sample_id']}.png"
            archive.writestr(member, images[fix["sample_id"]])
            per_class[label] += 1
            writer.writerow([fix["sample_id"], fix["source_index"], fix["given_label"], label,
                             fix["final_cause"], member])
        archive.writestr(f"{root}/labels.csv", manifest.getvalue())
    partial.replace(path)
    return ImageFolderReport(path, root, sum(per_class.values()), per_class, unlabelled)
