"""Triage numbers over store data, without Gradio: confusion, recall, acceptance, agreement.

The pure functions take plain Python values (so they are easy to test on constructed
reviews); :func:`load_triage` reads everything they need for one run from one snapshot.

Conventions
-----------
- A reviewer's *judgment* on a candidate is their latest standing (not retracted) review
  whose cause is not ``skip``; a skip is "no opinion".
- A candidate's *final* decision is the latest standing non-skip review by anyone, as in
  ``store.export`` (the fix list).
- Reviewers *disagree* on a candidate when their judgments differ in cause or new label.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from sqlalchemy import func, select

from hardcase.miner.vocabulary import CAUSES, DECISIONS
from hardcase.store import api
from hardcase.store.db import Store
from hardcase.store.schema import Candidate, Review, ReviewBatch, Sample, Score


@dataclass(frozen=True)
class Judgment:
    """One reviewer's standing judgment on one candidate."""

    candidate_id: int
    reviewer: str
    cause: str
    new_label: str | None = None

    @property
    def key(self) -> tuple[str, str | None]:
        """What two judgments must share to agree: cause and new label."""
        return (self.cause, self.new_label)

    def describe(self) -> str:
        return f"{self.reviewer}: {self.cause}" + (f"→{self.new_label}" if self.new_label else "")


@dataclass(frozen=True)
class PairAgreement:
    """Agreement of two reviewers on the candidates both judged.

    ``kappa`` is NaN when it is undefined (no shared candidate, or both reviewers used one
    and the same cause throughout, so chance agreement is 1).
    """

    reviewer_a: str
    reviewer_b: str
    n_shared: int
    observed: float
    kappa: float


@dataclass(frozen=True)
class Disagreement:
    """A candidate whose reviewers disagree, for a lead to adjudicate."""

    candidate_id: int
    class_name: str
    given_label: str | None
    suggested_cause: str | None
    judgments: tuple[Judgment, ...]


@dataclass(frozen=True)
class CandidateInfo:
    """What triage needs to know about one candidate besides its reviews."""

    candidate_id: int
    class_name: str
    given_label: str | None
    suggested_cause: str | None


@dataclass
class TriageData:
    """Everything the triage tab shows for one run, read from one snapshot.

    ``judgments`` maps candidate id to its reviewers' standing judgments (candidates with
    at least one); ``final`` maps candidate id to its final decision (None if none).
    """

    run_name: str
    class_names: list[str]
    decision_counts: dict[tuple[str, str | None], int]
    label_pairs: list[tuple[str | None, str, int]]
    candidates: dict[int, CandidateInfo]
    judgments: dict[int, list[Judgment]] = field(default_factory=dict)
    final: dict[int, str | None] = field(default_factory=dict)
    adjudicated: set[int] = field(default_factory=set)
    """Candidates a lead's adjudication settled (their latest standing review)."""

    @property
    def n_candidates(self) -> int:
        return len(self.candidates)

    @property
    def n_reviewed(self) -> int:
        return sum(count for (_, decision), count in self.decision_counts.items() if decision is not None)


# --------------------------------------------------------------------------- pure functions


def confusion_matrix(
    label_pairs: Iterable[tuple[str | None, str | None, int]], class_names: Sequence[str]
) -> np.ndarray:
    """Counts of (given, predicted) label pairs as a (K, K) matrix, rows = given.

    Parameters
    ----------
    label_pairs
        ``(given_label, predicted_label, count)`` triples; pairs with an unknown or missing
        label are left out.
    class_names
        Row and column order.
    """
    index = {name: position for position, name in enumerate(class_names)}
    matrix = np.zeros((len(class_names), len(class_names)), dtype=np.int64)
    for given, predicted, count in label_pairs:
        if given in index and predicted in index:
            matrix[index[given], index[predicted]] += int(count)
    return matrix


def per_class_recall(matrix: np.ndarray) -> np.ndarray:
    """Recall of each class (diagonal over row sum); NaN for a class without samples."""
    totals = matrix.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / np.where(totals > 0, totals, 1), np.nan)


def decision_matrix(
    decision_counts: Mapping[tuple[str, str | None], int],
    class_names: Sequence[str],
    decisions: Sequence[str] = DECISIONS,
) -> tuple[list[str], np.ndarray]:
    """Reviewed candidates per (class, decision) as a matrix.

    Returns
    -------
    (rows, matrix)
        Row names (``class_names`` then any other class seen in the counts) and the
        (rows, len(decisions)) count matrix; unreviewed candidates are not counted.
    """
    rows = list(class_names) + sorted({c for c, _ in decision_counts} - set(class_names))
    row_of = {name: position for position, name in enumerate(rows)}
    col_of = {name: position for position, name in enumerate(decisions)}
    matrix = np.zeros((len(rows), len(decisions)), dtype=np.int64)
    for (class_name, decision), count in decision_counts.items():
        if decision in col_of:
            matrix[row_of[class_name], col_of[decision]] += int(count)
    return rows, matrix


def acceptance_rates(
    outcomes: Iterable[tuple[str | None, str | None]], causes: Sequence[str] = CAUSES
) -> dict[str, tuple[int, int]]:
    """How often reviewers confirmed each suggested cause.

    Parameters
    ----------
    outcomes
        ``(suggested_cause, final_decision)`` per candidate; candidates without a final
        decision (None) are not counted.

    Returns
    -------
    dict
        ``cause -> (accepted, decided)`` for every cause in ``causes``.
    """
    tally = {cause: [0, 0] for cause in causes}
    for suggested, final in outcomes:
        if suggested in tally and final is not None:
            tally[suggested][1] += 1
            tally[suggested][0] += int(final == suggested)
    return {cause: (accepted, decided) for cause, (accepted, decided) in tally.items()}


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two raters' labels on the same items.

    ``(p_o - p_e) / (1 - p_e)`` with ``p_o`` the observed agreement and ``p_e`` the
    agreement expected from each rater's label frequencies. NaN when there are no items or
    ``p_e == 1`` (both raters gave every item the same label).
    """
    if len(a) != len(b):
        raise ValueError(f"raters labelled {len(a)} and {len(b)} items")
    n = len(a)
    if n == 0:
        return math.nan
    observed = sum(x == y for x, y in zip(a, b)) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[label] * count_b[label] for label in count_a) / (n * n)
    if expected >= 1.0:
        return math.nan
    return (observed - expected) / (1.0 - expected)


def standing_judgments(history: Sequence[object]) -> list[Judgment]:
    """Each reviewer's latest standing non-skip judgment from one candidate's history.

    ``history`` holds review rows (``id, candidate_id, reviewer, cause, new_label,
    retracts_review_id``) in version order; the result is ordered by first review.
    """
    latest: dict[str, Judgment] = {}
    for review in api.effective_reviews(history):
        if review.cause == "skip":
            continue
        latest.pop(review.reviewer, None)
        latest[review.reviewer] = Judgment(
            int(review.candidate_id), review.reviewer, review.cause, review.new_label
        )
    return list(latest.values())


def adjudicated(history: Sequence[object]) -> bool:
    """Whether the latest standing non-skip review settles the candidate: a lead's adjudication
    (a review of a batch whose ``batch_action`` is ``adjudicate``)."""
    judged = [review for review in api.effective_reviews(history) if review.cause != "skip"]
    return bool(judged) and getattr(judged[-1], "batch_action", None) == "adjudicate"


def final_decision(history: Sequence[object]) -> str | None:
    """The cause of the latest standing non-skip review, or None."""
    judged = [review for review in api.effective_reviews(history) if review.cause != "skip"]
    return judged[-1].cause if judged else None


def kappa_by_pair(judgments: Mapping[int, Sequence[Judgment]]) -> list[PairAgreement]:
    """Cohen's kappa on the cause for every pair of reviewers who judged a candidate in common.

    Parameters
    ----------
    judgments
        Candidate id -> standing judgments (at most one per reviewer).
    """
    shared: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for candidate_judgments in judgments.values():
        by_reviewer = {judgment.reviewer: judgment.cause for judgment in candidate_judgments}
        for first, second in combinations(sorted(by_reviewer), 2):
            shared[(first, second)].append((by_reviewer[first], by_reviewer[second]))
    result = []
    for (first, second), pairs in sorted(shared.items()):
        causes_a = [pair[0] for pair in pairs]
        causes_b = [pair[1] for pair in pairs]
        observed = sum(x == y for x, y in pairs) / len(pairs)
        result.append(PairAgreement(first, second, len(pairs), observed, cohen_kappa(causes_a, causes_b)))
    return result


def disagreements(
    judgments: Mapping[int, Sequence[Judgment]], candidates: Mapping[int, CandidateInfo],
    *, settled: Collection[int] = (),
) -> list[Disagreement]:
    """Candidates whose reviewers' judgments differ in cause or new label, by candidate id;
    ``settled`` ones (adjudicated by a lead: :attr:`TriageData.adjudicated`) are left out."""
    result = []
    for candidate_id in sorted(judgments):
        candidate_judgments = judgments[candidate_id]
        if candidate_id in settled or len({judgment.key for judgment in candidate_judgments}) < 2:
            continue
        info = candidates.get(candidate_id, CandidateInfo(candidate_id, "?", None, None))
        result.append(
            Disagreement(
                candidate_id, info.class_name, info.given_label, info.suggested_cause,
                tuple(candidate_judgments),
            )
        )
    return result


# --------------------------------------------------------------------------- reading the store


def load_triage(store: Store, run_name: str) -> TriageData:
    """Read what the triage tab needs for ``run_name`` from one snapshot.

    The confusion counts are one ``GROUP BY`` over the run's scores, so this stays fast for
    runs with many scored samples.

    Raises
    ------
    store.errors.StoreError
        No such run.
    """
    with store.snapshot() as session:
        run = api.require_run(session, run_name)
        class_names = list(api.model_version(session, run).class_names)
        decision_counts = api.triage_counts(session, run.id)
        label_pairs = [
            (given, predicted, int(count))
            for given, predicted, count in session.execute(
                select(Sample.given_label, Score.predicted_label, func.count())
                .join(Sample, Sample.id == Score.sample_id)
                .where(Score.run_id == run.id)
                .group_by(Sample.given_label, Score.predicted_label)
            )
        ]
        candidates = {
            row.id: CandidateInfo(row.id, row.class_name, row.given_label, row.suggested_cause)
            for row in session.execute(
                select(Candidate.id, Candidate.class_name, Candidate.suggested_cause, Sample.given_label)
                .join(Sample, Sample.id == Candidate.sample_id)
                .where(Candidate.run_id == run.id)
            )
        }
        history: dict[int, list[object]] = defaultdict(list)
        for row in session.execute(
            select(Review.id, Review.candidate_id, Review.reviewer, Review.cause, Review.new_label,
                   Review.retracts_review_id, ReviewBatch.action.label("batch_action"))
            .join(Candidate, Candidate.id == Review.candidate_id)
            .outerjoin(ReviewBatch, ReviewBatch.id == Review.batch_id)
            .where(Candidate.run_id == run.id)
            .order_by(Review.candidate_id, Review.version)
        ):
            history[row.candidate_id].append(row)
    data = TriageData(run_name, class_names, decision_counts, label_pairs, candidates)
    data.judgments = {
        candidate_id: judged
        for candidate_id, rows in history.items()
        if (judged := standing_judgments(rows))
    }
    data.final = {candidate_id: final_decision(rows) for candidate_id, rows in history.items()}
    data.adjudicated = {candidate_id for candidate_id, rows in history.items() if adjudicated(rows)}
    return data


def outcomes(data: TriageData) -> list[tuple[str | None, str | None]]:
    """``(suggested_cause, final_decision)`` for every candidate of ``data``."""
    return [(info.suggested_cause, data.final.get(candidate_id)) for candidate_id, info in data.candidates.items()]
