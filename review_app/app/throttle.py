"""Backoff per client address for sign-ins, in front of Gradio's ``/login`` route.

The per-name lock (:class:`~hardcase.review_app.workflows.accounts.LoginGuard`) stops guesses
at one name; a client trying many names meets this one. Gradio's ``auth`` callable is given no
request, so the address is read here, in an ASGI middleware around the app: a failed sign-in is
the route's 400 answer, and an address with :data:`MAX_CLIENT_FAILURES` failures is answered
429 after a second (no hashing, no route) until its lock ends, the lock doubling like the names'.
"""

from __future__ import annotations

import asyncio
import json
import logging

from hardcase.review_app.workflows.accounts import LoginGuard

__all__ = ["MAX_CLIENT_FAILURES", "LoginThrottle"]

log = logging.getLogger(__name__)

#: Failed sign-ins from one address before it waits: more than one user's slips (several
#: reviewers may share an office's address), far fewer than a guessing script makes.
MAX_CLIENT_FAILURES = 20
CLIENT_LOCK_SECONDS = 30.0
#: How long a refusal of a locked address takes to come.
REFUSAL_DELAY_SECONDS = 1.0


class LoginThrottle:
    """ASGI middleware: ``POST /login`` from a locked address is refused with 429.

    Parameters
    ----------
    app
        The ASGI app it wraps (Starlette passes it).
    guard
        Failures and locks keyed by client address; default :data:`MAX_CLIENT_FAILURES`
        failures, then :data:`CLIENT_LOCK_SECONDS`, doubling.
    """

    def __init__(self, app, guard: LoginGuard | None = None) -> None:
        self.app = app
        self.guard = guard or LoginGuard(max_failures=MAX_CLIENT_FAILURES, lock_seconds=CLIENT_LOCK_SECONDS)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/login":
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        if self.guard.locked(client):
            log.warning("sign-in refused: too many failed sign-ins from %s", client)
            # answered slowly: a script waiting for each answer then guesses once a second, not
            # hundreds of times, and the loop serves reviewers meanwhile
            await asyncio.sleep(REFUSAL_DELAY_SECONDS)
            body = json.dumps({"detail": "Too many failed sign-ins from this address; wait and try again."}).encode()
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", b"30")]})
            await send({"type": "http.response.body", "body": body})
            return

        async def observe(message) -> None:
            if message["type"] == "http.response.start":
                if message["status"] == 400:
                    self.guard.failed(client)
                elif message["status"] < 400:
                    self.guard.succeeded(client)
            await send(message)

        await self.app(scope, receive, observe)
