"""Bulk review batches and the run's 2-D map: ``review_batches``, ``reviews.batch_id``,
``run_projections`` and ``scores.map_x`` / ``scores.map_y``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

A lead's bulk decision is one ``review_batches`` row and one review per candidate naming it
(``reviews.batch_id``, added through a batch copy of the table on SQLite so it carries its
foreign key); an undo is a second batch naming the first. ``run_projections`` records how a
run's map was computed; the coordinates are two nullable columns of ``scores`` (a plain
``ADD COLUMN``: the scores table, the largest, is not copied).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the constraints' values as of this revision (not the vocabulary's: a migration is frozen)
ACTIONS = "action IN ('decide', 'adjudicate', 'undo')"
UNDO_NAMES_ITS_BATCH = (
    "(action = 'undo' AND undoes_batch_id IS NOT NULL) OR (action <> 'undo' AND undoes_batch_id IS NULL)"
)
METHODS = "method IN ('pca', 'tsne')"
COUNTS = "n_points >= 0 AND n_fitted >= 0 AND n_fitted <= n_points"


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    """Create ``review_batches`` and ``run_projections``; add ``reviews.batch_id`` and the map columns."""
    op.create_table(
        "review_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("undoes_batch_id", sa.Integer(), nullable=True),
        _created_at(),
        sa.CheckConstraint(ACTIONS, name=op.f("ck_review_batches_action")),
        sa.CheckConstraint(UNDO_NAMES_ITS_BATCH, name=op.f("ck_review_batches_undo_names_its_batch")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_review_batches_run_id_runs")),
        sa.ForeignKeyConstraint(
            ["undoes_batch_id"],
            ["review_batches.id"],
            name=op.f("fk_review_batches_undoes_batch_id_review_batches"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_batches")),
        sa.UniqueConstraint("undoes_batch_id", name=op.f("uq_review_batches_undoes_batch_id")),
    )
    op.create_index(op.f("ix_review_batches_run_id"), "review_batches", ["run_id"])
    op.create_table(
        "run_projections",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("n_points", sa.Integer(), nullable=False),
        sa.Column("n_fitted", sa.Integer(), nullable=False),
        _created_at(),
        sa.CheckConstraint(METHODS, name=op.f("ck_run_projections_method")),
        sa.CheckConstraint(COUNTS, name=op.f("ck_run_projections_counts_valid")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_projections_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_projections")),
    )
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("batch_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_reviews_batch_id_review_batches"), "review_batches", ["batch_id"], ["id"]
        )
    op.create_index(op.f("ix_reviews_batch_id"), "reviews", ["batch_id"])
    op.add_column("scores", sa.Column("map_x", sa.Float(), nullable=True))
    op.add_column("scores", sa.Column("map_y", sa.Float(), nullable=True))


def downgrade() -> None:
    """Drop the map columns, ``reviews.batch_id``, ``run_projections`` and ``review_batches``."""
    with op.batch_alter_table("scores") as batch:
        batch.drop_column("map_y")
        batch.drop_column("map_x")
    op.drop_index(op.f("ix_reviews_batch_id"), table_name="reviews")
    with op.batch_alter_table("reviews") as batch:
        batch.drop_constraint(op.f("fk_reviews_batch_id_review_batches"), type_="foreignkey")
        batch.drop_column("batch_id")
    op.drop_table("run_projections")
    op.drop_index(op.f("ix_review_batches_run_id"), table_name="review_batches")
    op.drop_table("review_batches")
