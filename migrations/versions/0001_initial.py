"""Initial schema: videos, vectors, index_meta, runs.

Constraint names are final (``op.f``): the naming convention of the models must not be applied twice.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "videos",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime", sa.Float(), nullable=False),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("fps", sa.Float(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("n_vectors", sa.Integer(), nullable=False),
        sa.Column("indexed_at", sa.Float(), nullable=False),
        sa.CheckConstraint("status IN ('indexed', 'failed')", name=op.f("ck_videos_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_videos")),
        sa.UniqueConstraint("path", name=op.f("uq_videos_path")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_videos_fingerprint"), "videos", ["fingerprint"], unique=False)

    op.create_table(
        "vectors",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("video_id", sa.Integer(), nullable=False),
        sa.Column("timestamp_s", sa.Float(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["video_id"], ["videos.id"], name=op.f("fk_vectors_video_id_videos"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vectors")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_vectors_video_id"), "vectors", ["video_id"], unique=False)

    op.create_table(
        "index_meta",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("encoder_name", sa.String(), nullable=False),
        sa.Column("encoder_version", sa.String(), nullable=False),
        sa.Column("raw_dim", sa.Integer(), nullable=False),
        sa.Column("input_size", sa.Integer(), nullable=False),
        sa.Column("sampling_fps", sa.Float(), nullable=False),
        sa.Column("projection", sa.LargeBinary(), nullable=True),
        sa.Column("projection_name", sa.String(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("index_trained_n", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_index_meta_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_index_meta")),
    )

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("runs")
    op.drop_table("index_meta")
    op.drop_index(op.f("ix_vectors_video_id"), table_name="vectors")
    op.drop_table("vectors")
    op.drop_index(op.f("ix_videos_fingerprint"), table_name="videos")
    op.drop_table("videos")
