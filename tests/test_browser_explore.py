"""The Explore tab in a real browser (Debian's chromium, headless): the table's filter and sort,
a row and a map point opening their candidate in the review tab, a bulk decision and its undo;
the screenshot in docs/explore.png."""

from __future__ import annotations

import re

import numpy as np
import pytest
from apputil import demo_store, served_app
from conftest import ARTIFACTS, REPO
from sqlalchemy import select

from hardcase.review_app.workflows import explore
from hardcase.store import api
from hardcase.store.schema import Candidate

WAIT = 30_000

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory, demo_model_path):
    """The demo run with known suggestions on six candidates and one dispute; no map stored yet."""
    from hardcase.review_app.workflows.review import ReviewService

    store = demo_store(tmp_path_factory.mktemp("browser-explore"), demo_model_path, per_class=3)
    with store.Session.begin() as session:
        run = api.require_run(session, "demo")
        ids = list(session.scalars(select(Candidate.id).where(Candidate.run_id == run.id).order_by(Candidate.rank)))
        session.execute(Candidate.__table__.update().values(suggested_cause=None, suggested_label=None,
                                                            suggestion_confidence=None))
        api.set_suggestions(session, run.id, [
            {"candidate_id": k, "suggested_cause": cause, "suggested_label": label, "suggestion_confidence": p,
             "evidence": {}}
            for k, (cause, label, p) in zip(ids, [("mislabel", "1", 0.95), ("mislabel", "7", 0.9),
                                                  ("mislabel", "2", 0.4), ("augment", None, 0.8),
                                                  ("rare", None, 0.7), ("unclear", None, 0.6)])])
    for reviewer, cause in (("ana", "rare"), ("ben", "augment")):
        with store.Session.begin() as session:
            version = api.get_candidate(session, ids[6]).version
            api.submit_review(session, ids[6], reviewer=reviewer, cause=cause, seen_version=version)
    with served_app(ReviewService(store)) as app:
        yield app.local_url, store, ids
    store.dispose()


def _choose(page, dropdown, option):
    page.locator(f"#{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()
    page.locator("#explore-summary").click()


ROW_IDS = """Array.from(document.querySelectorAll('#explore-table .virtual-row'))
    .sort((a, b) => a.dataset.index - b.dataset.index)
    .map(row => parseInt(row.querySelector('[data-col="1"]')?.innerText.trim())).filter(n => !isNaN(n))"""
"""The id column of the rows the table has drawn (it draws the rows in view), top first."""


def _wait_table(page, predicate: str, arg=None):
    """Wait until ``predicate`` holds of ``ids`` (the drawn rows' ids) and ``note`` (the line above the table)."""
    page.wait_for_function(f"""(arg) => {{
        const ids = {ROW_IDS};
        const note = document.querySelector('#explore-table-note')?.innerText || '';
        return {predicate};
    }}""", arg=arg, timeout=WAIT)


def _review_tab_shows(page, candidate_id):
    page.wait_for_function(
        "(id) => document.querySelector('[role=tab][aria-selected=true]')?.innerText.trim() === 'Review' && "
        "document.querySelector('#candidate-info')?.innerText.includes('Candidate #' + id + ' ')",
        arg=str(candidate_id), timeout=WAIT)


def _settled(page):
    """Every event of the explore tab answered (its components' loading trackers hidden)."""
    page.wait_for_timeout(300)
    page.wait_for_function("""() => ['#explore-map', '#explore-table', '#explore-summary'].every(id =>
        Array.from(document.querySelectorAll(id + ' [data-testid=status-tracker]'))
             .every(tracker => tracker.classList.contains('hide')))""", timeout=WAIT)


def _open_explore(page):
    page.get_by_role("tab", name="Explore").click()
    page.wait_for_function("document.querySelector('#explore-map img') !== null", timeout=WAIT)
    _settled(page)
    _wait_table(page, "note.startsWith('30 of 30 candidates') && ids.length >= 5")


def test_explore_in_the_browser(browser, served):
    url, store, ids = served
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(url)
    page.locator("#reviewer textarea, #reviewer input").first.wait_for(timeout=WAIT)
    page.locator("#reviewer textarea, #reviewer input").first.fill("lea")

    # the gallery: one headed grid per class, in the model's class order
    page.get_by_role("tab", name="Gallery").click()
    page.wait_for_function("document.querySelectorAll('#gallery .block.gallery-header').length === 10 && "
                           "document.querySelectorAll('#gallery .gallery-group img').length === 30", timeout=WAIT)
    headers = [text.strip() for text in page.locator("#gallery .block.gallery-header").all_inner_texts()]
    assert headers == [f"Class {k} · 3 candidates" for k in range(10)]
    first_of_class_1 = page.locator("#gallery .block.gallery-group").nth(1).locator(".thumbnail-item").first
    candidate_id = int(re.match(r"#(\d+)", first_of_class_1.inner_text().strip()).group(1))
    with store.snapshot() as session:
        assert api.get_candidate(session, candidate_id).class_name == "1"
    first_of_class_1.click()
    _review_tab_shows(page, candidate_id)

    _open_explore(page)
    assert "30 candidates" in page.locator("#explore-summary").inner_text()
    map_note = page.locator("#explore-map-note").inner_text()
    # mining stored the run's map: nothing is computed on opening
    assert "computed now" not in map_note and "Outlined points are the candidates" in map_note
    assert page.locator("#explore-hardness img, #explore-hardness svg").count() >= 1

    # filter: the disputed candidate alone; sort: hardness, hardest last
    _choose(page, "explore-status", "disputed")
    _wait_table(page, "ids.length === 1 && ids[0] === arg", ids[6])
    assert "1 of 30 candidates match status disputed" in page.locator("#explore-table-note").inner_text()
    _choose(page, "explore-status", "all")
    _wait_table(page, "note.startsWith('30 of 30 candidates') && ids.length >= 5")
    _choose(page, "explore-sort", "hardness")
    page.locator("#explore-descending input").check()
    frame = explore.load_candidates(store, "demo")
    expected = explore.sort_candidates(frame, "hardness", descending=True)["id"].tolist()
    _wait_table(page, "ids.length >= 5 && ids.every((id, k) => id === arg[k])", expected)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(REPO / "docs" / "explore.png"), full_page=True)

    # a row opens its candidate in the review tab
    page.locator("#explore-table [data-row='2'][data-col='3']").click()
    _review_tab_shows(page, expected[2])

    # a point of the map opens its candidate: click where the map drew candidate ids[3]
    from hardcase.review_app.app import plots

    _open_explore(page)
    run_map = explore.load_map(store, "demo", explore.load_candidates(store, "demo"))
    _, positions = plots.run_map_image(run_map, color_by="class")
    target = int(np.flatnonzero(run_map.candidate_id == ids[3])[0])
    image = page.locator("#explore-map img")
    box = image.bounding_box()
    natural = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    scale = min(box["width"] / natural[0], box["height"] / natural[1], 1)
    left = box["x"] + (box["width"] - natural[0] * scale) / 2
    top = box["y"] + (box["height"] - natural[1] * scale) / 2
    x, y = positions[target]
    nearest = np.hypot(*(positions - positions[target]).T)
    nearest[target] = np.inf
    assert nearest.min() * scale > 2  # the point is not hidden under another
    page.mouse.click(left + x * scale, top + y * scale)
    _review_tab_shows(page, ids[3])

    # bulk: accept every mislabel suggestion with confidence at least 0.85, then undo the batch
    _open_explore(page)
    _choose(page, "explore-cause", "mislabel")
    page.locator("#explore-min-confidence input[type=number]").fill("0.85")
    page.locator("#explore-min-confidence input[type=number]").press("Enter")
    _wait_table(page, "ids.length === 2 && note.startsWith('2 of 30')")
    page.get_by_label("every row matching the filters").check()
    page.locator("#explore-decide").click()
    page.wait_for_function("document.querySelector('#explore-bulk-status')?.innerText.includes('2 candidates')",
                           timeout=WAIT)
    batch_id = int(re.search(r"#(\d+)", page.locator("#explore-bulk-status").inner_text()).group(1))
    decided = explore.load_candidates(store, "demo").set_index("id")
    assert decided.loc[ids[0], "judgments"] == "lea: mislabel→1" and decided.loc[ids[1], "judgments"] == "lea: mislabel→7"
    assert decided.loc[ids[2], "status"] == "unreviewed"
    page.wait_for_function("document.querySelector('#explore-table')?.innerText.includes('mislabel→7')",
                           timeout=WAIT)
    page.wait_for_function("(id) => document.querySelector('#explore-batches input')?.value.startsWith('#' + id)",
                           arg=str(batch_id), timeout=WAIT)
    _shoot = ARTIFACTS / "explore-bulk.png"
    page.screenshot(path=str(_shoot), full_page=True)
    page.locator("#explore-undo").click()
    page.wait_for_function("document.querySelector('#explore-bulk-status')?.innerText.includes('2 decisions retracted')",
                           timeout=WAIT)
    undone = explore.load_candidates(store, "demo").set_index("id")
    assert (undone.loc[[ids[0], ids[1]], "status"] == "unreviewed").all()
    page.close()
