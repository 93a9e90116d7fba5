"""Gallery, Try, Triage and Export in a real browser (Debian's chromium, headless); screenshots of each."""

from __future__ import annotations

import re

import pytest
from apputil import demo_store, served_app
from conftest import ARTIFACTS
from sqlalchemy import select

from hardcase.store import api
from hardcase.store.schema import Candidate

WAIT = 30_000

pytestmark = pytest.mark.browser


def _review_some(store):
    """Suggested causes on ten candidates, and two reviewers who agree on most of them."""
    with store.Session.begin() as session:
        run = api.require_run(session, "demo")
        ids = list(session.scalars(select(Candidate.id).where(Candidate.run_id == run.id).order_by(Candidate.rank)))
        causes = ["augment", "rare", "imbalance", "mislabel", "augment", "rare", "mislabel", "augment",
                  "unclear", "imbalance"]
        api.set_suggestions(session, run.id, [
            {"candidate_id": k, "suggested_cause": cause, "suggested_label": None, "suggestion_confidence": 0.7,
             "evidence": {}} for k, cause in zip(ids, causes)])
    plan = {"ana": ["augment", "rare", "imbalance", ("mislabel", "1"), "augment", "not_a_failure", ("mislabel", "4")],
            "ben": ["augment", "augment", "imbalance", ("mislabel", "1"), "rare", "not_a_failure"]}
    for reviewer, decisions in plan.items():
        for candidate_id, decision in zip(ids, decisions):
            cause, label = decision if isinstance(decision, tuple) else (decision, None)
            with store.Session.begin() as session:
                version = api.get_candidate(session, candidate_id).version
                api.submit_review(session, candidate_id, reviewer=reviewer, cause=cause, new_label=label,
                                  seen_version=version)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, demo_model_path):
    from hardcase.review_app.workflows.review import ReviewService

    store = demo_store(tmp_path_factory.mktemp("browser-tabs"), demo_model_path, per_class=3)
    _review_some(store)
    with served_app(ReviewService(store)) as app:
        yield app.local_url
    store.dispose()


def _open_tab(page, name):
    page.get_by_role("tab", name=name).click()


def _review_tab_shows(page, candidate_id):
    page.wait_for_function(
        "(id) => document.querySelector('[role=tab][aria-selected=true]')?.innerText.trim() === 'Review' && "
        "document.querySelector('#candidate-info')?.innerText.includes('Candidate #' + id + ' ')",
        arg=str(candidate_id), timeout=WAIT)


def _shoot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_each_tab_in_the_browser(browser, app_url):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(app_url)
    page.wait_for_load_state("networkidle")

    # Gallery: a grid with captions; a click opens the candidate in the review tab
    _open_tab(page, "Gallery")
    page.wait_for_function("document.querySelectorAll('#gallery img').length >= 30", timeout=WAIT)
    assert "✔ mislabel→1" in page.locator("#gallery").inner_text()
    # every thumbnail is served and decodes (the lower ones load once scrolled to)
    for thumbnail in page.locator("#gallery img").all():
        thumbnail.scroll_into_view_if_needed()
    page.wait_for_function("Array.from(document.querySelectorAll('#gallery img'))"
                           ".every(i => i.complete && i.naturalWidth > 0)", timeout=WAIT)
    page.evaluate("window.scrollTo(0, 0)")
    _shoot(page, "gallery")
    thumbnail = page.locator("#gallery .thumbnail-item").nth(4)
    candidate_id = int(re.match(r"#(\d+)", thumbnail.inner_text().strip()).group(1))
    thumbnail.click()
    _review_tab_shows(page, candidate_id)

    # Try: draw a vertical stroke, see the model call it a 1, then turn it
    _open_tab(page, "Try")
    page.locator("#try-sketch button[aria-label='Brush']").first.click()
    box = page.locator("#try-sketch canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x + 5, y - 100)
    page.mouse.down()
    for step in range(1, 31):
        page.mouse.move(x + 5 - step * 0.5, y - 100 + step * 200 / 30)
    page.mouse.up()
    page.wait_for_function("document.querySelector('#try-note')?.innerText.includes('as drawn')",
                           timeout=WAIT)
    assert page.locator("#try-note").inner_text().startswith("1 at")
    _shoot(page, "try")
    rotate = page.locator("#try-rotate input[type=number]")
    rotate.fill("90")
    rotate.press("Enter")
    page.wait_for_function("document.querySelector('#try-note')?.innerText.includes('after rotating +90°')", timeout=WAIT)

    # Triage: five plots, and a disagreement opens in the review tab
    _open_tab(page, "Triage")
    page.wait_for_function("document.querySelectorAll('[id^=triage-] img').length >= 5", timeout=WAIT)
    assert "2 disagreements" in page.locator("#triage-summary").inner_text()
    _shoot(page, "triage")
    cells = page.locator("#triage-disagreements [role=gridcell]")
    disputed = int(cells.first.inner_text())
    cells.filter(has_text="ana: rare").first.click()
    _review_tab_shows(page, disputed)

    # Export: the fix list and the relabeled image folder, downloadable
    _open_tab(page, "Export")
    page.locator("#export-button").click()
    page.wait_for_function("document.querySelector('#export-note')?.innerText.includes('7 rows of fixes')",
                           timeout=WAIT)
    page.locator("#export-images-button").click()
    page.wait_for_function("document.querySelector('#export-images-note')?.innerText.includes('7 images')",
                           timeout=WAIT)
    _shoot(page, "export")
    with page.expect_download() as download:
        page.locator("#export-images-file a").first.click()
    assert download.value.suggested_filename == "demo-relabeled.zip"
    page.close()
