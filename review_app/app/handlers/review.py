"""Gradio event handlers: widget values in, widget values out.

Layout lives in ``review_app.tabs``; the work itself in :class:`review_app.service.ReviewService`.

A user's mistake never turns into an exception through every output (Gradio would put an error
badge on each of them): what can be checked from the inputs is checked by the event's validator
(:meth:`Handlers.validator`, shown by Gradio next to the field at fault, nothing else touched);
what only the store can tell (nothing to undo, no earlier candidate) comes back on the status
line with every other output left as it is (``gr.skip()``). Each is one line in the server log.
The ``gr.api`` endpoints answer API callers with a ``gr.Error``, which the app logs in one line
(:mod:`hardcase.review_app.app.errors`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import gradio as gr
import numpy as np

from hardcase.miner.protocols import UntrustedModelError
from hardcase.miner.transform import wrap_degrees
from hardcase.models.transforms import FIELDS, MAX_PERSPECTIVE, Transform
from hardcase.review_app.app.errors import log_user_mistake
from hardcase.review_app.app.handlers.access import reviewer_name, signed_in_user
from hardcase.review_app.workflows.recorded import NoModelError
from hardcase.review_app.workflows.review import Acceptance, ReviewInputError, ReviewService
from hardcase.store.errors import StoreError

#: The log of users' mistakes, one line each (``review_app.app.errors`` logs a ``gr.Error`` there too).

DECISION_LABELS = {
    "augment": "augment (a small transform fixes it)",
    "rare": "rare (valid, unlike training data)",
    "imbalance": "imbalance (class under-represented)",
    "mislabel": "mislabel (given label is wrong)",
    "not_a_failure": "not a failure",
    "skip": "skip",
}
DISPLAY_SIZE = 280
#: Slider values of the identity transform, in ``Transform`` field order (the sliders' order).
RESET_TRANSFORM = tuple(Transform().to_dict()[name] for name in FIELDS)
#: ``(minimum, maximum, step)`` of each transform slider, by ``Transform`` field: the tab builds the
#: sliders from it and the validators check values against it.
SLIDER_RANGES: dict[str, tuple[float, float, float]] = {
    "rotate": (-180, 180, 1),
    "perspective": (0, MAX_PERSPECTIVE, 0.01),
    "direction": (-180, 180, 5),
    "scale": (0.5, 2.0, 0.05),
    "shift_x": (-0.25, 0.25, 0.01),
    "shift_y": (-0.25, 0.25, 0.01),
    "aspect": (0.5, 2.0, 0.01),
    "shear": (-45, 45, 1),
}
assert tuple(SLIDER_RANGES) == FIELDS
#: What the review tab shows of a candidate, in the order ``Handlers._show`` returns it; the tab
#: lists its output components by these names (the transform sliders by ``Transform`` field).
#: New names go before ``progress``: API callers read the first ones by position, and the status
#: line stays last.
SHOWN = ("image", "info", "probabilities", "candidate_id", "seen_version", "rank", *FIELDS,
         "new_label", "note", "neighbours", "details", "clear_filters", "progress", "status")
ANY = "any"
"""The filter value that means no filter."""
UNREVIEWED = "unreviewed"
"""The status filter's default: the candidates nobody has decided or skipped."""
#: Suggestion strengths from these up read as medium, high (below: low), until reviewers have decided some.
CONFIDENCE_LEVELS = ((2 / 3, "high"), (1 / 3, "medium"), (0.0, "low"))


def upscale(image: np.ndarray, target: int = DISPLAY_SIZE) -> np.ndarray:
    """Nearest-neighbour upscaling so small images show crisp pixels; (H, W, C) -> (H*f, W*f, 3)."""
    factor = max(1, target // max(image.shape[:2]))
    big = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
    return np.repeat(big, 3, axis=2) if big.shape[-1] == 1 else big


def _slider_transform(rotate, perspective, direction, scale, shift_x=0.0, shift_y=0.0, aspect=1.0,
                      shear=0.0) -> Transform:
    """The slider values as a Transform (an empty field is the identity's value); TypeError/ValueError
    for a value that is no number or out of the transform's range."""
    return Transform(
        rotate=float(rotate or 0),
        perspective=float(perspective or 0),
        direction=float(direction or 0),
        scale=float(scale or 1),
        shift_x=float(shift_x or 0),
        shift_y=float(shift_y or 0),
        aspect=float(aspect or 1),
        shear=float(shear or 0),
    )


def transform_from_sliders(rotate, perspective, direction, scale, shift_x=0.0, shift_y=0.0, aspect=1.0,
                           shear=0.0) -> Transform:
    """The slider values as a Transform; a bad value is a ``gr.Error`` naming it."""
    try:
        return _slider_transform(rotate, perspective, direction, scale, shift_x, shift_y, aspect, shear)
    except (TypeError, ValueError) as exc:
        raise gr.Error(str(exc)) from None


def _user_mistake(message: str) -> str:
    """``message``, logged as the one server-log line of a user's mistake."""
    return log_user_mistake("review", message)


def _chosen(value) -> str | None:
    """A filter's value, None for no filter."""
    return None if value in (None, "", ANY) else str(value)


def _as_id(value) -> int | None:
    """A hidden id field's value as an int; None when nothing is shown (None or negative)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


# --- checks of the inputs, before an event replaces anything --------------------------------
def slider_problems(values: Mapping[str, object]) -> dict[str, str]:
    """The transform fields among ``values`` that are no number in their slider's range, with why."""
    problems = {}
    for name in FIELDS:
        if name not in values or values[name] is None:
            continue
        low, high, _ = SLIDER_RANGES[name]
        try:
            number = float(values[name])
        except (TypeError, ValueError):
            problems[name] = f"{values[name]!r} is not a number"
            continue
        if not low <= number <= high:
            problems[name] = f"{number:g} is outside {low:g}..{high:g}"
    return problems


def reviewer_problems(values: Mapping[str, object], username: str | None) -> dict[str, str]:
    """Missing run or reviewer name (a signed-in user needs no typed name)."""
    problems = {}
    if "run" in values and not values["run"]:
        problems["run"] = "choose a mining run first"
    if "reviewer" in values and not username:
        name = str(values["reviewer"] or "").strip()
        if not name:
            problems["reviewer"] = "enter your name: every decision records who made it"
        elif len(name) > 64:
            problems["reviewer"] = "names are at most 64 characters"
    return problems


def decision_problems(cause: str, values: Mapping[str, object], username: str | None) -> dict[str, str]:
    """What stops ``cause`` from being saved with these inputs, by field."""
    problems = reviewer_problems(values, username)
    if cause == "mislabel" and not values.get("new_label"):
        problems["new_label"] = "a mislabel decision needs the right class: choose it here"
    return {**problems, **slider_problems(values)}


# --- words for annotators -------------------------------------------------------------------
def confidence_level(strength: float) -> str:
    """``low``, ``medium`` or ``high`` for a suggestion strength in [0, 1] (:data:`CONFIDENCE_LEVELS`)."""
    return next(word for floor, word in CONFIDENCE_LEVELS if strength >= floor)


def confidence_words(cause: str, strength: float | None, acceptance: Acceptance | None) -> str:
    """How far to trust a suggestion: reviewers' record with this cause once there is one
    (``reviewers confirmed 12 of 15 earlier augment suggestions``), the miner's own strength
    as low / medium / high before; empty for ``unclear`` (nothing to confirm)."""
    if cause == "unclear":
        return ""
    if acceptance is not None and acceptance.decided:
        plural = "s" if acceptance.decided != 1 else ""
        return (f"reviewers confirmed {acceptance.confirmed} of {acceptance.decided} earlier "
                f"{cause} suggestion{plural} in this run")
    if strength is None:
        return ""
    return f"confidence {confidence_level(strength)} (no earlier {cause} suggestion decided in this run yet)"


def plain_sentence(evidence: Mapping | None) -> str:
    """The suggestion in one sentence a reviewer can check by looking (the miner's ``summary``;
    the numbers' sentence for runs suggested before summaries existed), capitalised."""
    evidence = evidence or {}
    sentence = str(evidence.get("summary") or evidence.get("text") or "").strip()
    return sentence[:1].upper() + sentence[1:] if sentence else ""


def describe(view, acceptance: Acceptance | None = None) -> str:
    """The candidate and its suggestion in plain words (the numbers are in :func:`details`)."""
    lines = [f"**Candidate #{view.id}** · rank {view.rank + 1} · class group **{view.class_name}**"]
    predicted = f"the model says **{view.predicted_label}**"
    if view.confidence is not None:
        predicted += f" ({view.confidence:.0%} sure)"
    lines.append(f"Labelled **{view.given_label or 'unknown'}**; {predicted}")
    if view.suggested_cause:
        suggestion = f"Suggestion: **{view.suggested_cause}**"
        if view.suggested_label:
            suggestion += f" → '{view.suggested_label}'"
        sentence = plain_sentence(view.evidence)
        lines.append(suggestion + (f": {sentence}" if sentence else ""))
        trust = confidence_words(view.suggested_cause, view.suggestion_confidence, acceptance)
        if trust:
            lines.append(trust[:1].upper() + trust[1:])
    if view.decision:
        lines.append(f"Current decision: **{view.decision}**" + (f" → '{view.decided_label}'" if view.decided_label else "")
                     + f" by {', '.join(view.reviewers)}")
    return "  \n".join(lines)


def details(view) -> str:
    """The numbers behind the candidate and its suggestion, for the details toggle."""
    lines = [f"- hardness score {view.hardness_score:.3f} (0 = hardest)"]
    if view.confidence is not None:
        lines.append(f"- model confidence {view.confidence:.3f}" + (f", margin {view.margin:.3f}" if view.margin is not None else ""))
    if view.suggestion_confidence is not None:
        lines.append(f"- suggestion strength {view.suggestion_confidence:.2f} ({confidence_level(view.suggestion_confidence)};"
                     " low under 0.33, high from 0.67)")
    text = (view.evidence or {}).get("text")
    if text:
        lines.append(f"- evidence: {text}")
    return "\n".join(lines)


def _active_filters(class_filter, status_filter, cause_filter) -> list[str]:
    active = []
    if _chosen(class_filter):
        active.append(f"class **{class_filter}**")
    if status_filter not in (None, "", UNREVIEWED):
        active.append(f"status **{status_filter}**")
    if _chosen(cause_filter):
        active.append(f"suggested cause **{cause_filter}**")
    return active


@dataclass
class Handlers:
    """Bound handlers for one :class:`ReviewService`."""

    service: ReviewService

    def ping(self) -> str:
        """Health check, and the no-op baseline of the latency benchmark."""
        return "ok"

    def validator(self, names: Sequence[str], check: Callable[[Mapping[str, object], str | None], dict[str, str]]):
        """An event validator for inputs named ``names`` (in the event's input order): ``check`` gets
        the values by name and the signed-in user; each problem it names is shown at that field,
        and the event does not run."""

        def validate(*values):
            # Gradio passes the request positionally, after the inputs (the signature below)
            request = values[len(names)] if len(values) > len(names) else None
            problems = check(dict(zip(names, values)), signed_in_user(request))
            if problems:
                _user_mistake("; ".join(f"{name}: {message}" for name, message in problems.items()))
            return [gr.validate(name not in problems, problems.get(name, "")) for name in names]

        keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
        validate.__annotations__ = {"request": gr.Request}  # Gradio finds the request by its type hint
        validate.__signature__ = inspect.Signature(
            [inspect.Parameter(name, keyword) for name in names]
            + [inspect.Parameter("request", keyword, default=None, annotation=gr.Request)]
        )
        return validate

    # --- candidates ---------------------------------------------------------------
    def _status_only(self, message: str):
        """Every output left as it is but the status line, which says ``message``."""
        values = {name: gr.skip() for name in SHOWN}
        values["status"] = f"⚠ {_user_mistake(message)}"
        return tuple(values[name] for name in SHOWN)

    def _show(self, view, run_name: str, status: str = "", filters: tuple = (ANY, UNREVIEWED, ANY)):
        progress = self.service.review_progress(run_name)
        classes = self.service.class_names(run_name)
        values = {**dict(zip(FIELDS, RESET_TRANSFORM)), "note": "", "status": status,
                  "progress": f"**{progress.decided} decided · {progress.skipped} skipped** · "
                              f"{progress.undecided} of {progress.total} to go"}
        if view is None:
            active = _active_filters(*filters)
            empty = "No candidate left to review here."
            if active:
                empty += f" Filters: {', '.join(active)}."
            elif progress.skipped:
                empty += f" {progress.skipped} skipped: choose Status 'reviewed' to come back to them."
            values.update(image=None, info=empty, probabilities=None, candidate_id=None, seen_version=0, rank=-1,
                          neighbours=[], details="", new_label=gr.update(choices=classes, value=None),
                          clear_filters=gr.update(visible=bool(active)))
        else:
            prediction = self.service.predict_transformed(view.id, Transform())
            acceptance = self.service.acceptance(view.run_id, exclude_candidate_id=view.id)
            # a mislabel suggestion comes with its label chosen; any other leaves the field empty
            suggested = view.suggested_label if view.suggested_cause == "mislabel" else None
            values.update(
                image=upscale(prediction.image), info=describe(view, acceptance.get(view.suggested_cause)),
                probabilities=prediction.probabilities, candidate_id=view.id, seen_version=view.version,
                rank=view.rank, details=details(view), clear_filters=gr.update(visible=False),
                new_label=gr.update(choices=classes, value=suggested if suggested in classes else None),
                neighbours=[(upscale(image, 112), caption) for image, caption in self.service.neighbour_images(view.id)],
            )
        return tuple(values[name] for name in SHOWN)

    def next_candidate(self, run_name, reviewer_typed, rank, class_filter, status_filter, cause_filter=ANY,
                       request: gr.Request = None):
        """Lease and show the next candidate after ``rank`` matching the filters."""
        reviewer = reviewer_name(request, reviewer_typed)
        if not run_name:
            return self._status_only("choose a mining run first")
        filters = {
            "class_name": _chosen(class_filter),
            "suggested_cause": _chosen(cause_filter),
            "status": status_filter or UNREVIEWED,
        }
        rank = _as_id(rank)
        try:
            view = self.service.next_candidate(run_name, reviewer, after_rank=rank, **filters)
            if view is None and rank is not None:
                view = self.service.next_candidate(run_name, reviewer, **filters)
        except (ReviewInputError, StoreError) as exc:
            return self._status_only(str(exc))
        return self._show(view, run_name, filters=(class_filter, status_filter, cause_filter))

    def clear_filters(self, run_name, reviewer_typed, request: gr.Request = None):
        """Every filter back to its default (any class, unreviewed, any cause), and the first candidate then."""
        defaults = (ANY, UNREVIEWED, ANY)
        return (*defaults, *self.next_candidate(run_name, reviewer_typed, -1, *defaults, request=request))

    def open_candidate(self, candidate_id, run_name):
        """Show one candidate by id (from the gallery), without taking its lease."""
        if candidate_id is None:
            return tuple(gr.skip() for _ in SHOWN)
        if _as_id(candidate_id) is None:
            return self._status_only("no candidate chosen")
        try:
            view = self.service.candidate(int(candidate_id))
        except StoreError as exc:
            return self._status_only(str(exc))
        return self._show(view, run_name or self.service.run_name_of(view.run_id))

    def previous_candidate(self, run_name, rank, class_filter):
        """Show the candidate ranked just before the current one (no lease)."""
        if not run_name:
            return self._status_only("choose a mining run first")
        rank = _as_id(rank)
        view = self.service.previous_candidate(run_name, before_rank=rank or 0, class_name=_chosen(class_filter))
        if view is None:
            return self._status_only("this is the first candidate")
        return self._show(view, run_name)

    def undo(self, run_name, candidate_id, reviewer_typed, request: gr.Request = None):
        """Retract this reviewer's latest decision in the run, wherever the page is, and show its
        candidate again (``candidate_id``, the one on the page, is not needed)."""
        if not run_name:
            return self._status_only("choose a mining run first")
        try:
            undone = self.service.undo_latest_decision(run_name, reviewer_name(request, reviewer_typed))
            view = self.service.candidate(undone)
        except (ReviewInputError, StoreError) as exc:
            return self._status_only(str(exc))
        return self._show(view, run_name, status=f"undid your last decision on candidate {undone}: decide it again")

    def apply_suggestion(self, candidate_id):
        """Slider values of the suggested transform (a warning, sliders untouched, when there is none)."""
        candidate_id = _as_id(candidate_id)
        transform = None if candidate_id is None else self.service.suggested_transform(candidate_id)
        if transform is None:
            gr.Warning(_user_mistake("no candidate is shown" if candidate_id is None
                                     else "this candidate's suggestion has no transform"))
            return tuple(gr.skip() for _ in FIELDS)
        # the search gives directions in [0, 360); the sliders span -180..180: the same angles
        return (wrap_degrees(transform.rotate), transform.perspective, wrap_degrees(transform.direction),
                transform.scale, transform.shift_x, transform.shift_y, transform.aspect, transform.shear)

    def preview_transformed(self, candidate_id, rotate, perspective, direction, scale, saliency=False,
                            shift_x=0.0, shift_y=0.0, aspect=1.0, shear=0.0):
        """Transformed image (with the saliency overlay if asked) and probabilities while sliders move."""
        if _as_id(candidate_id) is None:
            return None, None
        transform = transform_from_sliders(rotate, perspective, direction, scale, shift_x, shift_y, aspect, shear)
        prediction = self._predict(candidate_id, transform, saliency=bool(saliency))
        return upscale(prediction.image), prediction.probabilities

    def saliency_method(self, candidate_id, saliency=True) -> str:
        """The words beside the saliency toggle: which method the overlay shows (empty when off)."""
        candidate_id = _as_id(candidate_id)
        if not saliency or candidate_id is None:
            return ""
        try:
            method = self.service.saliency_method(candidate_id)
        except (StoreError, NoModelError, UntrustedModelError, FileNotFoundError, TypeError) as exc:
            return f"no saliency: {exc}"
        return f"Saliency: **{method}**, warm where pixels raise the top class's score"

    def predict_transformed(
        self, candidate_id: int, rotate: float = 0.0, perspective: float = 0.0, scale: float = 1.0,
        direction: float = 0.0, shift_x: float = 0.0, shift_y: float = 0.0, aspect: float = 1.0, shear: float = 0.0,
    ) -> dict[str, float]:
        """Class probabilities of a candidate's image under rotate/perspective/scale/shift/stretch/shear (API)."""
        transform = transform_from_sliders(rotate, perspective, direction, scale, shift_x, shift_y, aspect, shear)
        return self._predict(candidate_id, transform).probabilities

    def _predict(self, candidate_id, transform, *, saliency: bool = False):
        try:
            return self.service.predict_transformed(int(candidate_id), transform, saliency=saliency)
        except (StoreError, NoModelError, UntrustedModelError) as exc:
            raise gr.Error(str(exc)) from None

    # --- reviews --------------------------------------------------------------------
    def _store_decision(self, candidate_id, cause, new_label, note, sliders, seen_version, reviewer_typed,
                        request) -> tuple[str, object]:
        """Store a decision: the status line's words and the store's result; ReviewInputError /
        StoreError for a refused one."""
        candidate_id = _as_id(candidate_id)
        if candidate_id is None:
            raise ReviewInputError("no candidate is shown")
        try:
            transform = _slider_transform(*sliders)
        except (TypeError, ValueError) as exc:
            raise ReviewInputError(str(exc)) from None
        result = self.service.submit_review(
            candidate_id, reviewer=reviewer_name(request, reviewer_typed), cause=cause, new_label=new_label,
            note=note, transform=transform, seen_version=int(seen_version or 0),
        )
        message = f"saved **{cause}** for candidate {candidate_id} (version {result.version})"
        if result.conflict:
            others = "; ".join(f"{r[0]}: {r[1]}" for r in result.other_reviews)
            message += f". ⚠ Another review landed meanwhile ({others}); both are kept for a lead to adjudicate."
        return message, result

    def submit_review(
        self,
        candidate_id: int,
        cause: str,
        new_label: str | None,
        note: str,
        rotate: float,
        perspective: float,
        direction: float,
        scale: float,
        seen_version: int,
        reviewer_typed: str,
        shift_x: float = 0.0,
        shift_y: float = 0.0,
        aspect: float = 1.0,
        shear: float = 0.0,
        request: gr.Request = None,
    ) -> dict:
        """Store a decision; returns {review_id, version, conflict, message}."""
        sliders = (rotate, perspective, direction, scale, shift_x, shift_y, aspect, shear)
        try:
            message, result = self._store_decision(candidate_id, cause, new_label, note, sliders, seen_version,
                                                   reviewer_typed, request)
        except (ReviewInputError, StoreError) as exc:
            raise gr.Error(str(exc)) from None
        return {
            "review_id": result.review_id,
            "version": result.version,
            "conflict": result.conflict,
            "message": message,
        }

    def decide_and_advance(self, cause, run_name, candidate_id, new_label, note, rotate, perspective, direction, scale,
                           shift_x, shift_y, seen_version, reviewer_typed, rank, class_filter, status_filter,
                           cause_filter, aspect=1.0, shear=0.0, request: gr.Request = None):
        """Button handler: store the decision, then show the next candidate (a refusal only on the status line)."""
        sliders = (rotate, perspective, direction, scale, shift_x, shift_y, aspect, shear)
        # the relabel field may hold a suggested label: only a mislabel decision relabels
        label = (new_label or None) if cause == "mislabel" else None
        try:
            message, _ = self._store_decision(candidate_id, cause, label, note, sliders, seen_version,
                                              reviewer_typed, request)
        except (ReviewInputError, StoreError) as exc:
            return self._status_only(str(exc))
        shown = self.next_candidate(run_name, reviewer_typed, rank, class_filter, status_filter, cause_filter, request)
        return (*shown[:-1], message)
