"""Run stages: a run records the stage it reached (scored: suggestion comes next) and why it failed.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05

The status constraint is rebuilt with the new stages (SQLite through a batch copy of the
table); ``failure`` holds the one-line reason of a failed run.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the constraint's values as of this revision (not the vocabulary's: a migration is frozen)
STAGES = "status IN ('running', 'scored', 'done', 'failed')"
BEFORE = "status IN ('running', 'done', 'failed')"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint(op.f("ck_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_runs_status"), STAGES)
        batch.add_column(sa.Column("failure", sa.Text(), nullable=True))


def downgrade() -> None:
    op.execute("UPDATE runs SET status = 'running' WHERE status = 'scored'")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("failure")
        batch.drop_constraint(op.f("ck_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_runs_status"), BEFORE)
