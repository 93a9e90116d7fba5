"""Persistence: SQLAlchemy 2 models, sessions, Alembic migrations, exports.

- ``api``: the facade callers import (``from hardcase.store import api``), re-exporting the
  entity modules below;
- ``runs``: datasets and samples, model versions, runs (``model_version`` reaches a run's model);
- ``scores``: per-sample scores and unreadable rows;
- ``candidates``: candidates, their cause suggestions, the review page's view;
- ``queue``: which candidate a reviewer sees next, held by a lease;
- ``reviews``: append-only reviews, undo, conflicts, progress and triage counts;
- ``users``: accounts and roles;
- ``_rows``: the row checks and bulk-insert helpers those modules share;
- ``schema``: the tables; ``db``: opening a database, migrating it (``migrations``);
- ``export``: a run's exports as CSV, JSONL or Parquet; ``errors``: ``StoreError``.

Of the rest of hardcase the store imports only ``hardcase.miner.vocabulary``.
"""
