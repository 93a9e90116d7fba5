"""The mining workflow: model + data source -> stored scores, embeddings and candidates.

Composes ``models`` (forward pass), ``miner`` (scores, selection, data sources) and ``store``
(persistence). Resumable: per-batch outputs go to memory-mapped arrays in the run's artifact
folder, samples and their scores to the database, and a ``done`` mask is flushed after each
checkpoint, so a run killed at any point and started again with the same name continues where
it stopped and ends with the same result.

Memory does not grow with the pool beyond the stored embeddings, up to a few dozen bytes per
sample of 1-D bookkeeping (scored rows, hardness, groups, labels, selection's tie-break
permutation; about 30 bytes measured, against 256 for 128-dim float16 embeddings): scores
are stored while the model runs, the per-run arrays' pages are dropped from the resident set
at every checkpoint, the end-of-run pass reads ``pred_probs`` back in chunks, and selection
reads only its (capped) hard pool's embeddings. Cause suggestion (``--no-suggest`` skips it)
is not covered by this.
"""

from __future__ import annotations

import logging
import mmap
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue
from typing import Any

import numpy as np
from tqdm import tqdm

from hardcase.miner.causes.label_issues import (
    neighbour_label_quality_score,
    pool_reference_density,
)
from hardcase.miner.scores import compute_scores, hardness_score, label_quality_score
from hardcase.miner.select import select_candidates
from hardcase.miner.sources import Batch, DataSource, content_hashes
from hardcase.miner.spec import spec_path_for
from hardcase.miner.vocabulary import SCORE_FIELDS
from hardcase.models.classifier import file_hash, load_classifier
from hardcase.review_app.workflows.artifacts import open_scoring_arrays, run_folder
from hardcase.review_app.workflows.conventions import (
    CHECK_IMAGES,
    ConventionCheck,
    ConventionError,
    check_convention,
)
from hardcase.review_app.workflows.data import open_for_model
from hardcase.review_app.workflows.images import encode_png
from hardcase.review_app.workflows.recorded import load_recorded_predictions
from hardcase.store import api
from hardcase.store.db import Store
from hardcase.store.export import export_rows

log = logging.getLogger(__name__)
#: Scored batches that may wait for the writer thread: a checkpoint (a second's worth of rows
#: committed at once) must not stall the model; a waiting batch holds its probabilities,
#: embeddings and hashes, not its images.
#: Unreadable rows a run's summary lists (all of them: ``hardcase export --what errors``).
SHOWN_ERRORS = 5
WRITE_AHEAD = 16
SCORE_CHUNK = 20_000


class MiningInputError(ValueError):
    """The inputs of a mining run do not fit together (labels vs classes, shapes, names)."""


@dataclass
class MiningOptions:
    """Everything that defines a mining run besides the store; stored with the run."""

    run_name: str
    model_path: str | None
    data_path: str
    labels_path: str | None = None
    class_names: list[str] | None = None
    train_data: str | None = None
    per_class: int | None = 20
    budget: int | None = None
    diversity: float = 0.5
    metric: str = "cosine"
    max_pool: int | None = None
    batch_size: int = 256
    seed: int = 0
    embedding_layer: str | None = None
    checkpoint_seconds: float = 1.0
    suggest: bool = True
    scale: str | None = None
    channels: int | None = None
    size: tuple[int, ...] | None = None  # (H, W) or (H, W, C)
    invert: bool | None = None  # the model expects inverted pixels (None: from the spec, or detected)
    resize: bool = False  # resize arrays of another size than the model's (else an error)
    max_pixels: int | None = None  # image files' width * height limit; None: the default
    allow_outside_root: bool = False  # read manifest paths outside the manifest's folder
    predictions_path: str | None = None  # recorded pred_probs (N, K) .npy, in the place of a model
    embeddings_path: str | None = None  # recorded embeddings (N, D) .npy beside them
    trust_model: bool = False  # run a SavedModel directory's own graph (it may do anything)

    def params(self) -> dict:
        return {
            "per_class": self.per_class,
            "budget": self.budget,
            "diversity": self.diversity,
            "metric": self.metric,  # of the selection's distances (pick_distance)
            "max_pool": self.max_pool,
            "seed": self.seed,
            "labels_path": self.labels_path,
            "train_data": str(Path(self.train_data).resolve()) if self.train_data else None,
            "embedding_layer": self.embedding_layer,
            "resize": self.resize,
            "max_pixels": self.max_pixels,
            "allow_outside_root": self.allow_outside_root,
            "predictions": str(Path(self.predictions_path).resolve()) if self.predictions_path else None,
            "embeddings": str(Path(self.embeddings_path).resolve()) if self.embeddings_path else None,
            "trust_model": self.trust_model,
        }


@dataclass
class MiningReport:
    run_name: str
    n_total: int
    n_scored: int
    n_errors: int
    n_candidates: int
    resumed_from: int = 0
    errors: list[tuple[int, str | None, str]] = field(default_factory=list)
    accuracy: float | None = None
    suggestions: str | None = None
    convention: str | None = None

    def summary(self) -> str:
        text = (
            f"run {self.run_name!r}: {self.n_scored} scored + {self.n_errors} errors = {self.n_total} samples; "
            f"{self.n_candidates} candidates"
        )
        if self.accuracy is not None:
            text += f"; accuracy on labelled samples {self.accuracy:.3f}"
        if self.resumed_from:
            text += f" (resumed after {self.resumed_from} already scored)"
        if self.errors:
            shown = self.errors[:SHOWN_ERRORS]
            text += f"\nunreadable rows ({len(shown)} of {self.n_errors}; all: hardcase export --what errors):"
            text += "".join(f"\n  row {index}{f' ({uri})' if uri else ''}: {reason}" for index, uri, reason in shown)
        if self.convention:
            text += f"\n{self.convention}"
        if self.suggestions:
            text += f"\n{self.suggestions}"
        return text


def mine(store: Store, options: MiningOptions, *, artifacts_dir: Path, progress: bool = True) -> MiningReport:
    """Score every sample of ``options.data_path`` with the model, select candidates, store all.

    With ``options.predictions_path`` (and no model) the recorded predictions stand in for
    the model's (:mod:`~hardcase.review_app.workflows.recorded`).
    """
    if options.predictions_path is not None:
        if options.model_path is not None:
            raise MiningInputError("give either a model or recorded predictions, not both")
        return _mine(store, options, None, None, artifacts_dir=artifacts_dir, progress=progress)
    if options.model_path is None:
        raise MiningInputError("give a model (--model) or recorded predictions (--predictions)")
    classifier = load_classifier(
        options.model_path,
        embedding_layer=options.embedding_layer,
        scale=options.scale,
        channels=options.channels,
        size=options.size,
        class_names=options.class_names or None,
        trust_model=options.trust_model,
    )
    if options.invert is not None:
        classifier = classifier.with_spec(classifier.spec.with_overrides(invert=options.invert))
    # the trace overlaps opening the data; it is joined before mine returns or raises, because
    # a TensorFlow thread still tracing when the interpreter exits aborts the process (SIGABRT)
    warming = threading.Thread(target=classifier.warm_up, name="hardcase-trace", daemon=True)
    warming.start()
    try:
        return _mine(store, options, classifier, warming, artifacts_dir=artifacts_dir, progress=progress)
    finally:
        warming.join()


def _with_data_class_names(classifier, options: MiningOptions, reading: dict):
    """A model whose class names were only detected ("0" .. "K-1") takes the data's own names:
    an image folder's subfolders (sorted, as ``keras.utils.image_dataset_from_directory``
    orders them) or a manifest's label values, when there are K of them."""
    if options.class_names or spec_path_for(Path(options.model_path)).exists():
        return classifier
    if list(classifier.class_names) != [str(k) for k in range(classifier.n_classes)]:
        return classifier
    names = open_for_model(options.data_path, None, **reading).class_names
    if names is None or list(names) == list(classifier.class_names) or len(names) != classifier.n_classes:
        return classifier
    log.warning("the model has no class names; taking the data's: %s", ", ".join(names))
    return classifier.with_spec(classifier.spec.with_overrides(class_names=list(names)))


def _check_convention(classifier, source: DataSource, labels: np.ndarray, options: MiningOptions) -> ConventionCheck:
    """The input-convention check on the first labelled images (see :mod:`.conventions`)."""
    rows = np.flatnonzero(labels >= 0)[:CHECK_IMAGES]
    batch = source.read(rows)
    spec_given = (options.scale is not None or options.invert is not None
                  or spec_path_for(Path(options.model_path)).exists())
    try:
        return check_convention(classifier, batch.images, labels[batch.indices], spec_given=spec_given,
                                where=options.data_path)
    except ConventionError as exc:
        raise MiningInputError(str(exc)) from None


def _mine(store: Store, options: MiningOptions, classifier, warming: threading.Thread | None, *,
          artifacts_dir: Path, progress: bool) -> MiningReport:
    reading = {"labels": options.labels_path, "resize": options.resize, "max_pixels": options.max_pixels,
               "allow_outside_root": options.allow_outside_root}
    recorded = None
    if classifier is None:
        source = open_for_model(options.data_path, None, class_names=options.class_names, **reading)
        recorded = load_recorded_predictions(options.predictions_path, source, embeddings_path=options.embeddings_path,
                                             class_names=options.class_names)
        classifier = recorded
        scored_by = Path(options.predictions_path)
    else:
        classifier = _with_data_class_names(classifier, options, reading)
        source = open_for_model(options.data_path, classifier.spec, **reading)
        scored_by = Path(options.model_path)
    spec = classifier.spec
    try:
        labels = source.labels_for(spec.class_names) if source.has_labels else None
    except ValueError as exc:
        raise MiningInputError(str(exc)) from None
    n = len(source)
    if n == 0:
        raise MiningInputError(f"{options.data_path} holds no samples")
    convention = None
    if recorded is None and labels is not None:
        convention = _check_convention(classifier, source, labels, options)
        if convention.changed:
            classifier = classifier.with_spec(convention.spec)
            spec = convention.spec
    class_names = list(spec.class_names)
    model_hash = file_hash(scored_by)

    with store.Session.begin() as session:
        dataset = api.get_or_create_dataset(
            session,
            name=str(Path(options.data_path).resolve()),
            uri=str(Path(options.data_path).resolve()),
            kind=source.kind,
            class_names=class_names,
            n_samples=n,
        )
        model_version = api.register_model(
            session,
            name=scored_by.name,
            path=str(scored_by.resolve()),
            file_hash=model_hash,
            spec=spec.to_dict(),
            class_names=class_names,
        )
        run = api.get_run(session, options.run_name)
        resume = run is not None
        if resume:
            if run.dataset_id != dataset.id or run.model_version_id != model_version.id:
                raise MiningInputError(
                    f"run {options.run_name!r} already exists for another model or data set; "
                    "choose another --run name"
                )
        else:
            run = api.create_run(
                session,
                name=options.run_name,
                dataset_id=dataset.id,
                model_version_id=model_version.id,
                params=options.params(),
                embeddings_path=str(run_folder(artifacts_dir, options.run_name) / "embeddings.npy"),
            )
        run_id, dataset_id, stage = run.id, dataset.id, _stage_reached(run)
        if run.status == "failed":  # resumed: back at the stage it reached, the failure cleared
            api.set_run_status(session, run_id, stage)
    if stage == "done":
        return _report_existing(store, options.run_name)
    try:
        if stage == "scored":  # every row was scored before: only the suggestion stage is left
            report = _report_existing(store, options.run_name)
        else:
            report = _score_and_select(store, options, run_id, dataset_id, source, classifier, recorded, labels,
                                       warming, resume=resume, artifacts_dir=artifacts_dir, progress=progress)
        report.convention = convention.summary() if convention is not None else None
        report.errors = export_rows(store, options.run_name, "errors")[1][:SHOWN_ERRORS]
        if options.suggest and recorded is not None and recorded.embeddings is None:
            report.suggestions = "no cause suggestion: it needs embeddings (--embeddings) when there is no model"
        elif options.suggest:
            from hardcase.review_app.workflows.suggest import suggest_for_run

            report.suggestions = suggest_for_run(
                store, options.run_name, artifacts_dir=artifacts_dir, train_data=options.train_data,
                classifier=None if recorded is not None else classifier, progress=progress, seed=options.seed,
            ).summary()
        # the run's 2-D map for the Explore tab (None without embeddings)
        from hardcase.review_app.workflows.explore import compute_and_store_projection

        compute_and_store_projection(store, options.run_name, seed=options.seed)
    except BaseException as exc:
        _mark_failed(store, run_id, exc)
        raise
    with store.Session.begin() as session:
        api.set_run_status(session, run_id, "done")
    return report


def _stage_reached(run) -> str:
    """The stage a run continues from: ``done``, ``scored`` (only suggestion is left) or ``running``."""
    if run.status in ("done", "scored"):
        return run.status
    if run.status == "failed" and run.n_total and (run.n_scored or 0) + (run.n_errors or 0) == run.n_total:
        return "scored"  # it failed after scoring every row
    return "running"


def _mark_failed(store: Store, run_id: int, exc: BaseException) -> None:
    """Record why the run stopped (one line), so it can be resumed or looked at; never raises."""
    reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
    try:
        with store.Session.begin() as session:
            api.set_run_status(session, run_id, "failed", failure=" ".join(reason.split()))
    except Exception:  # the store itself may be what failed (a full disk)
        log.warning("could not mark run %s failed: %s", run_id, reason)


def _score_and_select(store: Store, options: MiningOptions, run_id: int, dataset_id: int, source: DataSource,
                      classifier, recorded, labels, warming: threading.Thread | None, *, resume: bool,
                      artifacts_dir: Path, progress: bool) -> MiningReport:
    """The scoring stage: every row through the model (or the recorded predictions), then selection."""
    n = len(source)
    class_names = list(classifier.class_names)

    folder = run_folder(artifacts_dir, options.run_name)
    dim = classifier.embedding_dim
    pred_probs, sample_ids, done, embeddings = open_scoring_arrays(folder, n, classifier.n_classes, dim,
                                                                      resume=resume)
    already = int(done.sum())
    label_names = np.array(class_names + [""], dtype=object)

    checkpoint = _Checkpoint(store, run_id, dataset_id, pred_probs, sample_ids, done, embeddings,
                             class_names=class_names, seconds=options.checkpoint_seconds)

    writer_failed = threading.Event()

    def store_batch(indices, errors, hashes, probs, emb) -> None:
        """Keep one scored batch; runs on the writer thread while the model scores the next."""
        if writer_failed.is_set():
            return  # an earlier batch failed: its error stops the run, the queue only drains
        try:
            _store_batch(indices, errors, hashes, probs, emb)
        except BaseException:
            writer_failed.set()
            raise

    def _store_batch(indices, errors, hashes, probs, emb) -> None:
        if len(indices):
            pred_probs[indices] = probs
            if embeddings is not None:
                embeddings[indices] = emb.astype(np.float16)
            given = labels[indices] if labels is not None else np.full(len(indices), -1)
            scores = compute_scores(probs, labels=given)
            # needs the whole pool (and its embeddings): filled in by _finish
            scores["label_quality_score"] = np.full(len(indices), np.nan)
            checkpoint.add_samples(
                indices,
                scores=scores,
                content_hash=hashes,
                # a file per row (folders, manifests), else the array file and row: path#row
                uri=source.row_uris(indices),
                given_label=[label_names[g] or None for g in given],
                timestamp=[str(source.timestamps[i]) if source.timestamps is not None else None
                           for i in indices],
            )
        checkpoint.add_errors(errors)
        checkpoint.maybe_commit()

    if warming is not None:
        warming.join()

    def predict(batch):
        if recorded is not None:
            return recorded.rows(batch.indices)
        return classifier.predict_and_embed_batch(
            batch.images, batch_label=f"the batch of source rows {batch.indices[0]}..{batch.indices[-1]}")

    bar = tqdm(total=n, initial=already, unit="img", desc=f"mining {options.run_name}", disable=not progress)
    # images are hashed on the reader thread, so the writer's queue holds no images
    batches = _read_ahead(source.iter_batches(options.batch_size, skip=done.astype(bool)),
                          prepare=lambda batch: (batch, content_hashes(batch.images)))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hardcase-writer") as writer:
        pending: deque = deque()
        for batch, hashes in batches:
            probs = emb = None
            if len(batch.indices):
                probs, emb = predict(batch)
            while pending and (pending[0].done() or len(pending) >= WRITE_AHEAD):
                pending.popleft().result()  # bounded: memory stays flat; a writer error surfaces here
            pending.append(writer.submit(store_batch, batch.indices, batch.errors, hashes, probs, emb))
            bar.update(len(batch.indices) + len(batch.errors))
        while pending:
            pending.popleft().result()
        writer.submit(checkpoint.commit).result()
    bar.close()

    scored = np.flatnonzero(done == 1)
    return _finish(store, options, run_id, source, classifier, labels, pred_probs, sample_ids, embeddings,
                   scored, already)


class _Checkpoint:
    """Makes scored batches durable together, about once a second.

    Order matters for resuming: samples, their scores and errors are committed to the database
    and the per-run arrays flushed *before* their rows are marked done, so a run killed at any
    point restarts from the last checkpoint and recomputes only what came after it (rows
    stored again are ignored). After each checkpoint the arrays' pages are dropped from the
    process's resident set (they stay in the page cache), so RSS does not grow with the pool.
    """

    def __init__(self, store, run_id, dataset_id, pred_probs, sample_ids, done, embeddings, *,
                 class_names, seconds: float = 1.0):
        self.store, self.run_id, self.dataset_id = store, run_id, dataset_id
        self.arrays = [a for a in (pred_probs, sample_ids, embeddings) if a is not None]
        self.released = [pred_probs, sample_ids, done]  # the embeddings stay resident for selection
        self.sample_ids, self.done, self.seconds = sample_ids, done, seconds
        self.names = np.asarray(class_names, dtype=object)
        self.indices: list[np.ndarray] = []
        self.scores: list[dict[str, np.ndarray]] = []
        self.columns: dict[str, list] = {"content_hash": [], "uri": [], "given_label": [], "timestamp": []}
        self.errors: list = []
        self.last = time.monotonic()

    def add_samples(self, indices: np.ndarray, *, scores: dict[str, np.ndarray], **columns: list) -> None:
        self.indices.append(indices)
        self.scores.append(scores)
        for name, values in columns.items():
            self.columns[name].extend(values)

    def add_errors(self, errors: list) -> None:
        self.errors.extend(errors)

    def maybe_commit(self) -> None:
        if time.monotonic() - self.last >= self.seconds:
            self.commit()

    def commit(self) -> None:
        indices = np.concatenate(self.indices) if self.indices else np.empty(0, np.int64)
        with self.store.Session.begin() as session:
            if self.errors:
                api.add_errors(session, self.run_id, [
                    {"source_index": e.source_index, "uri": e.uri, "reason": e.reason} for e in self.errors
                ])
            if len(indices):
                ids = api.upsert_samples(session, self.dataset_id, source_index=indices.tolist(), **self.columns)
                self.sample_ids[indices] = ids
                scores = {key: np.concatenate([part[key] for part in self.scores]) for key in SCORE_FIELDS}
                api.add_score_columns(
                    session, self.run_id, sample_id=ids,
                    predicted_label=self.names[scores.pop("predicted_label")].tolist(), **scores,
                )
        for array in self.arrays:
            array.flush()
        self.done[indices] = 1
        self.done[[e.source_index for e in self.errors]] = 2
        self.done.flush()
        for array in self.released:
            _release(array)
        self.indices, self.scores, self.errors = [], [], []
        self.columns = {name: [] for name in self.columns}
        self.last = time.monotonic()


def _release(array: np.ndarray) -> None:
    """Drop a flushed memory map's pages from this process's resident set.

    The pages stay in the page cache and on disk (for a shared file mapping the kernel keeps
    dirty data), so reading them again costs no I/O; only RSS stops counting them.
    """
    handle = getattr(array, "_mmap", None)
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if handle is not None and advice is not None and hasattr(handle, "madvise"):
        handle.madvise(advice)


def _read_ahead(batches: Iterator[Batch], depth: int = 2, prepare: Callable[[Batch], Any] | None = None) -> Iterator:
    """Iterate ``batches`` with up to ``depth`` read ahead on a thread (decoding overlaps scoring);
    with ``prepare``, yield ``prepare(batch)`` computed on that thread instead."""
    queue: Queue = Queue(maxsize=depth)
    finished = object()

    def produce() -> None:
        try:
            for batch in batches:
                queue.put(batch if prepare is None else prepare(batch))
        except BaseException as exc:  # handed to the consumer, raised there
            queue.put(exc)
        queue.put(finished)

    thread = threading.Thread(target=produce, name="hardcase-reader", daemon=True)
    thread.start()
    while (item := queue.get()) is not finished:
        if isinstance(item, BaseException):
            raise item
        yield item


def _finish(store, options, run_id, source, classifier, labels, pred_probs, sample_ids, embeddings, scored, already):
    class_names = list(classifier.class_names)
    given = labels[scored] if labels is not None else None
    hardness, predicted, labelled = _pool_pass(pred_probs, scored, given)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hardcase-writer") as writer:
        # the pool's label quality is stored on the writer thread while candidates are selected here
        stored = writer.submit(_complete_scores, store, run_id, pred_probs, scored, given, sample_ids, embeddings,
                               labelled, class_names, options.seed)
        candidate_rows = _candidate_rows(options, source, hardness, predicted, given, scored, sample_ids,
                                         embeddings, class_names)
        stored.result()
    n_errors_total = len(source) - len(scored)
    with store.Session.begin() as session:
        n_existing, _ = api.review_progress(session, run_id)
        if n_existing == 0:
            api.add_candidates(session, run_id, candidate_rows)
        api.set_run_status(session, run_id, "scored", n_total=len(source), n_scored=len(scored), n_errors=n_errors_total)
    accuracy = None
    if given is not None and np.any(given >= 0):
        known = given >= 0
        accuracy = float(np.mean(predicted[known] == given[known]))
    return MiningReport(
        run_name=options.run_name,
        n_total=len(source),
        n_scored=len(scored),
        n_errors=n_errors_total,
        n_candidates=len(candidate_rows),
        resumed_from=already,
        accuracy=accuracy,
    )


def _chunks(n: int):
    for start in range(0, n, SCORE_CHUNK):
        yield slice(start, min(n, start + SCORE_CHUNK))


def _pool_pass(pred_probs, scored, given):
    """Hardness and predicted class of every scored row, and whether any row has a label,
    reading ``pred_probs`` in chunks (no full float64 copy)."""
    n = len(scored)
    hardness = np.empty(n, dtype=np.float64)
    predicted = np.empty(n, dtype=np.int64)
    for part in _chunks(n):
        probs = pred_probs[scored[part]]
        hardness[part] = hardness_score(probs, labels=given[part] if given is not None else None)
        predicted[part] = probs.argmax(axis=1)
    _release(pred_probs)
    return hardness, predicted, given is not None and bool(np.any(given >= 0))


def _complete_scores(store, run_id, pred_probs, scored, given, sample_ids, embeddings, labelled, class_names,
                     seed) -> None:
    """Store what the streamed scores lack: ``label_quality_score`` needs the whole pool.

    The exported label quality (:func:`~hardcase.miner.causes.label_issues.pool_label_quality_score`)
    with the pool's embeddings and no training data yet:
    :func:`~hardcase.miner.causes.label_issues.neighbour_label_quality_score` against the
    pool's own labelled embeddings (:func:`~hardcase.miner.causes.label_issues.pool_reference_density`);
    without embeddings the embedding-free :func:`~hardcase.miner.scores.label_quality_score`.
    Cause suggestion with training data then replaces it (:func:`~hardcase.review_app.workflows.suggest.suggest_for_run`).

    A run started by an older version may have stored no scores while it streamed: those are
    inserted here (rows already stored are kept).
    """
    with store.snapshot() as session:
        missing = api.count_scores(session, run_id) < len(scored)
    if not missing and not labelled:
        return
    names = np.asarray(class_names, dtype=object)
    density = None
    if labelled and embeddings is not None:
        density = pool_reference_density(_Rows(embeddings, scored), given, n_classes=len(class_names), seed=seed)
    with store.Session.begin() as session:
        for part in _chunks(len(scored)):
            probs = pred_probs[scored[part]]
            ids = sample_ids[scored[part]]
            lab = given[part] if given is not None else None
            if missing:
                scores = compute_scores(probs, labels=lab)
                api.add_score_columns(
                    session, run_id, sample_id=ids, predicted_label=names[scores["predicted_label"]].tolist(),
                    **{key: scores[key] for key in SCORE_FIELDS if key != "predicted_label"},
                )
            if labelled:
                known = lab >= 0
                if known.any():
                    if density is None:
                        values = label_quality_score(lab[known], probs[known])
                    else:
                        values = neighbour_label_quality_score(
                            lab[known], probs[known], embeddings=np.asarray(embeddings[scored[part][known]], np.float32),
                            density=density)
                    api.update_score_column(session, run_id, "label_quality_score", sample_id=ids[known], values=values)
    _release(pred_probs)
    _release(sample_ids)


class _Rows:
    """Rows ``rows`` of a 2-D array, indexable like one (no copy): scored rows of the embeddings."""

    def __init__(self, array, rows: np.ndarray):
        self.array, self.rows = array, rows
        self.shape = (len(rows), *array.shape[1:])
        self.ndim = array.ndim
        self.dtype = array.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        return self.array[self.rows[key]]


def _candidate_rows(options, source, hardness, predicted, given, scored, sample_ids, embeddings,
                    class_names) -> list[dict]:
    """Select the candidates and build their rows (with the original image as PNG)."""
    groups = given.copy() if given is not None else predicted
    if given is not None:
        unknown = groups < 0
        groups[unknown] = predicted[unknown]
    if embeddings is None:
        emb = None
    elif len(scored) == len(embeddings):
        emb = embeddings  # the float16 memory map itself: selection converts only the hard pool
    else:
        emb = _Rows(embeddings, scored)  # the scored rows, still without a copy
    diversity = options.diversity
    if emb is None and diversity > 0:
        log.warning("the model exposes no embedding layer; selecting by hardness alone")
        diversity = 0.0
    selection = select_candidates(
        hardness,
        groups=groups,
        embeddings=emb,
        per_class=options.per_class if options.budget is None else None,
        budget=options.budget,
        diversity=diversity,
        metric=options.metric,
        max_pool=options.max_pool,
        seed=options.seed,
    )
    images = _read_images(source, scored[selection.indices])
    candidate_rows = []
    for k, j in enumerate(selection.indices):
        source_index = int(scored[j])
        distance = float(selection.pick_distance[k])
        candidate_rows.append(
            {
                "sample_id": int(sample_ids[source_index]),
                "rank": int(selection.rank[k]),
                "class_name": class_names[int(selection.group[k])],
                "hardness_score": float(selection.hardness_score[k]),
                "pick_distance": None if not np.isfinite(distance) else distance,
                "image_png": encode_png(images[source_index]),
            }
        )
    return candidate_rows


def _read_images(source: DataSource, indices: np.ndarray) -> dict[int, np.ndarray]:
    batch = source.read(np.sort(indices))
    if batch.errors:
        raise MiningInputError(f"{batch.errors[0].uri or 'row ' + str(batch.errors[0].source_index)} "
                               f"became unreadable during the run: {batch.errors[0].reason}")
    return {int(index): np.asarray(image) for index, image in zip(batch.indices, batch.images)}


def _report_existing(store: Store, run_name: str) -> MiningReport:
    with store.Session.begin() as session:
        run = api.require_run(session, run_name)
        n_candidates, _ = api.review_progress(session, run.id)
        return MiningReport(
            run_name=run_name,
            n_total=run.n_total or 0,
            n_scored=run.n_scored or 0,
            n_errors=run.n_errors or 0,
            n_candidates=n_candidates,
        )

