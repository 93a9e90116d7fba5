"""Words for annotators on the review page, and the store's record of how reviewers received suggestions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pgutil import empty_database, seed_run

from hardcase.review_app.app.handlers.review import (
    SHOWN,
    Handlers,
    confidence_level,
    confidence_words,
    describe,
    details,
    plain_sentence,
)
from hardcase.review_app.workflows.review import ReviewInputError, ReviewService
from hardcase.store import api
from hardcase.store.acceptance import Acceptance, acceptance_by_cause
from hardcase.store.db import open_store


@pytest.mark.parametrize(("strength", "level"), [(0.0, "low"), (0.2, "low"), (1 / 3, "medium"), (0.5, "medium"),
                                                  (2 / 3, "high"), (1.0, "high")])
def test_strength_reads_low_medium_high(strength, level):
    assert confidence_level(strength) == level


def test_confidence_is_the_reviewers_record_once_there_is_one():
    assert confidence_words("augment", 0.2, Acceptance(confirmed=12, decided=15)) == (
        "reviewers confirmed 12 of 15 earlier augment suggestions in this run")
    assert confidence_words("rare", 0.9, Acceptance(confirmed=0, decided=1)) == (
        "reviewers confirmed 0 of 1 earlier rare suggestion in this run")
    assert confidence_words("rare", 0.9, None) == "confidence high (no earlier rare suggestion decided in this run yet)"
    assert confidence_words("rare", 0.9, Acceptance(0, 0)).startswith("confidence high")
    assert confidence_words("unclear", 0.9, Acceptance(3, 4)) == ""  # nothing a reviewer could confirm


def _view(**evidence):
    return SimpleNamespace(
        id=8, rank=2, class_name="9", given_label="9", predicted_label="4", confidence=0.874, margin=0.5,
        hardness_score=0.0123, suggested_cause="augment", suggested_label=None, suggestion_confidence=0.5,
        evidence=evidence, decision=None, decided_label=None, reviewers=(),
    )


def test_a_suggestion_is_one_plain_sentence_with_the_numbers_behind_the_toggle():
    view = _view(summary="rotating -55° makes it a clear '9'",
                 text="rotating -55° gives '9' at 0.93 (was 0.04), typicality p=0.41")
    words = describe(view, Acceptance(confirmed=3, decided=4))
    assert "Suggestion: **augment**: Rotating -55° makes it a clear '9'" in words
    assert "Reviewers confirmed 3 of 4 earlier augment suggestions in this run" in words
    assert "the model says **4** (87% sure)" in words
    assert "0.93" not in words and "typicality" not in words and "0.0123" not in words
    numbers = details(view)
    assert "typicality p=0.41" in numbers and "hardness score 0.012" in numbers
    assert "suggestion strength 0.50 (medium" in numbers
    # a run suggested before summaries existed still reads, with its numbers' sentence
    assert plain_sentence({"text": "unlike the training data"}) == "Unlike the training data"
    assert plain_sentence(None) == ""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def seeded(request, tmp_path):
    with empty_database(request.param, tmp_path) as url:
        store = open_store(url)
        # candidate i has suggested cause SUGGESTED_CAUSES[i % 5]: 0 and 5 augment, 1 and 6 rare, 3 and 8 mislabel
        first, other = seed_run(store, n_samples=12, n_candidates=10), seed_run(store, name="run-2", n_candidates=5)
        yield store, first, other
        store.dispose()


def _decide(store, candidate_id, reviewer, cause, new_label=None):
    with store.Session.begin() as session:
        version = api.get_candidate(session, candidate_id).version
        api.submit_review(session, candidate_id, reviewer=reviewer, cause=cause, new_label=new_label,
                          seen_version=version)


def test_acceptance_counts_confirmed_among_decided_suggestions(seeded):
    store, run, other = seeded
    c = run.candidate_ids
    _decide(store, c[0], "ana", "augment")
    _decide(store, c[5], "ana", "rare")  # an augment suggestion called rare
    _decide(store, c[1], "ana", "skip")  # no verdict
    _decide(store, c[6], "bob", "rare")
    # candidate i's suggested class is CLASSES[(i + 1) % 3]: dog for 3, cat for 8
    _decide(store, c[3], "bob", "mislabel", new_label="dog")
    _decide(store, c[8], "bob", "mislabel", new_label="bird")
    _decide(store, c[8], "bob", "not_a_failure")  # then changed their mind: the latest stands
    _decide(store, other.candidate_ids[0], "ana", "rare")  # another run's decision
    with store.snapshot() as session:
        assert acceptance_by_cause(session, run.run_id) == {
            "augment": Acceptance(1, 2), "rare": Acceptance(1, 1), "mislabel": Acceptance(1, 2)}
        assert acceptance_by_cause(session, run.run_id, exclude_candidate_id=c[0])["augment"] == Acceptance(0, 1)
    # a mislabel counts as confirmed only to the suggested class, by the label of the decision that stands
    _decide(store, c[8], "ana", "mislabel", new_label="cat")
    with store.snapshot() as session:
        assert acceptance_by_cause(session, run.run_id)["mislabel"] == Acceptance(2, 2)
    with store.Session.begin() as session:
        api.undo_last_review(session, c[8], reviewer="ana")
        api.undo_last_review(session, c[8], reviewer="bob")  # bob's mislabel to bird stands again
    with store.snapshot() as session:
        assert api.get_candidate(session, c[8]).decision == "mislabel"
        assert acceptance_by_cause(session, run.run_id)["mislabel"] == Acceptance(1, 2)
    with store.Session.begin() as session:
        api.undo_last_review(session, c[6], reviewer="bob")
    assert "rare" not in ReviewService(store).acceptance(run.run_id)


def test_undo_walks_back_through_the_reviewers_own_decisions_in_the_run(seeded):
    store, run, other = seeded
    c = run.candidate_ids
    service = ReviewService(store)
    _decide(store, c[0], "ana", "augment")
    _decide(store, c[2], "ana", "skip")
    _decide(store, c[4], "bob", "rare")  # someone else's, later
    _decide(store, other.candidate_ids[1], "ana", "rare")  # another run's, later
    with store.snapshot() as session:
        assert api.latest_decided_candidate(session, run.run_id, "ana") == c[2]
    assert service.undo_latest_decision(run.run_name, "ana") == c[2]
    assert service.undo_latest_decision(run.run_name, "ana") == c[0]
    with pytest.raises(ReviewInputError, match="nothing to undo: ana has no standing decision in run 'run-1'"):
        service.undo_latest_decision(run.run_name, "ana")
    with store.snapshot() as session:
        assert api.get_candidate(session, c[4]).decision == "rare"  # bob's decision stands
        assert api.get_candidate(session, other.candidate_ids[1]).decision == "rare"


def test_progress_counts_skips_apart_and_an_empty_page_names_its_filters(seeded):
    store, run, _ = seeded
    c = run.candidate_ids
    _decide(store, c[0], "ana", "augment")
    _decide(store, c[1], "ana", "skip")
    _decide(store, c[2], "ana", "skip")
    progress = ReviewService(store).review_progress(run.run_name)
    assert (progress.total, progress.decided, progress.skipped, progress.undecided) == (10, 1, 2, 7)

    handlers = Handlers(ReviewService(store))
    # class 'cat' (candidates 0, 3, 6, 9) suggested as imbalance (2, 7): none
    shown = dict(zip(SHOWN, handlers.next_candidate(run.run_name, "ana", -1, "cat", "unreviewed", "imbalance")))
    assert shown["info"] == "No candidate left to review here. Filters: class **cat**, suggested cause **imbalance**."
    assert shown["clear_filters"]["visible"] is True
    assert shown["progress"] == "**1 decided · 2 skipped** · 7 of 10 to go"
