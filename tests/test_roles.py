"""Roles are enforced on the server, endpoint by endpoint: annotators review and try; engineers
also export and watch monitoring; leads also triage and adjudicate."""

from __future__ import annotations

import pytest
from apputil import demo_store, served_app

from hardcase.review_app.workflows.accounts import (
    ENDPOINT_ROLES,
    AccessDenied,
    Account,
    authenticator,
    check_access,
    hash_password,
    role_allows,
)
from hardcase.store import api

ROLE_OF = {"ann": "annotator", "eng": "engineer", "lea": "lead"}

#: Every endpoint above the annotator's, with arguments it accepts, and one every role may call.
CALLS = {
    "export": ("demo", "fixes", "csv"),
    "export_image_folder": ("demo",),
    "monitor": ("",),
    "monitor_map": ("", 0),
    "pick_alert": (),
    "open_alert": ("", 0),
    "triage": ("demo",),
    "retrain_report": ("demo",),
    "open_disagreement": (),
    "next_candidate": ("demo", "", -1, "any", "unreviewed", "any"),
    "bulk_decide": ("demo", "ticked rows", "", "accept the suggestion", None, "any", "any", "all", "", 0, ""),
    "adjudicate": ("demo", "ticked rows", "", "accept the suggestion", None, "any", "any", "all", "", 0, ""),
    "undo_batch": (None, ""),
    "model_choices": ("demo",),
    "compare_models": ("demo", "", ""),
}


@pytest.fixture(scope="module")
def role_app(tmp_path_factory, demo_model_path):
    from hardcase.review_app.workflows.review import ReviewService

    store = demo_store(tmp_path_factory.mktemp("roles"), demo_model_path, per_class=1)
    accounts = {name: Account(name, role, hash_password("pw")) for name, role in ROLE_OF.items()}
    with store.Session.begin() as session:
        for account in accounts.values():
            api.add_user(session, name=account.name, role=account.role, password_hash=account.password_hash)
    service = ReviewService(store)
    try:
        with served_app(service, queue_size=16, auth=authenticator(accounts)) as app:
            yield app, service
    finally:
        store.dispose()


@pytest.fixture(scope="module")
def clients(role_app):
    from gradio_client import Client

    app, _ = role_app
    return {name: Client(app.local_url, auth=(name, "pw"), verbose=False) for name in ROLE_OF}


def test_every_public_endpoint_has_a_role(role_app):
    app, _ = role_app
    public = {fn.api_name for fn in app.fns.values() if fn.api_visibility == "public"}
    assert public == set(ENDPOINT_ROLES)
    assert set(ENDPOINT_ROLES.values()) <= {"annotator", "engineer", "lead"}
    assert {name for name, role in ENDPOINT_ROLES.items() if role != "annotator"} <= set(CALLS)


@pytest.mark.parametrize("endpoint", sorted(CALLS))
@pytest.mark.parametrize("user", sorted(ROLE_OF))
def test_the_role_matrix_is_enforced_on_the_server(clients, endpoint, user):
    allowed = role_allows(ROLE_OF[user], ENDPOINT_ROLES[endpoint])
    try:
        clients[user].predict(*CALLS[endpoint], api_name=f"/{endpoint}")
        refused = False
    except Exception as exc:
        refused = "may not use" in str(exc)
        if refused:
            assert f"{user} ({ROLE_OF[user]}) may not use {endpoint}" in str(exc)
            assert f"needs the {ENDPOINT_ROLES[endpoint]} role" in str(exc)
    assert refused == (not allowed), (user, endpoint)


def test_access_without_auth_and_for_unknown_accounts(role_app):
    _, service = role_app
    check_access(service.store, None, "triage")  # served without --auth: loopback, one trusted user
    check_access(service.store, "lea", "triage")
    with pytest.raises(AccessDenied, match="mallory \\(no account in this database\\) may not use export"):
        check_access(service.store, "mallory", "export")
    with pytest.raises(AccessDenied, match="ann \\(annotator\\) may not use triage: it needs the lead role"):
        check_access(service.store, "ann", "triage")
    with pytest.raises(KeyError):
        check_access(service.store, "lea", "no_such_endpoint")


@pytest.mark.parametrize(("user", "shown"), [("ann", [False, False, False]), ("eng", [False, True, True]),
                                             ("lea", [True, True, True]), (None, [True, True, True])])
def test_each_role_sees_the_tabs_it_may_use(role_app, user, shown):
    """Triage, Monitor and Export, in that order (tab visibility is not part of the API's
    answer, so the page-load handler is called as the app calls it)."""
    from types import SimpleNamespace

    from hardcase.review_app.app.handlers.access import visible_tabs

    _, service = role_app
    updates = visible_tabs(service, SimpleNamespace(username=user), ["triage", "monitor", "export"])
    assert [update["visible"] for update in updates] == shown
