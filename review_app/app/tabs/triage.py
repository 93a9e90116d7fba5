"""The Triage tab (ML leads): decisions, confusion, recall, acceptance, agreement, disagreements,
the run's latest retrain report, and two model versions of the run side by side."""

from __future__ import annotations

import gradio as gr

from hardcase.review_app.app.handlers.triage import DISAGREEMENT_COLUMNS, TriageHandlers
from hardcase.review_app.app.tabs.review import ReviewTab
from hardcase.review_app.workflows.review import ReviewService


def build(service: ReviewService, *, tab: gr.Tab, tabs: gr.Tabs, review_tab: ReviewTab,
          run_names: list[str], default_run: str | None) -> None:
    """Lay out the triage plots inside ``tab``; they are computed when the tab is selected."""
    handlers = TriageHandlers(service)
    with gr.Row():
        run = gr.Dropdown(run_names, value=default_run, label="Mining run", scale=3, elem_id="triage-run")
        refresh = gr.Button("Refresh", size="sm", scale=1, elem_id="triage-refresh")
    summary = gr.Markdown(elem_id="triage-summary")
    with gr.Row():
        decisions = gr.Plot(label="Decisions by class", show_label=False, format="png", elem_id="triage-decisions")
        confusion = gr.Plot(label="Confusion matrix of the pool", show_label=False, format="png", elem_id="triage-confusion")
    with gr.Row():
        recall = gr.Plot(label="Recall per class", show_label=False, format="png", elem_id="triage-recall")
        acceptance = gr.Plot(label="Acceptance of suggested causes", show_label=False, format="png", elem_id="triage-acceptance")
    with gr.Row():
        kappa = gr.Plot(label="Agreement between reviewers", show_label=False, format="png", elem_id="triage-kappa")
        disagreements = gr.Dataframe(
            headers=DISAGREEMENT_COLUMNS, datatype=["number", "str", "str", "str", "str"],
            interactive=False, wrap=True, label="Reviewers disagree: click a row to adjudicate it in the review tab",
            elem_id="triage-disagreements",
        )
    with gr.Accordion("Retrain report", open=True, elem_id="triage-retrain"):
        retrain_summary = gr.Markdown(elem_id="triage-retrain-report")
        # one plot a row, whole (not cropped to a square thumbnail): they are read, not browsed
        retrain_plots = gr.Gallery(label="Retrain plots", columns=1, height="auto", object_fit="contain",
                                   format="png", interactive=False, elem_id="triage-retrain-plots")
        retrain_files = gr.File(label="Report files", file_count="multiple", interactive=False,
                                elem_id="triage-retrain-files")

    with gr.Accordion("Two model versions side by side", open=True, elem_id="triage-compare"):
        with gr.Row():
            first_model = gr.Dropdown([], value=None, label="First model (before)", scale=2, allow_custom_value=True,
                                      elem_id="triage-first-model")
            second_model = gr.Dropdown([], value=None, label="Second model (after)", scale=2, allow_custom_value=True,
                                       elem_id="triage-second-model")
            compare = gr.Button("Compare on the candidates", scale=1, elem_id="triage-compare-button")
        compare_summary = gr.Markdown(elem_id="triage-compare-summary")
        compare_table = gr.Dataframe(
            headers=["id", "class", "final label", "first", "first p", "second", "second p", "outcome"],
            datatype=["number", "str", "str", "str", "number", "str", "number", "str"], interactive=False,
            max_height=420, label="Per candidate: both predictions (click a row to review it)",
            elem_id="triage-compare-table")

    gr.on([tab.select, run.change, refresh.click], handlers.model_choices, run,
          [first_model, second_model, compare_summary], api_name="model_choices", trigger_mode="always_last")
    compare.click(handlers.compare_models, [run, first_model, second_model], [compare_summary, compare_table],
                  api_name="compare_models")
    gr.on([tab.select, run.change, refresh.click], handlers.refresh, run,
          [summary, decisions, confusion, recall, acceptance, kappa, disagreements],
          api_name="triage", trigger_mode="always_last")
    gr.on([tab.select, run.change, refresh.click], handlers.retrain_report, run,
          [retrain_summary, retrain_plots, retrain_files], api_name="retrain_report", trigger_mode="always_last")
    disagreements.select(handlers.select_disagreement, None, [review_tab.open_id, review_tab.run, tabs],
                         api_name="open_disagreement")
