"""Monitor tab handlers: a monitor run's timelines, canary classes, alerts and a window's map.

The data comes from :mod:`hardcase.review_app.workflows.monitor_views`. A user mistake (no run
chosen, an unknown run, a window the run does not have, a refused or missing file) is one line
in the tab's status, the other outputs left as they were, never an error painted over every
output.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from hardcase.review_app.app import plots
from hardcase.review_app.app.handlers.access import guard
from hardcase.review_app.workflows import monitor_views as views
from hardcase.review_app.workflows.review import ReviewService
from hardcase.store.errors import StoreError

ALERT_COLUMNS = views.ALERT_COLUMNS
EMPTY_TABLE = {"headers": ALERT_COLUMNS, "data": []}
N_REFRESH_OUTPUTS = 9
"""run, status, summary, timelines, accuracy, canaries, alerts, root cause, slider."""


def _problem(message: str) -> str:
    return f"⚠️ {message}"


@dataclass
class MonitorHandlers:
    """Gradio handlers of the monitor tab over one :class:`ReviewService`."""

    service: ReviewService

    def run_names(self) -> list[str]:
        return views.monitor_run_names(self.service.store)

    def _load(self, run_name) -> views.MonitorData:
        if not run_name:
            raise views.MonitorViewError("choose a monitor run first")
        try:
            return views.load_monitor(self.service.store, str(run_name))
        except StoreError as exc:
            raise views.MonitorViewError(str(exc)) from None

    # ------------------------------------------------------------------ the run
    def refresh(self, run_name, request: gr.Request = None):
        """The run's summary, timelines, canary classes, alerts table and latest root cause;
        the run choices re-read and the window slider set to the run's windows."""
        guard(self.service, request, "monitor")
        names = self.run_names()
        if not names and not run_name:
            return (gr.update(choices=[], value=None), "", views.START_HINT,
                    plots.message_figure("Signals by window", "No monitor run yet."),
                    plots.message_figure("Accuracy by window", "No monitor run yet."),
                    plots.message_figure("Classes that moved", "No monitor run yet."),
                    EMPTY_TABLE, "", gr.update())
        choices = gr.update(choices=names)
        try:
            data = self._load(run_name)
        except views.MonitorViewError as exc:
            return (choices, _problem(str(exc)), *(gr.skip() for _ in range(N_REFRESH_OUTPUTS - 2)))
        summary = views.summarize(data)
        alerts = [window.index for window in data.alerts]
        moves = views.canary_classes(data)
        classes, windows, matrix = views.canary_matrix(data, moves)
        table = [row.as_list() for row in views.alert_rows(data)]
        text = summary.text(data.name)
        if table:
            text += " (click an alert to review its samples)"
        canaries = [move.class_name for move in moves if move.canary]
        if canaries:
            text += f" · canary class{'es' if len(canaries) > 1 else ''}: **{', '.join(canaries)}**"
        return (
            choices,
            "",
            text,
            plots.signal_timelines_figure(views.signal_series(data), alerts),
            plots.accuracy_timeline_figure(
                [w.index for w in data.windows], [w.estimated_accuracy for w in data.windows],
                [w.accuracy_low for w in data.windows], [w.accuracy_high for w in data.windows],
                [w.true_accuracy for w in data.windows], alerts),
            plots.canary_figure(classes, windows, matrix, canaries),
            {"headers": ALERT_COLUMNS, "data": table},
            views.root_cause_text(data),
            self._slider(data, alerts[-1] if alerts else None),
        )

    @staticmethod
    def _slider(data: views.MonitorData, value: int | None):
        if not data.windows:
            return gr.update(minimum=0, maximum=1, value=0, interactive=False)
        first, last = data.windows[0].index, data.windows[-1].index
        return gr.update(minimum=first, maximum=max(last, first + 1), value=last if value is None else value,
                         step=1, interactive=last > first)

    # ------------------------------------------------------------------ a window's map
    def window_map(self, run_name, window, request: gr.Request = None):
        """The map of window ``window``: the figure, its caption and the status line."""
        guard(self.service, request, "monitor_map")
        try:
            data = self._load(run_name)
            if window is None:
                raise views.MonitorViewError("choose a window with the slider")
            index = int(window)
            if index != window:
                raise views.MonitorViewError(f"window {window} is not a window number")
            loaded = views.load_window_map(data, index)
        except views.MonitorViewError as exc:
            return gr.skip(), "", _problem(str(exc))
        return plots.embedding_map_figure(loaded), loaded.caption(), ""

    def map_after_refresh(self, run_name, window, request: gr.Request = None):
        """The map after the run was (re)loaded: nothing without a run (the summary says why)."""
        if not run_name:
            return gr.skip(), "", gr.skip()
        return self.window_map(run_name, window, request)

    # ------------------------------------------------------------------ alerts
    def pick_alert(self, evt: gr.EventData, request: gr.Request = None):
        """A click on an alerts table row: that row's window index."""
        guard(self.service, request, "pick_alert")
        data = getattr(evt, "_data", None) or {}
        row = data.get("row_value") or []
        try:
            return int(row[0])
        except (IndexError, TypeError, ValueError):
            raise gr.Error("select a row of the alerts table") from None

    def open_alert(self, run_name, window, request: gr.Request = None):
        """Open window ``window``'s first candidate in the review tab (its id, the review run of
        the monitor run's name, the review tab selected); the root cause and slider follow it."""
        guard(self.service, request, "open_alert")
        try:
            data = self._load(run_name)
            if window is None:
                raise views.MonitorViewError("select an alert first")
            candidate_id = views.first_candidate(data, int(window))
            cause = views.root_cause_text(data, int(window))
        except views.MonitorViewError as exc:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), _problem(str(exc))
        review_run = data.review_run or data.name
        runs = self.service.run_names()  # the review run may be newer than the page
        return (candidate_id, gr.update(choices=runs, value=review_run), gr.Tabs(selected="review"), cause,
                int(window), "")
