"""Who is calling, and the server-side role check every protected handler starts with."""

from __future__ import annotations

import gradio as gr

from hardcase.review_app.workflows.accounts import AccessDenied
from hardcase.review_app.workflows.review import ReviewService


def signed_in_user(request: gr.Request | None) -> str | None:
    """The signed-in user's name (``serve --auth``), or None without sign-in."""
    return getattr(request, "username", None) or None


def reviewer_name(request: gr.Request | None, typed: str | None) -> str:
    """Who a decision is recorded for: the signed-in user, else the name typed on the page."""
    return signed_in_user(request) or (typed or "").strip()


def guard(service: ReviewService, request: gr.Request | None, endpoint: str) -> None:
    """Refuse ``endpoint`` to the signed-in user unless their role allows it (a ``gr.Error``:
    one message in the page, an error for an API caller)."""
    username = signed_in_user(request)
    try:
        service.check_access(username, endpoint)
    except AccessDenied as exc:
        raise gr.Error(str(exc)) from None


def visible_tabs(service: ReviewService, request: gr.Request | None, endpoints: list[str]) -> list:
    """A visibility update per tab, named by its main endpoint: shown when the user may use it."""
    username = signed_in_user(request)
    updates = []
    for endpoint in endpoints:
        try:
            service.check_access(username, endpoint)
            updates.append(gr.update(visible=True))
        except AccessDenied:
            updates.append(gr.update(visible=False))
    return updates
