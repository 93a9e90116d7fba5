"""Review-tab handlers on a stub service: values the sliders can take."""

from __future__ import annotations

import pytest

from hardcase.miner.transform import Transform
from hardcase.review_app.app.handlers.review import Handlers, wrap_degrees


class _Service:
    def __init__(self, transform):
        self.transform = transform

    def suggested_transform(self, candidate_id):
        return self.transform


@pytest.mark.parametrize(("angle", "wrapped"), [(270.0, -90.0), (337.5, -22.5), (180.0, -180.0), (-180.0, -180.0),
                                                 (0.0, 0.0), (90.0, 90.0), (-190.0, 170.0), (720.0, 0.0)])
def test_angles_wrap_into_the_sliders_range(angle, wrapped):
    assert wrap_degrees(angle) == pytest.approx(wrapped)


def test_applying_a_suggested_tilt_toward_270_degrees_sets_sliders_in_range():
    handlers = Handlers(_Service(Transform(rotate=-30.0, perspective=0.2, direction=270.0, scale=1.1)))
    rotate, perspective, direction, scale, *_ = handlers.apply_suggestion(7)
    assert (rotate, perspective, direction, scale) == pytest.approx((-30.0, 0.2, -90.0, 1.1))
    assert -180 <= direction <= 180
    # the same tilt either way
    import numpy as np

    from hardcase.models.transforms import apply_transform

    image = np.random.default_rng(0).integers(0, 256, (28, 28, 1), dtype=np.uint8)
    np.testing.assert_array_equal(apply_transform(image, Transform(perspective=0.2, direction=direction)),
                                  apply_transform(image, Transform(perspective=0.2, direction=270.0)))


# --- no dead ends, through the served app (gradio_client) -------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory, demo_model_path):
    from apputil import demo_store, served_app
    from gradio_client import Client

    from hardcase.review_app.workflows.review import ReviewService

    store = demo_store(tmp_path_factory.mktemp("handlers"), demo_model_path, per_class=2)
    with served_app(ReviewService(store)) as app:
        client = Client(app.local_url, verbose=False)
        yield store, client
        client.close()
    store.dispose()


def _shown(outputs) -> dict:
    from hardcase.review_app.app.handlers.review import SHOWN

    names = [name for name in SHOWN if name != "clear_filters"]  # a button is no API output
    assert len(outputs) == len(names)
    return dict(zip(names, outputs))


def _next(client, reviewer, rank=-1, class_name="any", status="unreviewed", cause="any") -> dict:
    return _shown(client.predict("demo", reviewer, rank, class_name, status, cause, api_name="/next_candidate"))


def _decide(client, cause, shown, reviewer, new_label=None, direction=0):
    # decide_* inputs: run, candidate, relabel, note, rotate, perspective, direction, scale, seen version,
    # reviewer, rank, class / status / cause filters, shift x, shift y, stretch, shear
    return _shown(client.predict("demo", shown["candidate_id"], new_label, "", 0, 0, direction, 1,
                                 shown["seen_version"], reviewer, shown["rank"], "any", "unreviewed", "any",
                                 0, 0, 1, 0, api_name=f"/decide_{cause}"))


def _reviews(store, candidate_id):
    from hardcase.store import api

    with store.Session.begin() as session:
        return [(r.reviewer, r.cause, r.new_label) for r in api.reviews_for(session, candidate_id)]


def test_mistakes_are_named_at_their_field_and_nothing_is_saved(served):
    from gradio_client.exceptions import ValidationError

    store, client = served
    shown = _next(client, "vera")
    with pytest.raises(ValidationError, match=r"new_label: a mislabel decision needs the right class"):
        _decide(client, "mislabel", shown, "vera")
    with pytest.raises(ValidationError, match=r"reviewer: enter your name") as refused:
        _decide(client, "rare", shown, "  ")
    assert "new_label" not in str(refused.value)  # only the fields at fault
    with pytest.raises(ValidationError, match=r"direction: 270 is outside -180..180"):
        _decide(client, "augment", shown, "vera", direction=270)
    with pytest.raises(ValidationError, match=r"rotate: 200 is outside -180..180"):
        client.predict(shown["candidate_id"], 200, 0, 0, 1, False, api_name="/preview_saliency")
    assert _reviews(store, shown["candidate_id"]) == []
    # picking the label then deciding saves it and moves on
    after = _decide(client, "mislabel", shown, "vera", new_label="7")
    assert _reviews(store, shown["candidate_id"]) == [("vera", "mislabel", "7")]
    assert after["candidate_id"] != shown["candidate_id"] and "saved **mislabel**" in after["status"]


def test_undo_right_after_a_decision_takes_it_back_and_returns_there(served):
    store, client = served
    first = _next(client, "uma")
    second = _decide(client, "rare", first, "uma")
    third = _decide(client, "skip", second, "uma")
    assert third["candidate_id"] not in (first["candidate_id"], second["candidate_id"])
    # the page shows a third candidate; u takes back the skip of the second and shows it again
    undone = _shown(client.predict("demo", third["candidate_id"], "uma", api_name="/undo"))
    assert undone["candidate_id"] == second["candidate_id"] and "undid" in undone["status"]
    assert _reviews(store, second["candidate_id"])[-1][1] is None  # the retraction row
    again = _shown(client.predict("demo", undone["candidate_id"], "uma", api_name="/undo"))
    assert again["candidate_id"] == first["candidate_id"]
    # nothing left: the status line says so and every other output is left alone
    nothing = client.predict("demo", again["candidate_id"], "uma", api_name="/undo")
    assert "nothing to undo: uma has no standing decision" in nothing[-1]
    with pytest.raises(Exception, match="enter your name"):
        client.predict("demo", again["candidate_id"], "", api_name="/undo")


def test_progress_counts_decided_and_skipped_apart_and_an_empty_filter_can_be_cleared(served):
    store, client = served
    from hardcase.store import api

    with store.Session.begin() as session:
        run = api.require_run(session, "demo")
        counts = api.triage_counts(session, run.id)
    decided = sum(n for (_, d), n in counts.items() if d not in (None, "skip"))
    skipped = sum(n for (_, d), n in counts.items() if d == "skip")
    total = sum(counts.values())
    shown = _next(client, "pia")
    assert shown["progress"] == (f"**{decided} decided · {skipped} skipped** · {total - decided - skipped} of "
                                 f"{total} to go")
    after = _decide(client, "skip", shown, "pia")
    assert after["progress"].startswith(f"**{decided} decided · {skipped + 1} skipped**")

    # no candidate suggested as imbalance among those reviewed and of class 3: the empty page names both
    empty = _next(client, "pia", class_name="3", status="reviewed", cause="imbalance")
    if empty["candidate_id"] is not None:  # the demo's suggestions put one there: choose an empty one
        pytest.skip("the demo run has a reviewed imbalance candidate of class 3")
    assert empty["info"] == ("No candidate left to review here. Filters: class **3**, status **reviewed**, "
                             "suggested cause **imbalance**.")
    cleared = client.predict("demo", "pia", api_name="/clear_filters")
    assert tuple(cleared[:3]) == ("any", "unreviewed", "any")
    assert _shown(cleared[3:])["candidate_id"] is not None


def test_mislabel_suggestion_prefills_relabel_and_suggestions_read_plainly(served):
    store, client = served
    from hardcase.store import api

    with store.Session.begin() as session:
        run = api.require_run(session, "demo")
        view = api.next_candidate(session, run.id, reviewer="setup", status="unreviewed")
        api.release_lease(session, view.id, "setup")
        api.set_suggestions(session, run.id, [{
            "candidate_id": view.id, "suggested_cause": "mislabel", "suggested_label": "4",
            "suggestion_confidence": 0.9,
            "evidence": {"summary": "it looks like the '4's in training, not the '9's: the label '9' is probably wrong",
                         "text": "labelled '9' but the model says '4' at 0.97 (confident above 0.80)"},
        }])
    opened = _shown(client.predict(view.id, "demo", api_name="/open_candidate"))
    assert opened["new_label"]["value"] == "4"
    assert "Suggestion: **mislabel** → '4': It looks like the '4's in training, not the '9's" in opened["info"]
    assert "at 0.97" not in opened["info"] and "at 0.97" in opened["details"]  # numbers behind the toggle
    from hardcase.store.acceptance import acceptance_by_cause

    with store.snapshot() as session:
        record = acceptance_by_cause(session, view.run_id, exclude_candidate_id=view.id).get("mislabel")
    if record is None or not record.decided:
        assert "Confidence high (no earlier mislabel suggestion decided in this run yet)" in opened["info"]
    else:
        assert f"Reviewers confirmed {record.confirmed} of {record.decided} earlier mislabel" in opened["info"]
    # a mislabel decision keeps the pre-filled label; any other decision stores none
    decided = _decide(client, "rare", {**opened, "candidate_id": view.id}, "rho", new_label="4")
    assert _reviews(store, view.id) == [("rho", "rare", None)] and "saved **rare**" in decided["status"]


def test_saliency_method_is_named(served):
    _, client = served
    shown = _next(client, "sal")
    assert client.predict(shown["candidate_id"], False, api_name="/saliency_method") == ""
    words = client.predict(shown["candidate_id"], True, api_name="/saliency_method")
    assert words.startswith("Saliency: **HiResCAM on layer '")  # the demo CNN has convolutions


def test_each_mistake_is_one_line_in_the_server_log(served, caplog, capfd):
    from gradio_client.exceptions import ValidationError

    _, client = served
    shown = _next(client, "logan")
    capfd.readouterr()
    with caplog.at_level("WARNING", logger="hardcase.review_app.user_errors"):
        with pytest.raises(ValidationError):
            _decide(client, "mislabel", shown, "")  # two fields at fault, one slip
        client.predict("demo", shown["candidate_id"], "logan", api_name="/undo")  # nothing to undo
    lines = [r.getMessage() for r in caplog.records if r.name == "hardcase.review_app.user_errors"]
    assert lines == ["review: reviewer: enter your name: every decision records who made it; "
                     "new_label: a mislabel decision needs the right class: choose it here",
                     "review: nothing to undo: logan has no standing decision in run 'demo'"]
    assert "Traceback" not in capfd.readouterr().err


def test_a_suggestion_without_a_transform_warns_once_and_leaves_the_sliders():
    handlers = Handlers(_Service(None))
    with pytest.warns(UserWarning, match="this candidate's suggestion has no transform") as warned:
        untouched = handlers.apply_suggestion(7)
    assert len(warned) == 1 and all(value == {"__type__": "update"} for value in untouched) and len(untouched) == 8
