"""Production monitoring: monitor runs, their scored windows and each window's signals.

A monitor run watches one model on a stream dataset against a reference dataset and is cut
into windows (every ``window_size`` samples, or by timestamp / batch id). Each scored window
is one ``monitor_windows`` row (the headline numbers as columns, the whole
``WindowReport.to_dict()`` as JSON) with one ``monitor_signals`` row per signal; the samples of
alerting windows go to the review run of the same name as candidates carrying
``monitor_window_id``. Per-sample values of a window live in a Parquet file
(``samples_path``, see :mod:`hardcase.store.columnar`), not one SQL row each.

Non-finite floats (NaN, +-inf: a statistic undefined on a window) are stored as NULL.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row, case, select
from sqlalchemy.orm import Session

from hardcase.miner.vocabulary import MONITOR_SIGNALS, ROOT_CAUSES
from hardcase.store._rows import _add_new, _as_float, _as_int, _check_keys, _check_name, _utcnow
from hardcase.store.errors import StoreError
from hardcase.store.schema import (
    SIGNAL_SIDES,
    WINDOW_BY,
    WINDOW_KEY_LENGTH,
    Candidate,
    Dataset,
    ModelVersion,
    MonitorRun,
    MonitorSignal,
    MonitorWindow,
    Run,
)

SIGNAL_REQUIRED = ("signal", "statistic", "threshold", "side", "alert")
"""Keys every signal row given to :func:`add_window` has."""

SIGNAL_OPTIONAL = ("severity", "p_value", "message", "classes_moved")
"""Keys a signal row may have (None, ``''`` and ``[]`` when absent)."""


# --------------------------------------------------------------------------- value checks


def _finite_or_none(what: str, value: object) -> float | None:
    """``value`` as a float; None, NaN and +-inf as None (stored as NULL)."""
    try:
        if value is not None and not math.isfinite(value):  # type: ignore[arg-type]
            return None
    except TypeError:
        pass  # not a number: _as_float says so
    return _as_float(what, value, nullable=True)


def _unit_interval(what: str, value: object) -> float | None:
    number = _finite_or_none(what, value)
    if number is not None and not 0.0 <= number <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {number}")
    return number


def _not_negative(what: str, value: object) -> int:
    number = _as_int(what, value)
    if number < 0:
        raise ValueError(f"{what} must be >= 0, got {number}")
    return number


def _json_value(what: str, value: Any) -> Any:
    """``value`` unchanged, once it is known to be strict JSON (no NaN: PostgreSQL refuses it)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-able (non-finite floats must be None): {exc}") from exc
    return value


def _signal_names(what: str, names: Sequence[str]) -> list[str]:
    listed = [str(name) for name in names]
    unknown = [name for name in listed if name not in MONITOR_SIGNALS]
    if unknown:
        raise ValueError(
            f"{what} has unknown signals {', '.join(unknown)}; signals: {', '.join(MONITOR_SIGNALS)}"
        )
    if len(set(listed)) != len(listed):
        raise ValueError(f"{what} repeats a signal: {listed}")
    return listed


def _class_names(what: str, names: Sequence[Any]) -> list[str]:
    if isinstance(names, str):
        raise ValueError(f"{what} must be a list of class names, got the string {names!r}")
    return [_check_name(f"{what} class name", str(name)) for name in names]


def _signal_row(index: int, row: Mapping[str, Any]) -> MonitorSignal:
    _check_keys("signal", index, row, SIGNAL_REQUIRED, SIGNAL_OPTIONAL)
    what = f"signal row {index}"
    (signal,) = _signal_names(f"{what} signal", [row["signal"]])
    if row["side"] not in SIGNAL_SIDES:
        raise ValueError(f"{what} side must be one of {', '.join(SIGNAL_SIDES)}, got {row['side']!r}")
    return MonitorSignal(
        signal=signal,
        statistic=_finite_or_none(f"{what} statistic", row["statistic"]),
        threshold=_finite_or_none(f"{what} threshold", row["threshold"]),
        side=row["side"],
        severity=_finite_or_none(f"{what} severity", row.get("severity")),
        p_value=_unit_interval(f"{what} p_value", row.get("p_value")),
        alert=bool(row["alert"]),
        message=str(row.get("message") or ""),
        classes_moved=_class_names(f"{what} classes_moved", row.get("classes_moved") or []),
    )


# --------------------------------------------------------------------------- monitor runs


def get_monitor_run(session: Session, name: str) -> MonitorRun | None:
    """The monitor run called ``name``, or None."""
    return session.scalars(select(MonitorRun).where(MonitorRun.name == name)).one_or_none()


def require_monitor_run(session: Session, name: str) -> MonitorRun:
    """The monitor run called ``name``.

    Raises
    ------
    StoreError
        No such monitor run; the message lists the monitor runs there are.
    """
    monitor_run = get_monitor_run(session, name)
    if monitor_run is None:
        names = session.scalars(select(MonitorRun.name).order_by(MonitorRun.id)).all()
        listing = ", ".join(names) if names else "(none)"
        raise StoreError(f"no monitor run named {name!r}; monitor runs: {listing}")
    return monitor_run


def list_monitor_runs(session: Session) -> list[MonitorRun]:
    """All monitor runs, oldest first."""
    return list(session.scalars(select(MonitorRun).order_by(MonitorRun.id)))


def create_monitor_run(
    session: Session,
    *,
    name: str,
    model_version_id: int,
    reference_dataset_id: int,
    stream_dataset_id: int,
    params: Mapping[str, Any],
    window_by: str,
    window_size: int | None,
) -> MonitorRun:
    """A new monitor run of a model on a stream, against a reference.

    Parameters
    ----------
    params
        The options the run was started with (JSON-able).
    window_by
        ``'count'`` (every ``window_size`` samples) or ``'t'`` (by timestamp / batch id).
    window_size
        Samples per window: required (> 0) for ``'count'``, None or > 0 for ``'t'``.

    Raises
    ------
    ValueError
        Bad name, ``window_by`` or ``window_size``, or ``params`` that are not JSON.
    StoreError
        The name is taken (also when another writer took it first), or the model or a
        dataset does not exist.
    """
    _check_name("monitor run name", name)
    if window_by not in WINDOW_BY:
        raise ValueError(f"window_by must be one of {', '.join(WINDOW_BY)}, got {window_by!r}")
    if window_size is not None:
        window_size = _as_int("window_size", window_size)
        if window_size <= 0:
            raise ValueError(f"window_size must be > 0, got {window_size}")
    elif window_by == "count":
        raise ValueError("window_by 'count' needs a window_size")
    taken = f"monitor run {name!r} already exists; choose another run name"
    if get_monitor_run(session, name) is not None:
        raise StoreError(taken)
    if session.get(ModelVersion, model_version_id) is None:
        raise StoreError(f"no model version with id {model_version_id}")
    for role, dataset_id in (("reference", reference_dataset_id), ("stream", stream_dataset_id)):
        if session.get(Dataset, dataset_id) is None:
            raise StoreError(f"no {role} dataset with id {dataset_id}")
    monitor_run = MonitorRun(
        name=name,
        model_version_id=model_version_id,
        reference_dataset_id=reference_dataset_id,
        stream_dataset_id=stream_dataset_id,
        params=_json_value("params", dict(params)),
        window_by=window_by,
        window_size=window_size,
    )
    return _add_new(session, monitor_run, taken)


def _locked_monitor_run(session: Session, monitor_run_id: int) -> MonitorRun:
    monitor_run = session.get(MonitorRun, monitor_run_id, with_for_update=True)
    if monitor_run is None:
        raise StoreError(f"no monitor run with id {monitor_run_id}")
    return monitor_run


def set_review_run(session: Session, monitor_run_id: int, run_id: int) -> MonitorRun:
    """Record the review run that receives the monitor run's alerting windows' samples.

    Setting the same run again is a no-op.

    Raises
    ------
    StoreError
        Unknown monitor run or run, a run whose name is not the monitor run's, or a monitor
        run that already has another review run.
    """
    monitor_run = _locked_monitor_run(session, monitor_run_id)
    run = session.get(Run, run_id)
    if run is None:
        raise StoreError(f"no run with id {run_id}")
    if run.name != monitor_run.name:
        raise StoreError(
            f"the review run of monitor run {monitor_run.name!r} must have its name, "
            f"not {run.name!r}"
        )
    if monitor_run.review_run_id not in (None, run_id):
        raise StoreError(
            f"monitor run {monitor_run.name!r} already has review run {monitor_run.review_run_id}"
        )
    monitor_run.review_run_id = run_id
    session.flush()
    return monitor_run


# --------------------------------------------------------------------------- windows


def add_window(
    session: Session,
    monitor_run_id: int,
    *,
    window_index: int,
    window_key: str | None,
    first_index: int,
    last_index: int,
    n: int,
    n_errors: int,
    estimated_accuracy: float | None,
    accuracy_interval: Sequence[float | None] | None,
    true_accuracy: float | None,
    alert: bool,
    alert_signals: Sequence[str],
    classes_moved: Sequence[str],
    root_cause: str | None,
    root_cause_message: str | None,
    root_cause_detail: Mapping[str, Any] | None,
    report: Mapping[str, Any],
    samples_path: str | None,
    signals: Sequence[Mapping[str, Any]],
) -> int:
    """Store one scored window and its signal rows (one flush); bump the run's ``updated_at``.

    Parameters
    ----------
    window_index
        The window's position in the stream (0, 1, ...), unique within the run.
    window_key
        The timestamp or batch id of a ``'t'`` window (None for ``'count'`` windows).
    first_index, last_index
        The stream's source indices the window spans, inclusive.
    n, n_errors
        Samples scored, and samples that could not be read.
    estimated_accuracy, accuracy_interval, true_accuracy
        In [0, 1] or None; ``accuracy_interval`` is ``(low, high)`` or None. Non-finite
        values are stored as NULL.
    alert, alert_signals
        Whether the window alerted, and the alerting signals, most severe first (an alert may
        have no signal: an environment change alone alerts).
    classes_moved
        Class names, those of alerting signals first.
    root_cause, root_cause_message, root_cause_detail
        One of ``ROOT_CAUSES`` (or None) with its one-line message and JSON detail.
    report
        ``WindowReport.to_dict()``.
    samples_path
        The window's per-sample Parquet file, relative to the artifacts folder.
    signals
        One dict per signal with the keys ``signal, statistic, threshold, side, alert`` and
        optionally ``severity, p_value, message, classes_moved`` (class names).

    Returns
    -------
    int
        The window's id.

    Raises
    ------
    ValueError
        A bad value: unknown signal or root cause, negative count, accuracy outside [0, 1],
        an absolute ``samples_path``, a report that is not strict JSON...
    StoreError
        Unknown monitor run, or the run already has a window with this index (also when
        another writer stored it first).
    """
    window_index = _not_negative("window_index", window_index)
    if window_key is not None:
        window_key = str(window_key)
        if len(window_key) > WINDOW_KEY_LENGTH:
            raise ValueError(f"window_key is longer than {WINDOW_KEY_LENGTH} characters: {window_key!r}")
    first_index = _not_negative("first_index", first_index)
    last_index = _as_int("last_index", last_index)
    if last_index < first_index:
        raise ValueError(f"last_index {last_index} is before first_index {first_index}")
    low, high = (None, None) if accuracy_interval is None else accuracy_interval
    alert_signals = _signal_names("alert_signals", alert_signals)
    if alert_signals and not alert:
        raise ValueError(f"alert is False but signals alerted: {', '.join(alert_signals)}")
    if root_cause is not None and root_cause not in ROOT_CAUSES:
        raise ValueError(f"root_cause must be one of {', '.join(ROOT_CAUSES)}, got {root_cause!r}")
    if samples_path is not None and os.path.isabs(samples_path):
        raise ValueError(f"samples_path must be relative to the artifacts folder, got {samples_path!r}")
    signal_rows = [_signal_row(index, row) for index, row in enumerate(signals)]
    _signal_names("signals", [row.signal for row in signal_rows])  # one row per signal
    window = MonitorWindow(
        monitor_run_id=monitor_run_id,
        window_index=window_index,
        window_key=window_key,
        first_index=first_index,
        last_index=last_index,
        n=_not_negative("n", n),
        n_errors=_not_negative("n_errors", n_errors),
        estimated_accuracy=_unit_interval("estimated_accuracy", estimated_accuracy),
        accuracy_low=_unit_interval("accuracy_interval low", low),
        accuracy_high=_unit_interval("accuracy_interval high", high),
        true_accuracy=_unit_interval("true_accuracy", true_accuracy),
        alert=bool(alert),
        alert_signals=alert_signals,
        classes_moved=_class_names("classes_moved", classes_moved),
        root_cause=root_cause,
        root_cause_message=None if root_cause_message is None else str(root_cause_message),
        root_cause_detail=_json_value(
            "root_cause_detail", None if root_cause_detail is None else dict(root_cause_detail)
        ),
        report=_json_value("report", dict(report)),
        samples_path=None if samples_path is None else str(samples_path),
        signals=signal_rows,
    )
    monitor_run = _locked_monitor_run(session, monitor_run_id)
    taken = (
        f"monitor run {monitor_run.name!r} already has window {window_index}; "
        "a window is stored once (resume after the scored_windows)"
    )
    stored = select(MonitorWindow.id).where(
        MonitorWindow.monitor_run_id == monitor_run_id, MonitorWindow.window_index == window_index
    )
    if session.scalar(stored) is not None:
        raise StoreError(taken)
    monitor_run.updated_at = _utcnow()
    return _add_new(session, window, taken).id


def scored_windows(session: Session, monitor_run_id: int) -> dict[int, str | None]:
    """The windows a monitor run has stored, ``window_index -> window_key`` (to resume it)."""
    rows = session.execute(
        select(MonitorWindow.window_index, MonitorWindow.window_key).where(
            MonitorWindow.monitor_run_id == monitor_run_id
        )
    )
    return {window_index: window_key for window_index, window_key in rows}


def list_windows(session: Session, monitor_run_id: int) -> list[MonitorWindow]:
    """A monitor run's windows by index."""
    return list(
        session.scalars(
            select(MonitorWindow)
            .where(MonitorWindow.monitor_run_id == monitor_run_id)
            .order_by(MonitorWindow.window_index)
        )
    )


def alerting_windows(session: Session, monitor_run_id: int) -> list[MonitorWindow]:
    """A monitor run's windows that alerted, by index."""
    return list(
        session.scalars(
            select(MonitorWindow)
            .where(MonitorWindow.monitor_run_id == monitor_run_id, MonitorWindow.alert.is_(True))
            .order_by(MonitorWindow.window_index)
        )
    )


SIGNAL_ORDER = case(
    {signal: position for position, signal in enumerate(MONITOR_SIGNALS)},
    value=MonitorSignal.signal,
)
"""Signals sort in ``MONITOR_SIGNALS`` order (per-class canary signals first)."""


def signal_timeline(session: Session, monitor_run_id: int) -> list[Row[Any]]:
    """Every signal of every window of a monitor run, for plotting a signal over time.

    Returns
    -------
    list of Row
        ``(window_index, signal, statistic, threshold, side, severity, alert, classes_moved)``
        by window index, then signal in ``MONITOR_SIGNALS`` order.
    """
    return list(
        session.execute(
            select(
                MonitorWindow.window_index,
                MonitorSignal.signal,
                MonitorSignal.statistic,
                MonitorSignal.threshold,
                MonitorSignal.side,
                MonitorSignal.severity,
                MonitorSignal.alert,
                MonitorSignal.classes_moved,
            )
            .join(MonitorWindow, MonitorWindow.id == MonitorSignal.window_id)
            .where(MonitorWindow.monitor_run_id == monitor_run_id)
            .order_by(MonitorWindow.window_index, SIGNAL_ORDER)
        )
    )


def window_candidate_ids(session: Session, window_id: int) -> list[int]:
    """The ids of the candidates that came from one monitoring window, by rank."""
    return list(
        session.scalars(
            select(Candidate.id)
            .where(Candidate.monitor_window_id == window_id)
            .order_by(Candidate.rank)
        )
    )

