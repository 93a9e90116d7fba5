"""A user's mistake is one line in the server's log, not a traceback.

Handlers report a mistake (no candidate chosen, a name missing, a role that may not) as
``gr.Error``, which the user sees beside the field or as a toast. Gradio also prints the
error's whole traceback to the server's console, about thirty lines per slip, which buries the
server's real failures. :func:`log_user_errors_in_one_line` wraps every event function of an app
so a ``gr.Error`` is logged as one line (endpoint and message) and not printed again; any other
exception, a real fault, keeps its traceback.
"""

from __future__ import annotations

import functools
import inspect
import logging

import gradio as gr

__all__ = ["log_user_errors_in_one_line", "log_user_mistake"]

log = logging.getLogger("hardcase.review_app.user_errors")


def log_user_mistake(where: str, message: str) -> str:
    """Log a user's mistake as one line (``where: message``); returns ``message``, for mistakes
    shown without an exception (a status line beside the field)."""
    log.warning("%s: %s", where, " ".join(str(message).split()))
    return message


def _one_line(endpoint: str, error: gr.Error) -> None:
    error.print_exception = False
    log_user_mistake(endpoint, error.message)


def _wrapped(fn, endpoint: str):
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def async_generator(*args, **kwargs):
            try:
                async for value in fn(*args, **kwargs):
                    yield value
            except gr.Error as error:
                _one_line(endpoint, error)
                raise
        return async_generator
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error as error:
                _one_line(endpoint, error)
                raise
        return generator
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def coroutine(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except gr.Error as error:
                _one_line(endpoint, error)
                raise
        return coroutine

    @functools.wraps(fn)
    def function(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error as error:
            _one_line(endpoint, error)
            raise
    return function


def log_user_errors_in_one_line(app: gr.Blocks) -> gr.Blocks:
    """Wrap each event function of ``app`` (see the module docstring); returns ``app``."""
    for block_fn in app.fns.values():
        if block_fn.fn is not None and not getattr(block_fn.fn, "_hardcase_one_line", False):
            block_fn.fn = _wrapped(block_fn.fn, str(block_fn.api_name or block_fn.name))
            block_fn.fn._hardcase_one_line = True
    return app
