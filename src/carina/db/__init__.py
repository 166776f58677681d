"""Persistence: SQLAlchemy models of the catalog, engine set-up and migrations."""

from carina.db.engine import create_db_engine, sqlite_url, upgrade_database
from carina.db.models import Base, Instance, Patient, Series, Study

__all__ = [
    "Base",
    "Instance",
    "Patient",
    "Series",
    "Study",
    "create_db_engine",
    "sqlite_url",
    "upgrade_database",
]
