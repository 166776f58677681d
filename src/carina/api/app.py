"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from carina import __version__
from carina.annotation import AnnotationStore
from carina.api.annotations import router as annotations_router
from carina.api.dicomweb import dicomweb_router
from carina.api.jobs import router as jobs_router
from carina.api.middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from carina.api.pacs import router as pacs_router
from carina.api.rest import router as rest_router
from carina.api.upload import router as upload_router
from carina.api.viewer import router as viewer_router
from carina.api.web import WebAppMiddleware
from carina.archive import Archive
from carina.archive.dimse import DimseActivity, DimseServer
from carina.archive.query import QueryError
from carina.auth import AuditLog, LoginLimiter
from carina.core.errors import (
    CarinaError,
    ConfigurationError,
    ConflictError,
    DicomDecodeError,
    GeometryError,
    ImageIOError,
    InstanceRejected,
    LabelError,
    NoPixelDataError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
)
from carina.jobs import JobStore
from carina.services.annotations import Annotations
from carina.services.archive import open_archive
from carina.services.auth import auth_services, server_secret
from carina.services.jobs import jobs_engine
from carina.services.pacs_sync import SyncRules, SyncScheduler
from carina.services.settings import Settings
from carina.services.viewer import ByteLRU, InteractiveModels

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[CarinaError], int]] = [
    (NotFoundError, 404),
    (PermissionDeniedError, 403),
    (ConflictError, 409),
    (InstanceRejected, 400),
    (QueryError, 400),
    (NoPixelDataError, 400),
    (DicomDecodeError, 422),
    (StorageError, 503),
    (ConfigurationError, 400),
    (LabelError, 422),
    (GeometryError, 422),
    (ImageIOError, 400),
]


def _status_of(exc: CarinaError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def operation_id(route: APIRoute) -> str:
    """The OpenAPI operation id of a route: its name, which is unique and stable."""
    return route.name


def _audit_dimse(audit: AuditLog) -> Callable[[DimseActivity], None]:
    """Audit rows for what DICOM peers do (they have AE titles, not user accounts)."""

    def record(activity: DimseActivity) -> None:
        shown = ", ".join(activity.studies[:20]) + (" ..." if len(activity.studies) > 20 else "")
        audit.record(
            action=f"dimse.{activity.operation.lower()}",
            outcome=activity.outcome,
            user_name=f"AE {activity.calling_ae}",
            resource=f"studies {shown}" if activity.studies else "",
            client_ip=activity.address,
            detail=f"{activity.count} instance(s); {activity.detail}".strip("; "),
        )

    return record


def create_app(settings: Settings | None = None, archive: Archive | None = None) -> FastAPI:
    """The Carina HTTP application.

    The server secret is checked (or generated) here, so a bad one stops the start. The archive
    under ``settings.data_dir`` is opened at start-up (migrations, consistency check) unless one
    is given; a DIMSE service starts on ``settings.dicom_port`` unless it is ``None``, and the jobs
    engine as ``settings.jobs_workers``/``jobs_scheduler`` say.
    """
    settings = settings or Settings()
    secret = server_secret(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = archive or open_archive(settings)
        app.state.archive = opened
        app.state.auth, app.state.audit = auth_services(opened.engine, secret)
        if not app.state.auth.users():
            log.warning(
                "no users yet: create the first administrator with "
                "`carina user add NAME --admin --data-dir %s`",
                settings.data_dir,
            )
        dimse: DimseServer | None = None
        if settings.dicom_port is not None:
            dimse = DimseServer(
                opened,
                settings.ae_title,
                settings.host,
                settings.dicom_port,
                peers=settings.dicom_peers,
                allowed_callers=settings.dicom_allowed_callers,
                on_activity=_audit_dimse(app.state.audit),
            )
            dimse.start()
        app.state.dimse = dimse
        app.state.job_store = JobStore(opened.engine)
        annotation_store = AnnotationStore(opened.engine, opened.data_dir)
        swept = annotation_store.sweep_blobs()
        if swept:
            log.info("removed %d unreferenced label map file(s)", len(swept))
        app.state.annotations = Annotations(opened, app.state.auth, annotation_store)
        jobs = jobs_engine(settings, opened.engine)
        if jobs is not None:
            jobs.start()
        app.state.jobs = jobs
        scheduler: SyncScheduler | None = None
        if settings.pacs_sync_check_s > 0:
            scheduler = SyncScheduler(
                SyncRules(opened.engine),
                app.state.job_store,
                jobs.submit if jobs is not None else app.state.job_store.submit,
                settings.pacs_sync_check_s,
            )
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            if jobs is not None:
                jobs.close()
            if dimse is not None:
                dimse.stop()
            if archive is None:
                opened.close()

    app = FastAPI(
        title="Carina",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        swagger_ui_oauth2_redirect_url="/api/docs/oauth2-redirect",
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.secret = secret
    app.state.viewer_cache = ByteLRU(settings.viewer_cache_bytes)
    app.state.interactive_models = InteractiveModels.in_data_dir(settings.data_dir)
    app.state.limiter = LoginLimiter(settings.login_max_failures, settings.login_window_s)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body=settings.max_body_bytes,
        max_upload=settings.max_upload_bytes,
    )
    app.add_middleware(WebAppMiddleware, web_dir=settings.web_dir)
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.tls)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
            # label maps describe their grid in these headers (docs/viewer-api.md,
            # docs/annotation-api.md); versions carry their digest as ETag
            expose_headers=[
                "X-Carina-Shape",
                "X-Carina-Dtype",
                "X-Carina-Affine",
                "X-Carina-Offset",
                "X-Carina-Voxels",
                "X-Carina-Volume-Ml",
                "X-Carina-Method",
                "ETag",
            ],
        )

    @app.exception_handler(CarinaError)
    async def carina_error(_request: Request, exc: CarinaError) -> JSONResponse:
        status = _status_of(exc)
        if status >= 500:
            log.error("request failed: %s", exc)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    app.include_router(rest_router, prefix="/api")
    app.include_router(dicomweb_router(project_scoped=False), prefix="/dicom-web")
    app.include_router(dicomweb_router(project_scoped=True), prefix="/projects/{project}/dicom-web")
    app.include_router(upload_router, prefix="/api")
    # before the jobs routes: /jobs/events must not be taken for /jobs/{job_id}
    app.include_router(viewer_router, prefix="/api")
    app.include_router(jobs_router, prefix="/api")
    app.include_router(annotations_router, prefix="/api")
    app.include_router(pacs_router, prefix="/api")
    return app


def create_app_from_env() -> FastAPI:
    """The application configured from ``CARINA_*`` environment variables (uvicorn factory)."""
    return create_app(Settings())
