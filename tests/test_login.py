"""Sign-in: unknown names cost what a wrong password costs; repeated failures lock the name."""

from __future__ import annotations

import pytest

from hardcase.review_app.workflows import accounts as accounts_module
from hardcase.review_app.workflows.accounts import (
    MAX_FAILURES,
    Account,
    LoginGuard,
    hash_password,
    password_check,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def users():
    return {"ann": Account("ann", "annotator", hash_password("right"))}


def test_an_unknown_name_is_verified_against_a_dummy_hash(users, monkeypatch):
    calls = []
    real = accounts_module.verify_password

    def counting(password, stored):
        calls.append(stored)
        return real(password, stored)

    monkeypatch.setattr(accounts_module, "verify_password", counting)
    check = password_check(users)
    assert not check("nobody", "right")
    assert not check("ann", "wrong")
    assert check("ann", "right")
    # the unknown name went through scrypt like the others (no early return to time)
    assert len(calls) == 3 and calls[0].startswith("scrypt$16384$8$1$")


def test_repeated_failures_lock_the_name_and_the_lock_doubles(users, monkeypatch):
    clock = Clock()
    guard = LoginGuard(lock_seconds=30.0, clock=clock)
    check = password_check(users, guard=guard)
    for _ in range(MAX_FAILURES):
        assert not check("ann", "guess")
    calls = []
    monkeypatch.setattr(accounts_module, "verify_password", lambda *a: calls.append(a) or True)
    assert not check("ann", "right")  # locked: refused without hashing
    assert calls == []
    monkeypatch.undo()
    clock.now += 31.0
    assert not check("ann", "guess again")  # a failure right after the lock: locked twice as long
    clock.now += 31.0
    assert not check("ann", "right")
    clock.now += 30.0
    assert check("ann", "right")  # 61 s after: open, and the count starts over
    assert not check("ann", "one slip")
    assert check("ann", "right")


def test_a_locked_name_does_not_lock_the_others(users):
    clock = Clock()
    accounts = users | {"bob": Account("bob", "lead", hash_password("bobpw"))}
    check = password_check(accounts, guard=LoginGuard(clock=clock))
    for _ in range(MAX_FAILURES + 3):
        check("ann", "guess")
    assert check("bob", "bobpw")


def test_failures_at_made_up_names_are_remembered_for_a_bounded_number_of_names(users):
    clock = Clock()
    guard = LoginGuard(clock=clock, max_tracked=3)
    check = password_check(users, guard=guard)
    for _ in range(MAX_FAILURES):
        check("ann", "guess")
    assert guard.locked("ann")
    for index in range(3):  # three other names fail since: ann's failures are the oldest, forgotten
        check(f"made-up-{index}", "guess")
    assert len(guard._failures) == 3 and not guard.locked("ann")
    assert check("ann", "right")
