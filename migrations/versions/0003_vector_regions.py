"""Each stored second may keep its frame's region vectors (the query's region check compares them).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column: SQLite and PostgreSQL add it in place, without copying the table. Rows stored before it
    # keep NULL (no regions) until their video is indexed again.
    with op.batch_alter_table("vectors") as batch:
        batch.add_column(sa.Column("regions", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vectors") as batch:
        batch.drop_column("regions")
