"""Errors raised by the store."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A persistence problem the user can act on (bad URL, read-only file, newer schema...).

    The message is one line and names the offending value.
    """


class StoreFullError(StoreError, OSError):
    """The database's device (or the server's) has no space left: the action was not saved.

    An ``OSError`` too: the machine's fault, not the user's, and the CLI exits 1 for it.
    """
