"""Errors raised by the store."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A persistence problem the user can act on (bad URL, read-only file, newer schema...).

    The message is one line and names the offending value.
    """
