"""A run's 2-D map of its embeddings: one place per scored sample (``scores.map_x``/``map_y``)
and how it was computed (``run_projections``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from hardcase.store._rows import _chunks
from hardcase.store.schema import PROJECTION_METHODS, RunProjection, Sample, Score


class MapPoints(NamedTuple):
    """Every scored sample of a run that has a place on its map.

    ``sample_id`` int64 (n,), ``xy`` float64 (n, 2), ``label`` the given label (None where
    the sample has none) and ``predicted`` the predicted label, both object arrays (n,).
    """

    sample_id: np.ndarray
    xy: np.ndarray
    label: np.ndarray
    predicted: np.ndarray


def set_projection(
    session: Session,
    run_id: int,
    *,
    sample_id: Sequence[int],
    xy: np.ndarray,
    method: str,
    n_fitted: int,
) -> None:
    """Store the map places of a run's scored samples and how they were found (replacing any earlier map).

    Parameters
    ----------
    sample_id
        Scored samples of the run, shape (n,).
    xy
        Their places, shape (n, 2), finite.
    method
        One of ``PROJECTION_METHODS``.
    n_fitted
        How many of the n the 2-D embedding was fitted on (the others placed by neighbours).

    Raises
    ------
    ValueError
        Unknown method, shapes that do not match, non-finite places, a bad ``n_fitted``.
    """
    if method not in PROJECTION_METHODS:
        raise ValueError(f"method must be one of {', '.join(PROJECTION_METHODS)}, got {method!r}")
    ids = np.asarray(sample_id, dtype=np.int64)
    places = np.asarray(xy, dtype=np.float64)
    if places.shape != (len(ids), 2):
        raise ValueError(f"xy has shape {places.shape}, expected ({len(ids)}, 2)")
    if not np.isfinite(places).all():
        raise ValueError(f"xy is not finite at row {int(np.argmin(np.isfinite(places).all(axis=1)))}")
    if not 0 <= int(n_fitted) <= len(ids):
        raise ValueError(f"n_fitted must be within 0..{len(ids)}, got {n_fitted!r}")
    table = Score.__table__
    statement = (
        update(table)
        .where(table.c.run_id == bindparam("run"), table.c.sample_id == bindparam("sample"))
        .values(map_x=bindparam("x"), map_y=bindparam("y"))
    )
    for chunk in _chunks(len(ids)):
        session.execute(
            statement,
            [{"run": run_id, "sample": int(ids[i]), "x": float(places[i, 0]), "y": float(places[i, 1])}
             for i in range(chunk.start, chunk.stop)],
        )
    session.execute(delete(RunProjection).where(RunProjection.run_id == run_id))
    session.add(RunProjection(run_id=run_id, method=method, n_points=len(ids), n_fitted=int(n_fitted)))
    session.flush()


def get_projection(session: Session, run_id: int) -> RunProjection | None:
    """How the run's map was computed, or None when it has none yet."""
    return session.get(RunProjection, run_id)


def map_points(session: Session, run_id: int) -> MapPoints:
    """The scored samples of a run with a place on its map, by sample id."""
    rows = session.execute(
        select(Score.sample_id, Score.map_x, Score.map_y, Sample.given_label, Score.predicted_label)
        .join(Sample, Sample.id == Score.sample_id)
        .where(Score.run_id == run_id, Score.map_x.is_not(None))
        .order_by(Score.sample_id)
    ).all()
    if not rows:
        empty = np.empty(0, dtype=object)
        return MapPoints(np.empty(0, dtype=np.int64), np.empty((0, 2)), empty, empty.copy())
    sample_ids, xs, ys, labels, predicted = zip(*rows)
    return MapPoints(
        np.asarray(sample_ids, dtype=np.int64),
        np.column_stack([np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)]),
        np.asarray(labels, dtype=object),
        np.asarray(predicted, dtype=object),
    )
