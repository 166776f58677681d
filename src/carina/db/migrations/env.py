"""Alembic environment: runs migrations on the engine passed in ``config.attributes``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from carina.db.models import Base

engine = context.config.attributes.get("engine")
if not isinstance(engine, Engine):  # pragma: no cover - only reachable by misuse
    raise RuntimeError("carina migrations run through carina.db.upgrade_database")

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
