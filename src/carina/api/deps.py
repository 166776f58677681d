"""Request dependencies: the archive of the application and the access hook."""

from __future__ import annotations

from fastapi import Request

from carina.archive import Archive


def get_archive(request: Request) -> Archive:
    """The archive opened by the application."""
    archive: Archive = request.app.state.archive
    return archive


def require_access(request: Request) -> None:
    """Access control hook of every archive route.

    It allows everything for now; the authorisation policy will plug in here, so routes already
    declare it and need no change when it does.
    """
