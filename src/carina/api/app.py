"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from carina import __version__
from carina.api.dicomweb import router as dicomweb_router
from carina.api.upload import router as upload_router
from carina.archive import Archive
from carina.archive.dimse import DimseServer
from carina.archive.query import QueryError
from carina.core.errors import (
    CarinaError,
    ConflictError,
    DicomDecodeError,
    InstanceRejected,
    NoPixelDataError,
    NotFoundError,
    PermissionDenied,
    StorageError,
)
from carina.services.archive import open_archive
from carina.services.settings import Settings

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[CarinaError], int]] = [
    (NotFoundError, 404),
    (PermissionDenied, 403),
    (ConflictError, 409),
    (InstanceRejected, 400),
    (QueryError, 400),
    (NoPixelDataError, 400),
    (DicomDecodeError, 422),
    (StorageError, 503),
]


def _status_of(exc: CarinaError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def create_app(settings: Settings | None = None, archive: Archive | None = None) -> FastAPI:
    """The Carina HTTP application.

    The archive under ``settings.data_dir`` is opened at start-up (migrations, consistency check)
    unless one is given; a DIMSE service starts on ``settings.dicom_port`` unless it is ``None``.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = archive or open_archive(settings)
        app.state.archive = opened
        dimse: DimseServer | None = None
        if settings.dicom_port is not None:
            dimse = DimseServer(
                opened,
                settings.ae_title,
                settings.host,
                settings.dicom_port,
                peers=settings.dicom_peers,
            )
            dimse.start()
        app.state.dimse = dimse
        try:
            yield
        finally:
            if dimse is not None:
                dimse.stop()
            if archive is None:
                opened.close()

    app = FastAPI(title="Carina", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
        )

    @app.exception_handler(CarinaError)
    async def carina_error(_request: Request, exc: CarinaError) -> JSONResponse:
        status = _status_of(exc)
        if status >= 500:
            log.error("request failed: %s", exc)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    app.include_router(dicomweb_router, prefix="/dicom-web")
    app.include_router(upload_router, prefix="/api")
    return app


def create_app_from_env() -> FastAPI:
    """The application configured from ``CARINA_*`` environment variables (uvicorn factory)."""
    return create_app(Settings())
