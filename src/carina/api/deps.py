"""Request dependencies: the archive of the application.

Access control lives in :mod:`carina.api.security` (``Require``/``RequireInProject``).
"""

from __future__ import annotations

from fastapi import Request

from carina.archive import Archive


def get_archive(request: Request) -> Archive:
    """The archive opened by the application."""
    archive: Archive = request.app.state.archive
    return archive
