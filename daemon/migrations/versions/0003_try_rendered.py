"""What each try actually ran: the rendered command and working folder of bash tries.

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-01

Frozen like 0001: plain column types, no import of flow.daemon.models. Both columns are nullable:
tries recorded before this revision, Python tries and tries that never started have none.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("task_try", sa.Column("rendered", sa.Text, nullable=True))
    op.add_column("task_try", sa.Column("rendered_cwd", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_try") as batch:
        batch.drop_column("rendered_cwd")
        batch.drop_column("rendered")
