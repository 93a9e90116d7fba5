"""Triage tab handlers: the run's numbers as plots, the disagreements to adjudicate, and two
model versions of the run side by side."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from hardcase.miner.vocabulary import DECISIONS
from hardcase.review_app.app import plots
from hardcase.review_app.app.handlers.access import guard
from hardcase.review_app.app.handlers.export import export_folder
from hardcase.review_app.app.handlers.gallery import GalleryHandlers
from hardcase.review_app.workflows import explore, insights
from hardcase.review_app.workflows.review import ReviewService
from hardcase.store.errors import StoreError

DISAGREEMENT_COLUMNS = ["candidate", "class", "given", "suggested", "judgments"]


@dataclass
class TriageHandlers:
    """Gradio handlers of the triage tab over one :class:`ReviewService`."""

    service: ReviewService
    _loaders: dict[str, explore.ModelLoader] = field(default_factory=dict)

    def refresh(self, run_name, request: gr.Request = None):
        """Summary, five figures and the disagreement table of a run."""
        guard(self.service, request, "triage")
        if not run_name:
            raise gr.Error("choose a mining run first")
        try:
            data = insights.load_triage(self.service.store, run_name)
        except StoreError as exc:
            raise gr.Error(str(exc)) from None
        rows, decisions = insights.decision_matrix(data.decision_counts, data.class_names)
        confusion = insights.confusion_matrix(data.label_pairs, data.class_names)
        recall = insights.per_class_recall(confusion)
        rates = insights.acceptance_rates(insights.outcomes(data))
        pairs = insights.kappa_by_pair(data.judgments)
        disputed = insights.disagreements(data.judgments, data.candidates, settled=data.adjudicated)
        table = [
            [d.candidate_id, d.class_name, d.given_label or "", d.suggested_cause or "",
             "; ".join(judgment.describe() for judgment in d.judgments)]
            for d in disputed
        ]
        doubly = sum(len(judged) > 1 for judged in data.judgments.values())
        summary = (
            f"**{data.run_name}**: {data.n_reviewed} of {data.n_candidates} candidates reviewed · "
            f"{doubly} judged by two or more reviewers · **{len(disputed)} disagreements** to adjudicate"
            + (" (click a row to open it in the review tab)" if disputed else "")
        )
        return (
            summary,
            plots.decisions_figure(rows, DECISIONS, decisions, n_reviewed=data.n_reviewed,
                                   n_candidates=data.n_candidates),
            plots.confusion_figure(confusion, data.class_names),
            plots.recall_figure(data.class_names, recall, confusion),
            plots.acceptance_figure(rates),
            plots.kappa_figure(pairs),
            table,
        )

    def retrain_report(self, run_name, request: gr.Request = None):
        """The latest retrain report of a run: its Markdown, its plots and its files to download
        (the plots and files are hidden while the run has no report).

        ``hardcase retrain --run NAME`` records every report it writes in the run's artifacts
        folder; the files are copied to a private temporary folder for Gradio to serve.
        """
        guard(self.service, request, "retrain_report")
        from hardcase.review_app.workflows.retrain import run_reports

        if not run_name:
            raise gr.Error("choose a mining run first")
        try:
            reports = run_reports(self.service.store, run_name)
        except StoreError as exc:
            raise gr.Error(str(exc)) from None
        if not reports:
            return (f"No retrain report for **{run_name}** yet: `hardcase retrain --run {run_name} ...` "
                    "writes one and it shows here.", gr.Gallery(value=[], visible=False),
                    gr.File(value=None, visible=False))
        latest = reports[-1]
        folder = export_folder()
        copies = {key: str(shutil.copy(latest[key], folder / Path(latest[key]).name))
                  for key in ("json", "markdown", "accuracy_png", "recall_png", "ablation_png")
                  if latest.get(key) and Path(latest[key]).exists()}
        captions = {"accuracy_png": "accuracy before / after per set", "recall_png": "per-class recall before / after",
                    "ablation_png": "accuracy gain of each fix family vs no plan"}
        gallery = [(copies[key], caption) for key, caption in captions.items() if key in copies]
        header = (f"Latest of {len(reports)} retrain report{'s' if len(reports) != 1 else ''} of **{run_name}** "
                  f"(written {latest.get('written_at', '?')}).\n\n")
        body = Path(copies["markdown"]).read_text(encoding="utf-8") if "markdown" in copies else ""
        files = [copies[key] for key in ("json", "markdown") if key in copies]
        return header + body, gr.Gallery(value=gallery, visible=True), gr.File(value=files, visible=True)

    def select_disagreement(self, evt: gr.EventData, request: gr.Request = None):
        """A click on a disagreement row opens that candidate in the review tab."""
        guard(self.service, request, "open_disagreement")
        data = getattr(evt, "_data", None) or {}
        row = data.get("row_value") or []
        try:
            candidate_id = int(row[0])
        except (IndexError, TypeError, ValueError):
            raise gr.Error("select a row of the disagreement table") from None
        return GalleryHandlers(self.service).open_in_review(candidate_id)

    # two model versions side by side ---------------------------------------------------------
    def model_choices(self, run_name, request: gr.Request = None):
        """The run's models for both pickers: the mined one first, the latest retrained one second."""
        guard(self.service, request, "model_choices")
        if not run_name:
            raise gr.Error("choose a mining run first")
        try:
            labels = [choice.label for choice in explore.run_models(self.service.store, run_name)]
        except StoreError as exc:
            raise gr.Error(str(exc)) from None
        note = ("" if len(labels) > 1 else
                f"**{run_name}** has one model so far: `hardcase retrain --run {run_name} ...` records the "
                "retrained model here, to compare it with the mined one.")
        return (gr.update(choices=labels, value=labels[0]),
                gr.update(choices=labels, value=labels[-1] if len(labels) > 1 else None), note)

    def compare_models(self, run_name, first_label, second_label, request: gr.Request = None):
        """Both models' predictions per candidate, with the candidates the second model fixed and broke."""
        guard(self.service, request, "compare_models")
        if not run_name:
            raise gr.Error("choose a mining run first")
        try:
            models = {choice.label: choice for choice in explore.run_models(self.service.store, run_name)}
            if first_label not in models or second_label not in models:
                raise explore.ExploreInputError("pick two models of this run (after a retrain there are two)")
            if run_name not in self._loaders:
                self._loaders[run_name] = explore.ModelLoader(
                    spec=explore.run_spec(self.service.store, run_name),
                    trust_model=self.service.classifiers.trust_model)
            comparison = explore.compare_models(self.service.store, run_name, models[first_label],
                                                models[second_label], load=self._loaders[run_name])
        except (explore.ExploreInputError, StoreError, FileNotFoundError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        counts = comparison.counts
        listed = {outcome: comparison.ids(outcome) for outcome in ("fixed", "broken")}
        summary = (f"Over the {len(comparison.rows)} candidates of **{run_name}**, against each one's final label "
                   f"(the relabel of a mislabel decision, else the given label): **{counts['fixed']} fixed**, "
                   f"**{counts['broken']} broken**, {counts['both right']} right with both, "
                   f"{counts['both wrong']} wrong with both" + (f", {counts['no label']} without a label"
                                                              if counts["no label"] else "") + ".\n\n"
                   + "\n\n".join(f"**{outcome.capitalize()}**: " + (", ".join(f"#{i}" for i in ids) or "none")
                                  for outcome, ids in listed.items()))
        return summary, comparison.rows
