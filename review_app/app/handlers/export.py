"""Export tab handlers: files to download, written to a private temporary folder.

Each export goes to a new folder under ``<tmp>/hardcase-exports``; Gradio copies the
returned file into its cache to serve it, and folders older than an hour are removed at
the next export.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from hardcase.review_app.app.handlers.access import guard
from hardcase.review_app.workflows.exports import write_fix_list, write_image_folder_zip
from hardcase.review_app.workflows.review import ReviewService
from hardcase.store.errors import StoreError
from hardcase.store.export import EXPORTS, FORMATS

KEEP_SECONDS = 3600


def export_folder(base: Path | None = None) -> Path:
    """A fresh folder for one export; prunes folders older than ``KEEP_SECONDS``."""
    base = base or Path(tempfile.gettempdir()) / "hardcase-exports"
    base.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - KEEP_SECONDS
    for old in base.iterdir():
        try:
            if old.is_dir() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(dir=base))


@dataclass
class ExportHandlers:
    """Gradio handlers of the export tab over one :class:`ReviewService`."""

    service: ReviewService

    def export(self, run_name, what="fixes", fmt="csv", request: gr.Request = None,
               progress=gr.Progress()):  # noqa: B008 - how Gradio asks for a progress bar
        """One export of a run (``fixes``, ``candidates``, ``reviews`` or ``scores``) as a file."""
        guard(self.service, request, "export")
        if not run_name:
            raise gr.Error("choose a mining run first")
        if what not in EXPORTS:
            raise gr.Error(f"choose what to export: one of {', '.join(EXPORTS)}")
        if fmt not in FORMATS:
            raise gr.Error(f"choose a format: one of {', '.join(FORMATS)}")
        try:
            progress(0, desc=f"reading the {what} of {run_name}")
            path, n_rows = write_fix_list(self.service.store, run_name, export_folder(), what=what, fmt=fmt,
                                          progress=lambda done, total: progress((done, total), desc=f"writing {what}",
                                                                                unit="rows"))
        except StoreError as exc:
            raise gr.Error(str(exc)) from None
        note = f"{n_rows} rows of {what} of **{run_name}** as {fmt.upper()}"
        if what == "fixes" and n_rows == 0:
            note += " — nothing decided yet: review candidates first."
        return str(path), note

    def export_image_folder(self, run_name, request: gr.Request = None):
        """The reviewed candidates as a zipped image-folder tree with their final labels."""
        guard(self.service, request, "export_image_folder")
        if not run_name:
            raise gr.Error("choose a mining run first")
        try:
            report = write_image_folder_zip(self.service.store, run_name, export_folder())
        except StoreError as exc:
            raise gr.Error(str(exc)) from None
        counts = ", ".join(f"{name}: {count}" for name, count in report.per_class.items() if count)
        note = f"{report.n_images} images in `{report.root}/<class>/<sample_id>.png`"
        note += f" ({counts})" if counts else " — nothing reviewed yet."
        if report.n_unlabelled:
            note += f"; {report.n_unlabelled} reviewed candidates without any label left out"
        return str(report.path), note
