"""Review-page latency: server-side prediction, API round trips, page load with a large run.

1. Server side: transform + prediction of one candidate image (``ReviewService.predict_transformed``)
   over random slider positions: p50 / p95 in ms (target p95 < 15 ms with the demo model).
2. Round trip through ``gradio_client``: ``/predict_transformed`` divided by the app's no-op
   ``/ping`` in the same run, at p50 (target <= 1.3).
3. Page load to the first candidate shown, in headless chromium, with a run of ``--scored``
   scored samples (default 100,000) in the database (target < 2 s).
4. The Explore tab on that run (``--candidates`` of them, default 2,000, a third of them reviewed
   by three reviewers): a filter or sort of the candidate table (``/explore_table``), server side
   and round trip, p50 / p95 (target p95 < 300 ms); and the time to compute and store the run's
   2-D map (PCA of every sample, t-SNE on 1,000), which mining spends once.

Usage: ``python bench/ui_latency.py [--calls 300] [--scored 100000] [--candidates 2000] [--only explore]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


def big_run(store, model_path: Path, n_scored: int, folder: Path, n_candidates: int = 200) -> None:
    """A demo-sized model run whose data set has ``n_scored`` scored samples (synthetic images)
    and ``n_candidates`` candidates."""
    from hardcase.review_app.workflows.mining import MiningOptions, mine

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(1024, 28, 28), dtype=np.uint8)
    data = np.lib.format.open_memmap(folder / "big.npy", mode="w+", dtype=np.uint8, shape=(n_scored, 28, 28))
    for start in range(0, n_scored, 1024):
        stop = min(n_scored, start + 1024)
        data[start:stop] = base[: stop - start]
    data.flush()
    mine(store, MiningOptions(run_name="big", model_path=str(model_path), data_path=str(folder / "big.npy"),
                              budget=n_candidates, suggest=False), artifacts_dir=folder / "artifacts", progress=False)


#: The table requests measured: (class, suggested cause, status, judged by, min confidence, sort by, descending).
TABLE_REQUESTS = [
    ("any", "any", "all", "", 0, "rank", False),
    ("3", "any", "all", "", 0, "rank", False),
    ("any", "any", "unreviewed", "", 0, "hardness", True),
    ("any", "any", "disputed", "", 0, "rank", False),
    ("any", "any", "all", "rev1", 0, "label quality", False),
    ("7", "any", "decided", "", 0, "class", True),
]


def review_a_third(store, run_name: str) -> None:
    """Three reviewers decide a third of the run's candidates, disagreeing on some (bulk batches)."""
    from hardcase.review_app.workflows.explore import bulk_decide, load_candidates

    ids = load_candidates(store, run_name)["id"].to_numpy()
    third = ids[: len(ids) // 3]
    bulk_decide(store, run_name, reviewer="rev1", decision="rare", candidate_ids=third.tolist())
    bulk_decide(store, run_name, reviewer="rev2", decision="rare", candidate_ids=third[::2].tolist())
    bulk_decide(store, run_name, reviewer="rev3", decision="augment", candidate_ids=third[::5].tolist())
    assert (load_candidates(store, run_name)["status"] == "disputed").any()


def explore_latency(service, client, run_name: str, calls: int) -> None:
    """Filter and sort of the candidate table: server side and through ``/explore_table``."""
    from hardcase.review_app.app.handlers.explore import ExploreHandlers
    from hardcase.review_app.workflows.explore import compute_and_store_projection

    started = time.perf_counter()
    info = compute_and_store_projection(service.store, run_name)
    print(f"2-D map of the run ({info.method}, {info.n_points:,} samples, fitted on {info.n_fitted:,}): "
          f"{time.perf_counter() - started:.1f} s, once per run")
    handlers = ExploreHandlers(service)
    server, round_trip, ping = [], [], []
    for i in range(calls):
        started = time.perf_counter()
        client.predict(api_name="/ping")
        ping.append((time.perf_counter() - started) * 1000)
        request = (run_name, *TABLE_REQUESTS[i % len(TABLE_REQUESTS)])
        started = time.perf_counter()
        handlers.table(*request)
        server.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        client.predict(*request, api_name="/explore_table")
        round_trip.append((time.perf_counter() - started) * 1000)
    p50, p95 = percentiles(server)
    r50, r95 = percentiles(round_trip)
    ping50, ping95 = percentiles(ping)
    print(f"explore table filter/sort, server side: p50 {p50:.0f} ms, p95 {p95:.0f} ms; "
          f"round trip /explore_table p50 {r50:.0f} ms, p95 {r95:.0f} ms; /ping p50 {ping50:.0f} ms, "
          f"p95 {ping95:.0f} ms (target p95 < 300 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--scored", type=int, default=100_000)
    parser.add_argument("--candidates", type=int, default=2_000)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--only", choices=("all", "explore"), default="all",
                        help="explore: measure the Explore tab only (parts 1-3 skipped)")
    args = parser.parse_args()

    from gradio_client import Client
    from mine_throughput import demo_model

    from hardcase.models.transforms import Transform
    from hardcase.review_app.app import build_app, launch_options
    from hardcase.review_app.workflows.review import ReviewService
    from hardcase.store.db import open_store

    model_path = demo_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = open_store(f"sqlite:///{folder / 'ui.db'}")
        print(f"building a run of {args.scored:,} scored samples and {args.candidates:,} candidates ...", flush=True)
        big_run(store, model_path, args.scored, folder, args.candidates)
        service = ReviewService(store)
        if args.only == "explore":
            review_a_third(store, "big")
            app = build_app(service, run_name="big")
            app.queue(max_size=64)
            options = launch_options(port=0)
            options.pop("server_port")
            app.launch(prevent_thread_lock=True, quiet=True, **options)
            client = Client(app.local_url, verbose=False)
            explore_latency(service, client, "big", min(args.calls, 60))
            client.close()
            app.close()
            store.dispose()
            return
        candidate = service.next_candidate("big", "bench")
        rng = np.random.default_rng(0)

        service.predict_transformed(candidate.id, Transform())
        server = []
        for _ in range(args.calls):
            transform = Transform(rotate=float(rng.uniform(-180, 180)), perspective=float(rng.uniform(0, 0.3)),
                                  direction=float(rng.uniform(-180, 180)), scale=float(rng.uniform(0.7, 1.3)))
            started = time.perf_counter()
            service.predict_transformed(candidate.id, transform)
            server.append((time.perf_counter() - started) * 1000)
        p50, p95 = percentiles(server)
        print(f"server side transform + prediction: p50 {p50:.1f} ms, p95 {p95:.1f} ms (target p95 < 15 ms)")

        app = build_app(service, run_name="big")
        app.queue(max_size=64)
        options = launch_options(port=0)
        options.pop("server_port")
        app.launch(prevent_thread_lock=True, quiet=True, **options)
        client = Client(app.local_url, verbose=False)
        ping, predict = [], []
        for i in range(args.calls):
            started = time.perf_counter()
            client.predict(api_name="/ping")
            ping.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            client.predict(candidate.id, float(i % 180), 0.1, 1.0, 0.0, api_name="/predict_transformed")
            predict.append((time.perf_counter() - started) * 1000)
        ping50, _ = percentiles(ping)
        predict50, predict95 = percentiles(predict)
        print(f"round trip /ping p50 {ping50:.1f} ms; /predict_transformed p50 {predict50:.1f} ms, p95 {predict95:.1f} ms")
        print(f"ratio predict / no-op at p50: {predict50 / ping50:.2f} (target <= 1.3)")
        review_a_third(store, "big")
        explore_latency(service, client, "big", min(args.calls, 60))
        client.close()

        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        if Path(chromium).exists():
            from playwright.sync_api import sync_playwright

            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                                     args=["--no-sandbox", "--disable-gpu",
                                                           "--disable-background-networking"])
                page = browser.new_page()
                page.goto(app.local_url)
                page.locator("#reviewer textarea, #reviewer input").first.fill("bench")
                page.wait_for_timeout(500)
                loads = []
                for _ in range(5):
                    started = time.perf_counter()
                    page.reload()
                    page.wait_for_function("document.querySelector('#candidate-info')?.innerText.includes('Candidate #')",
                                           timeout=30000)
                    loads.append(time.perf_counter() - started)
                browser.close()
            print(f"page load to first candidate with {args.scored:,} scored samples: "
                  f"median {statistics.median(loads):.2f} s, worst {max(loads):.2f} s (target < 2 s)")
        else:
            print("chromium not installed: page-load measurement skipped")
        app.close()
        store.dispose()


if __name__ == "__main__":
    main()
