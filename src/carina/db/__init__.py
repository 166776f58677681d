"""Persistence: SQLAlchemy models (catalog, users, projects, audit, jobs), engines, migrations."""

from carina.db.engine import create_db_engine, sqlite_url, upgrade_database
from carina.db.models import (
    AuditEvent,
    AuthToken,
    Base,
    BrowserPseudonym,
    Instance,
    Job,
    Patient,
    Project,
    ProjectMember,
    ProjectStudy,
    Series,
    Study,
    User,
)

__all__ = [
    "AuditEvent",
    "AuthToken",
    "Base",
    "BrowserPseudonym",
    "Instance",
    "Job",
    "Patient",
    "Project",
    "ProjectMember",
    "ProjectStudy",
    "Series",
    "Study",
    "User",
    "create_db_engine",
    "sqlite_url",
    "upgrade_database",
]
