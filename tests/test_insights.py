"""Triage numbers on constructed reviews with known answers: kappa, confusion, acceptance, disagreements."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from hardcase.miner.vocabulary import DECISIONS
from hardcase.review_app.app import plots
from hardcase.review_app.workflows import insights
from hardcase.review_app.workflows.insights import CandidateInfo, Judgment
from hardcase.store import api
from hardcase.store.db import open_store


# --- Cohen's kappa ----------------------------------------------------------------------------
def test_kappa_textbook_example():
    # 50 items: both yes 20, A yes/B no 5, A no/B yes 10, both no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert insights.cohen_kappa(a, b) == pytest.approx(0.4)


def test_kappa_matches_sklearn_on_random_labels():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(3)
    causes = ["augment", "rare", "imbalance", "mislabel", "not_a_failure"]
    for _ in range(5):
        a = list(rng.choice(causes, 40))
        b = [x if rng.random() < 0.6 else str(rng.choice(causes)) for x in a]
        assert insights.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))


def test_kappa_edge_cases():
    assert insights.cohen_kappa(["a", "b", "a"], ["a", "b", "a"]) == pytest.approx(1.0)
    assert insights.cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    assert math.isnan(insights.cohen_kappa(["a", "a"], ["a", "a"]))  # chance agreement is 1
    assert math.isnan(insights.cohen_kappa([], []))
    with pytest.raises(ValueError, match="2 and 1 items"):
        insights.cohen_kappa(["a", "b"], ["a"])


def test_kappa_by_pair_and_disagreements():
    judgments = {
        1: [Judgment(1, "alice", "augment"), Judgment(1, "bob", "augment")],
        2: [Judgment(2, "alice", "rare"), Judgment(2, "bob", "augment"), Judgment(2, "carol", "rare")],
        3: [Judgment(3, "alice", "mislabel", "7"), Judgment(3, "bob", "mislabel", "1")],
        4: [Judgment(4, "carol", "imbalance")],
    }
    pairs = {(p.reviewer_a, p.reviewer_b): p for p in insights.kappa_by_pair(judgments)}
    assert set(pairs) == {("alice", "bob"), ("alice", "carol"), ("bob", "carol")}
    alice_bob = pairs[("alice", "bob")]
    # causes: alice [augment, rare, mislabel], bob [augment, augment, mislabel]: p_o 2/3, p_e 1/3
    assert alice_bob.n_shared == 3 and alice_bob.observed == pytest.approx(2 / 3)
    assert alice_bob.kappa == pytest.approx(0.5)
    assert pairs[("alice", "carol")].n_shared == 1 and math.isnan(pairs[("alice", "carol")].kappa)
    assert pairs[("bob", "carol")].observed == 0.0

    info = {k: CandidateInfo(k, "3", "3", "augment") for k in judgments}
    disputed = insights.disagreements(judgments, info)
    assert [d.candidate_id for d in disputed] == [2, 3]  # 3: same cause, different new label
    assert disputed[1].judgments[0].describe() == "alice: mislabel→7"


# --- confusion, recall, decisions, acceptance --------------------------------------------------
def test_confusion_matrix_and_recall():
    pairs = [("a", "a", 3), ("a", "b", 1), ("b", "b", 2), ("c", "a", 4), (None, "a", 9), ("zz", "a", 5)]
    matrix = insights.confusion_matrix(pairs, ["a", "b", "c", "d"])
    assert matrix.tolist() == [[3, 1, 0, 0], [0, 2, 0, 0], [4, 0, 0, 0], [0, 0, 0, 0]]
    recall = insights.per_class_recall(matrix)
    assert recall[:3].tolist() == [0.75, 1.0, 0.0] and math.isnan(recall[3])


def test_decision_matrix_counts_reviewed_only():
    counts = {("0", "augment"): 2, ("0", None): 5, ("1", "mislabel"): 1, ("x", "skip"): 1}
    rows, matrix = insights.decision_matrix(counts, ["0", "1"])
    assert rows == ["0", "1", "x"]
    assert matrix.sum() == 4 and matrix[0, 0] == 2 and matrix[1, 3] == 1 and matrix[2, 5] == 1


def test_acceptance_rates():
    outcomes = [("augment", "augment"), ("augment", "not_a_failure"), ("augment", None),
                ("mislabel", "mislabel"), ("rare", "augment"), ("unclear", "rare"), (None, "rare")]
    rates = insights.acceptance_rates(outcomes)
    assert rates == {"augment": (1, 2), "rare": (0, 1), "imbalance": (0, 0), "mislabel": (1, 1)}


def test_standing_judgments_skip_retraction_and_change_of_mind():
    class Row:
        def __init__(self, id, reviewer, cause, new_label=None, retracts=None):
            self.id, self.candidate_id, self.reviewer, self.cause = id, 9, reviewer, cause
            self.new_label, self.retracts_review_id = new_label, retracts

    history = [Row(1, "alice", "rare"), Row(2, "bob", "augment"), Row(3, "alice", "mislabel", "4"),
               Row(4, "carol", "skip"), Row(5, "bob", None, retracts=2), Row(6, "dan", "rare")]
    judged = insights.standing_judgments(history)
    assert [(j.reviewer, j.cause, j.new_label) for j in judged] == [("alice", "mislabel", "4"), ("dan", "rare", None)]
    assert insights.final_decision(history) == "rare"
    assert insights.final_decision([Row(1, "carol", "skip")]) is None


# --- the same numbers read from a store -----------------------------------------------------------
def _small_store(tmp_path):
    """6 samples of classes a/b/c, every one a candidate, reviewed by alice, bob and carol."""
    store = open_store(f"sqlite:///{tmp_path / 'triage.db'}")
    given = ["a", "a", "b", "b", "c", None]
    predicted = ["a", "b", "b", "b", "a", "c"]
    suggested = ["augment", "augment", "mislabel", "rare", "imbalance", None]
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(buffer, format="PNG")
    png = buffer.getvalue()
    with store.Session.begin() as session:
        dataset = api.get_or_create_dataset(session, name="d", uri="mem", kind="npz", class_names=None, n_samples=6)
        sample_ids = api.upsert_samples(session, dataset.id, source_index=list(range(6)),
                                        content_hash=[f"h{k}" for k in range(6)], uri=None, given_label=given)
        model = api.register_model(session, name="m", path="m.keras", file_hash="f", spec={}, class_names=["a", "b", "c"])
        run = api.create_run(session, name="r", dataset_id=dataset.id, model_version_id=model.id, params={})
        api.add_scores(session, run.id, [
            {"sample_id": s, "predicted_label": p, "confidence": 0.9, "margin": 0.5, "entropy": 0.1, "hardness_score": 0.5}
            for s, p in zip(sample_ids, predicted)])
        ids = api.add_candidates(session, run.id, [
            {"sample_id": s, "rank": k, "class_name": g or "c", "hardness_score": 1.0 - k / 10, "image_png": png,
             "suggested_cause": c} for k, (s, g, c) in enumerate(zip(sample_ids, given, suggested))])

    def review(k, reviewer, cause, new_label=None):
        with store.Session.begin() as session:
            version = api.get_candidate(session, ids[k]).version
            api.submit_review(session, ids[k], reviewer=reviewer, cause=cause, new_label=new_label, seen_version=version)

    review(0, "alice", "augment")
    review(0, "bob", "augment")
    review(1, "bob", "augment")
    review(1, "alice", "rare")  # final: rare, so the augment suggestion of #2 is rejected
    review(2, "alice", "mislabel", "c")
    review(2, "bob", "mislabel", "a")
    review(3, "alice", "rare")
    review(3, "bob", "rare")
    with store.Session.begin() as session:
        api.undo_last_review(session, ids[3], reviewer="bob")
    review(4, "alice", "skip")
    review(4, "carol", "imbalance")
    return store, ids


def test_load_triage_from_a_store(tmp_path):
    store, ids = _small_store(tmp_path)
    data = insights.load_triage(store, "r")
    assert data.class_names == ["a", "b", "c"] and data.n_candidates == 6 and data.n_reviewed == 5

    confusion = insights.confusion_matrix(data.label_pairs, data.class_names)
    assert confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]  # the unlabelled sample is left out
    assert insights.per_class_recall(confusion).tolist() == [0.5, 1.0, 0.0]

    rates = insights.acceptance_rates(insights.outcomes(data))
    assert rates == {"augment": (1, 2), "rare": (1, 1), "imbalance": (1, 1), "mislabel": (1, 1)}

    pairs = insights.kappa_by_pair(data.judgments)
    assert [(p.reviewer_a, p.reviewer_b, p.n_shared) for p in pairs] == [("alice", "bob", 3)]
    assert pairs[0].kappa == pytest.approx(0.5)  # bob's retracted review of #4 does not count

    disputed = insights.disagreements(data.judgments, data.candidates)
    assert [d.candidate_id for d in disputed] == [ids[1], ids[2]]
    assert disputed[1].given_label == "b" and disputed[1].suggested_cause == "mislabel"

    rows, decisions = insights.decision_matrix(data.decision_counts, data.class_names)
    assert decisions.sum() == 5

    # every figure renders from these numbers, and from an empty run
    for figure in (plots.confusion_figure(confusion, data.class_names), plots.kappa_figure(pairs),
                   plots.acceptance_figure(rates), plots.kappa_figure([]),
                   plots.recall_figure(data.class_names, insights.per_class_recall(confusion), confusion),
                   plots.decisions_figure(rows, list(DECISIONS), decisions, n_reviewed=5, n_candidates=6)):
        assert figure.axes
    store.dispose()


def test_an_adjudicated_candidate_is_no_longer_a_disagreement(tmp_path):
    store, ids = _small_store(tmp_path)
    with store.Session.begin() as session:
        run_id = api.get_candidate(session, ids[1]).run_id
        api.submit_batch(session, run_id, [{"candidate_id": ids[1], "cause": "rare"}], reviewer="lead",
                         action="adjudicate", description="settle #1")
    data = insights.load_triage(store, "r")
    assert data.adjudicated == {ids[1]}
    disputed = insights.disagreements(data.judgments, data.candidates, settled=data.adjudicated)
    assert [d.candidate_id for d in disputed] == [ids[2]]
    # a later plain decision by a reviewer reopens it: the adjudication is no longer the last word
    with store.Session.begin() as session:
        version = api.get_candidate(session, ids[1]).version
        api.submit_review(session, ids[1], reviewer="bob", cause="augment", seen_version=version)
    data = insights.load_triage(store, "r")
    assert data.adjudicated == set()
    assert [d.candidate_id for d in insights.disagreements(data.judgments, data.candidates,
                                                           settled=data.adjudicated)] == [ids[1], ids[2]]
