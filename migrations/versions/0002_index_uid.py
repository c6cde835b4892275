"""The index identity gets a random id that the FAISS file records, so a file from another index is refused.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("index_meta") as batch:
        batch.add_column(sa.Column("index_uid", sa.String(length=32), nullable=True))
    # The existing row gets its id now; the FAISS file beside it is then rebuilt once, on the next use.
    op.get_bind().execute(sa.text("UPDATE index_meta SET index_uid = :uid"), {"uid": uuid.uuid4().hex})


def downgrade() -> None:
    with op.batch_alter_table("index_meta") as batch:
        batch.drop_column("index_uid")
