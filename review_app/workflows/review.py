"""What the review page does, without Gradio: candidates, live predictions, reviews.

The Gradio handlers translate widgets to and from these calls; tests and scripts can use
the service directly. Durable state lives in the store; this object only caches models
and decoded images.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hardcase.miner.sources import open_source
from hardcase.miner.spec import as_uint8
from hardcase.miner.vocabulary import CAUSES, DECISIONS, SKIP
from hardcase.models.transforms import Transform, apply_transform
from hardcase.review_app.workflows.accounts import check_access
from hardcase.review_app.workflows.batching import PredictionBatcher
from hardcase.review_app.workflows.classifiers import ClassifierCache
from hardcase.review_app.workflows.images import decode_png
from hardcase.review_app.workflows.recorded import NoModelError
from hardcase.store import api
from hardcase.store.acceptance import Acceptance, acceptance_by_cause
from hardcase.store.db import Store
from hardcase.store.schema import Run

if TYPE_CHECKING:
    from hardcase.miner.protocols import Classifier
    from hardcase.models.saliency import Saliency


class ReviewInputError(ValueError):
    """A reviewer's input cannot be accepted (unknown cause, missing label, no name)."""


@dataclass(frozen=True)
class ReviewProgress:
    """Where a run's review stands: decided and skipped candidates counted apart."""

    total: int
    decided: int
    """Candidates with a standing decision other than skip."""
    skipped: int
    """Candidates whose standing decision is skip (to come back to)."""

    @property
    def undecided(self) -> int:
        """Candidates nobody has decided or skipped yet."""
        return self.total - self.decided - self.skipped


@dataclass(frozen=True)
class Prediction:
    """Model output on one (possibly transformed) image."""

    probabilities: dict[str, float]
    image: np.ndarray

    @property
    def top(self) -> tuple[str, float]:
        """The most probable class and its probability."""
        name = max(self.probabilities, key=self.probabilities.get)
        return name, self.probabilities[name]


class ReviewService:
    """Review operations over one store; thread-safe."""

    def __init__(self, store: Store, *, lease_seconds: int = 600, trust_model: bool = False) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self._model_lock = threading.Lock()
        self._batcher = PredictionBatcher()
        self.classifiers = ClassifierCache(trust_model=trust_model)
        self._image = lru_cache(maxsize=4096)(self._load_image)
        self._saliency: dict[int, Saliency] = {}
        self._sources: dict[str, object] = {}

    # access --------------------------------------------------------------------------
    def check_access(self, username: str | None, endpoint: str) -> None:
        """:func:`~hardcase.review_app.workflows.accounts.check_access` on this service's store."""
        check_access(self.store, username, endpoint)

    # runs and candidates -------------------------------------------------------------
    def run_names(self) -> list[str]:
        """Names of the store's mining runs, oldest first."""
        with self.store.Session.begin() as session:
            return [run.name for run in api.list_runs(session)]

    def class_names(self, run_name: str) -> list[str]:
        """The class names of ``run_name``'s model, in output order."""
        with self.store.Session.begin() as session:
            run = api.require_run(session, run_name)
            return list(api.model_version(session, run).class_names)

    def next_candidate(
        self,
        run_name: str,
        reviewer: str,
        *,
        after_rank: int | None = None,
        class_name: str | None = None,
        suggested_cause: str | None = None,
        status: str = "unreviewed",
    ) -> api.CandidateView | None:
        """Lease the next candidate for ``reviewer``, or None when none is left.

        Parameters
        ----------
        run_name, reviewer
            The run, and who reviews (no other reviewer is given a candidate they hold).
        after_rank
            Only candidates ranked after this one (the page's "next").
        class_name, suggested_cause
            Filters; None for all.
        status
            ``unreviewed``, ``reviewed`` or ``all``.

        Raises
        ------
        ReviewInputError
            No reviewer name.
        hardcase.store.errors.StoreError
            No such run.
        """
        reviewer = self._check_reviewer(reviewer)
        with self.store.Session.begin() as session:
            run = api.require_run(session, run_name)
            return api.next_candidate(
                session,
                run.id,
                reviewer=reviewer,
                lease_seconds=self.lease_seconds,
                class_name=class_name,
                suggested_cause=suggested_cause,
                status=status,
                after_rank=after_rank,
            )

    def run_name_of(self, run_id: int) -> str:
        """The name of the run with id ``run_id``."""
        with self.store.Session.begin() as session:
            return session.get(Run, run_id).name

    def candidate(self, candidate_id: int) -> api.CandidateView:
        """The candidate with its image, scores, evidence and standing decision."""
        with self.store.Session.begin() as session:
            return api.get_candidate(session, int(candidate_id))

    def progress(self, run_name: str) -> tuple[int, int]:
        """``(total, reviewed)`` candidates of ``run_name`` (a skip counts as reviewed)."""
        with self.store.Session.begin() as session:
            return api.review_progress(session, api.require_run(session, run_name).id)

    def review_progress(self, run_name: str) -> ReviewProgress:
        """How many of ``run_name``'s candidates are decided, skipped, and neither."""
        with self.store.Session.begin() as session:
            counts = api.triage_counts(session, api.require_run(session, run_name).id)
        total = sum(counts.values())
        skipped = sum(n for (_, decision), n in counts.items() if decision == SKIP)
        undecided = sum(n for (_, decision), n in counts.items() if decision is None)
        return ReviewProgress(total=total, decided=total - skipped - undecided, skipped=skipped)

    def acceptance(self, run_id: int, *, exclude_candidate_id: int | None = None) -> dict[str, Acceptance]:
        """Per suggested cause of the run: how many of its decided suggestions reviewers confirmed
        (:func:`hardcase.store.acceptance.acceptance_by_cause`), without ``exclude_candidate_id``."""
        with self.store.snapshot() as session:
            return acceptance_by_cause(session, int(run_id), exclude_candidate_id=exclude_candidate_id)

    # predictions --------------------------------------------------------------------
    def image(self, candidate_id: int) -> np.ndarray:
        """The candidate's original image, uint8 (H, W, C)."""
        return self._image(int(candidate_id))

    def _load_image(self, candidate_id: int) -> np.ndarray:
        image = decode_png(self.candidate(candidate_id).image_png)
        image.setflags(write=False)
        return image

    def classifier_for_candidate(self, candidate_id: int) -> Classifier:
        """The classifier of the candidate's run, with the run's stored preprocessing spec.

        Raises
        ------
        NoModelError
            The run was mined from recorded predictions.
        FileNotFoundError
            The run's model file is gone.
        """
        with self.store.Session.begin() as session:
            view = api.get_candidate(session, int(candidate_id))
            run = session.get(Run, view.run_id)
            return self._classifier_of(run, api.model_version(session, run))

    def classifier_for_run(self, run_name: str) -> Classifier:
        """The classifier of ``run_name``, with the run's stored preprocessing spec.

        Raises
        ------
        hardcase.store.errors.StoreError
            No such run.
        NoModelError
            The run was mined from recorded predictions.
        FileNotFoundError
            The run's model file is gone.
        """
        with self.store.Session.begin() as session:
            run = api.require_run(session, run_name)
            return self._classifier_of(run, api.model_version(session, run))

    def _classifier_of(self, run, version) -> Classifier:
        if (run.params or {}).get("predictions"):
            raise NoModelError(
                f"run {run.name!r} was mined from recorded predictions ({version.name}): live re-prediction "
                "under the sliders, saliency and the Try tab need the model; mine with --model for them"
            )
        return self.classifiers.get(version.id, version.path, version.spec)

    def predict_transformed(self, candidate_id: int, transform: Transform, *, saliency: bool = False) -> Prediction:
        """The model's probabilities on the candidate's image under ``transform``.

        With ``saliency`` the returned image carries the saliency overlay of the top class. For
        a run mined from recorded predictions the untransformed image gets the recorded
        probabilities; anything else raises :class:`NoModelError`.
        """
        try:
            classifier = self.classifier_for_candidate(candidate_id)
        except NoModelError:
            if saliency or not transform.is_identity:
                raise
            return self._recorded_prediction(int(candidate_id))
        image = apply_transform(self.image(candidate_id), transform)
        # reviewers dragging sliders at once share model calls (PredictionBatcher)
        probs = self._batcher.run(id(classifier), partial(self._predict_locked, classifier), image)
        shown = image
        if saliency:
            from hardcase.models.saliency import overlay

            with self._model_lock:
                shown = overlay(image, self._saliency_of(classifier).heatmap(image, int(np.argmax(probs))))
        return Prediction(
            probabilities={name: float(p) for name, p in zip(classifier.class_names, probs)},
            image=shown,
        )

    def _predict_locked(self, classifier: Classifier, images: np.ndarray) -> np.ndarray:
        with self._model_lock:  # a saliency map of the same model may be under way
            return classifier.predict_proba(images)

    def saliency_method(self, candidate_id: int) -> str:
        """What the saliency overlay of the candidate's model computes, in words
        (:attr:`hardcase.models.saliency.Saliency.method`: ``HiResCAM on layer 'conv2d_1'`` or
        ``gradient x input``).

        Raises
        ------
        NoModelError
            The run was mined from recorded predictions.
        """
        classifier = self.classifier_for_candidate(candidate_id)
        with self._model_lock:
            return self._saliency_of(classifier).method

    def _saliency_of(self, classifier: Classifier) -> Saliency:
        """The classifier's saliency maps, built once; call with ``_model_lock`` held."""
        from hardcase.models.saliency import Saliency

        if id(classifier) not in self._saliency:
            self._saliency[id(classifier)] = Saliency(classifier)
        return self._saliency[id(classifier)]

    def _recorded_prediction(self, candidate_id: int) -> Prediction:
        view = self.candidate(candidate_id)
        with self.store.Session.begin() as session:
            run = session.get(Run, view.run_id)
            names = list(api.model_version(session, run).class_names)
            folder = Path(run.embeddings_path).parent if run.embeddings_path else None
        probs = np.load(folder / "pred_probs.npy", mmap_mode="r")[view.source_index] if folder else None
        if probs is None:
            raise NoModelError("the run's recorded predictions are missing from its artifacts folder")
        return Prediction(probabilities={name: float(p) for name, p in zip(names, probs)}, image=self.image(candidate_id))

    def suggested_transform(self, candidate_id: int) -> Transform | None:
        """The transform found by cause suggestion, when its evidence has one."""
        evidence = self.candidate(candidate_id).evidence or {}
        found = evidence.get("transform")
        return Transform.from_dict(found) if found else None

    def neighbour_images(self, candidate_id: int, *, limit: int = 8) -> list[tuple[np.ndarray, str]]:
        """Nearest training images named in the candidate's evidence, with their labels."""
        view = self.candidate(candidate_id)
        neighbours = (view.evidence or {}).get("neighbours") or {}
        ids = list(neighbours.get("train_ids") or [])[:limit]
        labels = list(neighbours.get("labels") or [])[:limit]
        with self.store.Session.begin() as session:
            train_data = (session.get(Run, view.run_id).params or {}).get("train_data")
        if not ids or not train_data or not Path(train_data).exists():
            return []
        batch = self._train_source(train_data).read(np.asarray(ids, dtype=np.int64))
        names = dict(zip(ids, labels))
        return [(as_uint8(image), f"train #{i}: {names.get(int(i), '?')}") for i, image in zip(batch.indices, batch.images)]

    def _train_source(self, path: str):
        with self._model_lock:
            if path not in self._sources:
                self._sources[path] = open_source(path)
            return self._sources[path]

    # reviews ------------------------------------------------------------------------
    def submit_review(
        self,
        candidate_id: int,
        *,
        reviewer: str,
        cause: str,
        new_label: str | None,
        note: str,
        transform: Transform,
        seen_version: int,
    ) -> api.ReviewResult:
        """Record ``reviewer``'s decision on a candidate (appended; nothing is overwritten).

        Parameters
        ----------
        candidate_id
            The candidate decided.
        reviewer
            Who decides.
        cause
            One of :data:`~hardcase.miner.vocabulary.DECISIONS`.
        new_label
            The right class for ``mislabel`` (required there); None otherwise.
        note
            Free text.
        transform
            The slider transform; stored with ``augment`` decisions.
        seen_version
            The candidate's review version the reviewer saw: a newer one means another
            reviewer decided meanwhile, and both reviews are kept and flagged as a conflict.

        Raises
        ------
        ReviewInputError
            Unknown cause or class, a mislabel without its label, no reviewer name.
        """
        reviewer = self._check_reviewer(reviewer)
        if cause not in DECISIONS:
            raise ReviewInputError(f"unknown decision {cause!r}; choose one of {', '.join(DECISIONS)}")
        view = self.candidate(candidate_id)
        classes = self._classes_of(view.run_id)
        new_label = new_label or None
        if new_label is not None and new_label not in classes:
            raise ReviewInputError(f"unknown class {new_label!r}; classes: {', '.join(classes)}")
        if cause == "mislabel" and new_label is None:
            raise ReviewInputError("a mislabel decision needs the correct label: choose it under 'Relabel as'")
        stored_transform = transform.to_dict() if cause == "augment" and not transform.is_identity else None
        with self.store.Session.begin() as session:
            return api.submit_review(
                session,
                int(candidate_id),
                reviewer=reviewer,
                cause=cause,
                new_label=new_label,
                note=note or "",
                transform=stored_transform,
                seen_version=int(seen_version),
            )

    def undo_last_review(self, candidate_id: int, reviewer: str) -> api.ReviewResult:
        """Retract ``reviewer``'s latest review of the candidate (history is kept)."""
        reviewer = self._check_reviewer(reviewer)
        with self.store.Session.begin() as session:
            return api.undo_last_review(session, int(candidate_id), reviewer=reviewer)

    def undo_latest_decision(self, run_name: str, reviewer: str) -> int:
        """Retract ``reviewer``'s latest standing decision in ``run_name``, wherever the page is;
        returns the candidate it was on. Pressed again, it takes back the decision before.

        Raises
        ------
        ReviewInputError
            No reviewer name, or nothing of theirs left to undo in the run.
        hardcase.store.errors.StoreError
            No such run.
        """
        reviewer = self._check_reviewer(reviewer)
        with self.store.Session.begin() as session:
            run = api.require_run(session, run_name)
            candidate_id = api.latest_decided_candidate(session, run.id, reviewer)
            if candidate_id is None:
                raise ReviewInputError(f"nothing to undo: {reviewer} has no standing decision in run {run_name!r}")
            api.undo_last_review(session, candidate_id, reviewer=reviewer)
        return candidate_id

    def previous_candidate(self, run_name: str, *, before_rank: int, class_name: str | None = None):
        """The candidate ranked just before ``before_rank`` (optionally of one class), or None."""
        with self.store.Session.begin() as session:
            run = api.require_run(session, run_name)
            return api.previous_candidate(session, run.id, before_rank=before_rank, class_name=class_name)

    def _classes_of(self, run_id: int) -> list[str]:
        with self.store.Session.begin() as session:
            return list(api.model_version(session, session.get(Run, run_id)).class_names)

    @staticmethod
    def _check_reviewer(reviewer: str | None) -> str:
        name = (reviewer or "").strip()
        if not name:
            raise ReviewInputError("enter your name before reviewing: every decision records who made it")
        if len(name) > 64:
            raise ReviewInputError("reviewer names are at most 64 characters")
        return name


__all__ = ["CAUSES", "DECISIONS", "Acceptance", "Prediction", "ReviewInputError", "ReviewProgress", "ReviewService"]
