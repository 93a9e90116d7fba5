"""Class names of any script survive the image-folder export, each in a folder of its own."""

from __future__ import annotations

import csv
import io
import zipfile

from pgutil import seed_run

from hardcase.review_app.workflows.exports import class_folders, write_image_folder_zip
from hardcase.store import api
from hardcase.store.db import open_store


def test_class_folders_keep_every_script_and_never_share_a_folder():
    folders = class_folders(["猫", "Ñandú", "chat noir", "a/b", "a_b", "Cat", "cat", "..", "", "σ"])
    assert folders["猫"] == "猫" and folders["Ñandú"] == "Ñandú" and folders["σ"] == "σ"
    assert folders["chat noir"] == "chat_noir"
    assert folders["a/b"] == "a_b" and folders["a_b"] == "a_b-2"
    assert folders["Cat"] == "Cat" and folders["cat"] == "cat-2"  # one folder on a case-insensitive disk
    assert folders[".."] == "_" and folders[""] == "_-2"
    assert len({name.casefold() for name in folders.values()}) == len(folders)
    assert all("/" not in name and not name.startswith(".") for name in folders.values())


def test_the_image_folder_zip_has_a_folder_per_non_ascii_class(tmp_path):
    classes = ("猫", "собака", "Ñandú")
    store = open_store(f"sqlite:///{tmp_path / 'names.db'}")
    seeded = seed_run(store, n_samples=9, n_candidates=6, classes=classes)
    for candidate in seeded.candidate_ids:
        with store.Session.begin() as session:
            api.submit_review(session, candidate, reviewer="ana", cause="rare", seen_version=0)
    report = write_image_folder_zip(store, seeded.run_name, tmp_path)
    with zipfile.ZipFile(report.path) as archive:
        names = archive.namelist()
        rows = list(csv.DictReader(io.StringIO(archive.read(f"{report.root}/labels.csv").decode())))
    for cls in classes:
        assert f"{report.root}/{cls}/" in names
    assert report.per_class == dict.fromkeys(classes, 2)
    for row in rows:
        assert row["path"] == f"{report.root}/{row['final_label']}/{row['sample_id']}.png"
        assert row["path"] in names
    store.engine.dispose()
