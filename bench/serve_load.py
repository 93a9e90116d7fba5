"""The review server under load: slider round trips for 1 and 8 clients, and memory over a soak.

A real ``hardcase serve --auth`` process is started on 127.0.0.1 over a demo store (made here
with ``hardcase demo --no-launch`` unless ``--db`` names one), as a team would run it: every
client signs in (one lead account). Then, in one run:

1. **one client** calls ``/predict_transformed`` (the call a slider drag makes) back to back for
   ``--seconds``, through Gradio's raw HTTP API (``POST /gradio_api/call/<name>`` then the
   event's stream), with a random rotation per call, in one session as a browser tab would;
2. **eight clients** do the same at once;
3. **reviewers dragging**: 1, then 8 reviewers each dragging a slider for a second (a
   prediction asked at each animation frame, the latest only while one is under way, as the page
   does) then looking for one to three seconds; the target is on this phase, the one the page
   makes (phase 2 is the server's whole capacity, every client back to back);
4. **a sign-in flood**: one reviewer drags as in 1 while eight threads post wrong passwords for
   random names to ``/login`` (they meet the per-address backoff after 20);
5. **a soak** of ``--soak`` raw calls (``/ping`` and ``/predict_transformed`` alternating, each
   call a new session as a script without a session hash makes), the server's resident memory
   (``VmRSS``) read before and after.

Printed: calls per second, p50 and p95 round trip per phase, the ratio p95(8) / p50(1) for the
back-to-back and the dragging phases (target <= 2 for reviewers dragging), the reviewer's p50 during the flood over the p50 without, and the RSS
growth over the soak (target < 50 MB).

Usage: ``python bench/serve_load.py [--db sqlite:///path.db] [--seconds 20] [--soak 10000] [--json FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _hardcase() -> list[str]:
    return [sys.executable, "-m", "hardcase.review_app.cli"]


def make_demo_store(folder: Path) -> str:
    url = f"sqlite:///{folder / 'demo.db'}"
    subprocess.run([*_hardcase(), "demo", "--db", url, "--no-launch"], check=True, cwd=folder,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return url


def candidate_ids(url: str) -> list[int]:
    from sqlalchemy import select

    from hardcase.store.db import open_store
    from hardcase.store.schema import Candidate

    store = open_store(url, upgrade=False)
    with store.Session() as session:
        ids = list(session.scalars(select(Candidate.id)))
    store.engine.dispose()
    return ids


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` and its children (MB)."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1])
    return total / 1024


class RawClient:
    """Gradio's HTTP API as a script uses it: one POST to queue a call, one GET for its result."""

    def __init__(self, base: str, *, session_hash: str | None = None, login: tuple[str, str] | None = None) -> None:
        self.base = base
        self.session_hash = session_hash
        self.direct: bool | None = None  # whether /run/ answers (learnt at the first slider call)
        self.http = httpx.Client(timeout=60)
        if login is not None:  # the session cookie the sign-in sets is sent with every call after
            signed = self.http.post(f"{base}/login", data={"username": login[0], "password": login[1]})
            signed.raise_for_status()

    def call(self, api_name: str, data: list) -> list:
        body = {"data": data} if self.session_hash is None else {"data": data, "session_hash": self.session_hash}
        event = self.http.post(f"{self.base}/gradio_api/call/{api_name}", json=body)
        event.raise_for_status()
        event_id = event.json()["event_id"]
        with self.http.stream("GET", f"{self.base}/gradio_api/call/{api_name}/{event_id}") as stream:
            kind = None
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    if kind == "error":
                        raise RuntimeError(f"{api_name} failed: {line}")
                    return json.loads(line.split(":", 1)[1])
        raise RuntimeError(f"{api_name}: the stream ended without a result")

    def slider(self, api_name: str, data: list) -> list:
        """A call the way the page makes it: one POST to ``/run/`` for an event that skips the
        queue (as the slider previews do), else through the queue like :meth:`call`."""
        if self.direct is not False:
            body = {"data": data, "session_hash": self.session_hash}
            answer = self.http.post(f"{self.base}/gradio_api/run/{api_name}", json=body)
            if answer.status_code != 404:
                answer.raise_for_status()
                self.direct = True
                return answer.json()["data"]
            self.direct = False
        return self.call(api_name, data)

    def close(self) -> None:
        self.http.close()


def slider_call(client: RawClient, ids: list[int], rng: random.Random) -> float:
    started = time.perf_counter()
    client.slider("predict_transformed", [rng.choice(ids), rng.uniform(-60, 60), 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    return time.perf_counter() - started


#: The account every bench client signs in with.
LOGIN = ("bench", "bench-password")


def _round_trips(user, n_users: int) -> tuple[list[float], float]:
    """Run ``user(seed) -> [seconds, ...]`` in ``n_users`` threads; every round trip (ms, sorted)
    and the wall time."""
    times: list[float] = []
    lock = threading.Lock()

    def run(seed: int) -> None:
        mine = user(seed)
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(n_users)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(1000 * t for t in times), time.perf_counter() - started


def _percentiles(ms: list[float]) -> dict:
    return {"calls": len(ms), "p50_ms": statistics.median(ms), "p95_ms": ms[int(0.95 * (len(ms) - 1))]}


def phase(base: str, ids: list[int], n_clients: int, seconds: float) -> dict:
    """``n_clients`` threads calling back to back for ``seconds``; their round trips."""
    stop = time.perf_counter() + seconds

    def client_calls(seed: int) -> list[float]:
        # one session per client, as a browser tab keeps one while its slider is dragged
        client = RawClient(base, session_hash=f"slider-user-{seed}", login=LOGIN)
        rng, mine = random.Random(seed), []
        while time.perf_counter() < stop:
            mine.append(slider_call(client, ids, rng))
        client.close()
        return mine

    ms, elapsed = _round_trips(client_calls, n_clients)
    return {"clients": n_clients, "calls_per_s": len(ms) / elapsed, **_percentiles(ms)}


#: A reviewer's drag: the page asks for a prediction at each animation frame the slider moved in
#: (60 a second), keeping only the latest while one is under way (``trigger_mode="always_last"``);
#: a drag lasts about a second, then the reviewer looks for one to three seconds.
FRAME_SECONDS = 1 / 60
DRAG_SECONDS = 1.0
LOOK_SECONDS = (1.0, 3.0)


def drags(base: str, ids: list[int], n_users: int, seconds: float) -> dict:
    """``n_users`` reviewers dragging sliders and looking in turn; their round trips."""
    stop = time.perf_counter() + seconds

    def reviewer(seed: int) -> list[float]:
        client = RawClient(base, session_hash=f"reviewer-{seed}", login=LOGIN)
        rng, mine = random.Random(seed), []
        time.sleep(rng.uniform(0, sum(LOOK_SECONDS) / 2))  # reviewers do not start in step
        while time.perf_counter() < stop:
            drag_end = time.perf_counter() + DRAG_SECONDS
            next_frame = time.perf_counter()
            while time.perf_counter() < drag_end:
                mine.append(slider_call(client, ids, rng))  # the latest value, once the last answered
                next_frame += FRAME_SECONDS
                time.sleep(max(0.0, next_frame - time.perf_counter()))
                next_frame = max(next_frame, time.perf_counter())
            time.sleep(rng.uniform(*LOOK_SECONDS))
        client.close()
        return mine

    ms, _ = _round_trips(reviewer, n_users)
    return {"reviewers": n_users, **_percentiles(ms)}


def flood(base: str, ids: list[int], seconds: float) -> dict:
    """One signed-in reviewer's back-to-back round trips while eight threads post wrong passwords
    for random names to ``/login``."""
    reviewer, rng = RawClient(base, session_hash="flooded-reviewer", login=LOGIN), random.Random(3)
    stop = time.perf_counter() + seconds
    statuses: list[int] = []

    def guesser(seed: int) -> None:
        guesses, http = random.Random(seed), httpx.Client(timeout=60)
        while time.perf_counter() < stop:
            statuses.append(http.post(f"{base}/login", data={"username": f"guess{guesses.randrange(10**6)}",
                                                              "password": "wrong"}).status_code)
        http.close()

    threads = [threading.Thread(target=guesser, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    ms = []
    while time.perf_counter() < stop:
        ms.append(1000 * slider_call(reviewer, ids, rng))
    for thread in threads:
        thread.join()
    reviewer.close()
    ms.sort()
    return {**_percentiles(ms), "sign_in_attempts": len(statuses), "answered_429": sum(status == 429 for status in statuses)}


def soak(base: str, ids: list[int], pid: int, n_calls: int) -> dict:
    client, rng = RawClient(base, login=LOGIN), random.Random(7)
    for index in range(200):  # warm-up: caches, first sessions, allocator arenas
        client.call("ping", []) if index % 2 else slider_call(client, ids, rng)
    before = rss_mb(pid)
    for index in range(n_calls):
        client.call("ping", []) if index % 2 else slider_call(client, ids, rng)
    after = rss_mb(pid)
    client.close()
    return {"calls": n_calls, "rss_before_mb": before, "rss_after_mb": after, "growth_mb": after - before}


def serve(url: str, port: int, folder: Path) -> subprocess.Popen:
    from hardcase.review_app.workflows.accounts import hash_password

    users = folder / "users.toml"
    users.write_text(f'[[users]]\nname = "{LOGIN[0]}"\nrole = "lead"\npassword_hash = "{hash_password(LOGIN[1])}"\n')
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", TF_CPP_MIN_LOG_LEVEL="2")
    log = open(folder / "serve.log", "w")
    process = subprocess.Popen([*_hardcase(), "serve", "--db", url, "--port", str(port), "--auth", str(users)],
                               stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://{HOST}:{port}/config", timeout=2).status_code in (200, 401):
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"the server did not start: see {folder / 'serve.log'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=None, help="a store with a mined run (default: a demo store made here)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each load phase")
    parser.add_argument("--soak", type=int, default=10_000, help="raw calls in the soak")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hc-serve-load-") as tmp:
        folder = Path(tmp)
        url = args.db or make_demo_store(folder)
        ids = candidate_ids(url)
        port = _free_port()
        process = serve(url, port, folder)
        base = f"http://{HOST}:{port}"
        try:
            warm = RawClient(base, login=LOGIN)
            for _ in range(20):
                slider_call(warm, ids, random.Random(0))
            warm.close()
            one = phase(base, ids, 1, args.seconds)
            eight = phase(base, ids, 8, args.seconds)
            one_dragging = drags(base, ids, 1, 2 * args.seconds)
            eight_dragging = drags(base, ids, 8, 2 * args.seconds)
            memory = soak(base, ids, process.pid, args.soak)
            flooded = flood(base, ids, args.seconds)  # last: it locks this address out of signing in
        finally:
            process.terminate()
            process.wait(timeout=30)
    figures = {"one_client": one, "eight_clients": eight, "one_reviewer_dragging": one_dragging,
               "eight_reviewers_dragging": eight_dragging, "during_sign_in_flood": flooded, "soak": memory,
               "p95_8_over_p50_1": eight["p95_ms"] / one["p50_ms"],
               "dragging_p95_8_over_p50_1": eight_dragging["p95_ms"] / one_dragging["p50_ms"],
               "flood_p50_over_p50": flooded["p50_ms"] / one["p50_ms"]}
    for row in (one, eight):
        print(f"{row['clients']} client(s): {row['calls_per_s']:.1f} calls/s, p50 {row['p50_ms']:.0f} ms, "
              f"p95 {row['p95_ms']:.0f} ms ({row['calls']} calls)")
    print(f"p95 with 8 clients / p50 with 1 client: {figures['p95_8_over_p50_1']:.2f} "
          "(back to back: the server's whole capacity)")
    for row in (one_dragging, eight_dragging):
        print(f"{row['reviewers']} reviewer(s) dragging and looking: p50 {row['p50_ms']:.0f} ms, "
              f"p95 {row['p95_ms']:.0f} ms ({row['calls']} calls)")
    print(f"dragging: p95 with 8 reviewers / p50 with 1: {figures['dragging_p95_8_over_p50_1']:.2f} (target <= 2)")
    print(f"one reviewer during a sign-in flood ({flooded['sign_in_attempts']} attempts, "
          f"{flooded['answered_429']} answered 429): p50 {flooded['p50_ms']:.0f} ms, p95 {flooded['p95_ms']:.0f} ms, "
          f"{figures['flood_p50_over_p50']:.2f}x the p50 without")
    print(f"soak of {memory['calls']} raw calls: RSS {memory['rss_before_mb']:.0f} -> {memory['rss_after_mb']:.0f} MB, "
          f"growth {memory['growth_mb']:+.0f} MB (target < 50)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
