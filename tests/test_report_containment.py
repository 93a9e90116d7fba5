"""Retrain reports are served only from copies inside the run's artifacts folder."""

from __future__ import annotations

import json

import pytest

from hardcase.review_app.workflows.retrain import REPORTS_INDEX, record_report, run_reports
from hardcase.store import api
from hardcase.store.db import open_store


@pytest.fixture
def run_folder(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    folder = tmp_path / "artifacts" / "r1"
    with store.Session.begin() as session:
        data = api.get_or_create_dataset(session, name="d", uri="d", kind="npz", class_names=None, n_samples=1)
        model = api.register_model(session, name="m", path="m", file_hash="0" * 64, spec={}, class_names=["a"])
        api.create_run(session, name="r1", dataset_id=data.id, model_version_id=model.id, params={},
                       embeddings_path=str(folder / "embeddings.npy"))
    yield store, folder
    store.dispose()


def _report(tmp_path, text="# report"):
    out = tmp_path / "elsewhere"
    out.mkdir(exist_ok=True)
    (out / "new.report.json").write_text(json.dumps({"ok": 1}))
    (out / "new.report.md").write_text(text)
    return {"json": out / "new.report.json", "markdown": out / "new.report.md"}


def test_recorded_reports_are_copies_inside_the_run_folder(run_folder, tmp_path):
    store, folder = run_folder
    paths = _report(tmp_path, "# the first")
    record_report(store, "r1", paths)
    # the file beside --out is later replaced by a link to a secret: the copy is still served
    paths["markdown"].unlink()
    paths["markdown"].symlink_to("/etc/passwd")
    (latest,) = run_reports(store, "r1")
    assert latest["markdown"].startswith(str(folder.resolve() / "reports"))
    with open(latest["markdown"], encoding="utf-8") as handle:
        assert handle.read() == "# the first"


def test_entries_leading_outside_the_run_folder_are_not_served(run_folder, tmp_path):
    store, folder = run_folder
    record_report(store, "r1", _report(tmp_path))
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    inside_json = run_reports(store, "r1")[0]["json"]
    (folder / "reports" / "linked.md").symlink_to(outside)
    with (folder / REPORTS_INDEX).open("a", encoding="utf-8") as handle:
        for markdown in ("/etc/passwd", "../../secret.txt", str(outside), "reports/linked.md"):
            handle.write(json.dumps({"written_at": "x", "json": inside_json, "markdown": markdown}) + "\n")
        # a JSON report outside: the whole entry is dropped
        handle.write(json.dumps({"written_at": "x", "json": str(outside), "markdown": "reports/linked.md"}) + "\n")
        handle.write("{cut short by a crash\n")
    reports = run_reports(store, "r1")
    assert len(reports) == 5
    assert all("markdown" not in entry for entry in reports[1:])
    assert all(entry["json"] == inside_json for entry in reports)
