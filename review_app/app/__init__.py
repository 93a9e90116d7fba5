"""The Gradio review app: layout and event wiring only.

``build.py`` assembles :func:`build_app` from one module per tab (``tabs/``); each tab's
events call its handlers (``handlers/``), which turn widget values into calls of a workflow
service (:mod:`hardcase.review_app.workflows`) and its answers back into widget values. No
module here runs SQL or touches a model directly.
"""

from hardcase.review_app.app.build import (
    build_app,
    launch_options,
    limit_decoded_pixels,
    queue_options,
)

__all__ = ["build_app", "launch_options", "limit_decoded_pixels", "queue_options"]
