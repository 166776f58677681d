"""Opening the archive a server or command works on."""

from __future__ import annotations

from carina.archive import Archive
from carina.services.settings import Settings


def open_archive(settings: Settings) -> Archive:
    """The archive under ``settings.data_dir`` (migrated and checked for consistency)."""
    return Archive(
        settings.data_dir, settings.database_url, parse_processes=settings.ingest_processes or 0
    )
