"""The layers stay visible: who may import whom, no import circles, one installed namespace.

- ``hardcase.miner`` (the ground floor) imports nothing of the project outside itself;
- ``hardcase.store`` imports only the vocabulary of the miner;
- the app's handlers and tabs import no SQLAlchemy and no store internals but its errors and
  export names; workflows import no Gradio;
- no module imports itself back through others (lazy imports inside functions count);
- commands that need no model run without TensorFlow;
- the wheel installs only the ``hardcase`` namespace, and ``hardcase --help`` runs from it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("miner", "models", "store", "review_app")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["hardcase", *parts])


def _modules() -> dict[str, Path]:
    found = {}
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every module named by an import anywhere in the file (top level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _project_imports(path: Path) -> set[str]:
    """The project modules ``path`` imports (``from pkg import module`` resolved to the module)."""
    return {name for name in _imports(path) if name in MODULES}


def test_every_project_import_is_by_the_namespace():
    bare = {
        f"{_module_name(path)} imports {name}"
        for path in MODULES.values()
        for name in _imports(path)
        if name.split(".")[0] in FOLDERS
    }
    assert not bare


def test_no_import_circles():
    graph = {name: _project_imports(path) - {name} for name, path in MODULES.items()}
    # a package's __init__ importing its own submodules is how re-exports work, not a circle
    for name in graph:
        graph[name] = {dep for dep in graph[name] if not (MODULES[name].name == "__init__.py" and dep.startswith(name + "."))}
    visiting, done, circles = [], set(), []

    def visit(node):
        if node in done:
            return
        if node in visiting:
            circles.append(visiting[visiting.index(node):] + [node])
            return
        visiting.append(node)
        for dep in sorted(graph[node]):
            visit(dep)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    assert not circles, " ; ".join(" -> ".join(c) for c in circles)


def _offenders(prefix: str, allowed) -> list[str]:
    return [
        f"{name} imports {dep}"
        for name, path in MODULES.items()
        if name == prefix or name.startswith(prefix + ".")
        for dep in sorted(_imports(path))
        if dep.startswith("hardcase.") and not allowed(dep)
    ]


def test_miner_imports_nothing_of_the_project_outside_itself():
    assert not _offenders("hardcase.miner", lambda dep: dep.startswith("hardcase.miner"))


def test_store_imports_only_the_vocabulary():
    assert not _offenders(
        "hardcase.store", lambda dep: dep.startswith("hardcase.store") or dep.startswith("hardcase.miner.vocabulary")
    )


def test_miner_and_store_import_no_framework():
    frameworks = ("tensorflow", "keras", "gradio")
    for name, path in MODULES.items():
        if name.startswith(("hardcase.miner", "hardcase.store")):
            assert not {dep for dep in _imports(path) if dep.split(".")[0] in frameworks}, name
            if name.startswith("hardcase.miner"):
                assert not {dep for dep in _imports(path) if dep.split(".")[0] == "sqlalchemy"}, name


def test_app_handlers_and_tabs_run_no_sql():
    for name, path in MODULES.items():
        if name.startswith("hardcase.review_app.app"):
            deps = _imports(path)
            assert not {dep for dep in deps if dep.split(".")[0] == "sqlalchemy"}, name
            allowed_store = {"hardcase.store.errors", "hardcase.store.export"}
            store_deps = {dep for dep in deps if dep.startswith("hardcase.store")}
            assert store_deps <= allowed_store | {f"{m}.{n}" for m in allowed_store for n in ("StoreError", "EXPORTS", "FORMATS")}, (name, store_deps)


def test_workflows_import_no_gradio():
    for name, path in MODULES.items():
        if name.startswith("hardcase.review_app.workflows"):
            assert not {dep for dep in _imports(path) if dep.split(".")[0] == "gradio"}, name


NO_MODEL = r"""
import sys
from hardcase.review_app import cli

url = sys.argv[1]
assert cli.main(["db", "upgrade", "--db", url]) == 0
assert cli.main(["db", "current", "--db", url]) == 0
from hardcase.store.db import open_store
from hardcase.review_app.app import build_app
from hardcase.review_app.workflows.review import ReviewService
store = open_store(url)
build_app(ReviewService(store))
store.dispose()
loaded = sorted(name for name in ("tensorflow", "keras") if name in sys.modules)
print("loaded:", loaded)
sys.exit(1 if loaded else 0)
"""


def test_commands_that_need_no_model_do_not_import_tensorflow(tmp_path):
    """`db`, `export`, `users hash` and building the served app start without TensorFlow."""
    result = subprocess.run(
        [sys.executable, "-c", NO_MODEL, f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_package_folder_is_in_the_wheel():
    """pyproject lists the packages by hand (the folders install under other names): none forgotten."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {_module_name(path.parent / "__init__.py") for name, path in _modules().items()}
    folders |= {"hardcase.store.migrations", "hardcase.store.migrations.versions"}
    assert listed == folders


@pytest.mark.slow
def test_wheel_installs_one_namespace_and_runs(tmp_path):
    """Build the wheel, install it into a fresh venv (dependencies from this environment) and run it."""
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = wheels.glob("hardcase-*.whl")
    import zipfile

    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"hardcase", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, tops

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    # the wheel's files only; third-party dependencies are borrowed from this environment's
    # site-packages (added as a plain path: its .pth files, such as the editable install's
    # finder, are not run)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    deps = Path(subprocess.check_output([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    (site / "zz_borrowed_dependencies.pth").write_text(f"{deps}\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    where = subprocess.run(
        [str(python), "-c", "import hardcase.review_app.cli as c, hardcase.store.db as d; print(c.__file__); print(d.MIGRATIONS_DIR)"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )
    assert where.returncode == 0, where.stderr
    cli_file, migrations = where.stdout.split()
    assert Path(cli_file).is_relative_to(site)
    assert (Path(migrations) / "versions").is_dir() and (Path(migrations) / "script.py.mako").exists()

    entry = "import sys; from hardcase.review_app.cli import main; sys.argv = ['hardcase', '--help']; main()"
    helped = subprocess.run([str(python), "-c", entry], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert helped.returncode == 0, helped.stderr
    assert "mine" in helped.stdout and "serve" in helped.stdout
    upgraded = subprocess.run(
        [str(python), "-c", "import sys; from hardcase.review_app.cli import main; sys.exit(main(sys.argv[1:]))",
         "db", "upgrade", "--db", f"sqlite:///{tmp_path / 'w.db'}"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert upgraded.returncode == 0, upgraded.stderr
