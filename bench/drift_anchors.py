"""Anchors for the drift benchmark (issue 18): Evidently's embedding drift and NannyML's CBPE.

They run in their own venv so that their pins never touch hardcase's, and this script never imports
hardcase: it reads the streams that ``bench/drift_scenarios.py --dump DIR`` wrote.

Setup (once; the venv is outside the repo, since ``bench/.anchors-venv`` is not gitignored)::

    python3 bench/drift_anchors.py --setup [--venv /tmp/hardcase-anchors-venv]

creates the venv with ``python3 -m venv`` and pip-installs ``bench/requirements-anchors.txt``.

Run::

    python3 bench/drift_anchors.py --dump /tmp/drift_dump --json anchors.json [--venv PATH]

(under another interpreter it re-executes itself with the venv's python; running the venv's python
directly works too). ``--evidently-report`` goes through Evidently's ``Report`` instead of calling the
drift method: the same numbers, about 30 s a window more (the metric draws a t-SNE every time).

Input: every ``DIR/seed{S}_{scenario}.npz`` holding ``ref_probs (N, K)``, ``ref_emb (N, D)``,
``ref_labels (N,)``, ``probs (W, n, K)``, ``emb (W, n, D)``, ``labels (W, n)`` (unused: both anchors
work without labels), ``true_accuracy (W,)``.

Per window:

* Evidently 0.7 ``EmbeddingsDrift`` with its default method: ``ModelDriftMethod``, a domain
  classifier (scikit-learn's SGD logistic regression on reference vs window rows, ROC AUC on a
  half held out). Drift detected when the AUC exceeds 0.55, or, for a reference under 1,000 rows
  (Evidently switches bootstrap on there), the 95th percentile of 100 random-guess AUCs.
  The score is the AUC.
* NannyML 0.13 ``CBPE(problem_type='classification_multiclass', metrics=['accuracy'])`` fitted on the
  reference's probs and labels (isotonic calibration per class, its default), estimating the
  analysis stream chunked by ``chunk_size = n``, so chunk i is window i. Its band is its
  confidence band (estimate ± 3 sampling errors); its alert thresholds are its default
  ``StandardDeviationThreshold``: mean ± 3 std of the estimate over the reference's chunks.

JSON (``--json``): top-level keys ending in ``.npz`` are files, the others are metadata::

    {
      "versions": {"python": ..., "evidently": ..., "nannyml": ..., "pandas": ..., "numpy": ..., "scikit-learn": ...},
      "methods": {"evidently": {"metric", "method", "threshold", "bootstrap", "quantile_probability", "via"},
                  "cbpe": {"metric", "calibration", "band", "threshold", "accuracy_alert_level"}},
      "seed0_tilt.npz": {
        "seed": 0, "scenario": "tilt", "windows": W, "window_size": n, "reference_size": N, "onset": 10,
        "evidently_drift": [bool per window], "evidently_score": [AUC per window],
        "cbpe_accuracy": [...], "cbpe_lower": [...], "cbpe_upper": [...],      # confidence band
        "cbpe_alert": [bool, NannyML's own two-sided alert],
        "cbpe_lower_threshold": float, "cbpe_upper_threshold": float,
        "true_accuracy": [...],
        "summary": {"below90": first window with true accuracy < 0.9,
                    "evidently": {"first", "false", "lead"},
                    "cbpe_threshold": {"first", "false", "lead"},   # estimate < its lower threshold
                    "cbpe_below90": {"first", "false", "lead"},     # estimate < 0.9
                    "cbpe_mae": mean |cbpe_accuracy - true_accuracy|}
      }, ...
    }

NaN becomes null. As in drift_scenarios: onsets are tilt W//3, units W//2, canary W//3, null none
(W, so every alert of the null stream is false); "first" is the first alerting window at or after the
onset, "false" counts the alerting windows before it, "lead" = below90 - first (null where either is).

Printed: one line per file with the same numbers, as ``first(false)`` per anchor.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

# Neither library may try to phone home from a benchmark (the machine has no network besides).
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import numpy as np

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements-anchors.txt"
DEFAULT_VENV = Path(os.environ.get("HARDCASE_ANCHORS_VENV", "/tmp/hardcase-anchors-venv"))
FILE_RE = re.compile(r"^seed(\d+)_(.+)\.npz$")
ACCURACY_ALERT_LEVEL = 0.9


def onset(name: str, n_windows: int) -> int:
    """The scenario's first disturbed window (n_windows: none), as in drift_scenarios."""
    return {"tilt": n_windows // 3, "units": n_windows // 2, "canary": n_windows // 3}.get(name, n_windows)


# ----------------------------------------------------------------------------- venv


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def setup(venv: Path) -> int:
    if not venv_python(venv).exists():
        print(f"creating {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv_python(venv))
    subprocess.run([py, "-m", "pip", "install", "--upgrade", "pip"], check=True)
    subprocess.run([py, "-m", "pip", "install", "-r", str(REQUIREMENTS)], check=True)
    code = ("import os; os.environ['DO_NOT_TRACK']='1'; os.environ['NML_DISABLE_USAGE_LOGGING']='1'\n"
            "import evidently, nannyml, pandas, numpy, sklearn\n"
            "print('evidently', evidently.__version__, 'nannyml', nannyml.__version__, 'pandas', pandas.__version__,"
            " 'numpy', numpy.__version__, 'scikit-learn', sklearn.__version__)")
    subprocess.run([py, "-c", code], check=True)
    print(f"run with: {py} {Path(__file__).resolve()} --dump DIR --json OUT.json")
    return 0


def ensure_anchor_libraries(venv: Path) -> None:
    """Import evidently and nannyml here, or re-execute this script with the venv's python."""
    try:
        import evidently  # noqa: F401
        import nannyml  # noqa: F401
        return
    except ImportError:
        pass
    py = venv_python(venv)
    if py.exists() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(str(py), [str(py), str(Path(__file__).resolve()), *sys.argv[1:]])
    sys.exit(f"evidently and nannyml are not importable here and {py} does not exist: "
             f"run `python3 {Path(__file__).name} --setup --venv {venv}` first")


def versions() -> dict:
    import evidently
    import nannyml
    import pandas
    import sklearn
    return {"python": platform.python_version(), "evidently": evidently.__version__, "nannyml": nannyml.__version__,
            "pandas": pandas.__version__, "numpy": np.__version__, "scikit-learn": sklearn.__version__}


# ----------------------------------------------------------------------------- Evidently


def evidently_method(reference_size: int):
    """The method EmbeddingsDrift uses when given none: the domain classifier, bootstrapped under 1,000 rows."""
    from evidently.metrics.embeddings import ModelDriftMethod
    return ModelDriftMethod(bootstrap=reference_size < 1000)


def evidently_meta(reference_size: int, via_report: bool) -> dict:
    m = evidently_method(reference_size)
    return {"metric": "evidently.metrics.EmbeddingsDrift (legacy EmbeddingsDriftMetric)",
            "method": type(m).__name__ + " ('model': SGD domain classifier, score = ROC AUC)",
            "threshold": None if m.bootstrap else m.threshold, "bootstrap": bool(m.bootstrap),
            "quantile_probability": m.quantile_probability if m.bootstrap else None,
            "via": "Report" if via_report else "drift method called directly (what the metric calls)"}


def evidently_windows(ref_emb: np.ndarray, emb: np.ndarray, via_report: bool = False) -> tuple[list, list]:
    import pandas as pd
    cols = [f"emb{i}" for i in range(ref_emb.shape[1])]
    drift, score = [], []
    if via_report:
        from evidently import DataDefinition, Dataset, Report
        from evidently.metrics import EmbeddingsDrift
        definition = DataDefinition(numerical_columns=cols, embeddings={"emb": cols})
        reference = Dataset.from_pandas(pd.DataFrame(ref_emb, columns=cols), data_definition=definition)
        threshold = evidently_meta(len(ref_emb), True)["threshold"]
        for window in emb:
            current = Dataset.from_pandas(pd.DataFrame(window, columns=cols), data_definition=definition)
            run = Report([EmbeddingsDrift(embeddings_name="emb")]).run(current, reference)
            value = float(run.dict()["metrics"][0]["value"])
            # The 0.7 Report keeps only the score; the verdict lives in the legacy result it wraps.
            legacy = [r for r, _ in getattr(run.context, "_legacy_metrics", {}).values()
                      if hasattr(r, "drift_detected")]
            if legacy:
                detected = bool(legacy[0].drift_detected)
            elif threshold is not None:
                detected = value > threshold
            else:
                raise RuntimeError("Evidently's Report gave no drift verdict and the method is bootstrapped")
            drift.append(detected)
            score.append(value)
        return drift, score
    method = evidently_method(len(ref_emb))
    for window in emb:
        # The method adds a target column to the frames it is given: fresh frames every window.
        value, detected, _name = method(pd.DataFrame(window, columns=cols), pd.DataFrame(ref_emb, columns=cols))
        drift.append(bool(detected))
        score.append(float(value))
    return drift, score


# ----------------------------------------------------------------------------- NannyML CBPE


def cbpe_windows(ref_probs: np.ndarray, ref_labels: np.ndarray, probs: np.ndarray) -> dict:
    import nannyml as nml
    import pandas as pd

    n_windows, n, k = probs.shape
    classes = [str(c) for c in range(k)]  # NannyML matches y_pred/y_true values to the keys of y_pred_proba

    def frame(p: np.ndarray, y: np.ndarray | None = None) -> pd.DataFrame:
        df = pd.DataFrame(p.astype(np.float64), columns=[f"proba_{c}" for c in classes])
        df["y_pred"] = np.asarray(classes, dtype=object)[p.argmax(axis=1)]
        if y is not None:
            df["y_true"] = np.asarray(y).astype(np.int64).astype(str)
        return df

    estimator = nml.CBPE(problem_type="classification_multiclass",
                         y_pred_proba={c: f"proba_{c}" for c in classes}, y_pred="y_pred", y_true="y_true",
                         chunk_size=n, metrics=["accuracy"])
    estimator.fit(frame(ref_probs, ref_labels))
    result = estimator.estimate(frame(probs.reshape(n_windows * n, k)))
    df = result.filter(period="analysis").to_df()
    acc = df["accuracy"]
    if len(acc) != n_windows:
        raise RuntimeError(f"CBPE made {len(acc)} chunks of {n} rows for {n_windows} windows")
    return {"cbpe_accuracy": acc["value"].astype(float).tolist(),
            "cbpe_lower": acc["lower_confidence_boundary"].astype(float).tolist(),
            "cbpe_upper": acc["upper_confidence_boundary"].astype(float).tolist(),
            "cbpe_alert": [bool(a) for a in acc["alert"]],
            "cbpe_lower_threshold": float(acc["lower_threshold"].iloc[0]),
            "cbpe_upper_threshold": float(acc["upper_threshold"].iloc[0])}


CBPE_META = {"metric": "nannyml.CBPE(problem_type='classification_multiclass', metrics=['accuracy']), chunk_size = n",
             "calibration": "isotonic per class, fitted on the reference (NannyML's default)",
             "band": "cbpe_lower/cbpe_upper: NannyML's confidence band, estimate +- 3 sampling errors",
             "threshold": "StandardDeviationThreshold (default): mean +- 3 std of the reference chunks' estimates",
             "accuracy_alert_level": ACCURACY_ALERT_LEVEL}


# ----------------------------------------------------------------------------- summary


def first_and_false(flags: list, start: int, below: int | None) -> dict:
    first = next((i for i, f in enumerate(flags) if i >= start and f), None)
    return {"first": first, "false": int(sum(bool(f) for f in flags[:start])),
            "lead": (below - first) if (below is not None and first is not None) else None}


def summarize(entry: dict) -> dict:
    start = entry["onset"] if entry["onset"] is not None else entry["windows"]
    true = entry["true_accuracy"]
    below = next((i for i, a in enumerate(true) if a < ACCURACY_ALERT_LEVEL), None)
    est = entry["cbpe_accuracy"]
    low = entry["cbpe_lower_threshold"]
    under_own = [(e is not None and low is not None and e < low) for e in est]
    under_90 = [(e is not None and e < ACCURACY_ALERT_LEVEL) for e in est]
    errors = [abs(e - t) for e, t in zip(est, true) if e is not None]
    return {"below90": below,
            "evidently": first_and_false(entry["evidently_drift"], start, below),
            "cbpe_threshold": first_and_false(under_own, start, below),
            "cbpe_below90": first_and_false(under_90, start, below),
            "cbpe_mae": float(np.mean(errors)) if errors else None}


def clean(values):
    """NaN and inf to None (JSON null), numpy scalars to Python."""
    if isinstance(values, list):
        return [clean(v) for v in values]
    if isinstance(values, (float, np.floating)):
        return None if not math.isfinite(float(values)) else float(values)
    return values


def run_file(path: Path, via_report: bool) -> dict:
    m = FILE_RE.match(path.name)
    seed, scenario = int(m.group(1)), m.group(2)
    with np.load(path) as d:
        data = {k: d[k] for k in d.files}
    n_windows, n = data["probs"].shape[:2]
    start = onset(scenario, n_windows)
    entry = {"seed": seed, "scenario": scenario, "windows": int(n_windows), "window_size": int(n),
             "reference_size": int(len(data["ref_emb"])), "onset": start if start < n_windows else None}
    entry["evidently_drift"], entry["evidently_score"] = evidently_windows(data["ref_emb"], data["emb"], via_report)
    entry.update(cbpe_windows(data["ref_probs"], data["ref_labels"], data["probs"]))
    entry["true_accuracy"] = np.asarray(data["true_accuracy"], dtype=float).tolist()
    entry = {k: clean(v) for k, v in entry.items()}
    entry["summary"] = summarize(entry)
    return entry


def fmt_cell(s: dict) -> str:
    return f"{'-' if s['first'] is None else s['first']}({s['false']})"


def print_table(results: dict) -> None:
    print("first alerting window at or after the onset (false alerts before it); '-' = none")
    print("evidently: drift detected; cbpe<thr: CBPE's estimate below its own lower threshold; "
          f"cbpe<{ACCURACY_ALERT_LEVEL}: below {ACCURACY_ALERT_LEVEL}")
    head = f"{'scenario':8} {'seed':>4} {'onset':>5} {'<90%':>5} {'evidently':>10} {'cbpe<thr':>9} " \
           f"{'cbpe<0.9':>9} {'cbpe_mae':>8}"
    print(head)
    rows = sorted(((e["scenario"], e["seed"], name) for name, e in results.items()))
    for scenario, seed, name in rows:
        e = results[name]
        s = e["summary"]
        mae = "-" if s["cbpe_mae"] is None else f"{s['cbpe_mae']:.4f}"
        print(f"{scenario:8} {seed:>4} {'-' if e['onset'] is None else e['onset']:>5} "
              f"{'-' if s['below90'] is None else s['below90']:>5} {fmt_cell(s['evidently']):>10} "
              f"{fmt_cell(s['cbpe_threshold']):>9} {fmt_cell(s['cbpe_below90']):>9} {mae:>8}")


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setup", action="store_true", help="create the venv and install requirements-anchors.txt")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV, help=f"the anchors' venv (default {DEFAULT_VENV})")
    p.add_argument("--dump", type=Path, help="folder of seed{S}_{scenario}.npz from drift_scenarios --dump")
    p.add_argument("--json", type=Path, help="write the per-window results here")
    p.add_argument("--evidently-report", action="store_true",
                   help="run Evidently through Report (same numbers, ~30 s a window for its t-SNE)")
    args = p.parse_args(argv)
    if args.setup:
        return setup(args.venv)
    if args.dump is None:
        p.error("--dump DIR is required (or --setup)")
    files = sorted(f for f in args.dump.glob("seed*_*.npz") if FILE_RE.match(f.name))
    if not files:
        p.error(f"no seed*_*.npz in {args.dump}")
    ensure_anchor_libraries(args.venv)
    import warnings
    warnings.filterwarnings("ignore", category=FutureWarning)
    out: dict = {"versions": versions(),
                 "methods": {"evidently": None, "cbpe": CBPE_META}}
    results = {}
    for f in files:
        print(f"{f.name} ...", file=sys.stderr, flush=True)
        results[f.name] = run_file(f, args.evidently_report)
        if out["methods"]["evidently"] is None:
            out["methods"]["evidently"] = evidently_meta(results[f.name]["reference_size"], args.evidently_report)
    out.update(results)
    v = out["versions"]
    print(f"evidently {v['evidently']}, nannyml {v['nannyml']} (pandas {v['pandas']}, numpy {v['numpy']}, "
          f"scikit-learn {v['scikit-learn']}); Evidently's method: {out['methods']['evidently']['method']}, "
          f"threshold {out['methods']['evidently']['threshold']}")
    print_table(results)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
