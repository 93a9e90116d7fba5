"""Every store API function and the exports, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time

import numpy as np
import pytest
from pgutil import CLASSES, TINY_PNG, empty_database, seed_run
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from hardcase.store import api
from hardcase.store.db import open_store
from hardcase.store.errors import StoreError
from hardcase.store.export import (
    CANDIDATE_COLUMNS,
    EXPORTS,
    FIX_COLUMNS,
    REVIEW_COLUMNS,
    SCORE_COLUMNS,
    export_rows,
    read_rows,
    write_rows,
)
from hardcase.store.schema import Candidate, Lease, Review, Sample, Score

DIALECTS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(params=DIALECTS)
def store(request, tmp_path):
    with empty_database(request.param, tmp_path) as url:
        opened = open_store(url)
        yield opened
        opened.dispose()


@pytest.fixture
def seeded(store):
    return seed_run(store)


def review(store, candidate_id, reviewer, cause, *, seen_version, new_label=None, **extra):
    with store.Session.begin() as session:
        return api.submit_review(
            session,
            candidate_id,
            reviewer=reviewer,
            cause=cause,
            new_label=new_label,
            seen_version=seen_version,
            **extra,
        )


def view(store, candidate_id):
    with store.Session.begin() as session:
        return api.get_candidate(session, candidate_id)


def next_for(store, run_id, reviewer, **filters):
    with store.Session.begin() as session:
        return api.next_candidate(session, run_id, reviewer=reviewer, **filters)


# --------------------------------------------------------------------------- datasets, samples, models


def test_get_or_create_dataset_is_idempotent_and_checks_identity(store):
    fields = {
        "name": "flowers",
        "uri": "/d",
        "kind": "folder",
        "class_names": ["a", "b"],
        "n_samples": 10,
    }
    with store.Session.begin() as session:
        first = api.get_or_create_dataset(session, **fields)
    with store.Session.begin() as session:
        again = api.get_or_create_dataset(session, **fields | {"uri": "/mnt/elsewhere"})
        assert again.id == first.id and again.uri == "/d"
        assert api.get_dataset(session, "flowers").id == first.id
        assert api.get_dataset(session, "nope") is None
    for change in ({"kind": "npz"}, {"class_names": ["a", "c"]}, {"n_samples": 11}):
        with pytest.raises(StoreError, match="already exists with"), store.Session.begin() as s:
            api.get_or_create_dataset(s, **fields | change)
    with pytest.raises(ValueError, match="dataset name"), store.Session.begin() as session:
        api.get_or_create_dataset(session, **fields | {"name": ""})
    with store.Session.begin() as session:
        nameless = api.get_or_create_dataset(session, **fields | {"name": "x", "class_names": None})
        assert nameless.class_names is None


def test_upsert_samples_returns_ids_in_order_and_is_idempotent(store):
    n = 12_345  # crosses the chunk size
    with store.Session.begin() as session:
        dataset = api.get_or_create_dataset(
            session, name="big", uri="/d", kind="npz", class_names=None, n_samples=n
        )
        order = list(range(n))[::-1]
        ids = api.upsert_samples(
            session,
            dataset.id,
            source_index=np.array(order),
            content_hash=[f"h{i}" for i in order],
            uri=None,
            given_label=[CLASSES[i % 3] for i in order],
            timestamp=[f"b{i % 7}" for i in order],
        )
        assert len(ids) == len(set(ids)) == n
    with store.Session.begin() as session:
        again = api.upsert_samples(
            session,
            dataset.id,
            source_index=[0, 5, n + 1],
            content_hash=["h0", "h5", "new"],
            uri=["u0", "u5", "un"],
            given_label=[None, None, "cat"],
        )
        assert again[:2] == [ids[n - 1], ids[n - 6]]
        assert session.scalar(select(func.count(Sample.id))) == n + 1
        stored = session.get(Sample, ids[n - 6])
        assert (stored.source_index, stored.given_label, stored.timestamp, stored.uri) == (
            5,
            "bird",
            "b5",
            None,
        )
    with (
        pytest.raises(StoreError, match="sample 5 of dataset .* changed"),
        store.Session.begin() as s,
    ):
        api.upsert_samples(
            s, dataset.id, source_index=[5], content_hash=["other"], uri=None, given_label=None
        )
    with pytest.raises(ValueError, match="3 values for 2"), store.Session.begin() as s:
        api.upsert_samples(
            s,
            dataset.id,
            source_index=[1, 2],
            content_hash=["a", "b", "c"],
            uri=None,
            given_label=None,
        )
    with pytest.raises(ValueError, match="repeated"), store.Session.begin() as s:
        api.upsert_samples(
            s, dataset.id, source_index=[1, 1], content_hash=["a", "b"], uri=None, given_label=None
        )


def test_register_model_is_idempotent_on_file_hash(store):
    fields = {
        "name": "m",
        "path": "/m.keras",
        "file_hash": "abc",
        "spec": {"size": 32},
        "class_names": ["a", "b"],
    }
    with store.Session.begin() as session:
        first = api.register_model(session, **fields)
    with store.Session.begin() as session:
        assert api.register_model(session, **fields | {"path": "/copy.keras"}).id == first.id
    with pytest.raises(StoreError, match="registered with class names"), store.Session.begin() as s:
        api.register_model(s, **fields | {"class_names": ["b", "a"]})


# --------------------------------------------------------------------------- runs, scores, errors


def test_runs_lifecycle(store, seeded):
    with store.Session.begin() as session:
        run = api.require_run(session, "run-1")
        assert (run.status, run.finished_at, run.params) == ("running", None, {"top_k": 6})
        assert run.created_at.tzinfo is not None
        assert api.get_run(session, "missing") is None
        api.create_run(
            session,
            name="run-2",
            dataset_id=run.dataset_id,
            model_version_id=run.model_version_id,
            params={},
            embeddings_path="/e.npy",
        )
        assert [r.name for r in api.list_runs(session)] == ["run-1", "run-2"]
    with (
        pytest.raises(StoreError, match=r"no run named 'nope'; runs: run-1, run-2"),
        store.Session.begin() as session,
    ):
        api.require_run(session, "nope")
    with pytest.raises(StoreError, match="already exists"), store.Session.begin() as session:
        api.create_run(
            session,
            name="run-1",
            dataset_id=run.dataset_id,
            model_version_id=run.model_version_id,
            params={},
        )
    with pytest.raises(StoreError, match="no dataset with id 999"), store.Session.begin() as s:
        api.create_run(s, name="run-3", dataset_id=999, model_version_id=1, params={})
    with store.Session.begin() as session:
        done = api.set_run_status(
            session, seeded.run_id, "done", n_total=12, n_scored=11, n_errors=np.int64(1)
        )
        assert (done.status, done.n_total, done.n_scored, done.n_errors) == ("done", 12, 11, 1)
        assert done.finished_at is not None
    with pytest.raises(ValueError, match="run status must be one of"), store.Session.begin() as s:
        api.set_run_status(s, seeded.run_id, "paused")


def test_model_version_is_the_model_a_run_was_mined_with(store, seeded):
    with store.Session.begin() as session:
        other = api.register_model(
            session, name="m2", path="/models/m2.keras", file_hash="hash-other", spec={"size": [8, 8]},
            class_names=["b", "a"],
        )
        first = api.require_run(session, seeded.run_name)
        second = api.create_run(
            session, name="run-2", dataset_id=seeded.dataset_id, model_version_id=other.id, params={}
        )
        version = api.model_version(session, first)
        assert (version.id, version.path, version.spec) == (
            first.model_version_id,
            "/models/m.keras",
            {"size": [32, 32]},
        )
        assert list(version.class_names) == list(CLASSES)
        assert api.model_version(session, second) is other
    with store.snapshot() as session:  # read-only work reaches it too
        assert api.model_version(session, api.require_run(session, "run-2")).class_names == ["b", "a"]


def test_scores_are_idempotent_and_resumable(store, seeded):
    with store.Session.begin() as session:
        assert api.scored_sample_ids(session, seeded.run_id) == set(seeded.sample_ids)
        extra = api.upsert_samples(
            session,
            seeded.dataset_id,
            source_index=[100],
            content_hash=["x"],
            uri=None,
            given_label=["cat"],
        )[0]
        row = {
            "sample_id": extra,
            "predicted_label": np.str_("dog"),
            "confidence": np.float32(0.25),
            "margin": 0.5,
            "entropy": 1.0,
            "hardness_score": 0.125,
            "label_quality_score": np.float64(0.5),
        }
        api.add_scores(session, seeded.run_id, [row])
        api.add_scores(session, seeded.run_id, [row | {"confidence": 0.99}])
        stored = session.get(Score, (seeded.run_id, extra))
        assert (stored.confidence, stored.predicted_label, stored.loss) == (0.25, "dog", None)
        assert extra in api.scored_sample_ids(session, seeded.run_id)
    with pytest.raises(ValueError, match="lacks entropy"), store.Session.begin() as session:
        api.add_scores(session, seeded.run_id, [{k: v for k, v in row.items() if k != "entropy"}])
    with pytest.raises(ValueError, match="unknown keys colour"), store.Session.begin() as session:
        api.add_scores(session, seeded.run_id, [row | {"colour": 1}])
    with pytest.raises(ValueError, match="NaN"), store.Session.begin() as session:
        api.add_scores(session, seeded.run_id, [row | {"margin": math.nan}])


def test_score_columns_streamed_then_completed(store, seeded):
    """Mining streams scores without label quality, then fills it in for the whole pool."""
    with store.Session.begin() as session:
        ids = api.upsert_samples(session, seeded.dataset_id, source_index=[200, 201, 202],
                                 content_hash=["a", "b", "c"], uri=None, given_label=["cat", None, "dog"])
        before = api.count_scores(session, seeded.run_id)
        api.add_score_columns(
            session, seeded.run_id, sample_id=ids, predicted_label=["cat", "dog", "dog"],
            confidence=[0.9, 0.6, 0.5], margin=[0.8, 0.2, 0.1], entropy=[0.1, 0.5, 0.6],
            hardness_score=[0.9, 0.6, 0.4], label_quality_score=[np.nan, np.nan, np.nan],
        )
        assert api.count_scores(session, seeded.run_id) == before + 3
        api.update_score_column(session, seeded.run_id, "label_quality_score",
                                 sample_id=[ids[0], ids[2]], values=[0.75, np.nan])
        stored = [session.get(Score, (seeded.run_id, i)).label_quality_score for i in ids]
        assert stored == [0.75, None, None]
        other = session.get(Score, (seeded.run_id, seeded.sample_ids[0])).label_quality_score
    with store.Session.begin() as session:  # other rows and other runs are untouched
        assert session.get(Score, (seeded.run_id, seeded.sample_ids[0])).label_quality_score == other
    with pytest.raises(ValueError, match="'confidence' is not one of"), store.Session.begin() as session:
        api.update_score_column(session, seeded.run_id, "confidence", sample_id=ids, values=[1, 1, 1])
    with pytest.raises(ValueError, match=r"values has shape \(2,\), expected \(3,\)"), \
            store.Session.begin() as session:
        api.update_score_column(session, seeded.run_id, "loss", sample_id=ids, values=[1, 1])


def test_errors_are_idempotent(store, seeded):
    with store.Session.begin() as session:
        api.add_errors(
            session,
            seeded.run_id,
            [
                {"source_index": 7, "reason": "truncated PNG"},
                {"source_index": 8, "uri": "/x", "reason": "gone"},
            ],
        )
        api.add_errors(session, seeded.run_id, [{"source_index": 7, "reason": "again"}])
        from hardcase.store.schema import RunError

        reasons = session.scalars(select(RunError.reason).order_by(RunError.source_index)).all()
        assert reasons == ["truncated PNG", "gone"]


# --------------------------------------------------------------------------- candidates


def test_add_and_delete_candidates(store, seeded):
    with store.Session.begin() as session:
        row = {
            "sample_id": seeded.sample_ids[-1],
            "rank": 50,
            "class_name": "cat",
            "hardness_score": 0.1,
            "image_png": TINY_PNG,
        }
        (new_id,) = api.add_candidates(session, seeded.run_id, [row])
        assert new_id not in seeded.candidate_ids
        assert api.add_candidates(session, seeded.run_id, []) == []
    with (
        pytest.raises(StoreError, match="already has a candidate at rank 50"),
        store.Session.begin() as session,
    ):
        api.add_candidates(session, seeded.run_id, [row | {"sample_id": seeded.sample_ids[-2]}])
    with (
        pytest.raises(ValueError, match="suggested_cause must be one of"),
        store.Session.begin() as session,
    ):
        api.add_candidates(session, seeded.run_id, [row | {"rank": 51, "suggested_cause": "x"}])
    with pytest.raises(ValueError, match="not PNG data"), store.Session.begin() as session:
        api.add_candidates(session, seeded.run_id, [row | {"rank": 51, "image_png": b"raw"}])
    with pytest.raises(ValueError, match="repeat"), store.Session.begin() as session:
        api.add_candidates(session, seeded.run_id, [row | {"rank": 51}, row | {"rank": 52}])

    next_for(store, seeded.run_id, "ana")  # a lease does not block deleting
    with store.Session.begin() as session:
        assert api.delete_candidates(session, seeded.run_id) == 7
        assert session.scalar(select(func.count(Lease.candidate_id))) == 0
    seeded2 = seed_run(store, name="run-2")
    review(store, seeded2.candidate_ids[0], "ana", "rare", seen_version=0)
    with (
        pytest.raises(StoreError, match="has 1 reviews; its candidates cannot be deleted"),
        store.Session.begin() as session,
    ):
        api.delete_candidates(session, seeded2.run_id)
    with store.Session.begin() as session:
        assert api.review_progress(session, seeded2.run_id) == (6, 1)


def test_get_candidate(store, seeded):
    candidate = view(store, seeded.candidate_ids[1])
    assert candidate.rank == 2 and candidate.class_name == "dog"
    assert (candidate.source_index, candidate.given_label, candidate.predicted_label) == (
        1,
        "dog",
        "bird",
    )
    assert candidate.uri == "/data/ds/1.png" and candidate.image_png == TINY_PNG
    assert candidate.suggested_cause == "rare" and candidate.evidence == {"neighbours": [1, 2]}
    assert (candidate.version, candidate.decision, candidate.reviewers) == (0, None, ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        candidate.rank = 3  # type: ignore[misc]
    with pytest.raises(StoreError, match="no candidate with id 4242"):
        view(store, 4242)


# --------------------------------------------------------------------------- review queue


def test_next_candidate_leases(store, seeded):
    run_id, ids = seeded.run_id, seeded.candidate_ids
    first = next_for(store, run_id, "ana", now=T0)
    assert first.id == ids[0]
    assert next_for(store, run_id, "ana", now=T0).id == ids[0]  # own lease is renewed
    assert next_for(store, run_id, "bob", now=T0).id == ids[1]  # ana's lease is respected
    # lease expired (600 s): carol may take ana's candidate
    assert next_for(store, run_id, "carol", now=T0 + dt.timedelta(seconds=601)).id == ids[0]
    with store.Session.begin() as session:
        leases = dict(session.execute(select(Lease.candidate_id, Lease.reviewer)).all())
        assert leases == {ids[0]: "carol", ids[1]: "bob"}
        expires = session.get(Lease, ids[1]).expires_at
        assert expires == T0 + dt.timedelta(seconds=600)
    # moving on releases the reviewer's previous lease
    assert next_for(store, run_id, "bob", after_rank=2, now=T0).id == ids[2]
    assert next_for(store, run_id, "dan", now=T0).id == ids[1]
    with store.Session.begin() as session:
        assert api.release_lease(session, ids[1], "dan") is True
        assert api.release_lease(session, ids[1], "dan") is False
    assert next_for(store, run_id, "eve", lease_seconds=5, now=T0).id == ids[1]
    assert next_for(store, run_id, "fay", now=T0 + dt.timedelta(seconds=6)).id == ids[1]


def test_next_candidate_filters(store, seeded):
    run_id, ids = seeded.run_id, seeded.candidate_ids
    assert next_for(store, run_id, "ana", class_name="bird").id == ids[2]
    assert next_for(store, run_id, "ana", suggested_cause="mislabel").id == ids[3]
    assert next_for(store, run_id, "ana", class_name="cat", after_rank=1).id == ids[3]
    assert next_for(store, run_id, "ana", class_name="zebra") is None
    assert next_for(store, run_id, "ana", status="reviewed") is None
    review(store, ids[0], "ana", "augment", seen_version=0)
    assert next_for(store, run_id, "ana", status="reviewed").id == ids[0]
    assert next_for(store, run_id, "ana").id == ids[1]
    assert next_for(store, run_id, "ana", status="all").id == ids[0]
    assert next_for(store, run_id, "ana", after_rank=6) is None
    for bad in (
        {"status": "done"},
        {"suggested_cause": "boredom"},
        {"lease_seconds": 0},
        {"now": dt.datetime(2030, 1, 1)},
    ):
        with pytest.raises(ValueError), store.Session.begin() as session:
            api.next_candidate(session, run_id, reviewer="ana", **bad)
    for reviewer in range(1, 6):  # everyone else takes one; nothing left for the last
        next_for(store, run_id, f"r{reviewer}")
    assert next_for(store, run_id, "late") is None


# --------------------------------------------------------------------------- reviews


def test_submit_review_flags_conflicts_and_keeps_everything(store, seeded):
    cid = seeded.candidate_ids[0]
    seen = next_for(store, seeded.run_id, "ana").version
    assert seen == 0
    first = review(
        store,
        cid,
        "ana",
        "mislabel",
        new_label="dog",
        seen_version=seen,
        note="ears",
        transform={"rotate": 15},
    )
    assert (first.version, first.conflict, first.other_reviews) == (1, False, ())
    with store.Session.begin() as session:
        assert session.get(Lease, cid) is None  # submitting released ana's lease
    second = review(store, cid, "bob", "rare", seen_version=0)  # bob saw version 0: conflict
    assert (second.version, second.conflict) == (2, True)
    assert [(o.reviewer, o.cause, o.new_label) for o in second.other_reviews] == [
        ("ana", "mislabel", "dog")
    ]
    assert isinstance(second.other_reviews[0].created_at, dt.datetime)
    third = review(store, cid, "carol", "rare", seen_version=2)
    assert (third.version, third.conflict) == (3, False)

    candidate = view(store, cid)
    assert (candidate.version, candidate.decision, candidate.decided_label) == (3, "rare", None)
    assert candidate.reviewers == ("ana", "bob", "carol")
    with store.Session.begin() as session:
        history = api.reviews_for(session, cid)
        assert [(r.reviewer, r.seen_version, r.version, r.conflict) for r in history] == [
            ("ana", 0, 1, False),
            ("bob", 0, 2, True),
            ("carol", 2, 3, False),
        ]
        assert history[0].transform == {"rotate": 15} and history[0].note == "ears"
        assert history[1].note == "" and history[1].transform is None


def test_submit_review_validates_before_touching_the_database(store, seeded):
    cid = seeded.candidate_ids[0]
    bad_calls = [
        ({"cause": "boredom"}, "cause must be one of"),
        ({"cause": "mislabel"}, "needs new_label"),
        ({"cause": "rare", "reviewer": ""}, "reviewer"),
        ({"cause": "rare", "seen_version": -1}, "seen_version"),
        ({"cause": "rare", "seen_version": "0"}, "seen_version"),
    ]
    for arguments, message in bad_calls:
        call = {"reviewer": "ana", "seen_version": 0} | arguments
        with pytest.raises(ValueError, match=message), store.Session.begin() as session:
            api.submit_review(session, cid, **call)
    with pytest.raises(StoreError, match="no candidate with id 999"), store.Session.begin() as s:
        api.submit_review(s, 999, reviewer="ana", cause="rare", seen_version=0)
    with store.Session.begin() as session:
        assert session.scalar(select(func.count(Review.id))) == 0


def test_undo_appends_a_retraction(store, seeded):
    cid = seeded.candidate_ids[0]
    review(store, cid, "ana", "augment", seen_version=0)
    review(store, cid, "bob", "mislabel", new_label="cat", seen_version=1)
    with store.Session.begin() as session:
        undone = api.undo_last_review(session, cid, reviewer="bob")
        assert (undone.version, undone.conflict) == (3, False)
        assert [o.reviewer for o in undone.other_reviews] == ["ana"]
    candidate = view(store, cid)
    assert (candidate.decision, candidate.reviewers, candidate.version) == ("augment", ("ana",), 3)
    with store.Session.begin() as session:
        api.undo_last_review(session, cid, reviewer="ana")
        assert session.get(Candidate, cid).decision is None
        history = api.reviews_for(session, cid)
        assert [(r.reviewer, r.cause, r.retracts_review_id) for r in history] == [
            ("ana", "augment", None),
            ("bob", "mislabel", None),
            ("bob", None, history[1].id),
            ("ana", None, history[0].id),
        ]
    assert view(store, cid).decision is None
    assert next_for(store, seeded.run_id, "zoe").id == cid  # back in the unreviewed queue
    with (
        pytest.raises(StoreError, match="'ana' has no review of candidate"),
        store.Session.begin() as session,
    ):
        api.undo_last_review(session, cid, reviewer="ana")


def test_progress_and_triage_counts(store, seeded):
    ids = seeded.candidate_ids
    with store.Session.begin() as session:
        assert api.review_progress(session, seeded.run_id) == (6, 0)
        assert api.triage_counts(session, seeded.run_id) == {
            ("cat", None): 2,
            ("dog", None): 2,
            ("bird", None): 2,
        }
    review(store, ids[0], "ana", "augment", seen_version=0)
    review(store, ids[0], "bob", "rare", seen_version=1)  # latest decision counts
    review(store, ids[1], "ana", "skip", seen_version=0)
    review(store, ids[3], "ana", "not_a_failure", seen_version=0)
    review(store, ids[2], "ana", "mislabel", new_label="cat", seen_version=0)
    with store.Session.begin() as session:
        api.undo_last_review(session, ids[2], reviewer="ana")
        assert api.review_progress(session, seeded.run_id) == (6, 3)
        assert api.triage_counts(session, seeded.run_id) == {
            ("cat", "rare"): 1,
            ("cat", "not_a_failure"): 1,
            ("dog", "skip"): 1,
            ("dog", None): 1,
            ("bird", None): 2,
        }
        # the cached decision equals the one derived from the history
        for cid in ids:
            standing = api.effective_reviews(api.reviews_for(session, cid))
            derived = standing[-1].cause if standing else None
            assert session.get(Candidate, cid).decision == derived


def test_users(store):
    with store.Session.begin() as session:
        api.add_user(session, name="lee", role="lead", password_hash="pbkdf2$x")
        api.add_user(session, name="ann", role="annotator", password_hash="pbkdf2$y")
    with store.Session.begin() as session:
        assert api.get_user(session, "lee").role == "lead"
        assert api.get_user(session, "nobody") is None
        assert [u.name for u in api.list_users(session)] == ["ann", "lee"]
    with pytest.raises(StoreError, match="already exists"), store.Session.begin() as session:
        api.add_user(session, name="lee", role="lead", password_hash="x")
    with pytest.raises(ValueError, match="role must be one of"), store.Session.begin() as session:
        api.add_user(session, name="max", role="admin", password_hash="x")


# --------------------------------------------------------------------------- exports


def reviewed(store, seeded):
    ids = seeded.candidate_ids
    review(
        store, ids[0], "ana", "mislabel", new_label="dog", seen_version=0, transform={"flip": True}
    )
    review(store, ids[0], "bob", "mislabel", new_label="bird", seen_version=0)  # conflict
    review(store, ids[0], "carol", "rare", seen_version=2)
    review(store, ids[0], "dan", "skip", seen_version=3)
    review(store, ids[1], "ana", "skip", seen_version=0)
    review(store, ids[2], "ana", "augment", seen_version=0, transform={"blur": 3})
    review(store, ids[2], "bob", "imbalance", seen_version=1)
    with store.Session.begin() as session:
        api.undo_last_review(session, ids[2], reviewer="bob")


def test_export_contents(store, seeded):
    reviewed(store, seeded)
    columns, scores = export_rows(store, "run-1", "scores")
    assert columns == SCORE_COLUMNS and len(scores) == 12
    assert [row[1] for row in scores] == list(range(12))

    columns, candidates = export_rows(store, "run-1", "candidates")
    as_dicts = [dict(zip(columns, row)) for row in candidates]
    assert columns == CANDIDATE_COLUMNS and [d["rank"] for d in as_dicts] == [1, 2, 3, 4, 5, 6]
    assert [(d["n_reviews"], d["final_cause"], d["final_label"]) for d in as_dicts[:4]] == [
        (4, "rare", None),
        (1, None, None),
        (1, "augment", None),
        (0, None, None),
    ]

    columns, fixes = export_rows(store, "run-1", "fixes")
    assert columns == FIX_COLUMNS
    first, third = (dict(zip(columns, row)) for row in fixes)
    assert first["sample_id"] == seeded.sample_ids[0] and first["uri"] == "/data/ds/0.png"
    assert (first["final_cause"], first["n_reviews"], first["conflict"]) == ("rare", 4, True)
    assert first["reviewers"] == ["ana", "bob", "carol", "dan"]
    assert first["agreement"] == pytest.approx(1 / 3)
    assert first["transform"] is None and first["decided_at"].tzinfo is not None
    assert (third["final_cause"], third["transform"], third["agreement"]) == (
        "augment",
        {"blur": 3},
        1.0,
    )
    assert (third["n_reviews"], third["reviewers"], third["conflict"]) == (1, ["ana"], False)

    columns, reviews = export_rows(store, "run-1", "reviews")
    assert columns == REVIEW_COLUMNS and len(reviews) == 8
    assert dict(zip(columns, reviews[-1]))["cause"] is None  # the retraction

    with pytest.raises(StoreError, match="no run named 'nope'"):
        export_rows(store, "nope", "fixes")
    with pytest.raises(ValueError, match="export must be one of"):
        export_rows(store, "run-1", "everything")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_files_round_trip(store, seeded, tmp_path, fmt):
    reviewed(store, seeded)
    with store.Session.begin() as session:  # every export has rows (JSONL without rows has no columns)
        api.add_errors(session, seeded.run_id, [{"source_index": 12, "uri": "/data/ds/12.png", "reason": "truncated"}])
    for what in EXPORTS:
        columns, rows = export_rows(store, "run-1", what)
        path = write_rows(columns, rows, tmp_path / f"{what}.{fmt}")
        assert read_rows(path) == (columns, rows), what
        assert not list(tmp_path.glob("*.partial"))
    weird = [
        (
            1,
            0,
            None,
            'a,b "quoted"\nline',
            "é ü 日本",
            None,
            None,
            None,
            None,
            None,
            ["x"],
            0.1 + 0.2,
            False,
            dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        )
    ]
    columns = [c for c in FIX_COLUMNS if c != "transform"]
    path = write_rows(columns, weird, tmp_path / f"weird.{fmt}")
    assert read_rows(path) == (columns, weird)


def test_write_rows_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="format must be one of"):
        write_rows(["sample_id"], [(1,)], tmp_path / "x.xlsx")
    with pytest.raises(ValueError, match="unknown export columns: colour"):
        write_rows(["colour"], [("red",)], tmp_path / "x.csv")
    with pytest.raises(ValueError, match="row 0 has 2 values for 1 columns"):
        write_rows(["sample_id"], [(1, 2)], tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_snapshot_is_stable_read_only_and_does_not_block_writers(store, seeded):
    cid = seeded.candidate_ids[0]
    with store.snapshot() as reader:
        assert api.get_candidate(reader, cid).version == 0  # the first read fixes the snapshot
        began = time.monotonic()
        review(store, cid, "ana", "rare", seen_version=0)  # a writer commits meanwhile
        assert time.monotonic() - began < 5
        assert api.get_candidate(reader, cid).version == 0
        assert api.triage_counts(reader, seeded.run_id)[("cat", None)] == 2
    assert view(store, cid).version == 1
    with pytest.raises(DBAPIError), store.snapshot() as reader:
        api.add_user(reader, name="sneaky", role="lead", password_hash="x")
