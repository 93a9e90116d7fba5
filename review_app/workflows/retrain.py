"""The retrain workflow: fix list -> training plan -> retrained model -> before/after report.

``run_retrain`` reads the decided reviews of a run (or an exported fix list), builds a
:class:`models.retrain.TrainingPlan`, prints it, retrains a fresh copy of the model with it,
saves the model with its spec and ``<model>.plan.json``, evaluates old and new models on
every evaluation set (plus rotated and perspective-warped stress copies), optionally retrains
once per fix family (``ablate``) and writes ``<model>.report.json``, ``.report.md`` and
``.report.*.png`` beside the new model.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from hardcase.miner.sources import content_hashes
from hardcase.miner.spec import PreprocessingSpec, as_uint8
from hardcase.models.retrain import (
    DEFAULT_IMBALANCE,
    FAMILIES,
    PlanError,
    TrainingPlan,
    accuracy_and_recall,
    build_plan,
    corrected_labels,
    output_bias_layer,
    plan_path_for,
    predict_labels,
    prediction_flips,
    retrain,
)
from hardcase.review_app.workflows.data import open_for_model, read_options

STRESS_ROTATE = 45.0
REPORTS_INDEX = "retrain_reports.jsonl"
STRESS_PERSPECTIVE = (0.12, 0.18)


@dataclass
class RetrainOptions:
    model_path: str
    train_data: str
    run_name: str
    out: str
    evals: dict[str, str] = field(default_factory=dict)
    fixes_path: str | None = None
    train_labels: str | None = None
    epochs: int = 8
    seed: int = 0
    batch_size: int = 64
    ablate: bool = False
    rare_oversample: int = 5
    imbalance: str = DEFAULT_IMBALANCE  # what the imbalance fix does (models.retrain.IMBALANCE_METHODS)
    stress: bool = True
    resize: bool = False
    pool: bool = True  # confirmed pool samples join the training data with their final labels
    scale: str | None = None  # overrides the run's recorded input scaling
    trust_model: bool = False  # run a SavedModel directory's own graph (it may do anything)
    class_names: list[str] | None = None  # overrides the run's recorded class names


class MinedData(NamedTuple):
    """Where a run's mined data set is, and how it was read."""

    path: str
    labels_path: str | None
    embeddings_path: str | None
    read_options: dict[str, Any]
    """:func:`~hardcase.review_app.workflows.data.open_for_model` keywords the run was mined with."""
    recorded: bool = False
    """The run was mined from recorded predictions: its spec gives the image size and class
    names, not the model's input convention (nothing was predicted)."""


# --------------------------------------------------------------------------- data


def load_images(path: str, spec, *, labels: str | None = None, require_labels: bool = True,
                resize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """All images of a data source at the model's size, and labels as model class indices.

    Returns
    -------
    images : np.ndarray, uint8, shape (N, H, W, C)
    labels : np.ndarray, int64, shape (N,)
        Indices into ``spec.class_names``; -1 where a row has no label.

    Raises
    ------
    PlanError
        No labels (with ``require_labels``), an unreadable image, or a label the model does not know.
    """
    try:
        source = open_for_model(path, spec, labels=labels, resize=resize)
        labels_array = source.labels_for(spec.class_names)
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    if require_labels and not source.has_labels:
        raise PlanError(f"{path} has no labels; retraining and evaluation need labelled data")
    batch = source.read(np.arange(len(source)))
    if batch.errors:
        first = batch.errors[0]
        raise PlanError(f"{path}: {len(batch.errors)} unreadable images, e.g. row {first.source_index}: {first.reason}")
    return as_uint8(batch.images), labels_array


def fix_rows(store, run_name: str, fixes_path: str | None = None) -> list[dict[str, Any]]:
    """The fix list as dicts: from ``fixes_path`` (CSV/JSONL/Parquet export) or the run's reviews."""
    from hardcase.store.export import FIX_COLUMNS, export_rows, read_rows

    if fixes_path is not None:
        columns, rows = read_rows(fixes_path)
        missing = {"source_index", "final_cause", "final_label", "given_label"} - set(columns)
        if rows and missing:
            raise PlanError(f"{fixes_path} is not a fix list: missing columns {sorted(missing)}")
    else:
        columns, rows = export_rows(store, run_name, "fixes")
        columns = columns or FIX_COLUMNS
    return [dict(zip(columns, row)) for row in rows]


#: Decided causes whose pool samples join the training data as they are (``rare`` ones are
#: added by the plan itself, oversampled).
POOL_CAUSES = ("augment", "imbalance", "mislabel")


def reviewed_pool_samples(rows: Sequence[Mapping[str, Any]], *, spec: PreprocessingSpec, mined: MinedData,
                          train_images: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The pool samples reviewers confirmed, with their final labels, to add to the training data.

    A ``mislabel`` sample takes its corrected label; ``augment`` and ``imbalance`` samples
    their given label. Samples already in the training data (same content hash) are left out:
    the plan relabels those in place.

    Returns
    -------
    images : np.ndarray, uint8, shape (M, H, W, C)
    labels : np.ndarray, int64, shape (M,)
    counts : dict
        Samples added per cause.
    """
    index = {name: k for k, name in enumerate(spec.class_names)}
    chosen: dict[int, tuple[int, str]] = {}
    for row in rows:
        cause = row.get("final_cause")
        name = row.get("final_label") if cause == "mislabel" else row.get("given_label")
        if cause in POOL_CAUSES and name in index:
            chosen[int(row["source_index"])] = (index[name], cause)
    counts = dict.fromkeys(POOL_CAUSES, 0)
    empty = np.zeros((0, *spec.image_shape), np.uint8), np.zeros(0, np.int64), counts
    if not chosen or mined.path is None or not Path(mined.path).exists():
        return empty
    source = open_for_model(mined.path, spec, labels=mined.labels_path, **mined.read_options)
    batch = source.read(sorted(chosen))
    images = as_uint8(batch.images)
    in_training = set(content_hashes(train_images))
    keep = [j for j, digest in enumerate(content_hashes(images)) if digest not in in_training]
    for j in keep:
        counts[chosen[int(batch.indices[j])][1]] += 1
    labels = np.array([chosen[int(batch.indices[j])][0] for j in keep], dtype=np.int64)
    return images[keep], labels, counts


def run_spec(store, run_name: str) -> PreprocessingSpec:
    """The preprocessing spec recorded with ``run_name``'s model version."""
    from hardcase.store import api

    with store.snapshot() as session:
        return PreprocessingSpec.from_dict(api.model_version(session, api.require_run(session, run_name)).spec)


def run_dataset(store, run_name: str) -> MinedData:
    """The mined data set of ``run_name``: its path, labels path, embeddings path and read options."""
    from hardcase.store import api
    from hardcase.store.schema import Dataset

    with store.snapshot() as session:
        run = api.require_run(session, run_name)
        dataset = session.get(Dataset, run.dataset_id)
        params = run.params or {}
        return MinedData(dataset.uri, params.get("labels_path"), run.embeddings_path, read_options(params),
                         recorded=bool(params.get("predictions")))


def nearest_neighbours(embeddings_path: str | None, indices: Sequence[int], k: int = 5) -> dict[int, list[int]]:
    """Cosine nearest mined samples (by source index) of each given source index."""
    if not indices or not embeddings_path or not Path(embeddings_path).exists():
        return {}
    emb = np.load(embeddings_path, mmap_mode="r")
    full = np.asarray(emb, dtype=np.float32)
    full /= np.linalg.norm(full, axis=1, keepdims=True) + 1e-8
    out = {}
    for index in indices:
        similarity = full @ full[index]
        similarity[index] = -np.inf
        out[int(index)] = [int(i) for i in np.argsort(-similarity)[:k]]
    return out


def make_plan(rows: Sequence[Mapping[str, Any]], *, spec, train_images: np.ndarray, train_labels: np.ndarray,
              mined_path: str | None, mined_labels: str | None = None, embeddings_path: str | None = None,
              mined_read_options: Mapping[str, Any] | None = None,
              rare_oversample: int = 5, imbalance_method: str = DEFAULT_IMBALANCE,
              provenance: Mapping[str, Any] | None = None) -> tuple[TrainingPlan, np.ndarray | None]:
    """The plan for these fix rows, and the images of its rare samples (from the mined data).

    ``imbalance_method`` is what the imbalance fix does (:func:`~hardcase.models.retrain.imbalance_fix`).
    """
    needs_images = sorted({int(r["source_index"]) for r in rows if r.get("final_cause") in ("mislabel", "rare")})
    pool_hashes: dict[int, str] = {}
    source = None
    if needs_images:
        if mined_path is None or not Path(mined_path).exists():
            raise PlanError(f"the mined data set {mined_path} is not readable; mislabel and rare fixes need it")
        source = open_for_model(mined_path, spec, labels=mined_labels, **(mined_read_options or {}))
        batch = source.read(needs_images)
        # hashed as the training images are (uint8), so a float pool still matches them
        pool_hashes = dict(zip(batch.indices.tolist(), content_hashes(as_uint8(batch.images))))
    train_index_of_hash = {}
    if any(r.get("final_cause") == "mislabel" for r in rows):
        train_index_of_hash = {digest: i for i, digest in enumerate(content_hashes(train_images))}
    rare_indices = [int(r["source_index"]) for r in rows if r.get("final_cause") == "rare"]
    neighbours = nearest_neighbours(embeddings_path, rare_indices)
    # "collect more like these" names files: the one way a source names its rows
    named = sorted({*rare_indices, *(n for near in neighbours.values() for n in near)})
    uris = dict(zip(named, source.row_uris(named))) if source is not None and named else {}
    plan = build_plan(rows, class_names=list(spec.class_names), train_labels=train_labels,
                      pool_hashes=pool_hashes, train_index_of_hash=train_index_of_hash,
                      neighbours=neighbours, uris=uris, rare_oversample=rare_oversample,
                      imbalance_method=imbalance_method, provenance={"mined_data": mined_path, **(provenance or {})})
    rare_images = None
    if plan.rare is not None:
        rare_images = as_uint8(source.read([s.source_index for s in plan.rare.samples]).images)
    return plan, rare_images


def stress_sets(images: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A rotated copy (uniform ±45°) and a perspective-warped copy (scale 0.12-0.18) of a set."""
    import albumentations as A
    import cv2

    from hardcase.models.transforms import Transform, apply_transform

    rng = np.random.default_rng(seed)
    angles = rng.uniform(-STRESS_ROTATE, STRESS_ROTATE, len(images))
    rotated = np.stack([apply_transform(img, Transform(rotate=float(a))) for img, a in zip(images, angles)])
    warp = A.Compose([A.Perspective(scale=STRESS_PERSPECTIVE, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0)],
                     seed=seed)
    warped = np.stack([warp(image=img[..., 0])["image"][..., None] if img.shape[-1] == 1 else warp(image=img)["image"]
                       for img in images])
    return {"rotated": (rotated, labels), "perspective": (warped, labels)}


# --------------------------------------------------------------------------- evaluation


def compare(before: np.ndarray, after: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    b, a = accuracy_and_recall(before, labels, class_names), accuracy_and_recall(after, labels, class_names)
    return {"n": b["n"], "before": b, "after": a, "flips": prediction_flips(before, after, labels)}


def evaluate_pair(old_model, new_model, spec, sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
                  plan: TrainingPlan, *, old_preds: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Before/after metrics per set; sets containing relabelled samples get a ``corrected`` block."""
    names = list(spec.class_names)
    out = {}
    for name, (images, labels) in sets.items():
        before = old_preds[name] if old_preds and name in old_preds else predict_labels(old_model, spec, images)
        after = predict_labels(new_model, spec, images)
        entry = compare(before, after, labels, names)
        if plan.mislabel is not None:
            fixed, changed = corrected_labels(plan, labels, content_hashes(images))
            if changed:
                entry["corrected"] = {"n_corrected": changed, **compare(before, after, fixed, names)}
        out[name] = entry
    return out


# --------------------------------------------------------------------------- the workflow


def _unrecorded_convention_classifier(options: RetrainOptions, recorded: PreprocessingSpec | None):
    """The model read through its own spec (its spec file, or detected from its shapes), for a run
    whose recorded spec says nothing of its input convention; the recorded image size and class
    names (of recorded predictions) still apply, and flags override."""
    from hardcase.models.classifier import load_classifier

    return load_classifier(
        options.model_path, scale=options.scale, trust_model=options.trust_model,
        size=recorded.image_shape if recorded is not None else None,
        class_names=options.class_names or (list(recorded.class_names) if recorded is not None else None),
    )


def _checked_convention(classifier, options: RetrainOptions, images: np.ndarray, labels: np.ndarray,
                        echo: Callable[[str], None]):
    """The input-convention check (:mod:`.conventions`) on the first labelled training images."""
    from hardcase.miner.spec import spec_path_for
    from hardcase.review_app.workflows.conventions import (
        CHECK_IMAGES,
        ConventionError,
        check_convention,
    )

    spec_given = options.scale is not None or spec_path_for(options.model_path).exists()
    try:
        check = check_convention(classifier, images[:CHECK_IMAGES], labels[:CHECK_IMAGES], spec_given=spec_given,
                                 where=options.train_data)
    except ConventionError as exc:
        raise PlanError(str(exc)) from None
    echo(check.summary())
    return classifier.with_spec(check.spec) if check.changed else classifier


def run_retrain(store, options: RetrainOptions, *, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Plan, retrain, evaluate, write the model, its plan and the report; returns the report dict."""
    import keras

    from hardcase.models.classifier import load_classifier
    from hardcase.models.training import save_with_spec

    if not options.evals:
        raise PlanError("give at least one evaluation set: --eval NAME=PATH")
    mined = MinedData(None, None, None, {}) if store is None else run_dataset(store, options.run_name)
    # the spec the run was mined with (its input convention may have been detected then)
    stored = run_spec(store, options.run_name) if store is not None else None
    checked = stored is None or mined.recorded
    if checked:
        classifier = _unrecorded_convention_classifier(options, stored)
    else:
        classifier = load_classifier(options.model_path, spec=stored, scale=options.scale,
                                     class_names=options.class_names, trust_model=options.trust_model)
    spec = classifier.spec
    train_images, train_labels = load_images(options.train_data, spec, labels=options.train_labels,
                                             resize=options.resize)
    known = train_labels >= 0
    train_images, train_labels = train_images[known], train_labels[known]
    if checked:  # no model read this run's data: find how it reads images, on the training data
        classifier = _checked_convention(classifier, options, train_images, train_labels, echo)
        spec = classifier.spec
    rows = fix_rows(store, options.run_name, options.fixes_path)
    plan, rare_images = make_plan(
        rows, spec=spec, train_images=train_images, train_labels=train_labels, mined_path=mined.path,
        mined_labels=mined.labels_path, embeddings_path=mined.embeddings_path,
        mined_read_options=mined.read_options, rare_oversample=options.rare_oversample,
        imbalance_method=options.imbalance,
        provenance={"run": options.run_name, "fixes_file": options.fixes_path, "model": str(options.model_path),
                    "train_data": str(options.train_data), "epochs": options.epochs, "seed": options.seed},
    )
    echo(plan.describe())
    pool_counts = dict.fromkeys(POOL_CAUSES, 0)
    if options.pool and rows:
        pool_images, pool_labels, pool_counts = reviewed_pool_samples(rows, spec=spec, mined=mined,
                                                                      train_images=train_images)
        train_images = np.concatenate([train_images, pool_images])
        train_labels = np.concatenate([train_labels, pool_labels])
        echo("reviewed pool samples joining the training data: "
             + ", ".join(f"{cause} {n}" for cause, n in pool_counts.items()))
    if plan.imbalance is not None and plan.imbalance.logit_offset:
        output_bias_layer(classifier.model)  # a model whose thresholds cannot move fails before training
    if plan.is_empty:
        echo("the plan holds no fix (no decided augment/imbalance/mislabel/rare reviews): retraining as is")

    sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, path in options.evals.items():
        sets[name] = load_images(path, spec, resize=options.resize)
    if options.stress:
        for name in list(options.evals):
            if mined.path and Path(options.evals[name]).resolve() == Path(mined.path).resolve():
                continue  # the pool holds its own disturbances
            for kind, data in stress_sets(*sets[name], seed=options.seed).items():
                sets[f"{name}:{kind}"] = data

    def train(p: TrainingPlan):
        model, data = retrain(p, classifier.model, train_images, train_labels, spec,
                              rare_images=rare_images if p.rare is not None else None,
                              epochs=options.epochs, batch_size=options.batch_size, seed=options.seed,
                              progress=f"retraining with {', '.join(p.families) or 'no fix'}")
        return model, data

    echo(f"retraining for {options.epochs} epochs (seed {options.seed}) ...")
    new_model, data = train(plan)
    out = Path(options.out)
    save_with_spec(new_model, spec, out)
    plan_file = plan.save(plan_path_for(out))
    old_preds = {name: predict_labels(classifier.model, spec, images) for name, (images, _) in sets.items()}
    report: dict[str, Any] = {
        "model": str(options.model_path),
        "retrained_model": str(out),
        "plan_file": str(plan_file),
        "plan": plan.to_dict(),
        "training": {"n_images": int(len(data.images)), "notes": data.notes, "epochs": options.epochs,
                     "seed": options.seed, "pool_samples": pool_counts},
        "sets": evaluate_pair(classifier.model, new_model, spec, sets, plan, old_preds=old_preds),
    }
    if options.ablate:
        ablation: dict[str, Any] = {}
        images_per_variant = {"all": int(len(data.images))}
        variants = [("none", plan.only())] + [(f, plan.only(f)) for f in plan.families]
        for label, variant in variants:
            echo(f"ablation: retraining with {label if label != 'none' else 'no fix'} ...")
            model, variant_data = train(variant)
            images_per_variant[label] = int(len(variant_data.images))
            ablation[label] = {name: accuracy_and_recall(predict_labels(model, spec, images), labels,
                                                         spec.class_names)["accuracy"]
                               for name, (images, labels) in sets.items()}
            keras.backend.clear_session(free_memory=False)
        ablation["all"] = {name: entry["after"]["accuracy"] for name, entry in report["sets"].items()}
        report["ablation"] = {
            "accuracy": ablation,
            "gain_vs_no_plan": {f: {name: ablation[f][name] - ablation["none"][name] for name in sets}
                                for f in [*plan.families, "all"]},
            # same epochs for every variant: one with augmented copies also takes more steps
            "training_images": images_per_variant,
        }
    paths = write_report(report, out)
    if store is not None:
        record_report(store, options.run_name, paths)
    echo(summary(report))
    return report


# --------------------------------------------------------------------------- the run's reports


def _stored_run_folder(store, run_name: str) -> Path | None:
    """The run's artifacts folder (beside its embeddings), or None when the run has none."""
    embeddings_path = run_dataset(store, run_name).embeddings_path
    return Path(embeddings_path).parent if embeddings_path else None


def record_report(store, run_name: str, paths: Mapping[str, Path]) -> Path | None:
    """Copy the report's files into ``<run artifacts>/reports/<stamp>/`` and list them, relative to
    the run's folder, in ``<run artifacts>/retrain_reports.jsonl`` (what the triage tab shows).

    The copies, not the files beside ``--out``, are what the app serves: ``--out`` may be
    anywhere, and a file there may be replaced or linked elsewhere after the run.
    """
    folder = _stored_run_folder(store, run_name)
    if folder is None:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = folder / "reports" / stamp
    suffix = 1
    while target.exists():
        suffix += 1
        target = folder / "reports" / f"{stamp}-{suffix}"
    target.mkdir(parents=True)
    entry: dict[str, str] = {"written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for key, path in paths.items():
        if Path(path).is_file():
            copy = target / Path(path).name
            shutil.copyfile(path, copy)
            entry[key] = copy.relative_to(folder).as_posix()
    index = folder / REPORTS_INDEX
    with index.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
    return index


def _contained(folder: Path, recorded: str) -> Path | None:
    """``recorded`` (relative to the run's folder) as a regular file inside it, else None: an
    absolute path, ``..``, or a symlink leading out of the folder is never served."""
    root = folder.resolve()
    path = (folder / recorded).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def run_reports(store, run_name: str) -> list[dict[str, str]]:
    """The retrain reports recorded for a run, oldest first: their files as absolute paths, only
    those that resolve (symlinks followed) to regular files inside the run's artifacts folder;
    an entry whose JSON report does not is left out."""
    folder = _stored_run_folder(store, run_name)
    index = folder / REPORTS_INDEX if folder is not None else None
    if index is None or not index.exists():
        return []
    entries = []
    for line in index.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if not isinstance(entry, dict):
            continue
        files = {key: _contained(folder, value) for key, value in entry.items()
                 if key != "written_at" and isinstance(value, str)}
        if files.get("json") is None:
            continue
        entries.append({"written_at": str(entry.get("written_at", "?")),
                        **{key: str(path) for key, path in files.items() if path is not None}})
    return entries


# --------------------------------------------------------------------------- report files


def report_paths(out: str | os.PathLike) -> dict[str, Path]:
    out = Path(out)
    stem = out.parent / out.stem
    return {"json": Path(f"{stem}.report.json"), "markdown": Path(f"{stem}.report.md"),
            "accuracy_png": Path(f"{stem}.report.accuracy.png"), "recall_png": Path(f"{stem}.report.recall.png"),
            "ablation_png": Path(f"{stem}.report.ablation.png")}


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def summary(report: Mapping[str, Any]) -> str:
    lines = []
    for name, entry in report["sets"].items():
        flips = entry["flips"]
        line = (f"{name}: accuracy {_pct(entry['before']['accuracy'])} -> {_pct(entry['after']['accuracy'])} "
                f"(fixed {flips['fixed']}, broken {flips['broken']})")
        if "corrected" in entry:
            corrected = entry["corrected"]
            line += (f"; corrected labels ({corrected['n_corrected']}): {_pct(corrected['before']['accuracy'])} -> "
                     f"{_pct(corrected['after']['accuracy'])}")
        lines.append(line)
    return "\n".join(lines)


def markdown(report: Mapping[str, Any]) -> str:
    plan = TrainingPlan.from_dict(report["plan"])
    out = [f"# Retrain report: {report['retrained_model']}", "", f"From `{report['model']}`; plan `{report['plan_file']}`.",
           "", "```", plan.describe(), "```", ""]
    training = report.get("training") or {}
    if training:
        out += [f"Trained on {training.get('n_images')} images for {training.get('epochs')} epochs "
                f"(seed {training.get('seed')}): " + "; ".join(training.get("notes") or ["no fix"]) + ".", ""]
        pool = training.get("pool_samples") or {}
        if any(pool.values()):
            out += ["Reviewed pool samples added to the training data: "
                    + ", ".join(f"{n} {cause}" for cause, n in pool.items()) + ".", ""]
    out += ["## Before / after", "",
            "| set | n | accuracy before | accuracy after | fixed | broken | corrected-label accuracy before | after |",
            "|---|---|---|---|---|---|---|---|"]
    for name, entry in report["sets"].items():
        corrected = entry.get("corrected")
        out.append(f"| {name} | {entry['n']} | {_pct(entry['before']['accuracy'])} | {_pct(entry['after']['accuracy'])} "
                   f"| {entry['flips']['fixed']} | {entry['flips']['broken']} "
                   f"| {_pct(corrected['before']['accuracy']) if corrected else '-'} "
                   f"| {_pct(corrected['after']['accuracy']) if corrected else '-'} |")
    first = next(iter(report["sets"]))
    recall_before, recall_after = report["sets"][first]["before"]["recall"], report["sets"][first]["after"]["recall"]
    out += ["", f"## Per-class recall on {first}", "", "| class | before | after |", "|---|---|---|"]
    out += [f"| {k} | {_pct(recall_before[k])} | {_pct(recall_after[k])} |" for k in recall_before]
    if "ablation" in report:
        gains = report["ablation"]["gain_vs_no_plan"]
        names = list(report["sets"])
        out += ["", "## Gain by fix family (accuracy points vs retraining with no plan)", "",
                "| family | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for family, values in gains.items():
            out.append(f"| {family} | " + " | ".join(f"{100 * values[n]:+.1f}" for n in names) + " |")
        sizes = report["ablation"].get("training_images")
        if sizes:
            out += ["", "Every variant trains for the same epochs on its own training set, so a variant with "
                    "augmented copies also takes more gradient steps: "
                    + ", ".join(f"{family} {count:,} images" for family, count in sizes.items()) + "."]
    if plan.rare is not None:
        out += ["", "## Collect more like these", ""]
        for sample in plan.rare.samples:
            near = sample.neighbour_uris or [f"source index {n}" for n in sample.neighbours]
            out.append(f"- {sample.uri or f'source index {sample.source_index}'} (class {sample.label})"
                       + (f"; like it: {', '.join(near)}" if near else ""))
    return "\n".join(out) + "\n"


def write_report(report: Mapping[str, Any], out: str | os.PathLike) -> dict[str, Path]:
    """Write the report as JSON, Markdown and PNG plots next to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = report_paths(out)
    paths["json"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown(report), encoding="utf-8")

    names = list(report["sets"])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(names)), 3.5))
    ax.bar(x - 0.2, [report["sets"][n]["before"]["accuracy"] for n in names], 0.4, label="before")
    ax.bar(x + 0.2, [report["sets"][n]["after"]["accuracy"] for n in names], 0.4, label="after")
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths["accuracy_png"], dpi=100)
    plt.close(fig)

    first = names[0]
    classes = list(report["sets"][first]["before"]["recall"])
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(classes)), 3.5))
    for offset, when in ((-0.2, "before"), (0.2, "after")):
        values = [report["sets"][first][when]["recall"][c] or 0.0 for c in classes]
        ax.bar(x + offset, values, 0.4, label=when)
    ax.set_xticks(x, classes)
    ax.set_ylim(0, 1)
    ax.set_title(f"per-class recall on {first}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths["recall_png"], dpi=100)
    plt.close(fig)

    if "ablation" in report:
        gains = report["ablation"]["gain_vs_no_plan"]
        families = list(gains)
        x = np.arange(len(names))
        width = 0.8 / max(1, len(families))
        fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(names)), 3.5))
        for j, family in enumerate(families):
            ax.bar(x + (j - (len(families) - 1) / 2) * width, [100 * gains[family][n] for n in names], width,
                   label=family)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, names, rotation=20, ha="right")
        ax.set_ylabel("accuracy gain vs no plan (points)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(paths["ablation_png"], dpi=100)
        plt.close(fig)
    else:
        paths.pop("ablation_png")
    return paths


__all__ = ["FAMILIES", "RetrainOptions", "fix_rows", "load_images", "make_plan", "record_report", "run_reports",
           "run_retrain", "stress_sets", "write_report"]
