"""``build_app``: the hardcase review app as a ``gr.Blocks``."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Gradio's queue rebuilds a pandas summary of its last GRADIO_ANALYTICS_MAX_EVENTS calls (default
# 10,000) after every call, for a monitoring page hardcase does not use: it cost the review
# server more than the predictions themselves, and grew with the calls served. Kept to 1,000
# calls, summarised once every 1,000.
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")

import gradio as gr
from PIL import Image
from starlette.middleware import Middleware

from hardcase.miner.sources import MAX_PIXELS
from hardcase.review_app.app.errors import log_user_errors_in_one_line
from hardcase.review_app.app.handlers.access import visible_tabs
from hardcase.review_app.app.handlers.review import Handlers
from hardcase.review_app.app.tabs import explore, export, gallery, monitor, review, triage, try_tab
from hardcase.review_app.app.throttle import LoginThrottle
from hardcase.review_app.workflows.review import ReviewService

CSS = """
#candidate-image img { image-rendering: pixelated; image-rendering: crisp-edges; }
#progress { text-align: right; }
"""


def build_app(service: ReviewService, *, run_name: str | None = None) -> gr.Blocks:
    """The review app over ``service``'s store; ``run_name`` is the run shown first."""
    run_names = service.run_names()
    default_run = run_name if run_name is not None else (run_names[-1] if run_names else None)
    handlers = Handlers(service)
    with gr.Blocks(title="hardcase review", analytics_enabled=False) as app:
        gr.Markdown("## hardcase — review hard examples")
        with gr.Tabs(selected="review") as tabs:
            with gr.Tab("Review", id="review"):
                review_tab = review.build(app, handlers, run_names=run_names, default_run=default_run)
            runs = {"run_names": run_names, "default_run": default_run}
            with gr.Tab("Gallery", id="gallery") as gallery_tab:
                gallery.build(service, tab=gallery_tab, tabs=tabs, review_tab=review_tab, **runs)
            with gr.Tab("Explore", id="explore") as explore_tab:
                explore.build(service, tab=explore_tab, tabs=tabs, review_tab=review_tab, **runs)
            with gr.Tab("Try", id="try"):
                try_tab.build(service, **runs)
            with gr.Tab("Triage", id="triage") as triage_tab:
                triage.build(service, tab=triage_tab, tabs=tabs, review_tab=review_tab, **runs)
            with gr.Tab("Monitor", id="monitor") as monitor_tab:
                monitor.build(service, tab=monitor_tab, tabs=tabs, review_tab=review_tab)
            with gr.Tab("Export", id="export") as export_tab:
                export.build(service, **runs)
        # each role sees the tabs it may use (the server refuses the others' endpoints anyway)
        role_tabs = {"triage": triage_tab, "monitor": monitor_tab, "export": export_tab}

        def show_role_tabs(request: gr.Request):
            return visible_tabs(service, request, list(role_tabs))

        app.load(show_role_tabs, None, list(role_tabs.values()), api_name="visible_tabs", queue=False)
    return log_user_errors_in_one_line(app)


def limit_decoded_pixels() -> None:
    """Refuse to decode any image past :data:`~hardcase.miner.sources.MAX_PIXELS` in this process,
    Gradio's own preprocessing of API payloads included (Pillow raises DecompressionBombError
    past twice its limit). Process-wide: the serving commands call it, not ``build_app``."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2


#: Sessions whose component state the server keeps (least recently used dropped first). Gradio
#: keeps 10,000 by default, each a copy of every component's configuration (about 0.3 MB here):
#: a script making raw API calls, each a new session, grew the server by gigabytes. A browser
#: tab is one session; a dropped one starts from the page's own values at its next event.
SESSION_CAPACITY = 128


def queue_options(*, max_size: int = 64) -> dict:
    """Keyword arguments for ``gr.Blocks.queue``: at most ``max_size`` calls waiting, 4 running
    per event, and no way around the queue for the events that use it (Gradio otherwise lets
    any client POST ``/run/<endpoint>`` and skip both bounds); events that skip the queue on
    purpose, such as the slider previews, say so with ``queue=False``."""
    return {"max_size": max_size, "default_concurrency_limit": 4, "api_open": False}


def launch_options(*, host: str = "127.0.0.1", port: int = 7860) -> dict:
    """Keyword arguments for ``gr.Blocks.launch`` shared by ``serve`` and ``demo``."""
    return {
        "server_name": host,
        "server_port": port,
        "css": CSS,
        "max_file_size": "5mb",
        "show_error": True,
        "footer_links": ["api"],
        "js": review.SHORTCUTS_JS,
        "state_session_capacity": SESSION_CAPACITY,
        # a backoff per client address in front of the sign-in route (Gradio's auth sees no address)
        "app_kwargs": {"middleware": [Middleware(LoginThrottle)]},
    }
