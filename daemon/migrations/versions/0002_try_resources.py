"""Resource figures per try: CPU, peak memory, I/O, wall time, processes, and a short series.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

Frozen like 0001: plain column types, no import of flow.daemon.models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = 250


def upgrade() -> None:
    op.create_table(
        "try_resources",
        sa.Column(
            "dag_run_id",
            sa.Integer,
            sa.ForeignKey("dag_run.id", name="fk_try_resources_dag_run", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("task_id", sa.String(ID), primary_key=True),
        sa.Column("try_number", sa.Integer, primary_key=True),
        sa.Column("cpu_user", sa.Float, nullable=True),
        sa.Column("cpu_system", sa.Float, nullable=True),
        sa.Column("peak_rss", sa.BigInteger, nullable=True),
        sa.Column("avg_cpu_percent", sa.Float, nullable=True),
        sa.Column("peak_cpu_percent", sa.Float, nullable=True),
        sa.Column("read_bytes", sa.BigInteger, nullable=True),
        sa.Column("write_bytes", sa.BigInteger, nullable=True),
        sa.Column("wall", sa.Float, nullable=True),
        sa.Column("max_procs", sa.Integer, nullable=True),
        sa.Column("max_threads", sa.Integer, nullable=True),
        sa.Column("series", sa.JSON, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("try_resources")
