"""Initial schema: DAGs, runs, task instances, tries, XComs, import errors, audit log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written by hand and frozen: it spells out plain column types (naive DateTime for UTCDateTime)
instead of importing flow.daemon.models, so later model changes cannot alter what this does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = 250


def _ts(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=False), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "dag",
        sa.Column("dag_id", sa.String(ID), primary_key=True),
        sa.Column("fileloc", sa.Text, nullable=False),
        sa.Column("is_paused", sa.Boolean, nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("serialized", sa.JSON, nullable=False),
        sa.Column("schedule", sa.String, nullable=True),
        sa.Column("timezone", sa.String, nullable=False),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        _ts("next_dagrun", True),
        _ts("first_seen", False),
        _ts("last_parsed", False),
    )
    op.create_table(
        "dag_run",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "dag_id", sa.String(ID), sa.ForeignKey("dag.dag_id", name="fk_dag_run_dag"), nullable=False
        ),
        sa.Column("run_id", sa.String(ID), nullable=False),
        sa.Column("run_type", sa.String(20), nullable=False),
        _ts("logical_date", False),
        _ts("data_interval_start", False),
        _ts("data_interval_end", False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("conf", sa.JSON, nullable=False),
        _ts("queued_at", False),
        _ts("start_date", True),
        _ts("end_date", True),
        sa.UniqueConstraint("dag_id", "run_id", name="uq_dag_run_dag_id_run_id"),
    )
    op.create_index("ix_dag_run_dag_id_logical_date", "dag_run", ["dag_id", "logical_date", "id"])
    op.create_index(
        "ix_dag_run_dag_id_run_type_logical_date", "dag_run", ["dag_id", "run_type", "logical_date"]
    )
    op.create_index("ix_dag_run_state", "dag_run", ["state"])

    op.create_table(
        "task_instance",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "dag_run_id",
            sa.Integer,
            sa.ForeignKey("dag_run.id", name="fk_task_instance_dag_run", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("dag_id", sa.String(ID), nullable=False),
        sa.Column("task_id", sa.String(ID), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("try_number", sa.Integer, nullable=False),
        sa.Column("max_tries", sa.Integer, nullable=False),
        sa.Column("priority_weight", sa.Integer, nullable=False),
        sa.Column("operator", sa.String, nullable=False),
        _ts("queued_at", True),
        _ts("start_date", True),
        _ts("end_date", True),
        sa.Column("duration", sa.Float, nullable=True),
        sa.Column("hostname", sa.String, nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        _ts("next_retry_at", True),
        sa.UniqueConstraint("dag_run_id", "task_id", name="uq_task_instance_dag_run_id_task_id"),
    )
    op.create_index("ix_task_instance_dag_id_task_id", "task_instance", ["dag_id", "task_id"])
    op.create_index("ix_task_instance_state", "task_instance", ["state"])

    op.create_table(
        "task_try",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "dag_run_id",
            sa.Integer,
            sa.ForeignKey("dag_run.id", name="fk_task_try_dag_run", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("task_id", sa.String(ID), nullable=False),
        sa.Column("try_number", sa.Integer, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        _ts("start_date", False),
        _ts("end_date", True),
        sa.Column("duration", sa.Float, nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("signal", sa.Integer, nullable=True),
        sa.Column("hostname", sa.String, nullable=False),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("log_path", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.UniqueConstraint(
            "dag_run_id", "task_id", "try_number", name="uq_task_try_dag_run_id_task_id_try_number"
        ),
    )

    op.create_table(
        "xcom",
        sa.Column(
            "dag_run_id",
            sa.Integer,
            sa.ForeignKey("dag_run.id", name="fk_xcom_dag_run", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("task_id", sa.String(ID), primary_key=True),
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("value", sa.JSON, nullable=True),
    )

    op.create_table(
        "import_error",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("traceback", sa.Text, nullable=False),
        _ts("timestamp", False),
        sa.UniqueConstraint("filename", name="uq_import_error_filename"),
    )

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        _ts("time", False),
        sa.Column("uid", sa.Integer, nullable=True),
        sa.Column("user", sa.String, nullable=True),
        sa.Column("action", sa.String, nullable=False),
        sa.Column("dag_id", sa.String(ID), nullable=True),
        sa.Column("run_id", sa.String(ID), nullable=True),
        sa.Column("task_id", sa.String(ID), nullable=True),
        sa.Column("params", sa.JSON, nullable=True),
    )
    op.create_index("ix_audit_log_time", "audit_log", ["time", "id"])
    op.create_index("ix_audit_log_dag_id_time", "audit_log", ["dag_id", "time", "id"])


def downgrade() -> None:
    for name in ("audit_log", "import_error", "xcom", "task_try", "task_instance", "dag_run", "dag"):
        op.drop_table(name)
