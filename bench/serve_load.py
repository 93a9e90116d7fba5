"""The review server under load: slider round trips for 1 and 8 clients, and memory over a soak.

A real ``hardcase serve`` process is started on 127.0.0.1 over a demo store (made here with
``hardcase demo --no-launch`` unless ``--db`` names one), then, in one run:

1. **one client** calls ``/predict_transformed`` (the call a slider drag makes) back to back for
   ``--seconds``, through Gradio's raw HTTP API (``POST /gradio_api/call/<name>`` then the
   event's stream), with a random rotation per call, in one session as a browser tab would;
2. **eight clients** do the same at once;
3. **a soak** of ``--soak`` raw calls (``/ping`` and ``/predict_transformed`` alternating, each
   call a new session as a script without a session hash makes), the server's resident memory
   (``VmRSS``) read before and after.

Printed: calls per second, p50 and p95 round trip per phase, the ratio p95(8 clients) / p50(1
client) (target <= 2), and the RSS growth over the soak (target < 50 MB).

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

    def __init__(self, base: str, *, session_hash: str | None = None) -> None:
        self.base = base
        self.session_hash = session_hash
        self.http = httpx.Client(timeout=60)

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

    def close(self) -> None:
        self.http.close()


def slider_call(client: RawClient, ids: list[int], rng: random.Random) -> float:
    started = time.perf_counter()
    client.call("predict_transformed", [rng.choice(ids), rng.uniform(-60, 60), 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    return time.perf_counter() - started


def phase(base: str, ids: list[int], n_clients: int, seconds: float) -> dict:
    """``n_clients`` threads calling back to back for ``seconds``; their round trips."""
    times: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(seed: int) -> None:
        # one session per client, as a browser tab keeps one while its slider is dragged
        client, rng, mine = RawClient(base, session_hash=f"slider-user-{seed}"), random.Random(seed), []
        while time.perf_counter() < stop:
            mine.append(slider_call(client, ids, rng))
        client.close()
        with lock:
            times.extend(mine)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(n_clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ms = sorted(1000 * t for t in times)
    return {"clients": n_clients, "calls": len(ms), "calls_per_s": len(ms) / elapsed,
            "p50_ms": statistics.median(ms), "p95_ms": ms[int(0.95 * (len(ms) - 1))]}


def soak(base: str, ids: list[int], pid: int, n_calls: int) -> dict:
    client, rng = RawClient(base), random.Random(7)
    for index in range(200):  # warm-up: caches, first sessions, allocator arenas
        client.call("ping", []) if index % 2 else slider_call(client, ids, rng)
    before = rss_mb(pid)
    for index in range(n_calls):
        client.call("ping", []) if index % 2 else slider_call(client, ids, rng)
    after = rss_mb(pid)
    client.close()
    return {"calls": n_calls, "rss_before_mb": before, "rss_after_mb": after, "growth_mb": after - before}


def serve(url: str, port: int, folder: Path) -> subprocess.Popen:
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", TF_CPP_MIN_LOG_LEVEL="2")
    log = open(folder / "serve.log", "w")
    process = subprocess.Popen([*_hardcase(), "serve", "--db", url, "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://{HOST}:{port}/config", timeout=2).status_code == 200:
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
            warm = RawClient(base)
            for _ in range(20):
                slider_call(warm, ids, random.Random(0))
            warm.close()
            one = phase(base, ids, 1, args.seconds)
            eight = phase(base, ids, 8, args.seconds)
            memory = soak(base, ids, process.pid, args.soak)
        finally:
            process.terminate()
            process.wait(timeout=30)
    figures = {"one_client": one, "eight_clients": eight, "soak": memory,
               "p95_8_over_p50_1": eight["p95_ms"] / one["p50_ms"]}
    for row in (one, eight):
        print(f"{row['clients']} client(s): {row['calls_per_s']:.1f} calls/s, p50 {row['p50_ms']:.0f} ms, "
              f"p95 {row['p95_ms']:.0f} ms ({row['calls']} calls)")
    print(f"p95 with 8 clients / p50 with 1 client: {figures['p95_8_over_p50_1']:.2f} (target <= 2)")
    print(f"soak of {memory['calls']} raw calls: RSS {memory['rss_before_mb']:.0f} -> {memory['rss_after_mb']:.0f} MB, "
          f"growth {memory['growth_mb']:+.0f} MB (target < 50)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
