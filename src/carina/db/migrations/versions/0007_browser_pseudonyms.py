"""browser pseudonyms: patient keys derived in browsers and their pseudonyms, per project

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-23 15:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "browser_pseudonyms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("date_shift_days", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "patient_key"),
    )
    op.create_index(
        "ix_browser_pseudonyms_project_id", "browser_pseudonyms", ["project_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_browser_pseudonyms_project_id", table_name="browser_pseudonyms")
    op.drop_table("browser_pseudonyms")
