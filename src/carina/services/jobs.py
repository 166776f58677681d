"""The jobs engine a server runs, from its settings."""

from __future__ import annotations

from sqlalchemy import Engine as DatabaseEngine

from carina.jobs import Engine, Limits
from carina.services.settings import Settings


def database_url(engine: DatabaseEngine) -> str:
    """The URL workers connect to the catalog with (credentials included)."""
    return engine.url.render_as_string(hide_password=False)


def jobs_engine(settings: Settings, database: DatabaseEngine) -> Engine | None:
    """An engine on ``settings.jobs_scheduler``, or on a local cluster of
    ``settings.jobs_workers`` processes; ``None`` when the server runs no jobs."""
    limits = Limits(
        per_owner=settings.jobs_max_per_user or None,
        per_project=settings.jobs_max_per_project or None,
    )
    if settings.jobs_scheduler:
        return Engine(database_url(database), scheduler=settings.jobs_scheduler, limits=limits)
    if settings.jobs_workers == 0:
        return None
    return Engine(
        database_url(database), n_workers=settings.jobs_workers, processes=True, limits=limits
    )
