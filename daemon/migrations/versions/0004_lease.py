"""The lease row: who holds the database and the epoch every write transaction is fenced by.

Revision ID: 0004_lease
Revises: 0003
Create Date: 2026-12-04

Frozen like 0001: plain column types, no import of flow.daemon.models. The row itself is
written by the first flowd that takes the lock, not by the migration.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_lease"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "lease",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("socket", sa.Text, nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=False), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lease")
