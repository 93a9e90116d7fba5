"""Datasets and their samples, model versions, and mining runs with their status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from hardcase.miner.vocabulary import RUN_STATUSES
from hardcase.store._rows import (
    _add_new,
    _as_int,
    _check_name,
    _chunks,
    _executemany,
    _get_or_insert,
)
from hardcase.store.candidates import delete_candidates
from hardcase.store.errors import StoreError
from hardcase.store.schema import (
    Dataset,
    ModelVersion,
    MonitorRun,
    ReviewBatch,
    Run,
    RunError,
    RunProjection,
    Sample,
    Score,
)


def get_or_create_dataset(
    session: Session,
    *,
    name: str,
    uri: str,
    kind: str,
    class_names: Sequence[str] | None,
    n_samples: int,
) -> Dataset:
    """The dataset called ``name``, created if new.

    Safe when several processes create the same dataset at once. An existing
    dataset must have the same kind, class names and size (its stored ``uri``
    is kept: the same data may be mounted elsewhere).

    Raises
    ------
    StoreError
        The name is taken by a dataset with different kind, classes or size.
    """
    _check_name("dataset name", name)
    names = [str(class_name) for class_name in class_names] if class_names is not None else None
    n_samples = _as_int("n_samples", n_samples)
    dataset = _get_or_insert(
        session,
        Dataset,
        "name",
        {"name": name, "uri": str(uri), "kind": str(kind), "class_names": names, "n_samples": n_samples},
    )
    for field, given in (("kind", kind), ("class_names", names), ("n_samples", n_samples)):
        stored = getattr(dataset, field)
        if stored != given:
            raise StoreError(
                f"dataset {name!r} already exists with {field} {stored!r}, not {given!r}; "
                "use another dataset name"
            )
    return dataset


def grow_dataset(session: Session, dataset_id: int, n_samples: int) -> Dataset:
    """Record that a stream dataset grew to ``n_samples`` rows (a monitored stream appends).

    Raises
    ------
    StoreError
        The dataset is unknown or would shrink: rows already stored would no longer exist.
    """
    n_samples = _as_int("n_samples", n_samples)
    dataset = session.get(Dataset, dataset_id, with_for_update=True)
    if dataset is None:
        raise StoreError(f"no dataset with id {dataset_id}")
    if n_samples < dataset.n_samples:
        raise StoreError(
            f"dataset {dataset.name!r} had {dataset.n_samples} samples and now has {n_samples}: "
            "a monitored stream may only grow; monitor the new data under another --run"
        )
    dataset.n_samples = n_samples
    return dataset


def get_dataset(session: Session, name: str) -> Dataset | None:
    """The dataset called ``name``, or None."""
    return session.scalars(select(Dataset).where(Dataset.name == name)).one_or_none()


def upsert_samples(
    session: Session,
    dataset_id: int,
    *,
    source_index: Sequence[int],
    content_hash: Sequence[str],
    uri: Sequence[str | None] | None,
    given_label: Sequence[str | None] | None,
    timestamp: Sequence[str | None] | None = None,
) -> list[int]:
    """Insert the samples that are new and return every sample's id.

    Columns are given as parallel sequences (``None`` for a column means all
    NULL). Inserting again is a no-op, so an interrupted import can resume.

    Returns
    -------
    list[int]
        Sample ids in the order of ``source_index``.

    Raises
    ------
    ValueError
        Sequences of different lengths or a repeated source index.
    StoreError
        A stored sample at the same source index has a different content hash.
    """
    indices = [_as_int("source_index", value) for value in source_index]
    count = len(indices)
    optional_columns = {"uri": uri, "given_label": given_label, "timestamp": timestamp}
    for what, values in {"content_hash": content_hash, **optional_columns}.items():
        if values is not None and len(values) != count:
            raise ValueError(f"{what} has {len(values)} values for {count} source indices")
    if len(set(indices)) != count:
        raise ValueError("source_index contains repeated values")
    hashes = [str(value) for value in content_hash]
    # driver-level executemany over tuples (mining inserts every sample of the pool)
    statement = (
        f"INSERT INTO {Sample.__table__.name} (dataset_id, source_index, content_hash, uri, given_label, "
        "timestamp) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (dataset_id, source_index) DO NOTHING"
    )
    # Work through the rows in source-index order, so that each chunk's ids can be
    # read back with one index range scan (a long IN list makes PostgreSQL fall
    # back to a sequential scan while the new table has no statistics yet).
    order = sorted(range(count), key=indices.__getitem__)
    sample_ids: list[int] = [0] * count
    texts = [[None] * count if values is None else [None if v is None else str(v) for v in values]
             for values in optional_columns.values()]  # uri, given_label, timestamp
    for chunk in _chunks(count):
        positions = [order[rank] for rank in chunk]
        columns = [[column[position] for position in positions] for column in (indices, hashes, *texts)]
        _executemany(session, statement, list(zip([dataset_id] * len(positions), *columns)))
        wanted = columns[0]  # the chunk's source indices, ascending
        lowest, highest = wanted[0], wanted[-1]
        if highest - lowest < 4 * len(wanted):
            in_chunk = Sample.source_index.between(lowest, highest)
        else:  # sparse indices: a range would read too many unrelated rows
            in_chunk = Sample.source_index.in_(wanted)
        # Core rows unpacked as tuples: ORM row loading cost more than the insert itself
        stored = {
            source_index: (sample_id, stored_hash)
            for source_index, sample_id, stored_hash in session.connection().execute(
                select(Sample.source_index, Sample.id, Sample.content_hash).where(
                    Sample.dataset_id == dataset_id, in_chunk
                )
            ).all()
        }
        for position in positions:
            sample_id, stored_hash = stored[indices[position]]
            if stored_hash != hashes[position]:
                raise StoreError(
                    f"sample {indices[position]} of dataset {dataset_id} changed: stored hash "
                    f"{stored_hash}, now {hashes[position]}; register the data as a new dataset"
                )
            sample_ids[position] = sample_id
    return sample_ids


def register_model(
    session: Session,
    *,
    name: str,
    path: str,
    file_hash: str,
    spec: Mapping[str, Any],
    class_names: Sequence[str],
) -> ModelVersion:
    """The model version with ``file_hash``, registered if new.

    Raises
    ------
    StoreError
        The same file was registered with different class names.
    """
    _check_name("model name", name)
    names = [str(class_name) for class_name in class_names]
    model = _get_or_insert(
        session,
        ModelVersion,
        "file_hash",
        {"name": name, "path": str(path), "file_hash": file_hash, "spec": dict(spec), "class_names": names},
    )
    if model.class_names != names:
        raise StoreError(
            f"model file {file_hash} is registered with class names {model.class_names!r}, "
            f"not {names!r}"
        )
    return model


def create_run(
    session: Session,
    *,
    name: str,
    dataset_id: int,
    model_version_id: int,
    params: Mapping[str, Any],
    embeddings_path: str | None = None,
) -> Run:
    """A new mining run in status ``running``.

    Raises
    ------
    StoreError
        The name is taken, or the dataset or model does not exist.
    """
    _check_name("run name", name)
    taken = f"run {name!r} already exists; choose another run name"
    if get_run(session, name) is not None:
        raise StoreError(taken)
    if session.get(Dataset, dataset_id) is None:
        raise StoreError(f"no dataset with id {dataset_id}")
    if session.get(ModelVersion, model_version_id) is None:
        raise StoreError(f"no model version with id {model_version_id}")
    run = Run(
        name=name,
        dataset_id=dataset_id,
        model_version_id=model_version_id,
        params=dict(params),
        status="running",
        n_total=0,
        n_scored=0,
        n_errors=0,
        embeddings_path=embeddings_path,
    )
    return _add_new(session, run, taken)


def get_run(session: Session, name: str) -> Run | None:
    """The run called ``name``, or None."""
    return session.scalars(select(Run).where(Run.name == name)).one_or_none()


def require_run(session: Session, name: str) -> Run:
    """The run called ``name``.

    Raises
    ------
    StoreError
        No such run; the message lists the runs there are.
    """
    run = get_run(session, name)
    if run is None:
        names = session.scalars(select(Run.name).order_by(Run.id)).all()
        listing = ", ".join(names) if names else "(none)"
        raise StoreError(f"no run named {name!r}; runs: {listing}")
    return run


def model_version(session: Session, run: Run) -> ModelVersion:
    """The model version ``run`` was mined with.

    The one way to reach a run's model: its file (``path``, ``file_hash``), its preprocessing
    ``spec`` and its ``class_names`` in output order.

    Parameters
    ----------
    run
        A run read in this session (e.g. by :func:`require_run`).

    Returns
    -------
    ModelVersion
        Never None: a run's foreign key keeps its model version.
    """
    return session.get(ModelVersion, run.model_version_id)


def list_runs(session: Session) -> list[Run]:
    """All runs, oldest first."""
    return list(session.scalars(select(Run).order_by(Run.id)))


def delete_run(session: Session, name: str) -> None:
    """Remove a mining run that nobody has judged yet: its scores, error rows, candidates (and
    their leases, :func:`~hardcase.store.candidates.delete_candidates`), map and the run
    itself, so the name can be mined again from scratch.

    Reviews are never deleted: a run with any review, or one a monitor routes its samples to,
    is refused.

    Raises
    ------
    StoreError
        No such run, or it has reviews or a monitor.
    """
    run = require_run(session, name)
    if session.scalar(select(func.count()).select_from(MonitorRun).where(MonitorRun.review_run_id == run.id)):
        raise StoreError(f"run {name!r} receives a monitor's samples and cannot be replaced; mine under another --run name")
    try:
        delete_candidates(session, run.id)  # refuses a run with reviews: they are never deleted
    except StoreError as exc:
        raise StoreError(f"cannot replace run {name!r}: {exc}; mine under another --run name") from None
    for statement in (
        delete(ReviewBatch).where(ReviewBatch.run_id == run.id),
        delete(Score).where(Score.run_id == run.id),
        delete(RunError).where(RunError.run_id == run.id),
        delete(RunProjection).where(RunProjection.run_id == run.id),
        delete(Run).where(Run.id == run.id),
    ):
        session.execute(statement, execution_options={"synchronize_session": False})
    session.expunge_all()


def set_run_status(
    session: Session,
    run_id: int,
    status: str,
    *,
    n_total: int | None = None,
    n_scored: int | None = None,
    n_errors: int | None = None,
    failure: str | None = None,
) -> Run:
    """Record a run's status and counts; ``done``/``failed`` also set ``finished_at``.

    ``failure`` is the reason of a ``failed`` run (cleared by any other status).
    """
    if status not in RUN_STATUSES:
        raise ValueError(f"run status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
    run = session.get(Run, run_id)
    if run is None:
        raise StoreError(f"no run with id {run_id}")
    values: dict[str, Any] = {"status": status}
    for field, value in (("n_total", n_total), ("n_scored", n_scored), ("n_errors", n_errors)):
        if value is not None:
            values[field] = _as_int(field, value)
    values["finished_at"] = func.now() if status in ("done", "failed") else None
    values["failure"] = (failure or "unknown error")[:2000] if status == "failed" else None
    session.execute(
        update(Run).where(Run.id == run_id).values(**values),
        execution_options={"synchronize_session": False},
    )
    session.refresh(run)
    return run
