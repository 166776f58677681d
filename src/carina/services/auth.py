"""Identity services: the server secret, the auth store and audit log over a database."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from carina.auth import AuditLog, AuthStore, load_or_create_secret
from carina.db import create_db_engine, sqlite_url, upgrade_database
from carina.services.settings import Settings


def server_secret(settings: Settings) -> str:
    """The configured secret (checked) or the generated one of the data directory."""
    configured = settings.secret_key.get_secret_value() if settings.secret_key else None
    return load_or_create_secret(settings.data_dir, configured)


def auth_services(engine: Engine, secret: str | None) -> tuple[AuthStore, AuditLog]:
    """The auth store and audit log over ``engine`` (its schema already migrated)."""
    sessions = sessionmaker(engine, expire_on_commit=False)
    return AuthStore(sessions, secret), AuditLog(sessions)


@dataclass
class Directory:
    """Users, projects and the audit log of a data directory, opened without the archive."""

    engine: Engine
    store: AuthStore
    audit: AuditLog

    def close(self) -> None:
        """Release database connections."""
        self.engine.dispose()

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def open_directory(settings: Settings) -> Directory:
    """The user directory and audit log of ``settings`` (migrating the database if needed)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(
        settings.database_url or sqlite_url(settings.data_dir / "catalog.sqlite")
    )
    upgrade_database(engine)
    store, audit = auth_services(engine, None)
    return Directory(engine, store, audit)
