"""Diversity pays off: distinct (class, fault) pairs among the selected candidates.

On the MNIST test set with injected faults (flipped labels, rotations, perspective warps,
dilated strokes; ``models.faults``), hardcase's selection (hardness + k-center diversity) is
compared with the same number of hardest samples by max-probability confidence alone, in one
run on the same predictions.

Usage: ``python bench/diversity.py [--budget 200] [--diversity 0.5] [--seed 0]``
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--per-class", type=int, default=None,
                        help="select this many per class (the CLI's default mode) instead of a total budget")
    parser.add_argument("--diversity", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()

    from mine_throughput import demo_model, shared_mnist  # a sibling script in bench/

    from miner.scores import compute_scores
    from miner.select import select_candidates
    from miner.sources import open_source
    from models.classifier import load_classifier
    from models.faults import inject_faults

    folder = shared_mnist()
    source = open_source(folder / "t10k-images-idx3-ubyte.gz", labels=folder / "t10k-labels-idx1-ubyte.gz")
    images = next(source.iter_batches(len(source))).images
    pool = inject_faults(images, source.labels, n_classes=10, seed=args.seed)
    fault_counts = {str(k): int(v) for k, v in zip(*np.unique(pool.fault, return_counts=True))}
    classifier = load_classifier(demo_model(args.model))
    probs, embeddings = zip(*classifier.iter_predictions(pool.images))
    probs, embeddings = np.concatenate(probs), np.concatenate(embeddings)
    scores = compute_scores(probs, labels=pool.labels)

    def distinct_pairs(indices: np.ndarray) -> tuple[int, int]:
        faulty = indices[pool.fault[indices] != "clean"]
        return len({(int(pool.true_labels[i]), pool.fault[i]) for i in faulty}), len(faulty)

    mode = {"per_class": args.per_class} if args.per_class else {"budget": args.budget}
    selection = select_candidates(scores["hardness_score"], groups=pool.labels, embeddings=embeddings,
                                  diversity=args.diversity, seed=args.seed, **mode)
    hardest = np.argsort(scores["confidence"], kind="stable")[: len(selection.indices)]
    possible = len({(int(c), f) for c, f in zip(pool.true_labels, pool.fault) if f != "clean"})
    print(f"pool: {len(images)} MNIST test images, faults {fault_counts}")
    print(f"{'selection of ' + str(len(selection.indices)) + ' (' + str(mode) + ')':<46} {'(class, fault) pairs':>20} {'faulty picks':>13}")
    ours_pairs, ours_faulty = distinct_pairs(selection.indices)
    base_pairs, base_faulty = distinct_pairs(hardest)
    print(f"{'hardcase (hardness + diversity ' + str(args.diversity) + ')':<46} {ours_pairs:>20} {ours_faulty:>13}")
    print(f"{'lowest max-probability confidence':<46} {base_pairs:>20} {base_faulty:>13}")
    print(f"{'possible':<46} {possible:>20}")


if __name__ == "__main__":
    main()
