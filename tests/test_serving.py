"""Serving: accounts, refusing open binds, who a review is stored under, file-route safety."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from apputil import demo_store, served_app

from hardcase.review_app.cli import main
from hardcase.review_app.workflows.accounts import (
    authenticator,
    hash_password,
    load_accounts,
    password_check,
    verify_password,
)
from hardcase.store import api


def test_password_hashes_verify_and_differ():
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert first != second  # salted
    assert verify_password("s3cret", first) and verify_password("s3cret", second)
    assert not verify_password("wrong", first)
    assert not verify_password("s3cret", "md5$abc")


def _users_file(tmp_path, body: str):
    path = tmp_path / "users.toml"
    path.write_text(body)
    return path


def test_users_file_is_checked(tmp_path):
    good = hash_password("pw")
    accounts = load_accounts(_users_file(tmp_path, f'[[users]]\nname = "ann"\nrole = "lead"\npassword_hash = "{good}"\n'))
    assert accounts["ann"].role == "lead"
    check = password_check(accounts)
    assert check("ann", "pw") and not check("ann", "nope")
    assert not check("bob", "pw")
    with pytest.raises(ValueError, match="entry 1: role must be one of annotator, engineer, lead"):
        load_accounts(_users_file(tmp_path, f'[[users]]\nname = "x"\nrole = "admin"\npassword_hash = "{good}"\n'))
    with pytest.raises(ValueError, match="entry 1 lacks password_hash"):
        load_accounts(_users_file(tmp_path, '[[users]]\nname = "x"\nrole = "lead"\n'))
    with pytest.raises(ValueError, match="not valid TOML"):
        load_accounts(_users_file(tmp_path, "[[users]\n"))


def test_serving_beyond_loopback_without_auth_is_refused(tmp_path, capsys):
    code = main(["serve", "--db", f"sqlite:///{tmp_path / 'h.db'}", "--host", "0.0.0.0", "--port", "7999"])
    assert code == 2
    assert "refusing to serve on 0.0.0.0 without --auth FILE" in capsys.readouterr().err


@pytest.fixture(scope="module")
def demo_service(tmp_path_factory, demo_model_path):
    from hardcase.review_app.workflows.review import ReviewService

    store = demo_store(tmp_path_factory.mktemp("serving"), demo_model_path, per_class=2)
    yield ReviewService(store)
    store.dispose()


@pytest.fixture(scope="module")
def authed_app(demo_service):
    from hardcase.review_app.workflows.accounts import Account

    accounts = {"gina": Account("gina", "annotator", hash_password("pw"))}
    with served_app(demo_service, queue_size=16, auth=authenticator(accounts)) as app:
        yield demo_service.store, app.local_url


@pytest.fixture(scope="module")
def open_app(demo_service):
    with served_app(demo_service, queue_size=16) as app:
        yield app.local_url


def test_reviews_are_stored_under_the_signed_in_user(authed_app):
    from gradio_client import Client

    store, url = authed_app
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do: no credentials, no app
        Client(url, verbose=False)
    client = Client(url, auth=("gina", "pw"), verbose=False)
    shown = client.predict("demo", "", -1, "any", "unreviewed", "any", api_name="/next_candidate")
    candidate_id, version = int(shown[3]), int(shown[4])
    # the typed name is ignored when signed in: the account name is what is stored
    result = client.predict(candidate_id, "rare", None, "", 0, 0, 0, 1, version, "someone-else",
                            api_name="/submit_review")
    with store.Session.begin() as session:
        assert [r.reviewer for r in api.reviews_for(session, candidate_id)] == ["gina"]
    assert result["conflict"] is False
    client.close()


@pytest.mark.parametrize(
    "route",
    [
        "/gradio_api/file=../../../../etc/passwd",
        "/gradio_api/file=/etc/passwd",
        "/gradio_api/file=%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/gradio_api/file=..%2F..%2F..%2Fetc%2Fpasswd",
        "/file=/etc/passwd",
    ],
)
def test_file_routes_do_not_leak_files(open_app, route):
    url = open_app
    try:
        with urllib.request.urlopen(url.rstrip("/") + route, timeout=10) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        status, body = error.code, b""
    assert status in (403, 404), f"{route} answered {status}"
    assert b"root:" not in body
