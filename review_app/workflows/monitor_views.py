"""What the Monitor tab shows of a monitor run, read-only and without Gradio.

:func:`load_monitor` reads a monitor run's windows, signals and the candidates its alerting
windows sent to review from one snapshot; the pure functions turn that into the tab's numbers
(summary, signal timelines, accuracy, canary classes, the alerts table, a window's root cause).
:func:`load_window_map` reads one window's 2-D map from its Parquet file, only from inside
``<artifacts_dir>/<run name>/`` (:func:`hardcase.store.columnar.read_columns`), so a stored
``samples_path`` cannot make the app read a file elsewhere.

User mistakes (an unknown run, a window the run does not have, a missing or refused file) are
:class:`~hardcase.store.errors.StoreError` or :class:`MonitorViewError`, one sentence each.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from hardcase.miner.vocabulary import MONITOR_SIGNALS
from hardcase.review_app.workflows.artifacts import run_folder
from hardcase.store import api
from hardcase.store.columnar import read_columns
from hardcase.store.db import Store
from hardcase.store.schema import Candidate, ModelVersion, MonitorWindow, Run

__all__ = [
    "ROOT_CAUSE_WORDS",
    "START_HINT",
    "AlertRow",
    "ClassMoves",
    "MonitorData",
    "MonitorSummary",
    "MonitorViewError",
    "SignalSeries",
    "WindowInfo",
    "WindowMap",
    "alert_rows",
    "canary_classes",
    "canary_matrix",
    "first_candidate",
    "load_monitor",
    "largest_window_index",
    "load_window_map",
    "monitor_run_names",
    "root_cause_text",
    "signal_series",
    "summarize",
]

REFERENCE_MAP = "reference_map.parquet"
"""The reference points' 2-D map in a monitor run's folder (written by ``hardcase monitor``)."""

MAP_COLUMNS = ("x", "y", "predicted", "ood_score")
"""Columns of a window's Parquet file the map needs."""

MAX_MAP_POINTS = 4000
"""More points than this (reference or window) are drawn as a fixed random subset."""

START_HINT = ("No monitor run yet. Start one with `hardcase monitor --model ... --reference ... "
              "--stream ... --run NAME`, then press Refresh.")

ROOT_CAUSE_WORDS = {
    "environment": "a library or the model file changed",
    "pipeline": "the input statistics moved: a units or preprocessing change upstream",
    "transform": "one shared geometric transform restores the samples: a camera that moved",
    "rare": "no transform restores the samples: new kinds of data the model has not seen",
    "none": "nothing to explain",
}
"""Each root-cause kind in plain words."""


class MonitorViewError(ValueError):
    """A user mistake or a missing file while reading a monitor run for the tab (one sentence)."""


# --------------------------------------------------------------------------- loaded data


@dataclass(frozen=True)
class WindowInfo:
    """One scored window, as the tab shows it."""

    id: int
    index: int
    key: str | None
    first_index: int
    last_index: int
    n: int
    estimated_accuracy: float | None
    accuracy_low: float | None
    accuracy_high: float | None
    true_accuracy: float | None
    alert: bool
    alert_signals: tuple[str, ...]
    classes_moved: tuple[str, ...]
    root_cause: str | None
    root_cause_message: str | None
    samples_path: str | None
    ood_cutoff: float | None
    candidate_ids: tuple[int, ...] = ()

    @property
    def t(self) -> str:
        """The window's timestamp or batch id, else the stream rows it spans."""
        return self.key if self.key is not None else f"rows {self.first_index}–{self.last_index}"


@dataclass(frozen=True)
class SignalPoint:
    """One signal of one window (a ``signal_timeline`` row)."""

    window: int
    signal: str
    statistic: float | None
    threshold: float | None
    side: str
    severity: float | None
    alert: bool
    classes_moved: tuple[str, ...]


@dataclass
class MonitorData:
    """A monitor run's windows and signals, read from one snapshot."""

    name: str
    class_names: list[str]
    artifacts_dir: str | None
    review_run: str | None
    windows: list[WindowInfo]
    signals: list[SignalPoint] = field(default_factory=list)

    def window(self, index: int) -> WindowInfo:
        """The window ``index``.

        Raises
        ------
        MonitorViewError
            The run has no such window (the message gives the range it has).
        """
        for window in self.windows:
            if window.index == index:
                return window
        if not self.windows:
            raise MonitorViewError(f"monitor run {self.name!r} has no scored window yet")
        raise MonitorViewError(
            f"monitor run {self.name!r} has no window {index}; its windows are "
            f"{self.windows[0].index}–{self.windows[-1].index}"
        )

    @property
    def alerts(self) -> list[WindowInfo]:
        return [window for window in self.windows if window.alert]


def monitor_run_names(store: Store) -> list[str]:
    """Names of the store's monitor runs, oldest first."""
    with store.snapshot() as session:
        return [run.name for run in api.list_monitor_runs(session)]


def largest_window_index(store: Store) -> int:
    """The largest window index of any monitor run (0 without windows): the window slider's
    widest range, so a request for any stored window passes its bounds."""
    with store.snapshot() as session:
        return int(session.scalar(select(func.max(MonitorWindow.window_index))) or 0)


def _optional_float(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _ood_cutoff(report) -> float | None:
    """The per-sample OOD score past which a sample is out of distribution, if the report has it."""
    try:
        cutoff = report["signals"]["ood"]["detail"]["cutoff"]
    except (KeyError, TypeError):
        return None
    return _optional_float(cutoff) if isinstance(cutoff, (int, float)) else None


def load_monitor(store: Store, name: str) -> MonitorData:
    """Everything the Monitor tab shows of the monitor run ``name`` but the per-sample maps.

    Raises
    ------
    store.errors.StoreError
        No monitor run of that name (the message lists those there are).
    """
    with store.snapshot() as session:
        run = api.require_monitor_run(session, name)
        class_names = list(session.get(ModelVersion, run.model_version_id).class_names)
        review_run = session.get(Run, run.review_run_id).name if run.review_run_id is not None else None
        stored = api.list_windows(session, run.id)
        alerting = [window.id for window in stored if window.alert]
        candidates: dict[int, list[int]] = defaultdict(list)
        if alerting:
            for window_id, candidate_id in session.execute(
                select(Candidate.monitor_window_id, Candidate.id)
                .where(Candidate.monitor_window_id.in_(alerting))
                .order_by(Candidate.rank)
            ):
                candidates[window_id].append(candidate_id)
        windows = [
            WindowInfo(
                id=w.id, index=w.window_index, key=w.window_key, first_index=w.first_index,
                last_index=w.last_index, n=w.n, estimated_accuracy=w.estimated_accuracy,
                accuracy_low=w.accuracy_low, accuracy_high=w.accuracy_high, true_accuracy=w.true_accuracy,
                alert=bool(w.alert), alert_signals=tuple(w.alert_signals or ()),
                classes_moved=tuple(w.classes_moved or ()), root_cause=w.root_cause,
                root_cause_message=w.root_cause_message, samples_path=w.samples_path,
                ood_cutoff=_ood_cutoff(w.report), candidate_ids=tuple(candidates.get(w.id, ())),
            )
            for w in stored
        ]
        signals = [
            SignalPoint(window=row.window_index, signal=row.signal, statistic=row.statistic,
                        threshold=row.threshold, side=row.side, severity=row.severity, alert=bool(row.alert),
                        classes_moved=tuple(row.classes_moved or ()))
            for row in api.signal_timeline(session, run.id)
        ]
        artifacts_dir = (run.params or {}).get("artifacts_dir")
        return MonitorData(name=run.name, class_names=class_names,
                           artifacts_dir=str(artifacts_dir) if artifacts_dir else None,
                           review_run=review_run, windows=windows, signals=signals)


# --------------------------------------------------------------------------- summary and alerts


@dataclass(frozen=True)
class MonitorSummary:
    """The headline numbers of a monitor run."""

    n_windows: int
    n_alerts: int
    first_alert: WindowInfo | None
    latest: WindowInfo | None
    latest_true: WindowInfo | None
    """The latest window whose true accuracy is known (labels arrived), or None."""

    def text(self, name: str) -> str:
        """One Markdown line."""
        if not self.n_windows:
            return f"**{name}**: no window scored yet."
        parts = [f"**{name}**: {self.n_windows} window{'s' if self.n_windows != 1 else ''}",
                 f"**{self.n_alerts} alert{'s' if self.n_alerts != 1 else ''}**"]
        if self.first_alert is not None:
            parts.append(f"first alert at window {self.first_alert.index} ({self.first_alert.t})")
        latest = self.latest
        if latest is not None and latest.estimated_accuracy is not None:
            interval = (f" ({latest.accuracy_low:.2f}–{latest.accuracy_high:.2f})"
                        if latest.accuracy_low is not None and latest.accuracy_high is not None else "")
            parts.append(f"estimated accuracy {latest.estimated_accuracy:.2f}{interval} at window {latest.index}")
        if self.latest_true is not None:
            parts.append(f"true accuracy {self.latest_true.true_accuracy:.2f} at window {self.latest_true.index}")
        return " · ".join(parts)


def summarize(data: MonitorData) -> MonitorSummary:
    """Windows, alerts, the first alert, the latest estimated and true accuracy."""
    alerts = data.alerts
    known = [window for window in data.windows if window.true_accuracy is not None]
    return MonitorSummary(n_windows=len(data.windows), n_alerts=len(alerts),
                          first_alert=alerts[0] if alerts else None,
                          latest=data.windows[-1] if data.windows else None,
                          latest_true=known[-1] if known else None)


ALERT_COLUMNS = ["window", "t", "signals", "classes first", "root cause", "to review"]
"""Columns of the alerts table (the window index first: a click opens that window)."""


@dataclass(frozen=True)
class AlertRow:
    window: int
    t: str
    signals: str
    classes_first: str
    root_cause: str
    to_review: int

    def as_list(self) -> list:
        return [self.window, self.t, self.signals, self.classes_first, self.root_cause, self.to_review]


def alert_rows(data: MonitorData, *, max_classes: int = 3) -> list[AlertRow]:
    """One row per alerting window: its signals (most severe first), the classes that moved
    first, the root-cause sentence and how many of its samples went to review."""
    rows = []
    for window in data.alerts:
        moved = list(window.classes_moved[:max_classes])
        if len(window.classes_moved) > max_classes:
            moved.append(f"+{len(window.classes_moved) - max_classes}")
        signals = ", ".join(window.alert_signals) or ("environment" if window.root_cause == "environment" else "")
        rows.append(AlertRow(window=window.index, t=window.t, signals=signals, classes_first=", ".join(moved),
                             root_cause=window.root_cause_message or "", to_review=len(window.candidate_ids)))
    return rows


def root_cause_text(data: MonitorData, window_index: int | None = None) -> str:
    """The root cause of window ``window_index`` (else of the latest alerting window) in plain words.

    Raises
    ------
    MonitorViewError
        ``window_index`` is not a window of the run.
    """
    if window_index is None:
        alerts = data.alerts
        if not alerts:
            return "No alert: nothing to explain." if data.windows else ""
        window = alerts[-1]
        which = f"Latest alert, window {window.index}"
    else:
        window = data.window(int(window_index))
        which = f"Window {window.index}"
    if not window.alert:
        return f"**{which}** ({window.t}) raised no alert: nothing to explain."
    kind = window.root_cause
    signals = ", ".join(window.alert_signals) or "no signal"
    head = f"**{which}** ({window.t}, {signals}): "
    if kind is None:
        return head + "no root cause was found."
    sentence = window.root_cause_message or ROOT_CAUSE_WORDS.get(kind, kind)
    return head + f"{sentence} *(cause: {kind} — {ROOT_CAUSE_WORDS.get(kind, kind)})*"


def first_candidate(data: MonitorData, window_index: int) -> int:
    """The id of the first candidate (by rank) window ``window_index`` sent to review.

    Raises
    ------
    MonitorViewError
        No such window, or it sent no candidate to review.
    """
    window = data.window(int(window_index))
    if not window.candidate_ids:
        if not window.alert:
            raise MonitorViewError(f"window {window.index} raised no alert: none of its samples went to review")
        raise MonitorViewError(f"alerting window {window.index} sent no candidate to review")
    return window.candidate_ids[0]


# --------------------------------------------------------------------------- timelines


@dataclass(frozen=True)
class SignalSeries:
    """One signal over the windows: its statistic, threshold and alerts (NaN where undefined)."""

    signal: str
    windows: np.ndarray
    statistic: np.ndarray
    threshold: np.ndarray
    side: str
    alert: np.ndarray


def signal_series(data: MonitorData) -> list[SignalSeries]:
    """Every signal the run scored, in ``MONITOR_SIGNALS`` order."""
    by_signal: dict[str, list[SignalPoint]] = defaultdict(list)
    for point in data.signals:
        by_signal[point.signal].append(point)
    order = [name for name in MONITOR_SIGNALS if name in by_signal] + sorted(set(by_signal) - set(MONITOR_SIGNALS))
    series = []
    for name in order:
        points = by_signal[name]
        nan = np.nan
        series.append(SignalSeries(
            signal=name,
            windows=np.array([p.window for p in points], dtype=np.int64),
            statistic=np.array([nan if p.statistic is None else p.statistic for p in points], dtype=np.float64),
            threshold=np.array([nan if p.threshold is None else p.threshold for p in points], dtype=np.float64),
            side=points[-1].side,
            alert=np.array([p.alert for p in points], dtype=bool),
        ))
    return series


# --------------------------------------------------------------------------- canary classes


@dataclass(frozen=True)
class ClassMoves:
    """When one class moved: the windows naming it in ``classes_moved``, and by which signals."""

    class_name: str
    windows: tuple[int, ...]
    alert_windows: tuple[int, ...]
    """Windows where an alerting signal named the class."""
    signals: tuple[str, ...]
    canary: bool
    """Among the classes that moved first (at the earliest window any class moved)."""

    @property
    def first_window(self) -> int:
        return self.windows[0]


def canary_classes(data: MonitorData) -> list[ClassMoves]:
    """Classes that moved, earliest first; the first movers are marked ``canary``."""
    windows: dict[str, list[int]] = defaultdict(list)
    for window in data.windows:
        for name in window.classes_moved:
            if window.index not in windows[name]:
                windows[name].append(window.index)
    alert_windows: dict[str, set[int]] = defaultdict(set)
    signals: dict[str, list[str]] = defaultdict(list)
    for point in data.signals:
        for name in point.classes_moved:
            if point.signal not in signals[name]:
                signals[name].append(point.signal)
            if point.alert:
                alert_windows[name].add(point.window)
            if point.window not in windows[name]:
                windows[name].append(point.window)
    if not windows:
        return []
    first = min(min(found) for found in windows.values())
    order = {name: index for index, name in enumerate(data.class_names)}
    moves = [
        ClassMoves(class_name=name, windows=tuple(sorted(found)), alert_windows=tuple(sorted(alert_windows[name])),
                   signals=tuple(signals[name]), canary=min(found) == first)
        for name, found in windows.items()
    ]
    return sorted(moves, key=lambda m: (m.first_window, order.get(m.class_name, len(order)), m.class_name))


def canary_matrix(data: MonitorData, moves: Sequence[ClassMoves]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(class names, window indices, matrix)`` with 0 = still, 1 = moved, 2 = named by an alerting signal."""
    indices = np.array([window.index for window in data.windows], dtype=np.int64)
    column = {int(index): position for position, index in enumerate(indices)}
    matrix = np.zeros((len(moves), len(indices)), dtype=np.int64)
    for row, move in enumerate(moves):
        for window in move.windows:
            if window in column:
                matrix[row, column[window]] = 1
        for window in move.alert_windows:
            if window in column:
                matrix[row, column[window]] = 2
    return [move.class_name for move in moves], indices, matrix


# --------------------------------------------------------------------------- a window's map


@dataclass(frozen=True)
class WindowMap:
    """A window's points on the reference's 2-D map."""

    run_name: str
    window: WindowInfo
    class_names: list[str]
    reference_xy: np.ndarray
    """(R, 2), possibly empty when the reference map is missing."""
    xy: np.ndarray
    predicted: np.ndarray
    ood: np.ndarray
    """True where the sample's OOD score is past the run's cutoff."""
    n_total: int
    """Samples in the window (``xy`` may be a subset)."""
    n_ood: int
    notes: tuple[str, ...] = ()

    def caption(self) -> str:
        window = self.window
        shown = f"{len(self.xy)} of {self.n_total}" if len(self.xy) < self.n_total else f"{self.n_total}"
        parts = [f"**Window {window.index}** ({window.t})", f"{shown} samples"]
        if window.ood_cutoff is not None:
            parts.append(f"{self.n_ood} out of distribution (outlined)")
        parts.append(f"alert: {', '.join(window.alert_signals) or 'yes'}" if window.alert else "no alert")
        return " · ".join(parts) + "".join(f"\n\n{note}" for note in self.notes)


def _run_root(data: MonitorData) -> Path:
    if not data.artifacts_dir:
        raise MonitorViewError(f"monitor run {data.name!r} does not record its artifacts folder")
    try:
        return run_folder(data.artifacts_dir, data.name)
    except ValueError as exc:
        raise MonitorViewError(str(exc)) from None


def _read(path: str, root: Path, what: str) -> dict[str, np.ndarray]:
    try:
        return read_columns(path, root=root)
    except ValueError as exc:  # outside the run's folder: refused
        raise MonitorViewError(f"{what} refused: {exc}") from None
    except OSError as exc:
        raise MonitorViewError(f"{what} cannot be read: {exc.strerror or exc}") from None
    except Exception as exc:  # a damaged Parquet file (pyarrow's errors)
        raise MonitorViewError(f"{what} cannot be read: {exc}") from None


def _subset(n: int, limit: int, seed: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def load_window_map(data: MonitorData, window_index: int, *, max_points: int = MAX_MAP_POINTS) -> WindowMap:
    """Window ``window_index``'s points (and the reference's) on the run's 2-D map.

    Files are read only from inside ``<artifacts_dir>/<run name>/``.

    Raises
    ------
    MonitorViewError
        No such window, no samples file, a file outside the run's folder (refused), missing
        or damaged, or without the map's columns.
    """
    window = data.window(int(window_index))
    if not window.samples_path:
        raise MonitorViewError(f"window {window.index} has no per-sample file")
    root = _run_root(data)
    columns = _read(window.samples_path, root, f"window {window.index}'s samples file {window.samples_path!r}")
    missing = [name for name in MAP_COLUMNS if name not in columns]
    if missing:
        raise MonitorViewError(
            f"window {window.index}'s samples file {window.samples_path!r} lacks the columns {', '.join(missing)}"
        )
    notes = []
    try:
        reference = _read(REFERENCE_MAP, root, "the reference map")
        reference_xy = np.column_stack([reference["x"], reference["y"]]).astype(np.float64)
    except (MonitorViewError, KeyError) as exc:
        reference_xy = np.empty((0, 2))
        notes.append(f"Reference points not shown: {exc}")
    reference_xy = reference_xy[_subset(len(reference_xy), max_points, 0)]
    xy = np.column_stack([columns["x"], columns["y"]]).astype(np.float64)
    predicted = np.asarray(columns["predicted"], dtype=np.int64)
    scores = np.asarray(columns["ood_score"], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ood = scores > window.ood_cutoff if window.ood_cutoff is not None else np.zeros(len(xy), dtype=bool)
    keep = _subset(len(xy), max_points, window.index)
    return WindowMap(run_name=data.name, window=window, class_names=list(data.class_names), reference_xy=reference_xy,
                     xy=xy[keep], predicted=predicted[keep], ood=ood[keep], n_total=len(xy), n_ood=int(ood.sum()),
                     notes=tuple(notes))
