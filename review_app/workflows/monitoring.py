"""Production monitoring: a stream scored window by window against a reference, stored,
explained, and routed into review.

``monitor_stream(store, options)`` is ``hardcase monitor``:

1. The model and a labelled **reference** (held-out data the model was not trained on: a model
   is more confident on its training images, and every window would look drifted) are read
   the way mining reads data; the input convention is checked on the reference. The model's
   outputs on the reference are cached beside the run, and a
   :class:`~hardcase.miner.monitors.WindowMonitor` is fitted on them (the same settings and
   seed give the same thresholds on every invocation, so nothing fitted needs storing).
2. The **stream** is cut into windows: every ``window`` samples in order (a trailing window
   that is not full waits for more data), or one window per value of the stream's ``t``
   (npz ``t``, a manifest's ``timestamp`` column), in order of first appearance.
3. Each window not yet stored is scored (every signal, alerts, the classes that moved first,
   the estimated accuracy with its interval); an alerting window's root cause is asked
   (:func:`hardcase.models.drift.explain_window`). The window, its signals and its per-sample
   values (a Parquet file under ``<artifacts>/<run>/windows/``: predicted class, confidence,
   out-of-distribution score, the 2-D map coordinates) are stored together, one window per unit
   of work, so a killed run resumes at the first window not stored and a stream that grew is
   monitored again from its last window.
4. An alerting window's ``review`` hardest and most out-of-distribution samples become
   candidates of the review run of the same name (their window recorded), and cause
   suggestion runs over them as over mined candidates, with the reference as training data.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hardcase.miner.monitors import WindowMonitor, WindowReport, environment_record
from hardcase.miner.scores import compute_scores, hardness_score
from hardcase.miner.select import select_candidates
from hardcase.miner.sources import DataSource, content_hashes
from hardcase.miner.spec import as_uint8, spec_path_for
from hardcase.miner.vocabulary import SCORE_FIELDS
from hardcase.models.classifier import load_classifier
from hardcase.review_app.workflows.artifacts import open_scoring_arrays, run_folder
from hardcase.review_app.workflows.conventions import ConventionError, check_convention
from hardcase.review_app.workflows.data import open_for_model
from hardcase.review_app.workflows.images import encode_png
from hardcase.store import api
from hardcase.store.columnar import read_columns, write_columns
from hardcase.store.db import Store

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_REVIEW", "DEFAULT_WINDOW", "MonitorInputError", "MonitorOptions", "MonitorReport",
           "monitor_stream", "window_samples"]

#: Samples per window when neither ``window`` nor ``by_t`` is given.
DEFAULT_WINDOW = 300
#: Samples of an alerting window sent to review.
DEFAULT_REVIEW = 20
#: Largest reference used to fit the monitor (a random subset of a larger one): the monitor
#: keeps the reference's images and embeddings in memory.
MAX_REFERENCE = 20_000
#: Labelled reference images the input-convention check reads.
CHECK_IMAGES = 512
#: The reference's outputs, cached beside the run.
REFERENCE_CACHE = "reference.npz"
#: The reference's points on the 2-D map every window is drawn over.
REFERENCE_MAP = "reference_map.parquet"


class MonitorInputError(ValueError):
    """A user mistake in ``hardcase monitor``'s inputs (one line, exit 2 on the command line)."""


@dataclass
class MonitorOptions:
    """What ``hardcase monitor`` was asked; stored with the run so a resume reads alike."""

    run_name: str
    model_path: str
    reference_path: str
    stream_path: str
    reference_labels: str | None = None
    stream_labels: str | None = None
    window: int | None = None
    by_t: bool = False
    review: int = DEFAULT_REVIEW
    class_names: list[str] | None = None
    scale: str | None = None
    channels: int | None = None
    size: tuple[int, ...] | None = None
    invert: bool | None = None
    resize: bool = False
    max_pixels: int | None = None
    allow_outside_root: bool = False
    embedding_layer: str | None = None
    batch_size: int = 256
    alpha: float = 0.002
    seed: int = 0
    suggest: bool = True
    trust_model: bool = False  # run a SavedModel directory's own graph (it may do anything)

    def check(self) -> None:
        """Refuse inconsistent options (MonitorInputError), before any data or model is read."""
        if self.window is not None and self.by_t:
            raise MonitorInputError("give either --window N or --by t, not both")
        if self.window is not None and self.window < 10:
            raise MonitorInputError(f"--window must be at least 10 samples, got {self.window}")
        if self.review < 0:
            raise MonitorInputError(f"--review must be 0 or more, got {self.review}")
        if not 0.0 < self.alpha < 1.0:
            raise MonitorInputError(f"--alpha must be in (0, 1), got {self.alpha}")

    def params(self) -> dict[str, Any]:
        params = asdict(self)
        params["size"] = list(self.size) if self.size is not None else None
        # the review run's suggestion reads the reference as its training data
        params["train_data"] = self.reference_path
        return params


@dataclass
class WindowSummary:
    """One stored window, as the report lists it."""

    window: int
    key: str | None
    n: int
    alert: bool
    alerts: list[str]
    classes_moved: list[str]
    estimated_accuracy: float | None
    true_accuracy: float | None
    root_cause: str | None
    n_candidates: int = 0
    n_errors: int = 0

    def line(self) -> str:
        name = f"window {self.window}" + (f" (t={self.key})" if self.key is not None else "")
        accuracy = "" if self.estimated_accuracy is None else f", estimated accuracy {self.estimated_accuracy:.3f}"
        if self.true_accuracy is not None:
            accuracy += f" (true {self.true_accuracy:.3f})"
        if not self.alert:
            return f"{name}: {self.n} samples, no alert{accuracy}"
        moved = f"; classes first: {', '.join(self.classes_moved[:3])}" if self.classes_moved else ""
        text = f"{name}: ALERT [{', '.join(self.alerts) or 'environment'}]{moved}{accuracy}"
        if self.root_cause:
            text += f"\n    root cause: {self.root_cause}"
        if self.n_candidates:
            text += f"\n    {self.n_candidates} samples sent to review"
        return text


@dataclass
class MonitorReport:
    run_name: str
    n_stream: int
    window_by: str
    window_size: int | None
    windows: list[WindowSummary] = field(default_factory=list)
    n_previous: int = 0
    waiting: int = 0
    ignored: int = 0
    n_errors: int = 0
    convention: str | None = None
    suggestions: str | None = None
    seconds: float = 0.0

    @property
    def n_alerts(self) -> int:
        return sum(w.alert for w in self.windows)

    def summary(self) -> str:
        by = f"windows of {self.window_size}" if self.window_by == "count" else "one window per t"
        lines = [f"monitor run {self.run_name!r}: {len(self.windows)} new windows ({by}) after {self.n_previous} "
                 f"stored, {self.n_alerts} alerting, {self.n_stream} stream samples, {self.seconds:.1f} s"]
        if self.convention:
            lines.append(f"input convention: {self.convention}")
        lines += [w.line() for w in self.windows if w.alert]
        quiet = [w.window for w in self.windows if not w.alert]
        if quiet:
            lines.append(f"no alert in {len(quiet)} windows")
        if self.waiting:
            lines.append(f"{self.waiting} samples wait for a full window")
        if self.ignored:
            lines.append(f"{self.ignored} new samples carry a t already monitored and were not scored")
        if self.n_errors:
            lines.append(f"{self.n_errors} unreadable samples (hardcase export --what errors does not list "
                         "monitoring rows; the windows export counts them per window)")
        if self.suggestions:
            lines.append(self.suggestions)
        return "\n".join(lines)


# ----------------------------------------------------------------------------- entry point


def monitor_stream(store: Store, options: MonitorOptions, *, artifacts_dir: Path, progress: bool = True) -> MonitorReport:
    """Monitor ``options.stream_path`` window by window (module docstring).

    Raises
    ------
    MonitorInputError
        Inconsistent options, unusable data, or a run name taken by another model or data.
    """
    started = time.perf_counter()
    options.check()
    classifier = load_classifier(options.model_path, embedding_layer=options.embedding_layer, scale=options.scale,
                                 channels=options.channels, size=options.size,
                                 class_names=options.class_names or None, trust_model=options.trust_model)
    if options.invert is not None:
        classifier = classifier.with_spec(classifier.spec.with_overrides(invert=options.invert))
    if classifier.embedding_layer is None:
        raise MonitorInputError(f"{options.model_path} exposes no embedding layer; pass --embedding-layer NAME")
    reading = {"resize": options.resize, "max_pixels": options.max_pixels,
               "allow_outside_root": options.allow_outside_root}
    reference = open_for_model(options.reference_path, classifier.spec, labels=options.reference_labels, **reading)
    if len(reference) < 10:
        raise MonitorInputError(f"the reference {options.reference_path} has {len(reference)} samples; "
                                "monitoring needs a few hundred at least")
    ref_labels = _labels(reference, classifier.spec.class_names, options.reference_path)
    convention = None
    if ref_labels is not None:
        classifier, convention = _checked_convention(classifier, reference, ref_labels, options)
    stream = open_for_model(options.stream_path, classifier.spec, labels=options.stream_labels, **reading)
    if len(stream) == 0:
        raise MonitorInputError(f"the stream {options.stream_path} holds no samples")
    stream_labels = _labels(stream, classifier.spec.class_names, options.stream_path)
    environment = environment_record(options.model_path)  # hashes the model: once per invocation
    run = _open_run(store, options, classifier, reference, stream, Path(artifacts_dir), environment)
    folder = run_folder(artifacts_dir, options.run_name)
    report = MonitorReport(run_name=options.run_name, n_stream=len(stream), window_by=run.window_by,
                           window_size=run.window_size,
                           convention=convention.summary() if convention is not None else None)
    windows, report.waiting, report.ignored = _windows(stream, run)
    report.n_previous = len(run.done)
    todo = [w for w in windows if w.index not in run.done]
    if todo:
        monitor, ref = _fitted_monitor(classifier, reference, ref_labels, options, run, folder, progress,
                                       model_hash=environment["model_sha256"])
        outputs = _StreamArtifacts(folder, len(stream), classifier.n_classes, classifier.embedding_dim)
        bar = tqdm(total=sum(len(w.rows) for w in todo), unit="img", desc=f"monitoring {options.run_name}",
                   disable=not progress)
        for window in todo:
            summary = _monitor_window(store, options, run, classifier, monitor, ref, stream, stream_labels, window,
                                      folder, outputs, environment)
            report.windows.append(summary)
            report.n_errors += summary.n_errors
            bar.update(len(window.rows))
        bar.close()
    if options.suggest and any(w.n_candidates for w in report.windows):
        from hardcase.review_app.workflows.suggest import suggest_for_run

        report.suggestions = suggest_for_run(store, options.run_name, artifacts_dir=artifacts_dir,
                                             train_data=options.reference_path, classifier=classifier,
                                             progress=progress, seed=options.seed).summary()
        with store.Session.begin() as session:
            api.set_run_status(session, run.review_run_id, "done")
    report.seconds = time.perf_counter() - started
    return report


def _labels(source: DataSource, class_names, where: str) -> np.ndarray | None:
    if not source.has_labels:
        return None
    try:
        labels = source.labels_for(list(class_names))
    except ValueError as exc:
        raise MonitorInputError(str(exc)) from None
    return labels if (labels >= 0).any() else None


def _checked_convention(classifier, reference: DataSource, labels: np.ndarray, options: MonitorOptions):
    rows = np.flatnonzero(labels >= 0)[:CHECK_IMAGES]
    batch = reference.read(rows)
    spec_given = (options.scale is not None or options.invert is not None
                  or spec_path_for(Path(options.model_path)).exists())
    try:
        check = check_convention(classifier, batch.images, labels[batch.indices], spec_given=spec_given,
                                 where=options.reference_path)
    except ConventionError as exc:
        raise MonitorInputError(str(exc)) from None
    if check.changed:
        classifier = classifier.with_spec(check.spec)
    return classifier, check


# ----------------------------------------------------------------------------- the run in the store


@dataclass
class _Run:
    id: int
    model_version_id: int
    stream_dataset_id: int
    review_run_id: int | None
    window_by: str
    window_size: int | None
    calibration_size: int
    environment: dict | None
    done: dict[int, tuple[str | None, int]]


def _open_run(store: Store, options: MonitorOptions, classifier, reference: DataSource, stream: DataSource,
              artifacts_dir: Path, environment: dict) -> _Run:
    """The monitor run (created on the first invocation, with ``environment``, this invocation's
    record, as the reference environment later windows are compared with)."""
    class_names = list(classifier.spec.class_names)
    model_path = Path(options.model_path)
    with store.Session.begin() as session:
        model = api.register_model(session, name=model_path.name, path=str(model_path.resolve()),
                                   file_hash=environment["model_sha256"], spec=classifier.spec.to_dict(),
                                   class_names=class_names)
        ref_data = api.get_or_create_dataset(session, name=str(Path(options.reference_path).resolve()),
                                             uri=str(Path(options.reference_path).resolve()), kind=reference.kind,
                                             class_names=class_names, n_samples=len(reference))
        stream_name = str(Path(options.stream_path).resolve())
        stream_data = api.get_dataset(session, stream_name)
        if stream_data is None:
            stream_data = api.get_or_create_dataset(session, name=stream_name, uri=stream_name, kind=stream.kind,
                                                    class_names=class_names, n_samples=len(stream))
        elif stream_data.n_samples != len(stream):
            api.grow_dataset(session, stream_data.id, len(stream))
        run = api.get_monitor_run(session, options.run_name)
        if run is None:
            if api.get_run(session, options.run_name) is not None:
                raise MonitorInputError(f"--run {options.run_name!r} is taken by a mining run; choose another name")
            if options.by_t and stream.timestamps is None:
                raise MonitorInputError(f"--by t needs timestamps in {options.stream_path} "
                                        "(an npz array 't' or a manifest 'timestamp' column)")
            params = options.params() | {"environment": environment,
                                         "artifacts_dir": str(artifacts_dir.resolve()),
                                         "calibration_size": _calibration_size(options, stream)}
            run = api.create_monitor_run(
                session, name=options.run_name, model_version_id=model.id, reference_dataset_id=ref_data.id,
                stream_dataset_id=stream_data.id, params=params, window_by="t" if options.by_t else "count",
                window_size=None if options.by_t else (options.window or DEFAULT_WINDOW))
        else:
            if (run.model_version_id, run.reference_dataset_id, run.stream_dataset_id) != (
                    model.id, ref_data.id, stream_data.id):
                raise MonitorInputError(f"monitor run {options.run_name!r} exists for another model, reference or "
                                        "stream; choose another --run name")
            wanted = ("t" if options.by_t else "count",
                      None if options.by_t else (options.window or run.window_size or DEFAULT_WINDOW))
            if wanted != (run.window_by, run.window_size):
                was = "--by t" if run.window_by == "t" else f"--window {run.window_size}"
                raise MonitorInputError(f"monitor run {options.run_name!r} was started with {was}; "
                                        "resume it the same way or choose another --run name")
        return _Run(id=run.id, model_version_id=model.id, stream_dataset_id=stream_data.id,
                    review_run_id=run.review_run_id, window_by=run.window_by, window_size=run.window_size,
                    calibration_size=int(dict(run.params or {}).get("calibration_size") or run.window_size
                                         or DEFAULT_WINDOW),
                    environment=dict(run.params or {}).get("environment"),
                    done={w.window_index: (w.window_key, w.n + w.n_errors) for w in api.list_windows(session, run.id)})


@dataclass(frozen=True)
class _Window:
    index: int
    key: str | None
    rows: np.ndarray


def _windows(stream: DataSource, run: _Run) -> tuple[list[_Window], int, int]:
    """Every window of the stream (stored ones included), the samples waiting for a full window,
    and the new samples whose ``t`` was already monitored."""
    n = len(stream)
    if run.window_by == "count":
        size = run.window_size
        full = n // size
        return [_Window(i, None, np.arange(i * size, (i + 1) * size)) for i in range(full)], n - full * size, 0
    keys = [str(t) for t in stream.timestamps]
    order: dict[str, list[int]] = {}
    for row, key in enumerate(keys):
        order.setdefault(key, []).append(row)
    stored = {key: (index, n) for index, (key, n) in run.done.items()}
    windows, next_index, ignored = [], max(run.done, default=-1) + 1, 0
    for key, rows in order.items():
        if key in stored:
            index, n_stored = stored[key]
            windows.append(_Window(index, key, np.asarray(rows[:n_stored])))
            # rows appended since with a t already monitored are not part of that stored window
            ignored += max(0, len(rows) - n_stored)
        else:
            windows.append(_Window(next_index, key, np.asarray(rows)))
            next_index += 1
    return windows, 0, ignored


# ----------------------------------------------------------------------------- the reference


@dataclass
class _Reference:
    """The reference rows used, their images as read and the model's outputs on them."""

    rows: np.ndarray
    images: np.ndarray
    probs: np.ndarray
    embeddings: np.ndarray


def _fitted_monitor(classifier, reference: DataSource, labels, options: MonitorOptions, run: _Run, folder: Path,
                    progress: bool, *, model_hash: str) -> tuple[WindowMonitor, _Reference]:
    rows = np.arange(len(reference))
    if labels is not None:
        rows = rows[labels >= 0]
    if len(rows) > MAX_REFERENCE:
        rows = np.sort(np.random.default_rng(options.seed).choice(rows, MAX_REFERENCE, replace=False))
    ref = _reference_outputs(classifier, reference, rows, options, folder, progress, model_hash=model_hash)
    ref_labels = labels[ref.rows] if labels is not None else None
    monitor = WindowMonitor(window_size=run.calibration_size, alpha=options.alpha, class_names=list(classifier.class_names),
                            random_state=options.seed)
    monitor.fit(ref.probs, ref.embeddings, labels=ref_labels, images=ref.images, environment=run.environment)
    xy = monitor.project(ref.embeddings)
    write_columns(folder / REFERENCE_MAP, {
        "x": xy[:, 0], "y": xy[:, 1], "predicted": ref.probs.argmax(axis=1),
        "label": ref_labels if ref_labels is not None else np.full(len(xy), -1),
    })
    ref.images = as_uint8(ref.images)  # as the root cause's transforms take them
    return monitor, ref


def _calibration_size(options: MonitorOptions, stream: DataSource) -> int:
    """The window size thresholds are calibrated for: ``--window``, or with ``--by t`` the median
    number of samples per ``t`` of the stream when the run started (fixed from then on)."""
    if not options.by_t:
        return options.window or DEFAULT_WINDOW
    _, counts = np.unique(np.asarray([str(t) for t in stream.timestamps], dtype=object), return_counts=True)
    return max(10, int(np.median(counts)))


def _reference_outputs(classifier, reference: DataSource, rows: np.ndarray, options: MonitorOptions, folder: Path,
                       progress: bool, *, model_hash: str) -> _Reference:
    """The reference's images as read and the model's outputs on them, cached per model and data."""
    path = Path(options.reference_path).resolve()
    meta = json.dumps({"reference": str(path), "mtime_ns": path.stat().st_mtime_ns, "n": len(reference),
                       "model": model_hash, "spec": classifier.spec.to_dict(),
                       "embedding_layer": options.embedding_layer, "rows": len(rows), "seed": options.seed},
                      sort_keys=True)
    cache = folder / REFERENCE_CACHE
    if cache.exists():
        with np.load(cache, allow_pickle=False) as stored:
            if str(stored["meta"]) == meta:
                return _Reference(stored["rows"], stored["images"], stored["probs"], stored["embeddings"])
    images, probs, embeddings, kept = [], [], [], []
    bar = tqdm(total=len(rows), unit="img", desc="scoring the reference", disable=not progress)
    for start in range(0, len(rows), options.batch_size):
        batch = reference.read(rows[start:start + options.batch_size])
        if len(batch.indices):
            p, e = classifier.predict_and_embed_batch(batch.images, batch_label=f"reference rows from {batch.indices[0]}")
            images.append(np.asarray(batch.images))
            probs.append(p)
            embeddings.append(e)
            kept.append(batch.indices)
        bar.update(len(batch.indices) + len(batch.errors))
    bar.close()
    if not kept:
        raise MonitorInputError(f"no readable image in the reference {options.reference_path}")
    out = _Reference(np.concatenate(kept), np.concatenate(images), np.concatenate(probs),
                            np.concatenate(embeddings))
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{REFERENCE_CACHE}.tmp.npz"
    np.savez(temporary, meta=np.array(meta), rows=out.rows, images=out.images, probs=out.probs,
             embeddings=out.embeddings)
    os.replace(temporary, cache)
    return out


# ----------------------------------------------------------------------------- one window


class _StreamArtifacts:
    """The stream's outputs as a mining run keeps them (``pred_probs.npy``, ``embeddings.npy``,
    ``done.npy``, ``sample_ids.npy`` under ``<artifacts>/<run>/``), so cause suggestion reads the
    review run like a mined one; grown in place when the stream grew."""

    def __init__(self, folder: Path, n: int, n_classes: int, dim: int) -> None:
        self.probs, self.sample_ids, self.done, self.embeddings = open_scoring_arrays(
            folder, n, n_classes, dim, grow=True)

    def keep(self, rows: np.ndarray, probs: np.ndarray, embeddings: np.ndarray) -> None:
        self.probs[rows] = probs
        self.embeddings[rows] = embeddings.astype(np.float16)
        self.done[rows] = 1
        for array in (self.probs, self.embeddings, self.done):
            array.flush()


def _monitor_window(store: Store, options: MonitorOptions, run: _Run, classifier, monitor: WindowMonitor,
                    ref: _Reference, stream: DataSource, stream_labels: np.ndarray | None, window: _Window,
                    folder: Path, outputs: _StreamArtifacts, environment: dict) -> WindowSummary:
    from hardcase.models.drift import explain_window

    batch = stream.read(window.rows)
    rows = np.asarray(batch.indices, dtype=np.int64)
    n_errors = len(batch.errors)
    class_names = list(classifier.class_names)
    if len(rows) == 0:
        raise MonitorInputError(f"window {window.index} of {options.stream_path} has no readable image "
                                f"(first error: {batch.errors[0].reason if batch.errors else 'none'})")
    parts = [classifier.predict_and_embed_batch(batch.images[i:i + options.batch_size],
                                                batch_label=f"stream rows from {rows[i]}")
             for i in range(0, len(rows), options.batch_size)]
    probs = np.concatenate([p for p, _ in parts])
    embeddings = np.concatenate([e for _, e in parts])
    labels = stream_labels[rows] if stream_labels is not None else None
    report = monitor.score(probs, embeddings, images=batch.images, labels=labels,
                           environment=environment, window=window.index)
    if report.alert:
        report = report.with_root_cause(explain_window(classifier, report, as_uint8(batch.images), probs,
                                                       monitor=monitor, reference_images=ref.images,
                                                       reference_probs=ref.probs))
    ood = monitor.monitors_["ood"].score(embeddings, probs)[0] if "ood" in monitor.monitors_ else np.full(len(rows), np.nan)
    ood = np.asarray(ood, dtype=np.float64)
    hardness = hardness_score(probs)
    xy = monitor.project(embeddings)
    samples_path = Path("windows") / f"window-{window.index:06d}.parquet"
    write_columns(folder / samples_path, {
        "source_index": rows,
        "uri": stream.row_uris(rows),
        "t": [window.key] * len(rows),
        "predicted": probs.argmax(axis=1),
        "confidence": probs.max(axis=1),
        "hardness_score": hardness,
        "ood_score": ood,
        "x": xy[:, 0], "y": xy[:, 1],
        "label": labels if labels is not None else np.full(len(rows), -1),
    })
    outputs.keep(rows, probs, embeddings)
    picked = _review_rows(probs, hardness, embeddings, ood, options) if report.alert else np.array([], int)
    hashes = content_hashes(batch.images[picked]) if len(picked) else []
    with store.Session.begin() as session:
        window_id = api.add_window(session, run.id, **_window_row(report, window, rows, n_errors, samples_path))
        if len(picked):
            review_run_id = _review_run(session, options, run, folder)
            _add_candidates(session, review_run_id, run.stream_dataset_id, window_id, stream, batch, rows, picked,
                            hashes, probs, hardness, labels, class_names, outputs)
    cause = report.root_cause
    return WindowSummary(window=window.index, key=window.key, n=len(rows), alert=report.alert,
                         alerts=list(report.alerts), classes_moved=[report.class_name(c) for c in report.classes_moved],
                         estimated_accuracy=report.estimated_accuracy, true_accuracy=report.true_accuracy,
                         root_cause=cause.message if cause is not None else None, n_candidates=len(picked),
                         n_errors=n_errors)


def _window_row(report: WindowReport, window: _Window, rows: np.ndarray, n_errors: int, samples_path: Path) -> dict:
    signals = []
    for name, result in report.signals.items():
        signals.append({
            "signal": name, "statistic": result.statistic, "threshold": result.threshold.value,
            "side": result.threshold.side, "severity": result.severity, "p_value": result.p_value,
            "alert": bool(result.alert), "message": result.message,
            "classes_moved": [report.class_name(c) for c in result.classes_moved],
        })
    cause = report.root_cause
    interval = report.accuracy_interval
    return {
        "window_index": window.index, "window_key": window.key, "first_index": int(window.rows.min()),
        "last_index": int(window.rows.max()), "n": int(len(rows)), "n_errors": int(n_errors),
        "estimated_accuracy": report.estimated_accuracy, "accuracy_interval": interval,
        "true_accuracy": report.true_accuracy, "alert": bool(report.alert),
        # an environment change alerts without a signal: its root cause says so
        "alert_signals": list(report.alerts),
        "classes_moved": [report.class_name(c) for c in report.classes_moved],
        "root_cause": cause.kind if cause is not None else None,
        "root_cause_message": cause.message if cause is not None else None,
        "root_cause_detail": cause.to_dict() if cause is not None else None,
        "report": report.to_dict(), "samples_path": str(samples_path), "signals": signals,
    }


def _review_rows(probs: np.ndarray, hardness: np.ndarray, embeddings: np.ndarray, ood: np.ndarray,
                 options: MonitorOptions) -> np.ndarray:
    """Positions (into the window) of the samples sent to review: the hardest half, picked
    diverse per predicted class, then the most out-of-distribution of the rest."""
    k = min(options.review, len(probs))
    if k == 0:
        return np.array([], dtype=np.int64)
    n_hard = (k + 1) // 2 if np.isfinite(ood).any() else k
    selection = select_candidates(hardness, groups=probs.argmax(axis=1), embeddings=embeddings,
                                  budget=n_hard, diversity=0.5, seed=options.seed)
    picked = [int(i) for i in selection.indices]
    for i in np.argsort(-np.nan_to_num(ood, nan=-np.inf), kind="stable"):
        if len(picked) >= k:
            break
        if int(i) not in picked:
            picked.append(int(i))
    return np.asarray(picked, dtype=np.int64)


def _review_run(session, options: MonitorOptions, run: _Run, folder: Path) -> int:
    """The review run named after the monitor run, created with its first alerting window."""
    if run.review_run_id is not None:
        return run.review_run_id
    review = api.create_run(session, name=options.run_name, dataset_id=run.stream_dataset_id,
                            model_version_id=run.model_version_id,
                            params=options.params() | {"monitor": options.run_name},
                            embeddings_path=str((folder / "embeddings.npy").resolve()))
    api.set_review_run(session, run.id, review.id)
    run.review_run_id = review.id
    return review.id


def _add_candidates(session, review_run_id: int, dataset_id: int, window_id: int, stream: DataSource, batch, rows: np.ndarray,
                    picked: np.ndarray, hashes: list[str], probs: np.ndarray, hardness: np.ndarray,
                    labels: np.ndarray | None,
                    class_names: list[str], outputs: _StreamArtifacts) -> None:
    source_rows = rows[picked]
    names = np.asarray(class_names + [""], dtype=object)
    given = labels[picked] if labels is not None else np.full(len(picked), -1)
    sample_ids = api.upsert_samples(
        session, dataset_id,
        source_index=source_rows.tolist(), content_hash=hashes,
        uri=stream.row_uris(source_rows),
        given_label=[names[g] or None for g in given],
        timestamp=[str(stream.timestamps[i]) if stream.timestamps is not None else None for i in source_rows])
    outputs.sample_ids[source_rows] = sample_ids
    outputs.sample_ids.flush()
    window_probs = probs[picked]
    scores = compute_scores(window_probs, labels=given)
    api.add_score_columns(session, review_run_id, sample_id=np.asarray(sample_ids),
                          predicted_label=names[scores["predicted_label"]].tolist(),
                          **{key: scores[key] for key in SCORE_FIELDS if key != "predicted_label"})
    start, _ = api.review_progress(session, review_run_id)
    candidate_rows = []
    for rank, (position, sample_id) in enumerate(zip(picked, sample_ids, strict=True), start=start):
        candidate_rows.append({
            "sample_id": int(sample_id), "rank": rank, "class_name": class_names[int(probs[position].argmax())],
            "hardness_score": float(hardness[position]),
            "image_png": encode_png(np.asarray(batch.images[position])), "monitor_window_id": window_id,
        })
    api.add_candidates(session, review_run_id, candidate_rows)
    api.set_run_status(session, review_run_id, "scored", n_total=len(outputs.done),
                       n_scored=int(np.count_nonzero(np.asarray(outputs.done) == 1)))


def window_samples(artifacts_dir: Path, run_name: str, samples_path: str) -> dict[str, np.ndarray]:
    """A stored window's per-sample values (read only from inside the run's artifacts folder)."""
    root = run_folder(artifacts_dir, run_name)
    return read_columns(root / samples_path, root=root)
