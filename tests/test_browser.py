"""The review page in a real browser: Debian's chromium driven by Playwright, headless."""

from __future__ import annotations

import re

import pytest
from apputil import demo_store, served_app
from conftest import ARTIFACTS

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, demo_model_path):
    from hardcase.review_app.workflows.review import ReviewService

    store = demo_store(tmp_path_factory.mktemp("browser"), demo_model_path, per_class=3)
    with served_app(ReviewService(store)) as app:
        yield app.local_url, store
    store.dispose()


def _probabilities(page) -> str:
    return page.locator("#probabilities").inner_text()


def test_reviewer_drags_rotation_and_tags_a_cause(browser, app_url):
    url, store = app_url
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.locator("#reviewer textarea, #reviewer input").first.fill("dana")
    page.locator("#next").click()
    page.wait_for_function("document.querySelector('#candidate-info') && "
                           "document.querySelector('#candidate-info').innerText.includes('Candidate #')")
    page.wait_for_timeout(500)
    before = _probabilities(page)
    assert re.search(r"\d+%", before)

    number = page.locator("#rotate input[type=number]")
    number.fill("90")
    number.press("Enter")
    page.wait_for_function(
        "(prev) => document.querySelector('#probabilities').innerText !== prev", arg=before, timeout=15000
    )
    after = _probabilities(page)
    assert after != before

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)

    info = page.locator("#candidate-info").inner_text()
    candidate_id = int(re.search(r"Candidate #(\d+)", info).group(1))
    page.locator("#decide-augment").click()
    page.wait_for_function("document.querySelector('#status').innerText.includes('saved')", timeout=15000)

    from hardcase.store import api

    with store.Session.begin() as session:
        reviews = api.reviews_for(session, candidate_id)
    assert [(r.reviewer, r.cause) for r in reviews] == [("dana", "augment")]
    assert reviews[0].transform["rotate"] == 90

    # keyboard: "2" tags the next candidate as rare without touching the mouse
    page.wait_for_function(
        f"!document.querySelector('#candidate-info').innerText.includes('Candidate #{candidate_id} ')", timeout=15000
    )
    shown_next = int(re.search(r"Candidate #(\d+)", page.locator("#candidate-info").inner_text()).group(1))
    page.locator("#shortcuts").click()
    page.keyboard.press("2")
    page.wait_for_function("document.querySelector('#status').innerText.includes('saved **rare**') || "
                           "document.querySelector('#status').innerText.includes('saved rare')", timeout=15000)
    with store.Session.begin() as session:
        assert [(r.reviewer, r.cause) for r in api.reviews_for(session, shown_next)] == [("dana", "rare")]

    # the name is kept in the browser session across a reload
    page.reload()
    page.wait_for_function("document.querySelector('#reviewer textarea, #reviewer input')?.value === 'dana'",
                           timeout=15000)
    page.close()


def _shown_candidate(page) -> int:
    return int(re.search(r"Candidate #(\d+)", page.locator("#candidate-info").inner_text()).group(1))


def _start_reviewing(context, url, name):
    page = context.new_page()
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.locator("#reviewer textarea, #reviewer input").first.fill(name)
    page.locator("#next").click()
    page.wait_for_function("document.querySelector('#candidate-info')?.innerText.includes('Candidate #')",
                           timeout=15000)
    return page


def test_two_reviewers_get_different_candidates(browser, app_url):
    url, _ = app_url
    first_context, second_context = browser.new_context(), browser.new_context()
    first = _start_reviewing(first_context, url, "ivy")
    second = _start_reviewing(second_context, url, "jon")
    assert _shown_candidate(first) != _shown_candidate(second)

    # unsaved slider work in one browser is invisible in the other
    number = first.locator("#rotate input[type=number]")
    number.fill("45")
    number.press("Enter")
    first.wait_for_timeout(500)
    assert second.locator("#rotate input[type=number]").input_value() == "0"
    ARTIFACTS.mkdir(exist_ok=True)
    second.screenshot(path=str(ARTIFACTS / "review-second-reviewer.png"), full_page=True)
    first_context.close()
    second_context.close()
