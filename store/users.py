"""Accounts of the review app, with their role."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hardcase.miner.vocabulary import ROLES
from hardcase.store._rows import _add_new, _check_name
from hardcase.store.errors import StoreError
from hardcase.store.schema import User


def add_user(session: Session, *, name: str, role: str, password_hash: str) -> User:
    """Create a review-app account.

    Raises
    ------
    ValueError
        Unknown role.
    StoreError
        The name is taken.
    """
    _check_name("user name", name)
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    taken = f"user {name!r} already exists"
    if session.get(User, name) is not None:
        raise StoreError(taken)
    return _add_new(session, User(name=name, role=role, password_hash=password_hash), taken)


def get_user(session: Session, name: str) -> User | None:
    """The account called ``name``, or None."""
    return session.get(User, name)


def list_users(session: Session) -> list[User]:
    """All accounts, by name."""
    return list(session.scalars(select(User).order_by(User.name)))
