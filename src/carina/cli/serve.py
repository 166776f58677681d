"""``carina serve``: the HTTP API (DICOMweb) and the DIMSE service in one process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
import uvicorn

from carina.core.errors import ConfigurationError
from carina.services.auth import server_secret
from carina.services.settings import Settings, auto_ingest_processes

APP_FACTORY = "carina.api.app:create_app_from_env"


def serve_command(
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Archive data directory."),
    database_url: str | None = typer.Option(None, "--database-url", help="Catalog database URL."),
    host: str | None = typer.Option(None, "--host", help="Address to listen on (HTTP and DIMSE)."),
    port: int | None = typer.Option(None, "--port", help="HTTP port."),
    dicom_port: int | None = typer.Option(None, "--dicom-port", help="DIMSE port (0: any free)."),
    no_dimse: bool = typer.Option(False, "--no-dimse", help="Do not start the DIMSE service."),
    ae_title: str | None = typer.Option(None, "--ae-title", help="DIMSE AE title."),
    ssl_certfile: Path | None = typer.Option(None, "--ssl-certfile", help="TLS certificate (PEM)."),
    ssl_keyfile: Path | None = typer.Option(None, "--ssl-keyfile", help="TLS private key (PEM)."),
    jobs_workers: int | None = typer.Option(
        None, "--jobs-workers", help="Local job worker processes (0: run no jobs)."
    ),
    jobs_scheduler: str | None = typer.Option(
        None, "--jobs-scheduler", help="Run jobs on this Dask scheduler (tcp://host:8786)."
    ),
) -> None:
    """Serve the archive: the REST API under /api, DICOMweb under /dicom-web (administrators) and
    /projects/{project}/dicom-web, a C-ECHO/C-STORE/C-FIND listener, and the jobs engine (a
    local Dask cluster, or the workers of --jobs-scheduler).

    Options not given come from CARINA_* environment variables, then from the defaults. Create
    the first administrator with `carina user add NAME --admin --data-dir DIR`.
    """
    given: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "host": host,
        "port": port,
        "dicom_port": dicom_port,
        "ae_title": ae_title,
        "ssl_certfile": ssl_certfile,
        "ssl_keyfile": ssl_keyfile,
        "jobs_workers": jobs_workers,
        "jobs_scheduler": jobs_scheduler,
    }
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    if no_dimse:
        settings.dicom_port = None
    if settings.ingest_processes is None:
        settings.ingest_processes = auto_ingest_processes()
    try:
        server_secret(settings)  # refuse a weak secret before anything listens
    except ConfigurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    # uvicorn imports the application by name; the settings travel in the environment.
    os.environ.update(settings.to_env())
    tls: dict[str, Any] = {}
    if settings.ssl_certfile is not None:
        tls = {"ssl_certfile": str(settings.ssl_certfile), "ssl_keyfile": settings.ssl_keyfile}
    uvicorn.run(APP_FACTORY, factory=True, host=settings.host, port=settings.port, **tls)
