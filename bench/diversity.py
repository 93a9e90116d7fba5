"""Diversity pays off: distinct (class, fault) pairs among the selected candidates.

On the MNIST test set with injected faults (flipped labels, rotations, perspective warps,
dilated strokes; ``models.faults``), hardcase's selection (hardness + k-center diversity) is
compared with the same number of hardest samples by max-probability confidence alone, in one
run on the same predictions. Each ``--seeds`` entry injects a different set of faults (and
seeds the selection); the selection is shown with its default metric (cosine) and with
Euclidean distances, and the pure-hardness order (``--diversity 0``) for reference.

Usage: ``python bench/diversity.py [--budget 200 | --per-class 20] [--diversity 0.5] [--seeds 0 1 2]``
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def distinct_pairs(pool, indices: np.ndarray) -> tuple[int, int]:
    """(distinct (true class, fault) pairs, number of faulty samples) among ``indices``."""
    faulty = indices[pool.fault[indices] != "clean"]
    return len({(int(pool.true_labels[i]), pool.fault[i]) for i in faulty}), len(faulty)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--per-class", type=int, default=None,
                        help="select this many per class (the CLI's default mode) instead of a total budget")
    parser.add_argument("--diversity", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="fault-injection (and selection) seeds: one pool each")
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()

    from mine_throughput import demo_model, shared_mnist  # a sibling script in bench/

    from hardcase.miner.scores import compute_scores
    from hardcase.miner.select import select_candidates
    from hardcase.miner.sources import open_source
    from hardcase.models.classifier import load_classifier
    from hardcase.models.faults import inject_faults

    folder = shared_mnist()
    source = open_source(folder / "t10k-images-idx3-ubyte.gz", labels=folder / "t10k-labels-idx1-ubyte.gz")
    images = next(source.iter_batches(len(source))).images
    classifier = load_classifier(demo_model(args.model))
    mode = {"per_class": args.per_class} if args.per_class else {"budget": args.budget}
    methods = [
        (f"hardcase, cosine (default), diversity {args.diversity}", {"metric": "cosine", "diversity": args.diversity}),
        (f"hardcase, euclidean, diversity {args.diversity}", {"metric": "euclidean", "diversity": args.diversity}),
        ("hardcase, diversity 0 (hardness order)", {"diversity": 0.0}),
    ]
    table: dict[str, list[tuple[int, int]]] = {name: [] for name, _ in methods}
    table["lowest max-probability confidence"] = []
    possible = []
    for seed in args.seeds:
        pool = inject_faults(images, source.labels, n_classes=10, seed=seed)
        probs, embeddings = zip(*classifier.iter_predictions(pool.images))
        probs, embeddings = np.concatenate(probs), np.concatenate(embeddings)
        scores = compute_scores(probs, labels=pool.labels)

        n_selected = 0
        for name, options in methods:
            selection = select_candidates(scores["hardness_score"], groups=pool.labels, embeddings=embeddings,
                                          seed=seed, **options, **mode)
            table[name].append(distinct_pairs(pool, selection.indices))
            n_selected = len(selection.indices)
        hardest = np.argsort(scores["confidence"], kind="stable")[:n_selected]
        table["lowest max-probability confidence"].append(distinct_pairs(pool, hardest))
        possible.append(len({(int(c), f) for c, f in zip(pool.true_labels, pool.fault) if f != "clean"}))
        if seed == args.seeds[0]:
            fault_counts = {str(k): int(v) for k, v in zip(*np.unique(pool.fault, return_counts=True))}
            print(f"pool: {len(images)} MNIST test images, faults {fault_counts}")

    print(f"selection of {n_selected} ({mode}); distinct (class, fault) pairs [faulty picks] per fault seed "
          f"{args.seeds}")
    for name, counts in table.items():
        cells = " ".join(f"{pairs:>3} [{faulty:>3}]" for pairs, faulty in counts)
        mean = np.mean([pairs for pairs, _ in counts])
        print(f"  {name:<46} {cells}   mean {mean:5.1f}")
    print(f"  {'possible':<46} {' '.join(f'{p:>3}      ' for p in possible)}")


if __name__ == "__main__":
    main()
