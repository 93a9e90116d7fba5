"""Store functions used by the workflows and the review app, re-exported from one module per entity.

- :mod:`~hardcase.store.runs`: datasets and samples, model versions, runs;
- :mod:`~hardcase.store.scores`: per-sample scores and unreadable rows;
- :mod:`~hardcase.store.candidates`: candidates, their suggestions, the review page's view;
- :mod:`~hardcase.store.queue`: which candidate a reviewer sees next (leases);
- :mod:`~hardcase.store.reviews`: append-only reviews, undo, conflicts, progress, triage counts;
- :mod:`~hardcase.store.users`: accounts and roles;
- :mod:`~hardcase.store.monitoring`: monitor runs, their scored windows and signals;
- :mod:`~hardcase.store.projections`: a run's 2-D map of its embeddings.

Every function takes the session first and runs inside the caller's unit of
work::

    with store.Session.begin() as session:
        result = submit_review(session, candidate_id, reviewer="ana", cause="rare",
                               seen_version=view.version)

Read-only work (rendering a page, counting) can use ``store.snapshot()``
instead, which does not take SQLite's write lock.

Review history is append-only. ``submit_review`` locks the candidate row,
appends the review and bumps the candidate's version in one transaction; a
review based on an outdated version is stored *and* flagged as a conflict.
``undo_last_review`` appends a retraction instead of deleting anything.

Bad arguments raise ``ValueError``; problems with the stored state (unknown
run, duplicate name, changed dataset...) raise ``store.errors.StoreError``.
"""

from __future__ import annotations

from hardcase.store._rows import CHUNK_ROWS, PNG_MAGIC
from hardcase.store.candidates import (
    CANDIDATE_OPTIONAL,
    CANDIDATE_REQUIRED,
    CANDIDATE_VIEW_QUERY,
    HISTORY_QUERY,
    HISTORY_ROWS_QUERY,
    CandidateView,
    add_candidates,
    delete_candidates,
    effective_reviews,
    get_candidate,
    set_suggestions,
)
from hardcase.store.monitoring import (
    SIGNAL_OPTIONAL,
    SIGNAL_REQUIRED,
    add_window,
    alerting_windows,
    create_monitor_run,
    get_monitor_run,
    list_monitor_runs,
    list_windows,
    require_monitor_run,
    scored_windows,
    set_review_run,
    signal_timeline,
    window_candidate_ids,
)
from hardcase.store.projections import (
    MapPoints,
    get_projection,
    map_points,
    set_projection,
)
from hardcase.store.queue import (
    DEFAULT_LEASE_SECONDS,
    RELEASE_LEASE,
    REVIEW_STATUSES,
    candidate_queue_query,
    next_candidate,
    previous_candidate,
    release_lease,
)
from hardcase.store.reviews import (
    INSERT_REVIEW,
    LOCK_CANDIDATE_QUERY,
    BatchResult,
    BatchSummary,
    OtherReview,
    ReviewResult,
    latest_decided_candidate,
    list_batches,
    review_progress,
    reviews_for,
    submit_batch,
    submit_review,
    triage_counts,
    triage_query,
    undo_batch,
    undo_last_review,
)
from hardcase.store.runs import (
    create_run,
    delete_run,
    get_dataset,
    get_or_create_dataset,
    get_run,
    grow_dataset,
    list_runs,
    model_version,
    register_model,
    require_run,
    set_run_status,
    upsert_samples,
)
from hardcase.store.scores import (
    ERROR_OPTIONAL,
    ERROR_REQUIRED,
    SCORE_OPTIONAL,
    SCORE_REQUIRED,
    add_errors,
    add_score_columns,
    add_scores,
    count_scores,
    scored_sample_ids,
    update_score_column,
)
from hardcase.store.users import (
    add_user,
    get_user,
    list_users,
)

__all__ = [
    "CANDIDATE_OPTIONAL",
    "CANDIDATE_REQUIRED",
    "CANDIDATE_VIEW_QUERY",
    "CHUNK_ROWS",
    "CandidateView",
    "DEFAULT_LEASE_SECONDS",
    "ERROR_OPTIONAL",
    "ERROR_REQUIRED",
    "HISTORY_QUERY",
    "HISTORY_ROWS_QUERY",
    "BatchResult",
    "BatchSummary",
    "INSERT_REVIEW",
    "LOCK_CANDIDATE_QUERY",
    "MapPoints",
    "OtherReview",
    "PNG_MAGIC",
    "RELEASE_LEASE",
    "REVIEW_STATUSES",
    "ReviewResult",
    "SCORE_OPTIONAL",
    "SCORE_REQUIRED",
    "SIGNAL_OPTIONAL",
    "SIGNAL_REQUIRED",
    "add_candidates",
    "add_errors",
    "add_score_columns",
    "add_scores",
    "add_user",
    "add_window",
    "alerting_windows",
    "candidate_queue_query",
    "count_scores",
    "create_monitor_run",
    "create_run",
    "delete_run",
    "delete_candidates",
    "effective_reviews",
    "get_candidate",
    "get_dataset",
    "get_monitor_run",
    "get_projection",
    "get_or_create_dataset",
    "get_run",
    "get_user",
    "grow_dataset",
    "latest_decided_candidate",
    "list_batches",
    "list_monitor_runs",
    "list_runs",
    "list_users",
    "list_windows",
    "map_points",
    "model_version",
    "next_candidate",
    "previous_candidate",
    "register_model",
    "release_lease",
    "require_monitor_run",
    "require_run",
    "review_progress",
    "reviews_for",
    "scored_sample_ids",
    "scored_windows",
    "set_projection",
    "set_review_run",
    "set_run_status",
    "set_suggestions",
    "signal_timeline",
    "submit_batch",
    "submit_review",
    "triage_counts",
    "triage_query",
    "undo_batch",
    "undo_last_review",
    "update_score_column",
    "upsert_samples",
    "window_candidate_ids",
]
