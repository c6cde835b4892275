"""Stored seconds are indexed by video and time, so that a read of some seconds of a long video is a seek.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (video_id, timestamp_s) serves every lookup by video that the index on video_id alone did, so that one goes.
    op.create_index("ix_vectors_video_id_timestamp_s", "vectors", ["video_id", "timestamp_s"], unique=False)
    op.drop_index("ix_vectors_video_id", table_name="vectors")


def downgrade() -> None:
    op.create_index("ix_vectors_video_id", "vectors", ["video_id"], unique=False)
    op.drop_index("ix_vectors_video_id_timestamp_s", table_name="vectors")
