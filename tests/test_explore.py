"""The run at a glance (issue 19): the candidate table and its states, filters and sorting, the
stored 2-D map, a lead's bulk decisions and adjudications undone as a batch, two model versions
side by side; service level on known ground truth, then the endpoints through gradio_client."""

from __future__ import annotations

import json

import numpy as np
import pytest
from apputil import demo_store, served_app
from sqlalchemy import func, select, update

from hardcase.review_app.workflows import explore
from hardcase.review_app.workflows.explore import ACCEPT_SUGGESTION, Filters
from hardcase.store import api
from hardcase.store.errors import StoreError
from hardcase.store.schema import Candidate, Review, ReviewBatch, Score


def _knn_accuracy(reference_xy, reference_y, query_xy, query_y, *, k=5, leave_one_out=False):
    from sklearn.neighbors import KNeighborsClassifier

    if leave_one_out:
        from sklearn.model_selection import cross_val_score

        return cross_val_score(KNeighborsClassifier(k), reference_xy, reference_y, cv=5).mean()
    return KNeighborsClassifier(k).fit(reference_xy, reference_y).score(query_xy, query_y)


# --------------------------------------------------------------------------- the projection


def test_tsne_map_keeps_digit_classes_apart_and_places_the_rest_by_neighbours():
    from sklearn.datasets import load_digits

    digits, target = load_digits(return_X_y=True)
    digits, target = digits[:900], target[:900]
    keep = np.arange(0, 900, 50)  # must be among the fitted rows
    xy, n_fitted = explore.project_embeddings(digits, method="tsne", max_fitted=300, keep=keep, seed=0)
    assert xy.shape == (900, 2) and n_fitted == 300 and np.isfinite(xy).all()
    pca_xy, n_pca = explore.project_embeddings(digits, method="pca")
    assert n_pca == 900
    # the ground truth is the digit: neighbours on the map share it far above chance (0.1), t-SNE
    # above PCA, the 600 rows placed by their neighbours included
    tsne_accuracy = _knn_accuracy(xy, target, None, None, leave_one_out=True)
    pca_accuracy = _knn_accuracy(pca_xy, target, None, None, leave_one_out=True)
    assert tsne_accuracy > 0.8 and pca_accuracy > 0.4 and tsne_accuracy > pca_accuracy + 0.2


def test_projection_refuses_bad_input():
    with pytest.raises(ValueError, match="method"):
        explore.project_embeddings(np.ones((5, 3)), method="umap")
    with pytest.raises(ValueError, match="not finite at row 2"):
        explore.project_embeddings(np.array([[1.0, 0], [0, 1], [np.nan, 0]]))
    with pytest.raises(ValueError, match="non-empty"):
        explore.project_embeddings(np.ones((0, 3)))


# --------------------------------------------------------------------------- a demo run


@pytest.fixture(scope="module")
def store(tmp_path_factory, demo_model_path):
    opened = demo_store(tmp_path_factory.mktemp("explore"), demo_model_path, per_class=3)
    yield opened
    opened.dispose()


def _candidates(store):
    with store.snapshot() as session:
        run = api.require_run(session, "demo")
        return run.id, list(session.execute(select(Candidate.id, Candidate.class_name).where(
            Candidate.run_id == run.id).order_by(Candidate.rank)))


def _review(store, candidate_id, reviewer, cause, label=None):
    with store.Session.begin() as session:
        version = api.get_candidate(session, candidate_id).version
        api.submit_review(session, candidate_id, reviewer=reviewer, cause=cause, new_label=label,
                          seen_version=version)


def _suggest(store, run_id, suggestions):
    with store.Session.begin() as session:
        api.set_suggestions(session, run_id, [
            {"candidate_id": k, "suggested_cause": cause, "suggested_label": label,
             "suggestion_confidence": confidence, "evidence": {}}
            for k, (cause, label, confidence) in suggestions.items()])


@pytest.fixture(scope="module")
def reviewed(store):
    """Ten candidates with known suggestions and review histories (the rest untouched)."""
    run_id, rows = _candidates(store)
    ids = [row.id for row in rows]
    with store.Session.begin() as session:  # the demo's own suggestions cleared
        session.execute(update(Candidate).values(suggested_cause=None, suggested_label=None,
                                                 suggestion_confidence=None))
    _suggest(store, run_id, {
        ids[0]: ("mislabel", "1", 0.95), ids[1]: ("mislabel", "7", 0.85), ids[2]: ("mislabel", "2", 0.5),
        ids[3]: ("augment", None, 0.9), ids[4]: ("unclear", None, 0.99), ids[5]: ("rare", None, 0.3),
    })
    _review(store, ids[6], "ana", "rare")                 # decided
    _review(store, ids[7], "ana", "rare")                 # disputed
    _review(store, ids[7], "ben", "augment")
    _review(store, ids[8], "ana", "skip")                 # skipped
    _review(store, ids[9], "ana", "mislabel", "3")        # disputed on the label only
    _review(store, ids[9], "ben", "mislabel", "5")
    return ids


def test_the_table_shows_each_candidates_state(store, reviewed):
    ids = reviewed
    frame = explore.load_candidates(store, "demo").set_index("id")
    assert len(frame) == 30 and list(frame.columns[: len(explore.COLUMNS) - 1]) == list(explore.COLUMNS[1:])
    assert frame.loc[ids[6], "status"] == "decided" and frame.loc[ids[6], "decision"] == "rare"
    assert frame.loc[ids[7], "status"] == "disputed"
    assert frame.loc[ids[7], "judgments"] == "ana: rare; ben: augment"
    assert frame.loc[ids[8], "status"] == "skipped"
    assert frame.loc[ids[9], "status"] == "disputed" and frame.loc[ids[9], "decision"] == "mislabel→5"
    assert frame.loc[ids[0], "suggested"] == "mislabel→1" and frame.loc[ids[0], "confidence"] == 0.95
    assert (frame.drop(index=ids[6:10])["status"] == "unreviewed").all()
    with store.snapshot() as session:  # given/predicted labels and label quality come from the scores
        row = session.execute(select(Score.predicted_label, Score.label_quality_score).join(
            Candidate, (Candidate.sample_id == Score.sample_id) & (Candidate.run_id == Score.run_id)).where(
            Candidate.id == ids[0])).one()
    assert frame.loc[ids[0], "predicted"] == row.predicted_label
    assert frame.loc[ids[0], "label quality"] == pytest.approx(row.label_quality_score)


def test_filters_and_sorting(store, reviewed):
    ids = reviewed
    frame = explore.load_candidates(store, "demo")
    pick = lambda **kw: explore.filter_candidates(frame, Filters(**kw))["id"].tolist()  # noqa: E731
    assert pick(status="disputed") == sorted([ids[7], ids[9]], key=ids.index)
    assert set(pick(reviewer="ben")) == {ids[7], ids[9]}
    assert pick(suggested_cause="mislabel", min_confidence=0.8) == [ids[0], ids[1]]
    assert set(pick(min_confidence=0.9)) == {ids[0], ids[3], ids[4]}
    assert len(pick(suggested_cause="none")) == 30 - 6
    three = pick(class_name="3")
    assert three and set(frame.set_index("id").loc[three, "class"]) == {"3"}
    assert pick(class_name="3", status="disputed", reviewer="nobody") == []
    ordered = explore.sort_candidates(frame, "hardness", descending=True)["hardness"].to_numpy()
    assert (np.diff(ordered) <= 0).all()
    by_confidence = explore.sort_candidates(frame, "confidence")
    assert by_confidence["confidence"].head(6).tolist() == sorted([0.95, 0.85, 0.5, 0.9, 0.99, 0.3])
    assert by_confidence["confidence"].tail(24).isna().all()  # the ones without a suggestion last
    with pytest.raises(explore.ExploreInputError, match="sort by one of"):
        explore.sort_candidates(frame, "image")
    with pytest.raises(explore.ExploreInputError, match="status must be one of"):
        explore.filter_candidates(frame, Filters(status="done"))


def test_the_cached_table_follows_reviews_and_suggestions(store, reviewed):
    ids = reviewed
    tables = explore.CandidateTables()
    first = tables.get(store, "demo")
    assert tables.get(store, "demo") is first  # nothing changed: not read again
    _review(store, ids[12], "cai", "rare")
    assert tables.get(store, "demo").set_index("id").loc[ids[12], "judgments"] == "cai: rare"
    with store.Session.begin() as session:
        version = api.get_candidate(session, ids[12]).version
        api.undo_last_review(session, ids[12], reviewer="cai")
        assert api.get_candidate(session, ids[12]).version == version + 1
    assert tables.get(store, "demo").set_index("id").loc[ids[12], "status"] == "unreviewed"
    run_id, _ = _candidates(store)
    _suggest(store, run_id, {ids[13]: ("imbalance", None, 0.4)})
    assert tables.get(store, "demo").set_index("id").loc[ids[13], "suggested"] == "imbalance"


def test_accepting_confident_mislabel_suggestions_then_undoing_the_batch(store, reviewed):
    ids = reviewed
    with store.snapshot() as session:
        reviews_before = session.scalar(select(func.count()).select_from(Review))
    outcome = explore.bulk_decide(store, "demo", reviewer="lea", decision=ACCEPT_SUGGESTION,
                                  filters=Filters(suggested_cause="mislabel", min_confidence=0.8))
    assert outcome.decided == (ids[0], ids[1]) and outcome.skipped == ()
    assert "confidence ≥ 0.8" in outcome.description
    frame = explore.load_candidates(store, "demo").set_index("id")
    assert frame.loc[ids[0], "decision"] == "mislabel→1" and frame.loc[ids[1], "decision"] == "mislabel→7"
    assert frame.loc[ids[2], "status"] == "unreviewed"  # confidence 0.5: left alone
    with store.snapshot() as session:
        rows = session.execute(select(Review.candidate_id, Review.reviewer, Review.cause, Review.batch_id)
                               .where(Review.batch_id == outcome.batch_id).order_by(Review.id)).all()
    assert [tuple(row) for row in rows] == [(ids[0], "lea", "mislabel", outcome.batch_id),
                                            (ids[1], "lea", "mislabel", outcome.batch_id)]

    with pytest.raises(StoreError, match="only they can undo it"):
        explore.undo_batch(store, outcome.batch_id, reviewer="ana")
    undone = explore.undo_batch(store, outcome.batch_id, reviewer="lea")
    assert undone.candidate_ids == (ids[0], ids[1])
    frame = explore.load_candidates(store, "demo").set_index("id")
    assert (frame.loc[[ids[0], ids[1]], "status"] == "unreviewed").all()
    with store.snapshot() as session:  # append-only: two decisions and two retractions more
        assert session.scalar(select(func.count()).select_from(Review)) == reviews_before + 4
        undo = session.get(ReviewBatch, undone.batch_id)
        assert (undo.action, undo.undoes_batch_id, undo.reviewer) == ("undo", outcome.batch_id, "lea")
    with pytest.raises(StoreError, match="already undone"):
        explore.undo_batch(store, outcome.batch_id, reviewer="lea")
    with pytest.raises(StoreError, match="itself an undo"):
        explore.undo_batch(store, undone.batch_id, reviewer="lea")
    listed = {batch.id: batch for batch in explore.batches(store, "demo", reviewer="lea")}
    assert listed[outcome.batch_id].undone_by == undone.batch_id and listed[outcome.batch_id].n_reviews == 2


def test_a_batch_undo_brings_back_the_earlier_decision_and_spares_later_ones(store, reviewed):
    ids = reviewed
    outcome = explore.bulk_decide(store, "demo", reviewer="lea", decision="not_a_failure",
                                  candidate_ids=[ids[3], ids[6]])
    _review(store, ids[3], "ben", "augment")  # after the batch: not the batch's to take back
    explore.undo_batch(store, outcome.batch_id, reviewer="lea")
    frame = explore.load_candidates(store, "demo").set_index("id")
    assert frame.loc[ids[6], "decision"] == "rare" and frame.loc[ids[6], "judgments"] == "ana: rare"
    assert frame.loc[ids[3], "decision"] == "augment" and frame.loc[ids[3], "judgments"] == "ben: augment"


def test_accepting_suggestions_leaves_those_it_cannot_take(store, reviewed):
    ids = reviewed
    with pytest.raises(explore.ExploreInputError, match="nothing to decide.*unclear"):
        explore.bulk_decide(store, "demo", reviewer="lea", decision=ACCEPT_SUGGESTION, candidate_ids=[ids[4]])
    with pytest.raises(explore.ExploreInputError, match="needs the correct label"):
        explore.bulk_decide(store, "demo", reviewer="lea", decision="mislabel", candidate_ids=[ids[5]])
    with pytest.raises(explore.ExploreInputError, match="nothing selected"):
        explore.bulk_decide(store, "demo", reviewer="lea", decision="rare", candidate_ids=[])
    with pytest.raises(explore.ExploreInputError, match="not in this run"):
        explore.bulk_decide(store, "demo", reviewer="lea", decision="rare", candidate_ids=[10**6])
    with pytest.raises(explore.ExploreInputError, match="enter your name"):
        explore.bulk_decide(store, "demo", reviewer=" ", decision="rare", candidate_ids=[ids[5]])


def test_adjudication_settles_only_disputed_candidates(store, reviewed):
    ids = reviewed
    outcome = explore.bulk_decide(store, "demo", reviewer="lea", decision="mislabel", new_label="5",
                                  candidate_ids=[ids[9], ids[5]], adjudicate=True)
    assert outcome.decided == (ids[9],) and outcome.skipped == ((ids[5], "not disputed (unreviewed)"),)
    frame = explore.load_candidates(store, "demo").set_index("id")
    assert frame.loc[ids[9], "status"] == "adjudicated" and frame.loc[ids[9], "decision"] == "mislabel→5"
    assert frame.loc[ids[7], "status"] == "disputed"
    explore.undo_batch(store, outcome.batch_id, reviewer="lea")
    assert explore.load_candidates(store, "demo").set_index("id").loc[ids[9], "status"] == "disputed"


def test_the_stored_map_places_every_scored_sample(store):
    info = explore.compute_and_store_projection(store, "demo", method="pca")
    with store.snapshot() as session:
        run = api.require_run(session, "demo")
        n_scored = api.count_scores(session, run.id)
        points = api.map_points(session, run.id)
        embeddings_path = run.embeddings_path
    assert info == explore.ProjectionInfo("pca", n_scored, n_scored) and len(points.sample_id) == n_scored
    # ground truth: the same PCA of the stored embeddings, row for row
    from hardcase.store.schema import Sample

    with store.snapshot() as session:
        order = dict(session.execute(select(Sample.id, Sample.source_index)).all())
    stored = np.load(embeddings_path)[[order[int(s)] for s in points.sample_id]]
    expected, _ = explore.project_embeddings(stored, method="pca")
    np.testing.assert_allclose(points.xy, expected, rtol=1e-4, atol=1e-4)
    frame = explore.load_candidates(store, "demo")
    run_map = explore.load_map(store, "demo", frame, max_points=200)
    assert run_map.method == "pca" and len(run_map.xy) == 200 and len(run_map.candidate_id) == len(frame)
    by_sample = dict(zip(points.sample_id.tolist(), points.xy.tolist()))
    first = frame.iloc[0]
    np.testing.assert_allclose(run_map.candidate_xy[0], by_sample[int(first["sample_id"])])


def test_score_distributions_mark_the_candidate_cut(store):
    frame = explore.load_candidates(store, "demo")
    distributions = explore.score_distributions(store, "demo", frame)
    with store.snapshot() as session:
        n_scored = api.count_scores(session, api.require_run(session, "demo").id)
    assert len(distributions.hardness) == n_scored
    assert distributions.hardness_cut == pytest.approx(frame["hardness"].max())
    assert (distributions.candidate_hardness <= distributions.hardness_cut).all()


def test_two_models_side_by_side(store, tmp_path, mnist_small, demo_model_path):
    from hardcase.models.classifier import load_classifier
    from hardcase.models.demo import train_demo_model
    from hardcase.review_app.workflows.images import decode_png
    from hardcase.review_app.workflows.retrain import record_report

    train_x, train_y, _, _ = mnist_small
    weaker = tmp_path / "weaker.keras"
    train_demo_model(weaker, images=train_x, labels=train_y, epochs=1, seed=1, progress=False)
    report = tmp_path / "weaker.report.json"
    report.write_text(json.dumps({"retrained_model": str(weaker)}))
    record_report(store, "demo", {"json": report})
    models = explore.run_models(store, "demo")
    assert [m.path for m in models] == [str(demo_model_path.resolve()), str(weaker)]
    loader = explore.ModelLoader(spec=explore.run_spec(store, "demo"))
    comparison = explore.compare_models(store, "demo", models[0], models[1], load=loader)
    # ground truth: each model's own prediction on each candidate image, against the final label
    frame = explore.load_candidates(store, "demo")
    truth = explore.final_labels(frame)
    with store.snapshot() as session:
        images = dict(session.execute(select(Candidate.id, Candidate.image_png)).all())
    batch = np.stack([decode_png(images[int(i)]) for i in frame["id"]])
    first = np.asarray(load_classifier(demo_model_path).class_names)[
        load_classifier(demo_model_path).predict_proba(batch).argmax(1)]
    second = np.asarray(loader(str(weaker)).class_names)[loader(str(weaker)).predict_proba(batch).argmax(1)]
    assert comparison.rows["first"].tolist() == first.tolist()
    assert comparison.rows["second"].tolist() == second.tolist()
    fixed = [int(i) for i, t, a, b in zip(frame["id"], truth, first, second) if t and a != t and b == t]
    broken = [int(i) for i, t, a, b in zip(frame["id"], truth, first, second) if t and a == t and b != t]
    assert comparison.ids("fixed") == fixed and comparison.ids("broken") == broken
    assert sum(comparison.counts.values()) == len(frame)
    with pytest.raises(explore.ExploreInputError, match="two different models"):
        explore.compare_models(store, "demo", models[0], models[0], load=loader)


# --------------------------------------------------------------------------- the endpoints


@pytest.fixture(scope="module")
def client(store, reviewed):
    from gradio_client import Client

    from hardcase.review_app.workflows.review import ReviewService

    with served_app(ReviewService(store)) as app:
        connected = Client(app.local_url, verbose=False)
        yield connected
        connected.close()


def test_table_endpoint_filters_and_sorts(client, reviewed):
    table, note = client.predict("demo", "any", "any", "disputed", "", 0, "rank", False, api_name="/explore_table")
    ids = [int(row[1]) for row in table["data"]]
    assert ids == [reviewed[7], reviewed[9]] and "2 of 30 candidates match status disputed" in note
    table, _ = client.predict("demo", "any", "any", "all", "", 0, "hardness", True, api_name="/explore_table")
    hardness = [row[6] for row in table["data"]]
    assert len(hardness) == 30 and hardness == sorted(hardness, reverse=True)
    _, note = client.predict("demo", "any", "any", "disputed", "nobody", 0, "rank", False, api_name="/explore_table")
    assert "No candidate of **demo** matches the filters (status disputed, judged by nobody)" in note
    assert "Clear filters" in note


def test_bulk_endpoint_decides_by_hand_and_its_batch_is_undone(client, store, reviewed):
    ids = reviewed
    picked = f"{ids[10]}, {ids[11]}"
    message, batch_id = client.predict("demo", "ticked rows", picked, "imbalance", None, "any", "any", "all", "",
                                       0, "lea", api_name="/bulk_decide")
    assert f"Batch **#{int(batch_id)}**" in message and "2 candidates" in message
    frame = explore.load_candidates(store, "demo").set_index("id")
    assert (frame.loc[[ids[10], ids[11]], "judgments"] == "lea: imbalance").all()
    message = client.predict(int(batch_id), "lea", api_name="/undo_batch")
    assert "2 decisions retracted" in message
    assert (explore.load_candidates(store, "demo").set_index("id").loc[[ids[10], ids[11]], "status"]
            == "unreviewed").all()


def test_overview_and_map_endpoints(client):
    summary, hardness, quality = client.predict("demo", api_name="/explore")
    assert "scored samples · 30 candidates" in summary and hardness and quality
    image, positions, note = client.predict("demo", "cause", api_name="/explore_map")
    assert image and "click one to open it" in note
    assert len(positions["ids"]) == len(positions["xy"]) == 30


def test_gallery_grids_one_per_class_and_the_overflow_shares_the_last():
    from hardcase.review_app.app.handlers.gallery import class_groups, grid_updates

    names = ["0", "0", "1", "2", "2", "2", "3"]
    assert class_groups(names) == [["0", 2], ["1", 1], ["2", 3], ["3", 1]]
    items = [(f"img{k}.png", f"#{k} · caption") for k in range(len(names))]
    updates = grid_updates(items, class_groups(names), 3, columns=2, row_height=100)
    headers, grids = updates[0::2], updates[1::2]
    assert [h["value"] for h in headers] == ["#### Class 0 · 2 candidates", "#### Class 1 · 1 candidate",
                                             "#### Class 2 to 3 (2 classes) · 4 candidates"]
    assert [g["value"] for g in grids] == [items[:2], items[2:3], items[3:]]
    assert [(g["rows"], g["height"]) for g in grids] == [(1, 124), (1, 124), (2, 224)]
    hidden = grid_updates(items[:1], [["0", 1]], 3, columns=2, row_height=100)
    assert [u["visible"] for u in hidden] == [True, True, False, False, False, False]
