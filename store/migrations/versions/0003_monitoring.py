"""Production monitoring: monitor runs, their scored windows and each window's signals.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-12

``monitor_runs`` (one per monitored stream), ``monitor_windows`` (one per scored window, the
whole report as JSON) and ``monitor_signals`` (one per signal of a window); candidates gain
``monitor_window_id``, the window a monitoring candidate came from (SQLite through a batch
copy of the table, which rebuilds the candidates' partial queue indexes as they were).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the constraints' values as of this revision (not the vocabulary's: a migration is frozen)
SIGNALS = (
    "signal IN ('integrity', 'confidence', 'cluster_health', 'accuracy', 'ood', 'label_shift', "
    "'embedding_drift', 'output_drift')"
)
ROOT_CAUSES = "root_cause IN ('environment', 'pipeline', 'transform', 'rare', 'none')"
ACCURACIES = ("estimated_accuracy", "accuracy_low", "accuracy_high", "true_accuracy")

def _created_at(name: str = "created_at") -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    """Create the monitoring tables and ``candidates.monitor_window_id``."""
    op.create_table(
        "monitor_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("reference_dataset_id", sa.Integer(), nullable=False),
        sa.Column("stream_dataset_id", sa.Integer(), nullable=False),
        sa.Column("review_run_id", sa.Integer(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("window_by", sa.String(length=8), nullable=False),
        sa.Column("window_size", sa.Integer(), nullable=True),
        _created_at(),
        _created_at("updated_at"),
        sa.CheckConstraint("window_by IN ('count', 't')", name=op.f("ck_monitor_runs_window_by")),
        sa.CheckConstraint(
            "window_size IS NULL OR window_size > 0",
            name=op.f("ck_monitor_runs_window_size_positive"),
        ),
        sa.CheckConstraint(
            "window_by <> 'count' OR window_size IS NOT NULL",
            name=op.f("ck_monitor_runs_count_has_window_size"),
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_monitor_runs_model_version_id_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["reference_dataset_id"],
            ["datasets.id"],
            name=op.f("fk_monitor_runs_reference_dataset_id_datasets"),
        ),
        sa.ForeignKeyConstraint(
            ["stream_dataset_id"],
            ["datasets.id"],
            name=op.f("fk_monitor_runs_stream_dataset_id_datasets"),
        ),
        sa.ForeignKeyConstraint(
            ["review_run_id"], ["runs.id"], name=op.f("fk_monitor_runs_review_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_runs")),
        sa.UniqueConstraint("name", name=op.f("uq_monitor_runs_name")),
    )
    op.create_table(
        "monitor_windows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("monitor_run_id", sa.Integer(), nullable=False),
        sa.Column("window_index", sa.Integer(), nullable=False),
        sa.Column("window_key", sa.String(length=64), nullable=True),
        sa.Column("first_index", sa.Integer(), nullable=False),
        sa.Column("last_index", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("n_errors", sa.Integer(), server_default=sa.text("0"), nullable=False),
        *(sa.Column(column, sa.Float(), nullable=True) for column in ACCURACIES),
        sa.Column("alert", sa.Boolean(), nullable=False),
        sa.Column("alert_signals", sa.JSON(), nullable=False),
        sa.Column("classes_moved", sa.JSON(), nullable=False),
        sa.Column("root_cause", sa.String(length=16), nullable=True),
        sa.Column("root_cause_message", sa.Text(), nullable=True),
        sa.Column("root_cause_detail", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("samples_path", sa.Text(), nullable=True),
        _created_at(),
        sa.CheckConstraint(
            "window_index >= 0", name=op.f("ck_monitor_windows_window_index_not_negative")
        ),
        sa.CheckConstraint(
            "first_index >= 0 AND last_index >= first_index",
            name=op.f("ck_monitor_windows_index_range_valid"),
        ),
        sa.CheckConstraint(
            "n >= 0 AND n_errors >= 0", name=op.f("ck_monitor_windows_counts_not_negative")
        ),
        sa.CheckConstraint(ROOT_CAUSES, name=op.f("ck_monitor_windows_root_cause")),
        *(
            sa.CheckConstraint(
                f"{column} IS NULL OR ({column} >= 0 AND {column} <= 1)",
                name=op.f(f"ck_monitor_windows_{column}_within_0_1"),
            )
            for column in ACCURACIES
        ),
        sa.ForeignKeyConstraint(
            ["monitor_run_id"],
            ["monitor_runs.id"],
            name=op.f("fk_monitor_windows_monitor_run_id_monitor_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_windows")),
        sa.UniqueConstraint(
            "monitor_run_id",
            "window_index",
            name=op.f("uq_monitor_windows_monitor_run_id_window_index"),
        ),
    )
    op.create_index(
        op.f("ix_monitor_windows_monitor_run_id"), "monitor_windows", ["monitor_run_id"]
    )
    op.create_table(
        "monitor_signals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("window_id", sa.Integer(), nullable=False),
        sa.Column("signal", sa.String(length=32), nullable=False),
        sa.Column("statistic", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("severity", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("alert", sa.Boolean(), nullable=False),
        sa.Column("message", sa.Text(), server_default="", nullable=False),
        sa.Column("classes_moved", sa.JSON(), nullable=False),
        sa.CheckConstraint(SIGNALS, name=op.f("ck_monitor_signals_signal")),
        sa.CheckConstraint("side IN ('above', 'below')", name=op.f("ck_monitor_signals_side")),
        sa.ForeignKeyConstraint(
            ["window_id"],
            ["monitor_windows.id"],
            name=op.f("fk_monitor_signals_window_id_monitor_windows"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_signals")),
        sa.UniqueConstraint("window_id", "signal", name=op.f("uq_monitor_signals_window_id_signal")),
    )
    with op.batch_alter_table("candidates") as batch:
        batch.add_column(sa.Column("monitor_window_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_candidates_monitor_window_id_monitor_windows"),
            "monitor_windows",
            ["monitor_window_id"],
            ["id"],
        )
    op.create_index(op.f("ix_candidates_monitor_window_id"), "candidates", ["monitor_window_id"])


def downgrade() -> None:
    """Drop ``candidates.monitor_window_id`` and the monitoring tables."""
    op.drop_index(op.f("ix_candidates_monitor_window_id"), table_name="candidates")
    with op.batch_alter_table("candidates") as batch:
        batch.drop_constraint(
            op.f("fk_candidates_monitor_window_id_monitor_windows"), type_="foreignkey"
        )
        batch.drop_column("monitor_window_id")
    op.drop_table("monitor_signals")
    op.drop_index(op.f("ix_monitor_windows_monitor_run_id"), table_name="monitor_windows")
    op.drop_table("monitor_windows")
    op.drop_table("monitor_runs")
