"""Variables: named values shared by DAGs (Airflow's Variable), kept in flow's database.

Revision ID: 0005_variables
Revises: 0004_lease
Create Date: 2026-12-04

Frozen like 0001: plain column types, no import of flow.daemon.models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_variables"
down_revision: str | Sequence[str] | None = "0004_lease"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "variable",
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("val", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("variable")
