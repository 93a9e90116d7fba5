"""The Try tab in a real browser (Debian's chromium, headless) with a colour model: the prompt follows
its spec and an upload is predicted as soon as it lands, in colour."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ARTIFACTS
from PIL import Image
from usermodels import SHAPE_CLASSES, coloured_shapes, train_shapes_model

from hardcase.review_app.workflows.mining import MiningOptions, mine
from hardcase.store.db import open_store

WAIT = 30_000

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from hardcase.review_app.app import build_app, launch_options
    from hardcase.review_app.workflows.review import ReviewService

    folder = tmp_path_factory.mktemp("browser-try")
    model = train_shapes_model(folder / "shapes.keras")
    images, labels = coloured_shapes(40, seed=2)
    np.savez(folder / "pool.npz", x=images, y=np.asarray(SHAPE_CLASSES)[labels])
    store = open_store(f"sqlite:///{folder / 'try.db'}")
    mine(store, MiningOptions(run_name="shapes", model_path=str(model), data_path=str(folder / "pool.npz"),
                              per_class=2, suggest=False), artifacts_dir=folder / "art", progress=False)
    app = build_app(ReviewService(store), run_name="shapes")
    app.queue()
    options = launch_options(port=0)
    options.pop("server_port")
    try:
        app.launch(prevent_thread_lock=True, quiet=True, **options)
        yield app.local_url, folder
    finally:
        app.close()
        store.dispose()


def test_an_upload_to_a_colour_model_is_predicted_at_once(browser, app_url):
    url, folder = app_url
    images, labels = coloured_shapes(30, seed=5)
    photo = np.repeat(np.repeat(images[list(labels).index(SHAPE_CLASSES.index("red"))], 10, axis=0), 10, axis=1)
    Image.fromarray(photo).save(folder / "red.png")
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.get_by_role("tab", name="Try").click()
    assert page.locator("#try-sketch").inner_text().startswith("Draw one of: blue, green, red")
    assert not page.locator("#try-normalize").is_visible()  # no MNIST centring for a 32x32 colour model
    with page.expect_file_chooser() as chooser:
        page.locator("#try-upload").click()
    chooser.value.set_files(str(folder / "red.png"))
    # no slider moves: the upload alone brings the prediction
    page.wait_for_function("document.querySelector('#try-note')?.innerText.includes('as drawn')", timeout=WAIT)
    assert page.locator("#try-note").inner_text().startswith("red at")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "try-colour.png"), full_page=True)
    page.close()
