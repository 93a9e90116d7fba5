"""The Monitor tab (production monitoring): a monitor run's signals over time, the classes that
moved first, its alerts with their root causes, and a window's samples on the reference map."""

from __future__ import annotations

import gradio as gr

from hardcase.review_app.app.handlers.monitor import ALERT_COLUMNS, MonitorHandlers
from hardcase.review_app.app.tabs.review import ReviewTab
from hardcase.review_app.workflows.monitor_views import largest_window_index
from hardcase.review_app.workflows.review import ReviewService


def build(service: ReviewService, *, tab: gr.Tab, tabs: gr.Tabs, review_tab: ReviewTab) -> None:
    """Lay out the monitor tab inside ``tab``; it is computed when the tab is selected."""
    handlers = MonitorHandlers(service)
    names = handlers.run_names()
    with gr.Row():
        run = gr.Dropdown(names, value=names[-1] if names else None, label="Monitor run", scale=3,
                          allow_custom_value=True, elem_id="monitor-run")
        refresh = gr.Button("Refresh", size="sm", scale=1, elem_id="monitor-refresh")
    status = gr.Markdown(elem_id="monitor-status")
    summary = gr.Markdown(elem_id="monitor-summary")
    timelines = gr.Plot(label="Signals by window", show_label=False, format="png", elem_id="monitor-timelines")
    with gr.Row():
        accuracy = gr.Plot(label="Accuracy by window", show_label=False, format="png", elem_id="monitor-accuracy")
        canaries = gr.Plot(label="Classes that moved", show_label=False, format="png", elem_id="monitor-canaries")
    root_cause = gr.Markdown(elem_id="monitor-root-cause")
    alerts = gr.Dataframe(
        headers=ALERT_COLUMNS, datatype=["number", "str", "str", "str", "str", "number"], interactive=False,
        wrap=True, column_widths=["8%", "12%", "15%", "13%", "42%", "10%"], max_height=360,
        label="Alerts: click a row to review that window's samples in the review tab",
        elem_id="monitor-alerts",
    )
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=220):
            # the run's range is set when it loads; the widest one here, so API calls pass its bounds
            window = gr.Slider(0, max(1, largest_window_index(service.store)), value=0, step=1, label="Window", elem_id="monitor-window")
            caption = gr.Markdown(elem_id="monitor-map-caption")
        with gr.Column(scale=3):
            window_map = gr.Plot(label="Window on the reference map", show_label=False, format="png",
                                 elem_id="monitor-map")
    picked = gr.Number(value=None, visible=False, precision=0)

    gr.on([tab.select, run.change, refresh.click], handlers.refresh, run,
          [run, status, summary, timelines, accuracy, canaries, alerts, root_cause, window],
          api_name="monitor", trigger_mode="always_last").then(
        handlers.map_after_refresh, [run, window], [window_map, caption, status], api_name=False)
    window.input(handlers.window_map, [run, window], [window_map, caption, status], api_name="monitor_map",
                 trigger_mode="always_last", show_progress="minimal")
    alerts.select(handlers.pick_alert, None, picked, api_name="pick_alert").success(
        handlers.open_alert, [run, picked], [review_tab.open_id, review_tab.run, tabs, root_cause, window, status],
        api_name="open_alert").then(
        handlers.window_map, [run, window], [window_map, caption, status], api_name=False)
