"""Suggest a cause for every candidate of a mined run, with evidence, and store it.

Composes :mod:`models.transform_search` (the batched transform search with the run's model)
and :mod:`miner.causes` (neighbours, typicality, imbalance, the decision), reading what the
mining run left behind: the pool's ``pred_probs.npy`` and ``embeddings.npy`` in
``<artifacts>/<run>/``, the candidates' images in the store, and the run's model file and
preprocessing spec. Training embeddings are computed once with the same model over the
training data and cached as ``<artifacts>/<run>/train_embeddings.npz``.

Without training data the pool itself (its labelled rows, candidates excluded) is the
reference for neighbours and typicality, imbalance is judged on under-prediction alone, and
the search's false-fix calibration uses clean pool images.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select
from tqdm import tqdm

from hardcase.miner.causes import (
    DEFAULT_ALPHA,
    DEFAULT_K,
    SUGGESTED,
    ClassDensity,
    fit_class_density,
    suggest_causes,
)
from hardcase.miner.causes.label_issues import (
    ContrastEvidence,
    ContrastParts,
    contrast_evidence_from_parts,
    contrast_parts,
)
from hardcase.miner.protocols import Classifier
from hardcase.miner.scores import confident_thresholds
from hardcase.miner.spec import PreprocessingSpec
from hardcase.models.classifier import file_hash, load_classifier
from hardcase.models.transform_search import (
    calibrate_null,
    class_moments,
    image_moments,
    null_reference_rows,
    search_transforms,
)
from hardcase.review_app.workflows.artifacts import run_folder
from hardcase.review_app.workflows.data import open_for_model, read_options
from hardcase.review_app.workflows.images import decode_png
from hardcase.store import api
from hardcase.store.db import Store
from hardcase.store.schema import Candidate, Dataset, Sample

log = logging.getLogger(__name__)

TRAIN_CACHE = "train_embeddings.npz"


class SuggestionInputError(ValueError):
    """The run cannot get suggestions (not finished, no embeddings, missing files)."""


@dataclass
class SuggestionReport:
    """What :func:`suggest_for_run` did, with its cost.

    ``seconds`` is the whole call; ``train_seconds`` the training-embedding pass (0 when
    cached), ``null_seconds`` the false-fix calibration, ``search_seconds`` the transform
    search, ``decide_seconds`` neighbours, typicality and the decision, ``model_seconds`` the
    time inside the model over all of them. ``null_rate`` is the share of clean references the
    search turned into another class, ``null_threshold`` the ``p x typicality`` a restoration
    must beat (both None without a calibration).
    """

    run_name: str
    n_candidates: int
    counts: dict[str, int]
    reference: str
    seconds: float = 0.0
    train_seconds: float = 0.0
    null_seconds: float = 0.0
    search_seconds: float = 0.0
    decide_seconds: float = 0.0
    model_seconds: float = 0.0
    evaluations_per_candidate: float = 0.0
    null_rate: float | None = None
    null_threshold: float | None = None
    train_cached: bool = False
    timings: dict = field(default_factory=dict)

    @property
    def ms_per_candidate(self) -> float:
        return 1e3 * self.seconds / self.n_candidates if self.n_candidates else 0.0

    @property
    def model_share(self) -> float:
        return self.model_seconds / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        parts = ", ".join(f"{cause} {count}" for cause, count in self.counts.items() if count)
        text = (
            f"run {self.run_name!r}: suggested causes for {self.n_candidates} candidates ({parts or 'none'}) "
            f"in {self.seconds:.1f} s, {self.ms_per_candidate:.0f} ms per candidate, "
            f"{self.model_share:.0%} in the model; reference: {self.reference}"
        )
        if self.null_rate is not None:
            text += f"; the search turns {self.null_rate:.0%} of clean references into another class"
        return text


@dataclass
class _RunInputs:
    run_id: int
    run_name: str
    params: dict
    model_path: str
    model_hash: str
    spec: dict
    class_names: list[str]
    dataset_uri: str
    candidate_ids: np.ndarray
    candidate_sources: np.ndarray
    candidate_pngs: list[bytes]
    label_by_source: np.ndarray


def _label_index(names: list[str]) -> dict[str, int]:
    return {name: k for k, name in enumerate(names)}


def _read_run(store: Store, run_name: str) -> _RunInputs:
    with store.Session.begin() as session:
        run = api.require_run(session, run_name)
        if run.status not in ("scored", "done"):
            raise SuggestionInputError(f"run {run_name!r} is {run.status}; finish mining it before suggesting causes")
        version = api.model_version(session, run)
        dataset = session.get(Dataset, run.dataset_id)
        class_names = list(version.class_names)
        lookup = _label_index(class_names)
        rows = session.execute(
            select(Candidate.id, Candidate.image_png, Sample.source_index)
            .join(Sample, Sample.id == Candidate.sample_id)
            .where(Candidate.run_id == run.id)
            .order_by(Candidate.rank)
        ).all()
        labels = np.full(dataset.n_samples, -1, dtype=np.int64)
        for source_index, given in session.execute(
            select(Sample.source_index, Sample.given_label).where(Sample.dataset_id == dataset.id)
        ):
            if given is not None and 0 <= source_index < len(labels):
                labels[source_index] = lookup.get(given, -1)
        return _RunInputs(
            run_id=run.id,
            run_name=run.name,
            params=dict(run.params or {}),
            model_path=version.path,
            model_hash=version.file_hash,
            spec=dict(version.spec),
            class_names=class_names,
            dataset_uri=dataset.uri,
            candidate_ids=np.array([r.id for r in rows], dtype=np.int64),
            candidate_sources=np.array([r.source_index for r in rows], dtype=np.int64),
            candidate_pngs=[bytes(r.image_png) for r in rows],
            label_by_source=labels,
        )


def _load_run_classifier(inputs: _RunInputs) -> Classifier:
    path = Path(inputs.model_path)
    if not path.exists():
        raise SuggestionInputError(f"the run's model file is missing: {path}")
    if file_hash(path) != inputs.model_hash:
        raise SuggestionInputError(f"the run's model file {path} changed since the run was mined")
    return load_classifier(path, spec=PreprocessingSpec.from_dict(inputs.spec),
                           embedding_layer=inputs.params.get("embedding_layer"),
                           trust_model=bool(inputs.params.get("trust_model")))


def _open_artifacts(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    paths = {name: folder / f"{name}.npy" for name in ("pred_probs", "embeddings", "done")}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        if str(paths["embeddings"]) in missing and len(missing) == 1:
            raise SuggestionInputError(
                f"{paths['embeddings']} is missing: the model exposes no embedding layer, and cause "
                "suggestion needs embeddings (pass --embedding-layer when mining)"
            )
        raise SuggestionInputError(f"the run's artifacts are missing: {', '.join(missing)}")
    return tuple(np.load(paths[name], mmap_mode="r") for name in ("pred_probs", "embeddings", "done"))


def _cache_meta(train_data: str, inputs: _RunInputs) -> dict:
    path = Path(train_data).resolve()
    stat = path.stat()
    return {
        "train_data": str(path),
        "size": stat.st_size if path.is_file() else None,
        "mtime_ns": stat.st_mtime_ns,
        "model_hash": inputs.model_hash,
        "embedding_layer": inputs.params.get("embedding_layer"),
        "spec": inputs.spec,
    }


def _training_embeddings(train_data: str, inputs: _RunInputs, classifier: Classifier, folder: Path,
                         progress: bool, batch_size: int) -> tuple[dict, bool, float, float]:
    """Embeddings, probabilities, image moments, labels and ids of the training data; cached per run."""
    cache = folder / TRAIN_CACHE
    meta = _cache_meta(train_data, inputs)
    keys = ("embeddings", "probs", "moments", "labels", "ids")
    if cache.exists():
        with np.load(cache, allow_pickle=False) as stored:
            if json.loads(str(stored["meta"])) == meta and all(key in stored for key in keys):
                return {key: stored[key] for key in keys}, True, 0.0, 0.0
    started = time.perf_counter()
    source = open_for_model(train_data, classifier.spec, **read_options(inputs.params))
    labels = source.labels_for(inputs.class_names)
    embeddings, probs, moments, ids = [], [], [], []
    model_seconds = 0.0
    bar = tqdm(total=len(source), unit="img", desc="embedding the training data", disable=not progress)
    for batch in source.iter_batches(batch_size):
        if len(batch.indices):
            t0 = time.perf_counter()
            p, e = classifier.predict_and_embed_batch(batch.images, batch_label=f"training rows from {batch.indices[0]}")
            model_seconds += time.perf_counter() - t0
            embeddings.append(e.astype(np.float16))
            probs.append(p.astype(np.float16))
            moments.append(image_moments(batch.images))
            ids.append(batch.indices)
        bar.update(len(batch.indices) + len(batch.errors))
    bar.close()
    if not ids:
        raise SuggestionInputError(f"no readable image in the training data {train_data}")
    ids_all = np.concatenate(ids).astype(np.int64)
    data = {
        "embeddings": np.concatenate(embeddings),
        "probs": np.concatenate(probs),
        "moments": np.concatenate(moments),
        "labels": labels[ids_all],
        "ids": ids_all,
    }
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{TRAIN_CACHE}.tmp.npz"
    np.savez(temporary, meta=np.array(json.dumps(meta)), **data)
    os.replace(temporary, cache)
    return data, False, time.perf_counter() - started, model_seconds


def _normalized(probs: np.ndarray, rows: np.ndarray | None = None, *, chunk: int = 65536) -> np.ndarray:
    """float64 rows of ``probs`` (all, or ``rows``) scaled to sum to 1, filled chunk by chunk:
    the stored float32 pool (often a memory map) is never copied whole."""
    n = probs.shape[0] if rows is None else len(rows)
    out = np.empty((n, probs.shape[1]), dtype=np.float64)
    for start in range(0, n, chunk):
        part = out[start : start + chunk]
        part[:] = probs[start : start + chunk] if rows is None else probs[rows[start : start + chunk]]
        part /= part.sum(axis=1, keepdims=True)
    return out


def _pool_contrast_parts(labels: np.ndarray, probs: np.ndarray, embeddings, rows: np.ndarray,
                         density: ClassDensity, *, chunk: int = 65536) -> ContrastParts:
    """:func:`~hardcase.miner.causes.label_issues.contrast_parts` of the labelled pool ``rows``
    against ``density``, chunk by chunk (the embeddings may be a float16 memory map)."""
    parts = []
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        parts.append(contrast_parts(labels[part], probs[part],
                                    embeddings=np.asarray(embeddings[part], dtype=np.float32), density=density))
    return ContrastParts.concatenate(parts)


def suggest_for_run(
    store: Store,
    run_name: str,
    *,
    artifacts_dir: Path,
    train_data: str | os.PathLike | None = None,
    classifier: Classifier | None = None,
    progress: bool = True,
    k: int = DEFAULT_K,
    alpha: float = DEFAULT_ALPHA,
    null_samples: int = 100,
    chunk_size: int = 64,
    batch_size: int = 1024,
    seed: int = 0,
) -> SuggestionReport:
    """Suggest a cause with evidence for every candidate of a finished run and store them.

    Parameters
    ----------
    store : Store
    run_name : str
        A run whose mining finished (status ``done``).
    artifacts_dir : Path
        The folder holding ``<run>/pred_probs.npy``, ``embeddings.npy`` and ``done.npy``.
    train_data : path, optional
        Training data (any format :func:`miner.sources.open_source` reads); default the
        run's ``--train-data``. Without any, the pool is the reference (module docstring).
    classifier : Classifier, optional
        The run's model, already loaded (default: loaded from the run's model version, with
        its stored spec; the file must still have the hash it had when mined).
    progress : bool
        Show progress bars.
    k, alpha
        Neighbours, and the significance level of every test.
    null_samples : int
        Clean references for the search's false-fix calibration (0 = none).
    chunk_size, batch_size
        Candidates searched together; largest model batch.
    seed : int
        Seeds the draw of the calibration references.

    Returns
    -------
    SuggestionReport

    Raises
    ------
    SuggestionInputError
        The run is not finished, its artifacts or model are missing, or it has no embeddings.
    """
    started = time.perf_counter()
    inputs = _read_run(store, run_name)
    folder = run_folder(artifacts_dir, inputs.run_name)
    pred_probs, embeddings, done = _open_artifacts(folder)
    # a run mined from recorded predictions has no model: no transform search, no training
    # embeddings, no false-fix calibration; the pool is the reference
    model_free = inputs.params.get("predictions") is not None
    if classifier is None and not model_free:
        classifier = _load_run_classifier(inputs)
    class_names = inputs.class_names
    n_classes = len(class_names)
    if pred_probs.shape[1] != n_classes:
        raise SuggestionInputError(f"{folder / 'pred_probs.npy'} has {pred_probs.shape[1]} classes, the run's model {n_classes}")
    report = SuggestionReport(run_name=inputs.run_name, n_candidates=len(inputs.candidate_ids),
                              counts={cause: 0 for cause in SUGGESTED}, reference="")
    if not len(inputs.candidate_ids):
        report.reference = "none (no candidates)"
        report.seconds = time.perf_counter() - started
        return report

    scored = np.flatnonzero(np.asarray(done) == 1)
    position = np.full(len(done), -1, dtype=np.int64)
    position[scored] = np.arange(len(scored))
    cand = position[inputs.candidate_sources]
    if (cand < 0).any():
        bad = int(inputs.candidate_sources[np.flatnonzero(cand < 0)[0]])
        raise SuggestionInputError(f"candidate at source row {bad} has no stored prediction in {folder}")
    pool_probs = _normalized(pred_probs, scored)
    pool_labels = inputs.label_by_source[scored]
    # float16 as stored (the memory map itself when every row was scored); only candidate
    # rows and, without training data, the reference rows are converted to float32
    pool_embeddings = embeddings if len(scored) == len(done) else np.asarray(embeddings[scored])
    thresholds = confident_thresholds(pool_labels, pool_probs, unknown_labels="as_predicted")
    spec = PreprocessingSpec.from_dict(inputs.spec)

    # the reference set: training data if any, else the pool's labelled non-candidates
    train_data = train_data if train_data is not None else inputs.params.get("train_data")
    if model_free and train_data is not None:
        log.warning("run %s has no model to embed the training data with; the pool is the reference", run_name)
        train_data = None
    model_seconds = 0.0
    null_images = null_probs = null_labels = None
    if train_data is not None:
        if not Path(train_data).exists():
            raise SuggestionInputError(f"training data not found: {train_data}")
        data, cached, train_seconds, train_model = _training_embeddings(
            str(train_data), inputs, classifier, folder, progress, batch_size)
        report.train_cached, report.train_seconds = cached, train_seconds
        model_seconds += train_model
        ref_emb = data["embeddings"].astype(np.float32)
        ref_labels, ref_ids = data["labels"], data["ids"]
        moments = class_moments(data["moments"], ref_labels, n_classes=n_classes)
        imbalance_labels = ref_labels
        report.reference = f"training data {train_data} ({len(ref_ids)} images)"
        if null_samples:
            rows = null_reference_rows(_normalized(data["probs"]), ref_labels, thresholds, n=null_samples, seed=seed)
            if rows.size:
                batch = open_for_model(str(train_data), spec, **read_options(inputs.params)).read(ref_ids[rows])
                keep = np.searchsorted(ref_ids[rows], batch.indices)
                null_images, null_probs, null_labels = batch.images, _normalized(data["probs"])[rows][keep], ref_labels[rows][keep]
    else:
        reference = np.setdiff1d(np.flatnonzero(pool_labels >= 0), cand)
        ref_emb = np.asarray(pool_embeddings[reference], dtype=np.float32)
        ref_labels, ref_ids = pool_labels[reference], scored[reference]
        imbalance_labels = ref_labels  # class shares of the reference set stand in for training shares
        report.reference = f"the pool's {len(reference)} labelled non-candidate samples (no training data)"
        if null_samples and classifier is not None:
            rows = null_reference_rows(pool_probs[reference], ref_labels, thresholds, n=null_samples, seed=seed)
            if rows.size:
                try:
                    source = open_for_model(inputs.dataset_uri, spec, labels=inputs.params.get("labels_path"),
                                            **read_options(inputs.params))
                    batch = source.read(ref_ids[rows])
                    keep = np.searchsorted(ref_ids[rows], batch.indices)
                    null_images, null_probs, null_labels = batch.images, pool_probs[reference][rows][keep], ref_labels[rows][keep]
                except (OSError, ValueError) as exc:
                    log.warning("cannot read pool images for the false-fix calibration (%s); skipping it", exc)
    density = fit_class_density(ref_emb, ref_labels, n_classes=n_classes, k=k)
    if train_data is None:  # the clean references read for the calibration stand in for training images
        moments = (class_moments(image_moments(null_images), null_labels, n_classes=n_classes)
                   if null_images is not None and len(null_images) else None)

    null = None
    if null_images is not None and len(null_images):
        t0 = time.perf_counter()
        null = calibrate_null(classifier, np.asarray(null_images, dtype=np.uint8), null_probs, null_labels,
                              density=density, thresholds=thresholds, alpha=alpha, moments=moments, n=len(null_images),
                              seed=seed, batch_size=batch_size)
        report.null_seconds = time.perf_counter() - t0
        report.null_rate, report.null_threshold = null.rate, null.threshold

    images = np.stack([decode_png(png) for png in inputs.candidate_pngs])
    if images.shape[1:] != spec.image_shape:
        raise SuggestionInputError(f"candidate images have shape {images.shape[1:]}, the model expects {spec.image_shape}")
    probs_c = pool_probs[cand]
    targets = np.where(pool_labels[cand] >= 0, pool_labels[cand], probs_c.argmax(axis=1))
    evidence = None
    if classifier is not None:
        bar = tqdm(total=len(cand), unit="cand", desc=f"suggesting causes for {inputs.run_name}", disable=not progress)
        t0 = time.perf_counter()
        evidence = search_transforms(classifier, images, targets, density=density, thresholds=thresholds, alpha=alpha,
                                     null=null, moments=moments, chunk_size=chunk_size, batch_size=batch_size,
                                     progress=bar.update)
        bar.close()
        report.search_seconds = time.perf_counter() - t0
        model_seconds += evidence.stats["model_seconds"] + (null.stats.get("model_seconds", 0.0) if null is not None else 0.0)
        report.evaluations_per_candidate = evidence.stats["per_candidate"]
    else:
        report.reference += "; no model, so no transform search (augment is never suggested)"

    t0 = time.perf_counter()
    labelled = np.flatnonzero(pool_labels >= 0)
    label_contrast = None
    if labelled.size:
        parts = _pool_contrast_parts(pool_labels, pool_probs, pool_embeddings, labelled, density)
        evidence_labelled = contrast_evidence_from_parts(pool_labels[labelled], parts, n_classes=n_classes)
        label_contrast = ContrastEvidence.for_pool(pool_labels, evidence_labelled)
        if train_data is not None:
            # the exported label_quality_score: the contrast score once the training reference is known
            sample_ids = np.load(folder / "sample_ids.npy", mmap_mode="r")
            with store.Session.begin() as session:
                api.update_score_column(session, inputs.run_id, "label_quality_score",
                                        sample_id=np.asarray(sample_ids[scored[labelled]]),
                                        values=evidence_labelled.label_quality(parts.p_given))
    suggestions = suggest_causes(
        pool_labels, pool_probs, embeddings=pool_embeddings, candidates=cand, density=density,
        train_labels=imbalance_labels, transform_evidence=evidence, thresholds=thresholds,
        label_contrast=label_contrast, train_ids=ref_ids,
        class_names=class_names, k=k, alpha=alpha,
    )
    reference = (
        {"kind": "training data", "uri": str(Path(train_data).resolve())}
        if train_data is not None
        else {"kind": "pool", "uri": inputs.dataset_uri}
    )
    for record in suggestions.evidence:
        record["reference"] = reference  # where the neighbours' train_ids point (source indices)
    rows = [
        {
            "candidate_id": int(candidate_id),
            "suggested_cause": str(suggestions.cause[j]),
            "suggested_label": class_names[int(suggestions.suggested_label[j])] if suggestions.suggested_label[j] >= 0 else None,
            "suggestion_confidence": float(suggestions.confidence[j]),
            "evidence": suggestions.evidence[j],
        }
        for j, candidate_id in enumerate(inputs.candidate_ids)
    ]
    with store.Session.begin() as session:
        api.set_suggestions(session, inputs.run_id, rows)
    report.decide_seconds = time.perf_counter() - t0
    report.counts = suggestions.counts()
    report.model_seconds = model_seconds
    report.seconds = time.perf_counter() - started
    report.timings = {"search": evidence.stats if evidence is not None else {}}
    return report
