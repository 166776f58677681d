"""name search forms: folded words of patient and referring physician names, for fuzzy matching

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 18:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from carina.db.names import search_form

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("patients", "patient_name", "patient_name_words"),
    ("studies", "referring_physician_name", "referring_physician_words"),
)


def upgrade() -> None:
    connection = op.get_bind()
    for table, source, target in _COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column(target, sa.String(length=400), nullable=False, server_default="")
            )
        rows = sa.table(table, sa.column("id"), sa.column(source), sa.column(target))
        updates = [
            {"row_id": row_id, "words": search_form(name or "")}
            for row_id, name in connection.execute(sa.select(rows.c.id, rows.c[source]))
        ]
        if updates:
            connection.execute(
                rows.update()
                .where(rows.c.id == sa.bindparam("row_id"))
                .values({target: sa.bindparam("words")}),
                updates,
            )


def downgrade() -> None:
    for table, _source, target in _COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.drop_column(target)
