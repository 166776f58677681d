"""PACS sync rules: standing orders to pull studies from a remote PACS into a project

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pacs_sync_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("peer", sa.String(length=256), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=False),
        sa.Column("study_age_days", sa.Integer(), nullable=True),
        sa.Column("patient_ids", sa.Text(), nullable=False),
        sa.Column("project_patients", sa.Boolean(), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_job_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["last_job_id"], ["jobs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "name"),
    )
    op.create_index(
        "ix_pacs_sync_rules_project_id", "pacs_sync_rules", ["project_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_pacs_sync_rules_project_id", table_name="pacs_sync_rules")
    op.drop_table("pacs_sync_rules")
