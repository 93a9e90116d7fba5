"""The Review tab: one hard example at a time, live predictions under transforms, decisions."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from hardcase.miner.vocabulary import SUGGESTED_CAUSES
from hardcase.models.transforms import FIELDS
from hardcase.review_app.app.handlers.access import signed_in_user
from hardcase.review_app.app.handlers.review import (
    ANY,
    DECISION_LABELS,
    RESET_TRANSFORM,
    SHOWN,
    SLIDER_RANGES,
    UNREVIEWED,
    Handlers,
    decision_problems,
    reviewer_problems,
    slider_problems,
)

MODEL_CONCURRENCY = "model"
#: Decisions and undo run one at a time, in the order pressed: a "u" pressed while its decision
#: is still being saved takes back that decision, not the one before. Each is short (a store
#: write and the next candidate's one prediction), so a team's decisions queue briefly at most.
DECISION_CONCURRENCY = "decisions"
#: Predictions of the slider previews under way at once: they reach the review service's
#: PredictionBatcher together and share model calls (which the batcher serialises), so eight
#: reviewers dragging wait for one batch, not for seven predictions ahead of theirs.
MODEL_CALLS_AT_ONCE = 8

# Keyboard shortcuts: keys click the matching button unless the reviewer is typing in a field.
SHORTCUTS_JS = """
() => {
  const keys = {"1": "decide-augment", "2": "decide-rare", "3": "decide-imbalance", "4": "decide-mislabel",
                "0": "decide-not_a_failure", "s": "decide-skip", "j": "next", "k": "prev", "u": "undo"};
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable);
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    const id = keys[event.key.toLowerCase()];
    const button = id && document.getElementById(id);
    // the review tab's buttons stay in the page, hidden, while another tab is shown
    if (!button || button.offsetParent === null) return;
    event.preventDefault();
    button.click();
  });
}
"""


def transform_sliders(elem_prefix: str = "") -> list[gr.Slider]:
    """The transform sliders (rotate, tilt, direction, scale, shift x, shift y, stretch, shear: ``Transform`` field order),
    laid out in the current block; element ids are the field names after ``elem_prefix``."""

    def slider(name, label):
        low, high, step = SLIDER_RANGES[name]
        return gr.Slider(low, high, value=dict(zip(FIELDS, RESET_TRANSFORM))[name], step=step, label=label,
                         elem_id=f"{elem_prefix}{name}")

    sliders = [
        slider("rotate", "Rotate (degrees)"),
        slider("perspective", "Perspective tilt"),
        slider("direction", "Tilt direction (degrees)"),
        slider("scale", "Scale"),
    ]
    with gr.Row():
        sliders += [slider("shift_x", "Shift right (share of width)"), slider("shift_y", "Shift down (share of height)")]
    with gr.Row():
        sliders += [slider("aspect", "Stretch (width / height)"), slider("shear", "Shear (degrees)")]
    return sliders


def _decider(handlers: Handlers, cause: str):
    def decide(run_name, candidate_id, new_label, note, rotate, perspective, direction, scale,
               seen_version, reviewer, rank, class_filter, status_filter, cause_filter, shift_x, shift_y,
               aspect, shear, request: gr.Request):
        return handlers.decide_and_advance(cause, run_name, candidate_id, new_label, note, rotate, perspective,
                                           direction, scale, shift_x, shift_y, seen_version, reviewer, rank,
                                           class_filter, status_filter, cause_filter, aspect, shear, request)

    decide.__name__ = f"decide_{cause}"
    return decide


@dataclass
class ReviewTab:
    """Components other tabs use: set ``open_id`` to a candidate id to show it here."""

    run: gr.Dropdown
    reviewer: gr.Textbox
    open_id: gr.Number


def build(app: gr.Blocks, handlers: Handlers, *, run_names: list[str], default_run: str | None) -> ReviewTab:
    """Lay out the review tab inside the current ``gr.Blocks`` and wire its events."""
    reviewer_store = gr.BrowserState("", storage_key="hardcase-reviewer")
    with gr.Row():
        run = gr.Dropdown(run_names, value=default_run, label="Mining run", scale=2, elem_id="run")
        reviewer = gr.Textbox(label="Your name", placeholder="who is reviewing", scale=2, elem_id="reviewer")
        class_filter = gr.Dropdown([ANY], value=ANY, label="Class", scale=1, elem_id="class-filter")
        status_filter = gr.Dropdown([UNREVIEWED, "reviewed", "all"], value=UNREVIEWED, label="Status", scale=1,
                                    elem_id="status-filter")
        cause_filter = gr.Dropdown([ANY, *SUGGESTED_CAUSES], value=ANY, label="Suggested cause", scale=1,
                                   elem_id="cause-filter")
    progress = gr.Markdown(elem_id="progress")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            image = gr.Image(label="Candidate (as the model sees it)", type="numpy", interactive=False,
                             height=300, elem_id="candidate-image", buttons=[])
            info = gr.Markdown(elem_id="candidate-info")
            clear_filters = gr.Button("Clear the filters", size="sm", visible=False, elem_id="clear-filters")
            with gr.Accordion("The numbers behind it", open=False, elem_id="details-toggle"):
                details = gr.Markdown(elem_id="details")
            neighbours = gr.Gallery(label="Nearest training images (from the cause evidence)", columns=4,
                                    height=150, elem_id="neighbours", allow_preview=False)
        with gr.Column(scale=1):
            probabilities = gr.Label(num_top_classes=3, label="Model prediction (top 3)", elem_id="probabilities")
            sliders = transform_sliders()
            rotate, perspective, direction, scale, shift_x, shift_y, aspect, shear = sliders
            with gr.Row():
                apply_suggestion = gr.Button("Apply suggested transform", size="sm", elem_id="apply-suggestion")
                reset = gr.Button("Reset transform", size="sm", elem_id="reset")
                saliency = gr.Checkbox(False, label="Saliency overlay", elem_id="saliency")
            saliency_note = gr.Markdown(elem_id="saliency-method")
    with gr.Row():
        new_label = gr.Dropdown([], value=None, label="Relabel as (required for mislabel)", elem_id="relabel")
        note = gr.Textbox(label="Note", placeholder="what you saw", elem_id="note")
    with gr.Row():
        buttons = {cause: gr.Button(text, variant="primary" if cause not in ("skip", "not_a_failure") else "secondary",
                                    elem_id=f"decide-{cause}")
                   for cause, text in DECISION_LABELS.items()}
    with gr.Row():
        previous_button = gr.Button("◀ Previous (k)", elem_id="prev")
        next_button = gr.Button("Next candidate ▶ (j)", elem_id="next")
        undo_button = gr.Button("Undo my last decision (u)", elem_id="undo")
    status = gr.Markdown(elem_id="status")
    gr.Markdown("Keys: **1** augment · **2** rare · **3** imbalance · **4** mislabel · **0** not a failure · "
                "**s** skip · **j**/**k** next/previous · **u** undo", elem_id="shortcuts")
    candidate_id = gr.Number(value=-1, visible=False, precision=0)
    seen_version = gr.Number(value=0, visible=False, precision=0)
    rank = gr.Number(value=-1, visible=False, precision=0)
    open_id = gr.Number(value=None, visible=False, precision=0)

    components = {"image": image, "info": info, "probabilities": probabilities, "candidate_id": candidate_id,
                  "seen_version": seen_version, "rank": rank, **dict(zip(FIELDS, sliders)), "new_label": new_label,
                  "note": note, "neighbours": neighbours, "details": details, "clear_filters": clear_filters,
                  "progress": progress, "status": status}
    shown = [components[name] for name in SHOWN]
    filters = [class_filter, status_filter, cause_filter]
    filter_names = ["class_filter", "status_filter", "cause_filter"]

    def checked(names, check):
        # mistakes found in the inputs are shown at their field and stop the event before its
        # outputs change; the handlers get the values as sent (preprocess=False), so an
        # out-of-range slider reaches the check instead of failing in Gradio's preprocessing
        return {"validator": handlers.validator(names, check), "preprocess": False}

    def remember_name(name):
        return name

    def recall_name(saved, typed):
        # leave the box alone unless a remembered name fills an empty one: an empty answer
        # arriving after the page loaded would wipe a name typed meanwhile
        return gr.skip() if typed or not saved else saved

    reviewer.change(remember_name, reviewer, reviewer_store, api_name="remember_reviewer", queue=False)

    def on_run_change(run_name):
        classes = handlers.service.class_names(run_name) if run_name else []
        return gr.update(choices=[ANY, *classes], value=ANY)

    run.change(on_run_change, run, class_filter, api_name="run_classes")
    next_inputs = ["run", "reviewer", "rank", *filter_names]
    next_button.click(handlers.next_candidate, [run, reviewer, rank, *filters], shown, api_name="next_candidate",
                      **checked(next_inputs, reviewer_problems))
    clear_filters.click(handlers.clear_filters, [run, reviewer], [*filters, *shown], api_name="clear_filters",
                        **checked(["run", "reviewer"], reviewer_problems))
    open_id.change(handlers.open_candidate, [open_id, run], shown, api_name="open_candidate").then(
        lambda: None, None, open_id, api_name=False)  # cleared, so opening the same candidate again works
    previous_button.click(handlers.previous_candidate, [run, rank, class_filter], shown, api_name="previous_candidate")
    undo_button.click(handlers.undo, [run, candidate_id, reviewer], shown, api_name="undo",
                      concurrency_id=DECISION_CONCURRENCY, concurrency_limit=1,
                      **checked(["run", "candidate_id", "reviewer"], reviewer_problems))
    apply_suggestion.click(handlers.apply_suggestion, candidate_id, sliders, api_name="apply_suggestion")

    # inputs added later (the shifts, then stretch and shear) come last, so positional API calls keep working
    slider_inputs = [candidate_id, rotate, perspective, direction, scale, saliency, shift_x, shift_y, aspect, shear]
    slider_names = ["candidate_id", "rotate", "perspective", "direction", "scale", "saliency", "shift_x", "shift_y",
                    "aspect", "shear"]
    saliency.change(handlers.preview_transformed, slider_inputs, [image, probabilities], api_name="preview_saliency",
                    show_progress="hidden", concurrency_id=MODEL_CONCURRENCY, concurrency_limit=MODEL_CALLS_AT_ONCE,
                    **checked(slider_names, lambda values, _: slider_problems(values))).success(
        handlers.saliency_method, [candidate_id, saliency], saliency_note, api_name="saliency_method")
    for slider in sliders:
        slider.change(handlers.preview_transformed, slider_inputs, [image, probabilities],
                      api_name=f"preview_{slider.elem_id}", trigger_mode="always_last",
                      show_progress="hidden", concurrency_id=MODEL_CONCURRENCY, concurrency_limit=MODEL_CALLS_AT_ONCE,
                      **checked(slider_names, lambda values, _: slider_problems(values)))
    reset.click(lambda: RESET_TRANSFORM, None, sliders, api_name="reset_transform", queue=False)

    decision_inputs = [run, candidate_id, new_label, note, rotate, perspective, direction, scale,
                       seen_version, reviewer, rank, *filters, shift_x, shift_y, aspect, shear]
    decision_names = ["run", "candidate_id", "new_label", "note", "rotate", "perspective", "direction", "scale",
                      "seen_version", "reviewer", "rank", *filter_names, "shift_x", "shift_y", "aspect", "shear"]
    for cause, button in buttons.items():
        button.click(_decider(handlers, cause), decision_inputs, shown, api_name=f"decide_{cause}",
                     concurrency_id=DECISION_CONCURRENCY, concurrency_limit=1, **checked(decision_names, lambda values, user, cause=cause: decision_problems(cause, values, user)))

    gr.api(handlers.predict_transformed, api_name="predict_transformed",
           concurrency_id=MODEL_CONCURRENCY, concurrency_limit=MODEL_CALLS_AT_ONCE)
    gr.api(handlers.submit_review, api_name="submit_review")

    gr.api(handlers.ping, api_name="ping")

    def first_candidate(run_name, reviewer_name, current_rank, class_name, status, cause, request: gr.Request):
        # a returning reviewer (name remembered in the browser) lands on a candidate straight away
        if not run_name or not (reviewer_name or signed_in_user(request)):
            return tuple(gr.update() for _ in shown)
        return handlers.next_candidate(run_name, reviewer_name, current_rank, class_name, status, cause, request)

    app.load(recall_name, [reviewer_store, reviewer], reviewer, api_name="recall_reviewer", queue=False).then(
        on_run_change, run, class_filter, api_name=False).then(
        first_candidate, [run, reviewer, rank, *filters], shown, api_name="first_candidate")
    return ReviewTab(run=run, reviewer=reviewer, open_id=open_id)
