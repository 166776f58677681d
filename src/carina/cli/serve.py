"""``carina serve``: the HTTP API (DICOMweb) and the DIMSE service in one process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
import uvicorn

from carina.services.settings import Settings

APP_FACTORY = "carina.api.app:create_app_from_env"


def serve_command(
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Archive data directory."),
    database_url: str | None = typer.Option(None, "--database-url", help="Catalog database URL."),
    host: str | None = typer.Option(None, "--host", help="Address to listen on (HTTP and DIMSE)."),
    port: int | None = typer.Option(None, "--port", help="HTTP port."),
    dicom_port: int | None = typer.Option(None, "--dicom-port", help="DIMSE port (0: any free)."),
    no_dimse: bool = typer.Option(False, "--no-dimse", help="Do not start the DIMSE service."),
    ae_title: str | None = typer.Option(None, "--ae-title", help="DIMSE AE title."),
) -> None:
    """Serve the archive: DICOMweb under /dicom-web and a C-ECHO/C-STORE/C-FIND listener.

    Options not given come from CARINA_* environment variables, then from the defaults.
    """
    given: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "host": host,
        "port": port,
        "dicom_port": dicom_port,
        "ae_title": ae_title,
    }
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    if no_dimse:
        settings.dicom_port = None
    # uvicorn imports the application by name; the settings travel in the environment.
    os.environ.update(settings.to_env())
    uvicorn.run(APP_FACTORY, factory=True, host=settings.host, port=settings.port)
