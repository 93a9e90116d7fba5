"""Gradio event handlers: widget values in, widget values out, user mistakes as ``gr.Error``.

Layout lives in ``review_app.tabs``; the work itself in :class:`review_app.service.ReviewService`.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np

from hardcase.miner.protocols import UntrustedModelError
from hardcase.models.transforms import FIELDS, Transform
from hardcase.review_app.workflows.recorded import NoModelError
from hardcase.review_app.workflows.review import ReviewInputError, ReviewService
from hardcase.store.errors import StoreError

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
#: What the review tab shows of a candidate, in the order ``Handlers._show`` returns it; the tab
#: lists its output components by these names (the transform sliders by ``Transform`` field).
SHOWN = ("image", "info", "probabilities", "candidate_id", "seen_version", "rank", *FIELDS,
         "new_label", "note", "neighbours", "progress", "status")
ANY = "any"
"""The filter value that means no filter."""


def upscale(image: np.ndarray, target: int = DISPLAY_SIZE) -> np.ndarray:
    """Nearest-neighbour upscaling so small images show crisp pixels; (H, W, C) -> (H*f, W*f, 3)."""
    factor = max(1, target // max(image.shape[:2]))
    big = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
    return np.repeat(big, 3, axis=2) if big.shape[-1] == 1 else big


def transform_from_sliders(rotate, perspective, direction, scale, shift_x=0.0, shift_y=0.0, aspect=1.0,
                           shear=0.0) -> Transform:
    """The slider values as a Transform; a bad value is a ``gr.Error`` naming it."""
    try:
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
    except (TypeError, ValueError) as exc:
        raise gr.Error(str(exc)) from None


def wrap_degrees(angle: float) -> float:
    """``angle`` as the same direction in [-180, 180) (270 -> -90, 337.5 -> -22.5, 180 -> -180)."""
    return ((float(angle) + 180.0) % 360.0) - 180.0


def _reviewer(request: gr.Request | None, typed: str | None) -> str:
    if request is not None and getattr(request, "username", None):
        return request.username
    return (typed or "").strip()


@dataclass
class Handlers:
    """Bound handlers for one :class:`ReviewService`."""

    service: ReviewService

    def ping(self) -> str:
        """Health check, and the no-op baseline of the latency benchmark."""
        return "ok"

    # --- candidates ---------------------------------------------------------------
    def _show(self, view, reviewer: str, run_name: str, message: str = ""):
        n_candidates, n_reviewed = self.service.progress(run_name)
        progress = f"**{n_reviewed} of {n_candidates} reviewed**"
        classes = self.service.class_names(run_name)
        values = {**dict(zip(FIELDS, RESET_TRANSFORM)), "new_label": gr.update(choices=classes, value=None),
                  "note": "", "progress": progress}
        if view is None:
            values.update(image=None, info=f"No candidate left to review here. {message}", probabilities=None,
                          candidate_id=None, seen_version=0, rank=-1, neighbours=[], status="")
        else:
            prediction = self.service.predict_transformed(view.id, Transform())
            values.update(
                image=upscale(prediction.image), info=_describe(view), probabilities=prediction.probabilities,
                candidate_id=view.id, seen_version=view.version, rank=view.rank,
                neighbours=[(upscale(image, 112), caption) for image, caption in self.service.neighbour_images(view.id)],
                status=message,
            )
        return tuple(values[name] for name in SHOWN)

    def next_candidate(self, run_name, reviewer_typed, rank, class_filter, status_filter, cause_filter=ANY,
                       request: gr.Request = None):
        """Lease and show the next candidate after ``rank`` matching the filters."""
        reviewer = _reviewer(request, reviewer_typed)
        if not run_name:
            raise gr.Error("choose a mining run first")
        filters = {
            "class_name": None if class_filter in (None, ANY) else class_filter,
            "suggested_cause": None if cause_filter in (None, ANY) else cause_filter,
            "status": status_filter or "unreviewed",
        }
        try:
            view = self.service.next_candidate(
                run_name, reviewer, after_rank=None if rank is None or rank < 0 else int(rank), **filters
            )
            if view is None and rank is not None and rank >= 0:
                view = self.service.next_candidate(run_name, reviewer, **filters)
        except (ReviewInputError, StoreError) as exc:
            raise gr.Error(str(exc)) from None
        return self._show(view, reviewer, run_name)

    def open_candidate(self, candidate_id, run_name):
        """Show one candidate by id (from the gallery), without taking its lease."""
        if candidate_id is None:
            return tuple(gr.skip() for _ in SHOWN)
        if candidate_id < 0:
            raise gr.Error("no candidate chosen")
        try:
            view = self.service.candidate(int(candidate_id))
        except StoreError as exc:
            raise gr.Error(str(exc)) from None
        return self._show(view, "", run_name or self.service.run_name_of(view.run_id))

    def previous_candidate(self, run_name, rank, class_filter):
        """Show the candidate ranked just before the current one (no lease)."""
        if not run_name:
            raise gr.Error("choose a mining run first")
        view = self.service.previous_candidate(
            run_name, before_rank=int(rank) if rank is not None and rank >= 0 else 0,
            class_name=None if class_filter in (None, ANY) else class_filter,
        )
        if view is None:
            raise gr.Error("this is the first candidate")
        return self._show(view, "", run_name)

    def undo(self, run_name, candidate_id, reviewer_typed, request: gr.Request = None):
        """Retract this reviewer's latest decision on the shown candidate, then show it again."""
        if candidate_id is None or candidate_id < 0:
            raise gr.Error("no candidate is shown")
        try:
            self.service.undo_last_review(int(candidate_id), _reviewer(request, reviewer_typed))
        except (ReviewInputError, StoreError) as exc:
            raise gr.Error(str(exc)) from None
        shown = self._show(self.service.candidate(int(candidate_id)), "", run_name)
        return (*shown[:-1], f"undid your last decision on candidate {int(candidate_id)}")

    def apply_suggestion(self, candidate_id):
        """Slider values of the suggested transform."""
        if candidate_id is None or candidate_id < 0:
            raise gr.Error("no candidate is shown")
        transform = self.service.suggested_transform(int(candidate_id))
        if transform is None:
            raise gr.Error("this candidate's suggestion has no transform")
        # the search gives directions in [0, 360); the sliders span -180..180: the same angles
        return (wrap_degrees(transform.rotate), transform.perspective, wrap_degrees(transform.direction),
                transform.scale, transform.shift_x, transform.shift_y, transform.aspect, transform.shear)

    def preview_transformed(self, candidate_id, rotate, perspective, direction, scale, saliency=False,
                            shift_x=0.0, shift_y=0.0, aspect=1.0, shear=0.0):
        """Transformed image (with the saliency overlay if asked) and probabilities while sliders move."""
        if candidate_id is None or candidate_id < 0:
            return None, None
        transform = transform_from_sliders(rotate, perspective, direction, scale, shift_x, shift_y, aspect, shear)
        prediction = self._predict(candidate_id, transform, saliency=bool(saliency))
        return upscale(prediction.image), prediction.probabilities

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
        reviewer = _reviewer(request, reviewer_typed)
        if candidate_id is None or candidate_id < 0:
            raise gr.Error("no candidate is shown")
        try:
            result = self.service.submit_review(
                int(candidate_id),
                reviewer=reviewer,
                cause=cause,
                new_label=new_label,
                note=note,
                transform=transform_from_sliders(rotate, perspective, direction, scale, shift_x, shift_y, aspect, shear),
                seen_version=int(seen_version or 0),
            )
        except (ReviewInputError, StoreError) as exc:
            raise gr.Error(str(exc)) from None
        message = f"saved **{cause}** for candidate {int(candidate_id)} (version {result.version})"
        if result.conflict:
            others = "; ".join(f"{r[0]}: {r[1]}" for r in result.other_reviews)
            message += f". ⚠ Another review landed meanwhile ({others}); both are kept for a lead to adjudicate."
        return {
            "review_id": result.review_id,
            "version": result.version,
            "conflict": result.conflict,
            "message": message,
        }

    def decide_and_advance(self, cause, run_name, candidate_id, new_label, note, rotate, perspective, direction, scale,
                           shift_x, shift_y, seen_version, reviewer_typed, rank, class_filter, status_filter,
                           cause_filter, aspect=1.0, shear=0.0, request: gr.Request = None):
        """Button handler: store the decision, then show the next candidate."""
        outcome = self.submit_review(candidate_id, cause, new_label, note, rotate, perspective, direction, scale,
                                     seen_version, reviewer_typed, shift_x, shift_y, aspect, shear, request)
        shown = self.next_candidate(run_name, reviewer_typed, rank, class_filter, status_filter, cause_filter, request)
        return (*shown[:-1], outcome["message"])


def _describe(view) -> str:
    lines = [
        f"**Candidate #{view.id}** · rank {view.rank + 1} · class group **{view.class_name}**",
        f"Given label: **{view.given_label or 'unknown'}** · predicted **{view.predicted_label}**"
        f" at {view.confidence:.2f} · hardness {view.hardness_score:.3f}",
    ]
    if view.suggested_cause:
        suggestion = f"Suggested cause: **{view.suggested_cause}**"
        if view.suggested_label:
            suggestion += f" → '{view.suggested_label}'"
        if view.suggestion_confidence is not None:
            suggestion += f" (confidence {view.suggestion_confidence:.2f})"
        text = (view.evidence or {}).get("text")
        lines.append(suggestion + (f": {text}" if text else ""))
    if view.decision:
        lines.append(f"Current decision: **{view.decision}**" + (f" → '{view.decided_label}'" if view.decided_label else "")
                     + f" by {', '.join(view.reviewers)}")
    return "  \n".join(lines)
