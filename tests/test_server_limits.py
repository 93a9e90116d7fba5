"""The server under abuse: raw API calls do not grow it without bound, and a sign-in flood from
one address meets a backoff while the hashing stays off the event loop."""

from __future__ import annotations

import gc
import inspect
import os
import sys
import threading
from pathlib import Path

import httpx
import pytest
from apputil import demo_store, served_app

from hardcase.review_app.app.build import SESSION_CAPACITY
from hardcase.review_app.app.throttle import MAX_CLIENT_FAILURES
from hardcase.review_app.workflows import accounts as accounts_module
from hardcase.review_app.workflows.accounts import Account, authenticator, hash_password
from hardcase.review_app.workflows.review import ReviewService

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from serve_load import RawClient, rss_mb


@pytest.fixture(scope="module")
def demo_service(tmp_path_factory, demo_model_path):
    store = demo_store(tmp_path_factory.mktemp("limits"), demo_model_path, per_class=2)
    yield ReviewService(store)
    store.dispose()


def test_raw_calls_each_a_new_session_keep_the_server_bounded(demo_service):
    with served_app(demo_service, queue_size=16) as app:
        client = RawClient(app.local_url.rstrip("/"))
        for _ in range(SESSION_CAPACITY + 50):  # warm-up: the session store fills to its capacity
            client.call("ping", [])
        gc.collect()
        before = rss_mb(os.getpid())
        for _ in range(600):
            client.call("ping", [])
        gc.collect()
        growth = rss_mb(os.getpid()) - before
        client.close()
        # Gradio's default kept 10,000 sessions of ~0.3 MB each: 1,500 calls grew it by ~450 MB,
        # so these 600 would by ~180 MB
        assert len(app.state_holder.session_data) <= SESSION_CAPACITY
        assert growth < 50, f"RSS grew {growth:.0f} MB over 600 raw calls"


@pytest.fixture(scope="module")
def signed_app(demo_service):
    accounts = {"gina": Account("gina", "annotator", hash_password("pw"))}
    with served_app(demo_service, queue_size=16, auth=authenticator(accounts)) as app:
        yield app.local_url.rstrip("/")


def _sign_in(url: str, name: str, password: str) -> int:
    return httpx.post(f"{url}/login", data={"username": name, "password": password}, timeout=30).status_code


def test_the_sign_in_coroutine_hashes_on_its_own_thread(monkeypatch):
    threads = []
    real = accounts_module.verify_password

    def recording(password, stored):
        threads.append(threading.current_thread().name)
        return real(password, stored)

    monkeypatch.setattr(accounts_module, "verify_password", recording)
    sign_in = authenticator({"gina": Account("gina", "annotator", hash_password("pw"))})
    assert inspect.iscoroutinefunction(sign_in)  # Gradio awaits it instead of calling it on its loop
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    def run(coroutine):  # a loop of its own: an earlier test may have left one running on this thread
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coroutine).result()

    assert run(sign_in("gina", "pw")) is True
    assert run(sign_in("gina", "nope")) is False
    assert len(threads) == 2 and all(name.startswith("hardcase-sign-in") for name in threads)


def test_many_failed_sign_ins_from_one_address_make_it_wait(signed_app):
    assert _sign_in(signed_app, "gina", "pw") == 200
    # names that do not exist never lock a name, so only the address's backoff can stop them
    statuses = [_sign_in(signed_app, f"user{index}", "guess") for index in range(MAX_CLIENT_FAILURES)]
    assert statuses == [400] * MAX_CLIENT_FAILURES
    refused = httpx.post(f"{signed_app}/login", data={"username": "gina", "password": "pw"}, timeout=30)
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text


def test_a_user_mistake_is_one_line_in_the_server_log(demo_service, monkeypatch, caplog):
    import traceback

    from gradio_client import Client

    printed = []
    monkeypatch.setattr(traceback, "print_exc", lambda *args, **kwargs: printed.append(args))
    with served_app(demo_service, queue_size=16) as app:
        client = Client(app.local_url, verbose=False)
        with caplog.at_level("WARNING", logger="hardcase.review_app.user_errors"):
            with pytest.raises(Exception, match="no candidate with id 987654"):
                client.predict(987654, 10, 0, 1, 0, 0, 0, 1, 0, api_name="/predict_transformed")
            with pytest.raises(Exception, match="'x7' is not a candidate id"):
                client.predict("demo", "ticked rows", "x7", None, None, "any", "any", "all", "", 0, "lee",
                               api_name="/bulk_decide")
        client.close()
    assert printed == []  # Gradio printed no traceback for them
    logged = [record.getMessage() for record in caplog.records if record.name.startswith("hardcase.review_app")]
    assert logged == ["predict_transformed: no candidate with id 987654",
                      "bulk_decide: 'x7' is not a candidate id"]  # once each


def test_queued_endpoints_cannot_be_called_around_the_queue(demo_service):
    with served_app(demo_service, queue_size=16) as app:
        url = app.local_url.rstrip("/")
        # /run/ would skip the queue's bounds (waiting calls, calls at once) for any endpoint
        direct = httpx.post(f"{url}/gradio_api/run/next_candidate", json={"data": ["demo", "x", -1, "any", "any"]})
        assert direct.status_code == 404 and "join the queue" in direct.text
        assert RawClient(url).call("ping", []) == ["ok"]  # through the queue it answers
