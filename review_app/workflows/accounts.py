"""Reviewer accounts for ``hardcase serve --auth FILE``: a TOML users file with scrypt hashes.

The file lists one table per user::

    [[users]]
    name = "alice"
    role = "annotator"          # annotator | engineer | lead
    password_hash = "scrypt$16384$8$1$<salt>$<hash>"   # from `hardcase users hash`

Roles are checked on the server, endpoint by endpoint (:data:`ENDPOINT_ROLES`,
:func:`check_access`): annotators review and try the model; engineers also export and watch
monitoring; leads also triage and adjudicate.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import os
import threading
import time
import tomllib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hardcase.miner.vocabulary import DECISIONS, ROLES
from hardcase.store import api
from hardcase.store.db import Store

_N, _R, _P = 2**14, 8, 1


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    password_hash: str


def hash_password(password: str) -> str:
    """An scrypt hash with a random salt, as stored in the users file."""
    if not password:
        raise ValueError("the password is empty")
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    encode = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"scrypt${_N}${_R}${_P}${encode(salt)}${encode(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches the ``stored`` scrypt hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def load_accounts(path: str | os.PathLike) -> dict[str, Account]:
    """Read and check a users file; errors name the file and the entry."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"users file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"users file {path} is not valid TOML: {exc}") from None
    entries = data.get("users")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"users file {path} has no [[users]] entries")
    accounts: dict[str, Account] = {}
    for number, entry in enumerate(entries, start=1):
        where = f"users file {path}, entry {number}"
        missing = [key for key in ("name", "role", "password_hash") if not entry.get(key)]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(missing)}")
        if entry["role"] not in ROLES:
            raise ValueError(f"{where}: role must be one of {', '.join(ROLES)}, got {entry['role']!r}")
        if not str(entry["password_hash"]).startswith("scrypt$"):
            raise ValueError(f"{where}: password_hash must come from `hardcase users hash` (scrypt$...)")
        if entry["name"] in accounts:
            raise ValueError(f"{where}: user {entry['name']!r} is listed twice")
        accounts[entry["name"]] = Account(str(entry["name"]), str(entry["role"]), str(entry["password_hash"]))
    return accounts


#: Failed sign-ins of one user name before it is locked, and the first lock's length (seconds;
#: each further failure while counting doubles it, up to an hour).
MAX_FAILURES = 5
LOCK_SECONDS = 30.0
MAX_LOCK_SECONDS = 3600.0
#: Names (or addresses) whose failures are remembered at most; past it the one whose last
#: failure is oldest is forgotten, so guesses at made-up names cannot grow the server.
MAX_TRACKED = 10_000


class LoginGuard:
    """Failed sign-ins per user name, and the lock that follows too many.

    A locked name is refused at once, without hashing: a flood of guesses costs the server
    nothing and cannot slow the reviewers. At most ``max_tracked`` names are remembered.
    Thread-safe (Gradio signs users in on its worker threads).
    """

    def __init__(self, *, max_failures: int = MAX_FAILURES, lock_seconds: float = LOCK_SECONDS,
                 clock: Callable[[], float] = time.monotonic, max_tracked: int = MAX_TRACKED) -> None:
        self.max_failures = max_failures
        self.lock_seconds = lock_seconds
        self.clock = clock
        self.max_tracked = max_tracked
        self._failures: OrderedDict[str, int] = OrderedDict()  # least recently failed first
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def locked(self, username: str) -> bool:
        with self._lock:
            return self.clock() < self._locked_until.get(username, -math.inf)

    def failed(self, username: str) -> None:
        with self._lock:
            count = self._failures.pop(username, 0) + 1
            self._failures[username] = count
            while len(self._failures) > self.max_tracked:
                forgotten, _ = self._failures.popitem(last=False)
                self._locked_until.pop(forgotten, None)
            if count >= self.max_failures:
                doublings = count - self.max_failures
                seconds = min(MAX_LOCK_SECONDS, self.lock_seconds * 2.0 ** doublings)
                self._locked_until[username] = self.clock() + seconds

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(username, None)
            self._locked_until.pop(username, None)


#: Verified in the place of an unknown user's hash, so an unknown name takes as long to refuse
#: as a wrong password (no user enumeration by timing).
_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def password_check(accounts: dict[str, Account], *, guard: LoginGuard | None = None) -> Callable[[str, str], bool]:
    """``check(username, password) -> bool``: constant work for unknown names, and a lock after
    :data:`MAX_FAILURES` failures of one name (:class:`LoginGuard`). Blocking (scrypt): the
    server calls it through :func:`authenticator`, off its event loop."""
    guard = guard or LoginGuard()

    def check(username: str, password: str) -> bool:
        if guard.locked(username):
            return False
        account = accounts.get(username)
        ok = verify_password(password, account.password_hash if account is not None else _DUMMY_HASH)
        if ok and account is not None:
            guard.succeeded(username)
            return True
        guard.failed(username)
        return False

    return check


#: Sign-ins hashed at once. scrypt releases the GIL, so a hashing thread costs one core and no
#: more: a flood of sign-ins queues here instead of taking the cores reviewers' calls need.
HASHING_THREADS = 1
#: Sign-ins waiting for the hashing thread beyond which more are refused at once.
MAX_WAITING_SIGN_INS = 32


def authenticator(accounts: dict[str, Account], *, guard: LoginGuard | None = None
                  ) -> Callable[[str, str], Awaitable[bool]]:
    """The ``auth`` coroutine for ``gr.Blocks.launch``: :func:`password_check` run on a hashing
    thread of its own, so a sign-in never holds the server's event loop (Gradio awaits a
    coroutine ``auth``; a plain function would run scrypt on the loop and stall every reviewer
    for its 40 ms). Past :data:`MAX_WAITING_SIGN_INS` waiting, a sign-in is refused at once."""
    check = password_check(accounts, guard=guard)
    pool = ThreadPoolExecutor(max_workers=HASHING_THREADS, thread_name_prefix="hardcase-sign-in")
    waiting = threading.BoundedSemaphore(MAX_WAITING_SIGN_INS)

    async def sign_in(username: str, password: str) -> bool:
        if not waiting.acquire(blocking=False):
            return False
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, check, username, password)
        finally:
            waiting.release()

    return sign_in


#: The least role each public endpoint of the review app needs, by ``api_name`` (private steps
#: chained after one, such as the monitor map after a refresh, check the endpoint they belong
#: to). Every public endpoint is listed: a test fails when a new one is not.
ENDPOINT_ROLES: dict[str, str] = {
    **dict.fromkeys(
        ["ping", "next_candidate", "previous_candidate", "first_candidate", "open_candidate", "submit_review",
         "undo", "predict_transformed", "apply_suggestion", "reset_transform", "preview_saliency",
         "saliency_method", "clear_filters",
         "remember_reviewer", "recall_reviewer", "run_classes", "gallery", "gallery_classes", "gallery_select",
         "open_in_review", "try_predict", "try_reset", "try_upload", "visible_tabs",
         "explore", "explore_map", "explore_table", "explore_clear_filters", "explore_open", "explore_map_select",
         *(f"decide_{decision}" for decision in DECISIONS),
         *(f"preview_{slider}" for slider in ("rotate", "perspective", "direction", "scale", "shift_x", "shift_y",
                                              "aspect", "shear"))],
        "annotator"),
    **dict.fromkeys(["export", "export_image_folder", "monitor", "monitor_map", "pick_alert", "open_alert"],
                    "engineer"),
    **dict.fromkeys(["triage", "retrain_report", "open_disagreement", "bulk_decide", "adjudicate", "undo_batch",
                     "model_choices", "compare_models"], "lead"),
}


class AccessDenied(PermissionError):
    """A signed-in user called an endpoint their role does not allow (one line: who, what, which role)."""


def role_allows(role: str, minimum: str) -> bool:
    """Whether ``role`` is ``minimum`` or above in :data:`~hardcase.miner.vocabulary.ROLES`."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(minimum)


def check_access(store: Store, username: str | None, endpoint: str) -> None:
    """Refuse ``endpoint`` to ``username`` unless their stored role allows it.

    ``username`` None is an app served without ``--auth`` (bound to loopback: one trusted
    user), which may call everything. A signed-in name without a stored account may call
    nothing.

    Raises
    ------
    AccessDenied
    KeyError
        ``endpoint`` is not in :data:`ENDPOINT_ROLES` (a programming error: list it).
    """
    minimum = ENDPOINT_ROLES[endpoint]
    if username is None:
        return
    with store.snapshot() as session:
        user = api.get_user(session, username)
        role = user.role if user is not None else None
    if role is None or not role_allows(role, minimum):
        who = f"{username} ({role})" if role else f"{username} (no account in this database)"
        raise AccessDenied(f"{who} may not use {endpoint}: it needs the {minimum} role or above")
