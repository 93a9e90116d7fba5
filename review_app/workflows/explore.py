"""The run at a glance, without Gradio: every candidate and its state as a table, the score
distributions, the 2-D map of the run's embeddings, a lead's bulk decisions and their undo, and
two model versions of a run side by side.

The table is read from one snapshot and filtered and sorted in memory (a run has a few thousand
candidates at most); the map's places are computed once per run (:func:`compute_and_store_projection`,
at mining, or on first use) and stored with the scores.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from hardcase.miner.vocabulary import DECISIONS, SUGGESTED_CAUSES, UNCLEAR
from hardcase.review_app.workflows.images import decode_png
from hardcase.store import api
from hardcase.store.db import Store
from hardcase.store.schema import Candidate, Review, ReviewBatch, Sample, Score

STATUSES = ("all", "unreviewed", "decided", "skipped", "disputed", "adjudicated")
"""A candidate's state in the table: no standing review; reviewers agree; the latest standing
review is a skip; reviewers' standing judgments differ; a lead settled a dispute."""

COLUMNS = ("id", "rank", "class", "given", "predicted", "hardness", "label quality", "suggested",
           "confidence", "status", "judgments", "decision")
"""The table's columns, in order (``suggested`` is the cause, with ``→label`` for a mislabel)."""

SORTABLE = ("rank", "hardness", "label quality", "confidence", "class", "status", "id")

ACCEPT_SUGGESTION = "accept the suggestion"
"""The bulk decision that gives each candidate its own suggested cause (and label)."""

DEFAULT_MAP_POINTS = 20_000
"""Samples drawn on the map at most (every candidate is drawn; the rest a fixed random subset)."""

TSNE_FITTED = 1_000
"""Samples t-SNE is fitted on at most; the others are placed at their nearest fitted neighbours."""

TSNE_ITERATIONS = 500
"""t-SNE optimisation steps (its default of 1000 doubles the time for a map that barely moves)."""

PCA_DIMENSIONS = 50


class ExploreInputError(ValueError):
    """A user's request cannot be done (nothing selected, a mislabel without its label...)."""


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Filters:
    """What the table shows: None (or ``all``) for no restriction on that column."""

    class_name: str | None = None
    suggested_cause: str | None = None
    status: str = "all"
    reviewer: str | None = None
    min_confidence: float | None = None

    def check(self) -> None:
        if self.status not in STATUSES:
            raise ExploreInputError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if self.suggested_cause not in (None, "none", *SUGGESTED_CAUSES):
            raise ExploreInputError(f"unknown suggested cause {self.suggested_cause!r}")

    def describe(self) -> str:
        """The active filters in words ("" when none)."""
        parts = []
        if self.class_name is not None:
            parts.append(f"class {self.class_name}")
        if self.suggested_cause is not None:
            parts.append(f"suggested {self.suggested_cause}")
        if self.status != "all":
            parts.append(f"status {self.status}")
        if self.reviewer is not None:
            parts.append(f"judged by {self.reviewer}")
        if self.min_confidence is not None:
            parts.append(f"confidence ≥ {self.min_confidence:g}")
        return ", ".join(parts)


def _judgment(review) -> str:
    label = f"→{review.new_label}" if review.new_label else ""
    return f"{review.reviewer}: {review.cause.replace('_', ' ')}{label}"


def _state(standing: Sequence[Any]) -> tuple[str, str, str | None, str | None]:
    """``(status, judgments, decision, decided label)`` of a candidate from its standing reviews."""
    if not standing:
        return "unreviewed", "", None, None
    latest = standing[-1]
    per_reviewer = {review.reviewer: review for review in standing}
    judgments = "; ".join(_judgment(review) for review in per_reviewer.values())
    if latest.action == "adjudicate":
        status = "adjudicated"
    elif len({(review.cause, review.new_label) for review in per_reviewer.values()}) > 1:
        status = "disputed"
    elif latest.cause == "skip":
        status = "skipped"
    else:
        status = "decided"
    return status, judgments, latest.cause, latest.new_label


def load_candidates(store: Store, run_name: str) -> pd.DataFrame:
    """Every candidate of a run with its scores, suggestion and review state, by rank.

    Returns
    -------
    pandas.DataFrame
        :data:`COLUMNS` plus ``cause`` (the suggested cause alone), ``suggested_label``,
        ``decided_label``, ``sample_id`` and ``reviewers`` (the set of names with a standing judgment).

    Raises
    ------
    hardcase.store.errors.StoreError
        No such run.
    """
    with store.snapshot() as session:
        run = api.require_run(session, run_name)
        rows = session.execute(
            select(Candidate.id, Candidate.rank, Candidate.class_name, Candidate.hardness_score,
                   Candidate.suggested_cause, Candidate.suggested_label, Candidate.suggestion_confidence,
                   Candidate.sample_id, Sample.given_label, Score.predicted_label, Score.label_quality_score)
            .join(Sample, Sample.id == Candidate.sample_id)
            .outerjoin(Score, (Score.run_id == Candidate.run_id) & (Score.sample_id == Candidate.sample_id))
            .where(Candidate.run_id == run.id)
            .order_by(Candidate.rank)
        ).all()
        history: dict[int, list] = {}
        for review in session.execute(
            select(Review.id, Review.candidate_id, Review.reviewer, Review.cause, Review.new_label,
                   Review.retracts_review_id, ReviewBatch.action)
            .join(Candidate, Candidate.id == Review.candidate_id)
            .outerjoin(ReviewBatch, ReviewBatch.id == Review.batch_id)
            .where(Candidate.run_id == run.id)
            .order_by(Review.candidate_id, Review.version)
        ):
            history.setdefault(review.candidate_id, []).append(review)
    records = []
    for row in rows:
        standing = api.effective_reviews(history.get(row.id, []))
        status, judgments, decision, decided_label = _state(standing)
        suggested = row.suggested_cause or ""
        if row.suggested_cause == "mislabel" and row.suggested_label:
            suggested += f"→{row.suggested_label}"
        records.append({
            "id": row.id, "rank": row.rank, "class": row.class_name, "given": row.given_label or "",
            "predicted": row.predicted_label or "", "hardness": row.hardness_score,
            "label quality": row.label_quality_score, "suggested": suggested,
            "confidence": row.suggestion_confidence, "status": status, "judgments": judgments,
            "decision": (decision or "").replace("_", " ") + (f"→{decided_label}" if decided_label else ""),
            "cause": row.suggested_cause, "suggested_label": row.suggested_label, "decision_cause": decision,
            "decided_label": decided_label, "sample_id": row.sample_id,
            "reviewers": frozenset(review.reviewer for review in standing),
        })
    frame = pd.DataFrame.from_records(records, columns=[*COLUMNS, "cause", "suggested_label", "decision_cause",
                                                        "decided_label", "sample_id", "reviewers"])
    for column in ("hardness", "label quality", "confidence"):
        frame[column] = frame[column].astype("float64")
    return frame


def table_fingerprint(store: Store, run_name: str) -> tuple:
    """What changes whenever a run's table would: its candidates, their review versions (every
    review and retraction bumps one) and their suggestions. One aggregate over the run's candidates."""
    with store.snapshot() as session:
        run = api.require_run(session, run_name)
        return (run.id, *session.execute(
            select(func.count(Candidate.id), func.coalesce(func.sum(Candidate.review_version), 0),
                   func.count(Candidate.suggested_cause), func.coalesce(func.sum(Candidate.suggestion_confidence), 0.0))
            .where(Candidate.run_id == run.id)
        ).one())


class CandidateTables:
    """:func:`load_candidates` of each run, read again only when its :func:`table_fingerprint`
    changed: a filter or sort of a run with thousands of candidates costs one aggregate query
    and the in-memory work. Thread-safe; callers must not modify the frames they get."""

    def __init__(self) -> None:
        self._tables: dict[str, tuple[tuple, pd.DataFrame]] = {}
        self._lock = threading.Lock()

    def get(self, store: Store, run_name: str) -> pd.DataFrame:
        fingerprint = table_fingerprint(store, run_name)
        with self._lock:
            cached = self._tables.get(run_name)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        frame = load_candidates(store, run_name)
        with self._lock:
            self._tables[run_name] = (fingerprint, frame)
        return frame


def filter_candidates(frame: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    """The rows of :func:`load_candidates`' table that pass ``filters`` (a view, same order)."""
    filters.check()
    keep = np.ones(len(frame), dtype=bool)
    if filters.class_name is not None:
        keep &= (frame["class"] == filters.class_name).to_numpy()
    if filters.suggested_cause == "none":
        keep &= frame["cause"].isna().to_numpy()
    elif filters.suggested_cause is not None:
        keep &= (frame["cause"] == filters.suggested_cause).to_numpy()
    if filters.status != "all":
        keep &= (frame["status"] == filters.status).to_numpy()
    if filters.reviewer is not None:
        keep &= np.fromiter((filters.reviewer in names for names in frame["reviewers"]), bool, len(frame))
    if filters.min_confidence is not None:
        keep &= (frame["confidence"] >= filters.min_confidence).fillna(False).to_numpy()
    return frame[keep]


def sort_candidates(frame: pd.DataFrame, by: str = "rank", *, descending: bool = False) -> pd.DataFrame:
    """``frame`` sorted by one of :data:`SORTABLE` (missing values last), then by rank."""
    if by not in SORTABLE:
        raise ExploreInputError(f"sort by one of {', '.join(SORTABLE)}, got {by!r}")
    keys = [by] if by == "rank" else [by, "rank"]
    return frame.sort_values(keys, ascending=[not descending] + [True] * (len(keys) - 1),
                             na_position="last", kind="stable")


def candidate_classes(store: Store, candidate_ids: Sequence[int]) -> dict[int, str]:
    """The class group of each given candidate (ids not found are left out)."""
    ids = [int(i) for i in candidate_ids]
    if not ids:
        return {}
    with store.snapshot() as session:
        return dict(session.execute(select(Candidate.id, Candidate.class_name).where(Candidate.id.in_(ids))).all())


# --------------------------------------------------------------------------- score distributions


@dataclass(frozen=True)
class ScoreDistributions:
    """A run's scores over every scored sample, and the candidates' among them.

    ``hardness``/``label_quality`` are float64 (n_scored,) (label quality without the samples
    that have none); ``candidate_hardness``/``candidate_label_quality`` the candidates' values.
    """

    hardness: np.ndarray
    label_quality: np.ndarray
    candidate_hardness: np.ndarray
    candidate_label_quality: np.ndarray

    @property
    def hardness_cut(self) -> float | None:
        """The hardest-first cut the candidates were picked below (their largest hardness)."""
        return float(self.candidate_hardness.max()) if len(self.candidate_hardness) else None

    @property
    def label_quality_cut(self) -> float | None:
        values = self.candidate_label_quality[np.isfinite(self.candidate_label_quality)]
        return float(values.max()) if len(values) else None


def score_distributions(store: Store, run_name: str, candidates: pd.DataFrame) -> ScoreDistributions:
    """Hardness and label quality of every scored sample of a run (``candidates``: its table)."""
    with store.snapshot() as session:
        run = api.require_run(session, run_name)
        rows = session.execute(
            select(Score.hardness_score, Score.label_quality_score).where(Score.run_id == run.id)
        ).all()
    values = np.asarray([(h, np.nan if q is None else q) for h, q in rows], dtype=np.float64).reshape(-1, 2)
    quality = values[:, 1]
    return ScoreDistributions(
        hardness=values[:, 0],
        label_quality=quality[np.isfinite(quality)],
        candidate_hardness=candidates["hardness"].to_numpy(dtype=np.float64),
        candidate_label_quality=candidates["label quality"].to_numpy(dtype=np.float64),
    )


# --------------------------------------------------------------------------- the map


def project_embeddings(
    embeddings: np.ndarray,
    *,
    method: str = "tsne",
    max_fitted: int = TSNE_FITTED,
    keep: Sequence[int] = (),
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """2-D places of embedding rows, in bounded time for any number of rows.

    The rows are scaled to unit length (the candidates are picked by cosine distance), reduced
    to at most 50 dimensions by PCA, then either its first two components (``pca``) or a t-SNE
    fitted on at most ``max_fitted`` rows (the ``keep`` rows first, then a random subset), the
    other rows placed at the mean of their five nearest fitted rows in the PCA space (``tsne``).

    Parameters
    ----------
    embeddings : array, shape (N, D)
    method
        ``pca`` or ``tsne``.
    max_fitted
        Rows t-SNE is fitted on at most.
    keep
        Row indices fitted by t-SNE for sure (the candidates), up to ``max_fitted``.

    Returns
    -------
    xy : np.ndarray, float64, shape (N, 2)
    n_fitted : int
        Rows the 2-D embedding was fitted on (N for ``pca``).
    """
    from sklearn.decomposition import PCA

    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    data = np.asarray(embeddings, dtype=np.float32)
    if data.ndim != 2 or len(data) == 0:
        raise ValueError(f"embeddings must be a non-empty (N, D) array, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise ValueError(f"embeddings are not finite at row {int(np.argmin(np.isfinite(data).all(axis=1)))}")
    n = len(data)
    data = data / np.maximum(np.linalg.norm(data, axis=1, keepdims=True), 1e-12)
    if n < 3:
        return np.zeros((n, 2)), n
    dimensions = min(PCA_DIMENSIONS, data.shape[1], n - 1)
    reduced = PCA(n_components=dimensions, random_state=seed,
                  svd_solver="randomized" if n > 5000 else "auto").fit_transform(data)
    if method == "pca" or n < 10:
        xy = reduced[:, :2] if dimensions >= 2 else np.column_stack([reduced[:, 0], np.zeros(n)])
        return np.asarray(xy, dtype=np.float64), n
    from sklearn.manifold import TSNE
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(seed)
    chosen = np.zeros(n, dtype=bool)
    wanted = np.unique(np.asarray(keep, dtype=np.int64))[: max_fitted]
    chosen[wanted] = True
    room = max_fitted - int(chosen.sum())
    if room > 0:
        rest = np.flatnonzero(~chosen)
        chosen[rng.choice(rest, size=min(room, len(rest)), replace=False)] = True
    fitted = np.flatnonzero(chosen)
    perplexity = float(min(30.0, max(2.0, (len(fitted) - 1) / 3.0)))
    fitted_xy = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                     max_iter=TSNE_ITERATIONS, random_state=seed).fit_transform(reduced[fitted])
    xy = np.empty((n, 2), dtype=np.float64)
    xy[fitted] = fitted_xy
    others = np.flatnonzero(~chosen)
    if len(others):
        neighbours = NearestNeighbors(n_neighbors=min(5, len(fitted))).fit(reduced[fitted])
        for start in range(0, len(others), 8192):
            part = others[start:start + 8192]
            _, index = neighbours.kneighbors(reduced[part])
            xy[part] = fitted_xy[index].mean(axis=1)
    return xy, len(fitted)


@dataclass(frozen=True)
class ProjectionInfo:
    """How a run's map was computed: its method, the samples placed and those fitted."""

    method: str
    n_points: int
    n_fitted: int


def compute_and_store_projection(
    store: Store,
    run_name: str,
    *,
    method: str = "tsne",
    max_fitted: int = TSNE_FITTED,
    seed: int = 0,
) -> ProjectionInfo | None:
    """Compute the 2-D map of a run's stored embeddings and store it with the run's scores.

    Every scored sample gets a place; the candidates are always among the samples t-SNE is
    fitted on. Bounded time for any run: PCA of every sample, t-SNE on at most ``max_fitted``,
neighbour placement of the rest; 8 s for 100,000 samples on two shared cores, up to 43 s while
other work loads them (``bench/ui_latency.py``). ``method="pca"`` takes seconds.

    Returns
    -------
    ProjectionInfo or None
        None when the run has no stored embeddings (mined from recorded predictions without
        them) or no scored sample.

    Raises
    ------
    hardcase.store.errors.StoreError
        No such run.
    """
    with store.snapshot() as session:
        run = api.require_run(session, run_name)
        run_id, path = run.id, run.embeddings_path
        rows = session.execute(
            select(Score.sample_id, Sample.source_index)
            .join(Sample, Sample.id == Score.sample_id)
            .where(Score.run_id == run.id)
            .order_by(Score.sample_id)
        ).all()
        candidate_samples = set(session.scalars(select(Candidate.sample_id).where(Candidate.run_id == run.id)))
    if not path or not Path(path).exists() or not rows:
        return None
    sample_ids = np.asarray([row.sample_id for row in rows], dtype=np.int64)
    source_index = np.asarray([row.source_index for row in rows], dtype=np.int64)
    stored = np.load(path, mmap_mode="r")
    if stored.ndim != 2 or source_index.max() >= len(stored):
        return None
    order = np.argsort(source_index)  # read the memory map in file order
    embeddings = np.empty((len(rows), stored.shape[1]), dtype=np.float32)
    embeddings[order] = stored[source_index[order]]
    keep = np.flatnonzero(np.isin(sample_ids, np.fromiter(candidate_samples, np.int64, len(candidate_samples))))
    xy, n_fitted = project_embeddings(embeddings, method=method, max_fitted=max_fitted, keep=keep, seed=seed)
    with store.Session.begin() as session:
        api.set_projection(session, run_id, sample_id=sample_ids, xy=xy, method=method, n_fitted=n_fitted)
    return ProjectionInfo(method, len(sample_ids), n_fitted)


@dataclass(frozen=True)
class RunMap:
    """What the map draws: a subset of the scored samples and every candidate.

    ``xy`` float64 (m, 2) and ``label`` object (m,) (given label, or predicted where none) of the
    background samples; ``candidate_id`` int64 (c,), ``candidate_xy`` (c, 2), ``candidate_class``
    and ``candidate_cause`` (suggested cause or None) object (c,); ``class_names`` in model order.
    """

    method: str
    n_points: int
    xy: np.ndarray
    label: np.ndarray
    candidate_id: np.ndarray
    candidate_xy: np.ndarray
    candidate_class: np.ndarray
    candidate_cause: np.ndarray
    class_names: list[str]


def load_map(store: Store, run_name: str, candidates: pd.DataFrame, *, max_points: int = DEFAULT_MAP_POINTS,
             seed: int = 0) -> RunMap | None:
    """The run's stored map (None when it has none yet), with ``candidates`` (its table) placed on it."""
    with store.snapshot() as session:
        run = api.require_run(session, run_name)
        projection = api.get_projection(session, run.id)
        if projection is None:
            return None
        method, n_points = projection.method, projection.n_points
        class_names = list(api.model_version(session, run).class_names)
        points = api.map_points(session, run.id)
    position = {int(sample): k for k, sample in enumerate(points.sample_id)}
    on_map = [position.get(int(sample)) for sample in candidates["sample_id"]]
    placed = np.asarray([k is not None for k in on_map], dtype=bool)
    rows = np.asarray([k for k in on_map if k is not None], dtype=np.int64)
    shown = np.arange(len(points.sample_id))
    if len(shown) > max_points:
        shown = np.sort(np.random.default_rng(seed).choice(shown, size=max_points, replace=False))
    label = np.where(pd.isna(points.label[shown]), points.predicted[shown], points.label[shown])
    return RunMap(
        method=method, n_points=n_points, xy=points.xy[shown], label=label,
        candidate_id=candidates["id"].to_numpy(dtype=np.int64)[placed],
        candidate_xy=points.xy[rows].reshape(-1, 2),
        candidate_class=candidates["class"].to_numpy(dtype=object)[placed],
        candidate_cause=candidates["cause"].to_numpy(dtype=object)[placed],
        class_names=class_names,
    )


# --------------------------------------------------------------------------- bulk work for leads


@dataclass(frozen=True)
class BulkOutcome:
    """A bulk decision's batch, the candidates it decided and those it left, with why."""

    batch_id: int
    decided: tuple[int, ...]
    skipped: tuple[tuple[int, str], ...]
    description: str


def _selection(frame: pd.DataFrame, candidate_ids: Sequence[int] | None, filters: Filters | None) -> tuple[pd.DataFrame, str]:
    if candidate_ids is not None:
        ids = [int(i) for i in candidate_ids]
        if not ids:
            raise ExploreInputError("nothing selected: tick rows in the table, or apply to every row matching the filters")
        unknown = sorted(set(ids) - set(frame["id"]))
        if unknown:
            raise ExploreInputError(f"candidate {unknown[0]} is not in this run")
        return frame[frame["id"].isin(ids)], f"{len(ids)} ticked"
    filters = filters or Filters()
    described = filters.describe()
    return filter_candidates(frame, filters), f"filter: {described}" if described else "every candidate"


def bulk_decide(
    store: Store,
    run_name: str,
    *,
    reviewer: str,
    decision: str,
    new_label: str | None = None,
    candidate_ids: Sequence[int] | None = None,
    filters: Filters | None = None,
    adjudicate: bool = False,
) -> BulkOutcome:
    """Decide many candidates at once, each as ``reviewer``'s own review, in one batch.

    Parameters
    ----------
    decision
        :data:`ACCEPT_SUGGESTION` (each candidate gets its suggested cause, and its suggested
        label for a mislabel; candidates without a usable suggestion are left) or one of ``DECISIONS``.
    new_label
        The class for a ``mislabel`` decision given to every candidate.
    candidate_ids, filters
        The candidates picked by hand, or else every candidate matching ``filters``.
    adjudicate
        Settle disputes: only candidates whose reviewers disagree are decided (the others are
        left), and the batch is recorded as an adjudication.

    Raises
    ------
    ExploreInputError
        Nothing selected or nothing left to decide, an unknown decision or class, a mislabel
        without its label.
    hardcase.store.errors.StoreError
        No such run.
    """
    name = (reviewer or "").strip()
    if not name:
        raise ExploreInputError("enter your name first: every decision records who made it")
    if decision != ACCEPT_SUGGESTION and decision not in DECISIONS:
        raise ExploreInputError(f"unknown decision {decision!r}; choose {ACCEPT_SUGGESTION!r} or one of "
                                f"{', '.join(DECISIONS)}")
    frame = load_candidates(store, run_name)
    with store.snapshot() as session:
        run = api.require_run(session, run_name)
        run_id, classes = run.id, list(api.model_version(session, run).class_names)
    new_label = new_label or None
    if new_label is not None and new_label not in classes:
        raise ExploreInputError(f"unknown class {new_label!r}; classes: {', '.join(classes)}")
    if decision == "mislabel" and new_label is None:
        raise ExploreInputError("a mislabel decision needs the correct label: choose it under 'Relabel as'")
    selected, how = _selection(frame, candidate_ids, filters)
    decisions, skipped = [], []
    for row in selected.itertuples(index=False):
        candidate_id = int(row.id)
        if adjudicate and row.status != "disputed":
            skipped.append((candidate_id, f"not disputed ({row.status})"))
            continue
        if decision == ACCEPT_SUGGESTION:
            if row.cause is None:
                skipped.append((candidate_id, "no suggestion"))
                continue
            if row.cause == UNCLEAR:
                skipped.append((candidate_id, "the suggestion is unclear"))
                continue
            if row.cause == "mislabel" and not row.suggested_label:
                skipped.append((candidate_id, "the mislabel suggestion names no label"))
                continue
            cause, label = row.cause, row.suggested_label if row.cause == "mislabel" else None
        else:
            cause, label = decision, new_label if decision == "mislabel" else None
        decisions.append({"candidate_id": candidate_id, "cause": cause, "new_label": label})
    if not decisions:
        why = f" ({len(skipped)} left: {skipped[0][1]}, ...)" if skipped else ""
        raise ExploreInputError(f"nothing to decide in the selection ({how}){why}")
    what = decision if decision == ACCEPT_SUGGESTION else decision.replace("_", " ") + (f"→{new_label}" if label else "")
    description = f"{'adjudicate' if adjudicate else 'decide'}: {what} · {how} · {len(decisions)} candidates"
    with store.Session.begin() as session:
        result = api.submit_batch(session, run_id, decisions, reviewer=name,
                                  action="adjudicate" if adjudicate else "decide", description=description)
    return BulkOutcome(result.batch_id, result.candidate_ids, tuple(skipped), description)


def undo_batch(store: Store, batch_id: int, *, reviewer: str) -> api.BatchResult:
    """Retract every review of a bulk decision still standing (one undo batch; nothing deleted).

    Raises
    ------
    hardcase.store.errors.StoreError
        No such batch, someone else's, or one already undone.
    """
    name = (reviewer or "").strip()
    if not name:
        raise ExploreInputError("enter your name first: only the lead who made a batch can undo it")
    with store.Session.begin() as session:
        return api.undo_batch(session, int(batch_id), reviewer=name)


def batches(store: Store, run_name: str, *, reviewer: str | None = None) -> list[api.BatchSummary]:
    """A run's review batches, newest first (only ``reviewer``'s when given)."""
    with store.snapshot() as session:
        run = api.require_run(session, run_name)
        return api.list_batches(session, run.id, reviewer=reviewer)


# --------------------------------------------------------------------------- two model versions


@dataclass(frozen=True)
class ModelChoice:
    """A model of a run: the one it was mined with, or one retrained from its reviews."""

    label: str
    path: str


def run_models(store: Store, run_name: str) -> list[ModelChoice]:
    """The run's mined model, then each model ``hardcase retrain --run`` recorded for it, oldest first."""
    from hardcase.review_app.workflows.retrain import run_reports

    with store.snapshot() as session:
        run = api.require_run(session, run_name)
        version = api.model_version(session, run)
        choices = [ModelChoice(f"mined: {version.name}", version.path)]
    for number, report in enumerate(run_reports(store, run_name), start=1):
        try:
            retrained = json.loads(Path(report["json"]).read_text(encoding="utf-8")).get("retrained_model")
        except (OSError, ValueError):
            continue
        if isinstance(retrained, str) and retrained:
            choices.append(ModelChoice(f"retrained #{number} ({report.get('written_at', '?')}): "
                                       f"{Path(retrained).name}", retrained))
    return choices


OUTCOMES = ("fixed", "broken", "both right", "both wrong", "no label")


@dataclass(frozen=True)
class ModelComparison:
    """Two models' predictions on every candidate of a run, against its final label.

    ``rows`` holds per candidate: id, class, final label, each model's predicted class and
    probability, and the outcome (one of :data:`OUTCOMES`: fixed = the first model was wrong
    and the second is right; broken = the other way round).
    """

    first: ModelChoice
    second: ModelChoice
    rows: pd.DataFrame

    def ids(self, outcome: str) -> list[int]:
        return self.rows.loc[self.rows["outcome"] == outcome, "id"].astype(int).tolist()

    @property
    def counts(self) -> dict[str, int]:
        return {outcome: int((self.rows["outcome"] == outcome).sum()) for outcome in OUTCOMES}


def final_labels(frame: pd.DataFrame) -> list[str | None]:
    """Each candidate's label after review: a standing mislabel decision's, else the given one."""
    return [decided if cause == "mislabel" and decided else (given or None)
            for cause, decided, given in zip(frame["decision_cause"], frame["decided_label"], frame["given"])]


Loader = Callable[[str], Any]
"""Path of a model -> a classifier with ``predict_proba`` and ``class_names``."""


@dataclass
class ModelLoader:
    """Classifiers of a run's models, loaded once per file version (path and modification time)."""

    spec: dict[str, Any] | None = None
    trust_model: bool = False
    _loaded: dict[tuple[str, int], Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, path: str) -> Any:
        from hardcase.miner.spec import PreprocessingSpec
        from hardcase.models.classifier import load_classifier

        target = Path(path)
        if not target.exists():
            raise ExploreInputError(f"the model file is missing: {path}")
        key = (str(target.resolve()), target.stat().st_mtime_ns)
        with self._lock:
            if key not in self._loaded:
                spec = PreprocessingSpec.from_dict(self.spec) if self.spec else None
                self._loaded[key] = load_classifier(path, spec=spec, trust_model=self.trust_model)
            return self._loaded[key]


def run_spec(store: Store, run_name: str) -> dict[str, Any]:
    """The preprocessing spec stored with the run's model version."""
    with store.snapshot() as session:
        return dict(api.model_version(session, api.require_run(session, run_name)).spec)


def compare_models(store: Store, run_name: str, first: ModelChoice, second: ModelChoice, *,
                   load: Loader) -> ModelComparison:
    """Both models' predictions on each candidate's image, and which candidates the second fixed or broke.

    Raises
    ------
    ExploreInputError
        The same model twice.
    """
    if Path(first.path).resolve() == Path(second.path).resolve():
        raise ExploreInputError("pick two different models")
    frame = load_candidates(store, run_name)
    with store.snapshot() as session:
        run = api.require_run(session, run_name)
        images = dict(session.execute(select(Candidate.id, Candidate.image_png).where(Candidate.run_id == run.id)).all())
    ids = frame["id"].to_numpy(dtype=np.int64)
    predictions = []
    for choice in (first, second):
        classifier = load(choice.path)
        names = np.asarray(list(classifier.class_names), dtype=object)
        probs = np.empty((0, len(names)))
        if len(ids):
            batch = np.stack([decode_png(images[int(i)]) for i in ids])
            probs = np.asarray(classifier.predict_proba(batch), dtype=np.float64)
        predictions.append((names[probs.argmax(axis=1)] if len(ids) else names[:0], probs.max(axis=1)))
    truth = final_labels(frame)
    (first_label, first_p), (second_label, second_p) = predictions
    outcomes = []
    for label, a, b in zip(truth, first_label, second_label):
        if label is None:
            outcomes.append("no label")
        elif a != label and b == label:
            outcomes.append("fixed")
        elif a == label and b != label:
            outcomes.append("broken")
        else:
            outcomes.append("both right" if a == label else "both wrong")
    rows = pd.DataFrame({
        "id": ids, "class": frame["class"].to_numpy(), "final label": [t or "" for t in truth],
        "first": first_label, "first p": np.round(first_p, 3), "second": second_label,
        "second p": np.round(second_p, 3), "outcome": outcomes,
    })
    return ModelComparison(first, second, rows)
