"""App helpers for the UI tests: a demo run in a fresh SQLite store, the app served on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hardcase.review_app.workflows.demo import run_demo
from hardcase.store.db import Store, open_store


def demo_store(folder: Path, model_path: Path, *, per_class: int) -> Store:
    """A SQLite store in ``folder`` holding the demo run mined with ``per_class`` candidates a class."""
    store = open_store(f"sqlite:///{folder / 'hardcase.db'}")
    try:
        run_demo(store, artifacts_dir=folder / "artifacts", model_path=model_path, per_class=per_class,
                 progress=False)
    except BaseException:
        store.dispose()
        raise
    return store


@contextmanager
def served_app(service, *, queue_size: int = 64, **launch_extra) -> Iterator:
    """The full app on ``service`` (demo run open) on 127.0.0.1 and a free port; closed on exit."""
    from hardcase.review_app.app import build_app, launch_options, queue_options

    app = build_app(service, run_name="demo")
    app.queue(**queue_options(max_size=queue_size))
    options = launch_options(port=0)
    options.pop("server_port")  # let the OS pick a free port
    try:
        app.launch(prevent_thread_lock=True, quiet=True, **options, **launch_extra)
        yield app
    finally:
        app.close()
