"""The review page in a real browser: Debian's chromium driven by Playwright, headless."""

from __future__ import annotations

import re
import time

import pytest
from apputil import demo_store, served_app
from conftest import ARTIFACTS

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory, demo_model_path):
    """The app's URL, its store and its review service."""
    from hardcase.review_app.workflows.review import ReviewService

    store = demo_store(tmp_path_factory.mktemp("browser"), demo_model_path, per_class=3)
    service = ReviewService(store)
    with served_app(service) as app:
        yield app.local_url, store, service
    store.dispose()


@pytest.fixture(scope="module")
def app_url(served):
    url, store, _ = served
    return url, store


def _open_app(page, url):
    """Load the app and wait for its first page-load steps. Not "networkidle": a page whose app holds
    a ``gr.State`` keeps Gradio's heartbeat stream open, so the network is never idle."""
    page.goto(url)
    page.locator("#reviewer textarea, #reviewer input").first.wait_for(state="visible", timeout=30000)
    page.wait_for_function("document.querySelector('#run input')?.value === 'demo'", timeout=30000)
    page.wait_for_timeout(500)


def _probabilities(page) -> str:
    return page.locator("#probabilities").inner_text()


def test_reviewer_drags_rotation_and_tags_a_cause(browser, app_url):
    url, store = app_url
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    _open_app(page, url)
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
    _open_app(page, url)
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


# --- no dead ends: each one the review page used to have --------------------------------------
WAIT = 20000
TOASTS = ".toast-body, [data-testid='toast-body']"


def _wait_status(page, text):
    page.wait_for_function("(text) => document.querySelector('#status')?.innerText.includes(text)", arg=text,
                           timeout=WAIT)


def _wait_shown(page, candidate_id):
    page.wait_for_function("(id) => document.querySelector('#candidate-info')?.innerText.includes('Candidate #' + id + ' ')",
                           arg=str(candidate_id), timeout=WAIT)


def _press(page, key):
    page.locator("#shortcuts").click()  # out of any text field, so the key is a shortcut
    page.keyboard.press(key)


def _reviews(store, candidate_id):
    from hardcase.store import api

    with store.Session.begin() as session:
        return api.reviews_for(session, candidate_id)


def _no_error_badges(page):
    # a refused event used to mark every output with an "Error" badge
    assert page.locator(".error").count() == 0
    assert page.locator(TOASTS).count() == 0


def test_a_suggested_tilt_beyond_180_degrees_applies_and_saves(browser, app_url):
    url, store = app_url
    page = _start_reviewing(browser.new_context(), url, "abe")
    candidate_id = _shown_candidate(page)
    from hardcase.store import api

    with store.Session.begin() as session:
        view = api.get_candidate(session, candidate_id)
        api.set_suggestions(session, view.run_id, [{
            "candidate_id": candidate_id, "suggested_cause": "augment", "suggested_label": None,
            "suggestion_confidence": 0.8,
            "evidence": {"transform": {"rotate": -30.0, "perspective": 0.2, "direction": 270.0},
                         "summary": "rotating -30° and tilting 0.20 toward 270° makes it a clear '3'"},
        }])
    before = _probabilities(page)
    page.locator("#apply-suggestion").click()
    page.wait_for_function("document.querySelector('#direction input[type=number]').value === '-90'", timeout=WAIT)
    page.wait_for_function("(prev) => document.querySelector('#probabilities').innerText !== prev", arg=before,
                           timeout=WAIT)
    _press(page, "1")
    _wait_status(page, "saved augment")
    (review,) = _reviews(store, candidate_id)
    assert (review.reviewer, review.cause) == ("abe", "augment")
    assert (review.transform["rotate"], review.transform["perspective"], review.transform["direction"]) == (
        -30, 0.2, -90)
    _no_error_badges(page)
    page.context.close()


def test_mislabel_without_a_label_is_named_at_the_relabel_field_then_saved(browser, app_url):
    url, store = app_url
    page = _start_reviewing(browser.new_context(), url, "bea")
    candidate_id = _shown_candidate(page)
    page.locator("#relabel input").click()
    page.keyboard.press("Escape")
    page.evaluate("document.activeElement.blur()")
    # the relabel field may be pre-filled by a mislabel suggestion: empty it first
    if page.locator("#relabel input").input_value():
        page.locator("#relabel input").fill("")
        page.locator("#shortcuts").click()
    info_before = page.locator("#candidate-info").inner_text()
    _press(page, "4")
    message = "a mislabel decision needs the right class"
    page.wait_for_function("(text) => document.querySelector('#relabel')?.closest('.block')?.innerText.includes(text)"
                           " || document.querySelector('#relabel')?.innerText.includes(text)", arg=message,
                           timeout=WAIT)
    assert page.locator(f"text={message}").count() == 1  # once, and only there
    assert page.locator("#status").inner_text() == ""
    assert page.locator("#candidate-info").inner_text() == info_before
    _no_error_badges(page)
    assert _reviews(store, candidate_id) == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review-mislabel-needs-label.png"), full_page=True)

    page.locator("#relabel input").click()
    page.get_by_role("option", name="7", exact=True).click()
    _press(page, "4")
    _wait_status(page, "saved mislabel")
    assert [(r.reviewer, r.cause, r.new_label) for r in _reviews(store, candidate_id)] == [("bea", "mislabel", "7")]
    assert page.locator(f"text={message}").count() == 0  # gone once the decision went through
    page.context.close()


def test_undo_straight_after_a_decision_returns_to_it(browser, app_url):
    url, store = app_url
    page = _start_reviewing(browser.new_context(), url, "cai")
    decided = _shown_candidate(page)
    _press(page, "2")
    _wait_status(page, "saved rare")
    assert _shown_candidate(page) != decided  # the page moved on
    _press(page, "u")
    _wait_status(page, f"undid your last decision on candidate {decided}")
    _wait_shown(page, decided)
    reviews = _reviews(store, decided)
    assert [(r.reviewer, r.cause) for r in reviews][-2:] == [("cai", "rare"), ("cai", None)]
    # nothing more of cai's to undo: said on the status line, the candidate stays
    _press(page, "u")
    _wait_status(page, "nothing to undo: cai has no standing decision")
    _wait_shown(page, decided)
    _no_error_badges(page)
    page.context.close()


def test_undo_pressed_while_the_decision_is_still_saving_takes_back_that_decision(browser, served, monkeypatch):
    url, store, service = served
    saving = service.submit_review

    def slow_submit(*args, **kwargs):
        time.sleep(1.0)  # a busy server: the decision is still being saved when u arrives
        return saving(*args, **kwargs)

    monkeypatch.setattr(service, "submit_review", slow_submit)
    page = _start_reviewing(browser.new_context(), url, "fay")
    decided = _shown_candidate(page)
    _press(page, "3")
    page.keyboard.press("u")  # no wait for "saved"
    _wait_status(page, f"undid your last decision on candidate {decided}")
    _wait_shown(page, decided)
    # (the module's other tests may have decided and undone this candidate before)
    assert [(r.reviewer, r.cause) for r in _reviews(store, decided)][-2:] == [("fay", "imbalance"), ("fay", None)]
    page.context.close()


def _choose(page, dropdown, option):
    page.locator(f"#{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()
    page.locator("#shortcuts").click()


def test_an_empty_filter_names_itself_and_clears(browser, app_url):
    url, store = app_url
    from hardcase.store import api

    with store.Session.begin() as session:
        run = api.require_run(session, "demo")
        counts = api.triage_counts(session, run.id)
    # status 'reviewed' and a class nobody has decided yet: nothing to show
    empty_class = next(str(k) for k in range(10) if not any(c == str(k) and d for (c, d) in counts))
    page = _start_reviewing(browser.new_context(), url, "dov")
    _choose(page, "class-filter", empty_class)
    _choose(page, "status-filter", "reviewed")
    page.locator("#next").click()
    expected = f"No candidate left to review here. Filters: class {empty_class}, status reviewed."
    # the exact words, once the event's "processing" overlay is gone
    page.wait_for_function("(text) => document.querySelector('#candidate-info')?.innerText.trim() === text",
                           arg=expected, timeout=WAIT)
    assert re.fullmatch(r"\d+ decided · \d+ skipped · \d+ of 30 to go", page.locator("#progress").inner_text())
    page.locator("#clear-filters").click()
    page.wait_for_function("document.querySelector('#candidate-info')?.innerText.includes('Candidate #')",
                           timeout=WAIT)
    assert page.locator("#class-filter input").input_value() == "any"
    assert page.locator("#status-filter input").input_value() == "unreviewed"
    assert not page.locator("#clear-filters").is_visible()
    _no_error_badges(page)
    page.context.close()


def test_the_saliency_toggle_names_its_method(browser, app_url):
    url, _ = app_url
    page = _start_reviewing(browser.new_context(), url, "eli")
    page.locator("#saliency input").check()
    page.wait_for_function("document.querySelector('#saliency-method')?.innerText.includes('HiResCAM on layer')",
                           timeout=WAIT)
    page.locator("#details-toggle button, #details-toggle .label-wrap").first.click()
    page.wait_for_function("document.querySelector('#details')?.innerText.includes('hardness score')", timeout=WAIT)
    page.context.close()
