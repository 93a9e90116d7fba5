"""The store's one dependency on the rest of hardcase is the vocabulary, checked at run time.

``test_layers`` reads the import statements; this test imports every module under ``store/`` in a
fresh interpreter (the package modules, the migration scripts as Alembic loads them, and
``migrations/env.py`` by migrating an empty database to head) and looks at what ended up in
``sys.modules``, so an import hidden in a function body or pulled in by another package shows too.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

STORE_DIR = Path(importlib.util.find_spec("hardcase.store").submodule_search_locations[0])

ALLOWED_MINER = {"hardcase.miner", "hardcase.miner.vocabulary"}
"""The miner's package (its ``__init__`` is a docstring) and the vocabulary."""

FORBIDDEN_PREFIXES = ("hardcase.models", "hardcase.review_app", "tensorflow", "keras", "gradio")

CHILD = r"""
import importlib, importlib.util, json, sys
from pathlib import Path

store_dir = Path(sys.argv[1])
loaded = []
for path in sorted(store_dir.glob("*.py")):
    name = "hardcase.store" if path.stem == "__init__" else f"hardcase.store.{path.stem}"
    importlib.import_module(name)
    loaded.append(str(path.relative_to(store_dir)))
for path in sorted((store_dir / "migrations" / "versions").glob("*.py")):
    spec = importlib.util.spec_from_file_location(f"migration_{path.stem}", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    loaded.append(str(path.relative_to(store_dir)))

from hardcase.store.db import current_revision, head_revision, open_store

store = open_store("sqlite://")  # runs migrations/env.py and every version script
try:
    at_head = current_revision(store) == head_revision()
finally:
    store.dispose()
loaded.append("migrations/env.py")
print(json.dumps({"loaded": loaded, "at_head": at_head, "modules": sorted(sys.modules)}))
"""


def _import_everything() -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(STORE_DIR)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_every_store_module_imports_only_the_vocabulary_of_the_project():
    report = _import_everything()
    expected = {str(path.relative_to(STORE_DIR)) for path in STORE_DIR.rglob("*.py")}
    assert set(report["loaded"]) == expected and report["at_head"]
    modules = report["modules"]
    assert {"hardcase.store.api", "hardcase.store.export", "hardcase.miner.vocabulary"} <= set(modules)
    miner = {name for name in modules if name == "hardcase.miner" or name.startswith("hardcase.miner.")}
    assert miner <= ALLOWED_MINER, sorted(miner - ALLOWED_MINER)
    forbidden = [
        name
        for name in modules
        if any(name == prefix or name.startswith(prefix + ".") for prefix in FORBIDDEN_PREFIXES)
    ]
    assert not forbidden, forbidden
