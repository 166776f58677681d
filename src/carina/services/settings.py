"""Settings of a Carina server, from arguments or ``CARINA_*`` environment variables."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server settings; every field can be set as ``CARINA_<FIELD>`` (e.g. ``CARINA_DATA_DIR``).

    ``database_url`` defaults to SQLite at ``data_dir/catalog.sqlite``. ``dicom_port`` ``None``
    (``CARINA_DICOM_PORT=none``) disables the DIMSE service; ``0`` picks a free port.
    ``dicom_peers`` maps AE titles to ``host:port`` for C-MOVE (``CARINA_DICOM_PEERS`` as JSON).
    ``cors_origins`` lists web origins (e.g. an OHIF viewer) allowed to call the API from a browser.
    ``public_url`` is the address clients reach the server at (used in RetrieveURL and
    BulkDataURI); by default it comes from each request's Host header.
    """

    model_config = SettingsConfigDict(
        env_prefix="CARINA_", extra="ignore", env_parse_none_str="none"
    )

    data_dir: Path = Path("data")
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    dicom_port: int | None = 11112
    ae_title: str = Field(default="CARINA", min_length=1, max_length=16)
    public_url: str | None = None
    dicom_peers: dict[str, str] = {}
    cors_origins: list[str] = []

    def to_env(self) -> dict[str, str]:
        """These settings as ``CARINA_*`` environment variables."""
        env = {
            "CARINA_DATA_DIR": str(self.data_dir),
            "CARINA_HOST": self.host,
            "CARINA_PORT": str(self.port),
            "CARINA_DICOM_PORT": "none" if self.dicom_port is None else str(self.dicom_port),
            "CARINA_AE_TITLE": self.ae_title,
        }
        if self.database_url is not None:
            env["CARINA_DATABASE_URL"] = self.database_url
        if self.dicom_peers:
            env["CARINA_DICOM_PEERS"] = json.dumps(self.dicom_peers)
        if self.cors_origins:
            env["CARINA_CORS_ORIGINS"] = json.dumps(self.cors_origins)
        if self.public_url is not None:
            env["CARINA_PUBLIC_URL"] = self.public_url
        return env
