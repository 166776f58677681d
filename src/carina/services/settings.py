"""Settings of a Carina server, from arguments or ``CARINA_*`` environment variables."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# the built web viewer of a source checkout (``make run`` builds it)
DEFAULT_WEB_DIR = Path(__file__).resolve().parents[3] / "web" / "dist"


class Settings(BaseSettings):
    """Server settings; every field can be set as ``CARINA_<FIELD>`` (e.g. ``CARINA_DATA_DIR``).

    ``database_url`` defaults to SQLite at ``data_dir/catalog.sqlite``. ``dicom_port`` ``None``
    (``CARINA_DICOM_PORT=none``) disables the DIMSE service; ``0`` picks a free port.
    ``dicom_peers`` maps AE titles to ``host:port`` for C-MOVE (``CARINA_DICOM_PEERS`` as JSON).
    ``dicomweb_peers`` names remote DICOMweb services (``CARINA_DICOMWEB_PEERS`` as JSON
    ``{"NAME": {"url": ..., "token": ...}}`` or ``{"username", "password"}`` instead of a token,
    or just ``{"NAME": "url"}``). The server looks for due PACS sync rules every
    ``pacs_sync_check_s`` seconds (0: never; rules then run only on request).
    ``dicom_allowed_callers`` (``CARINA_DICOM_ALLOWED_CALLERS``, JSON list) restricts the DIMSE
    listener to those calling AE titles; empty accepts any caller (bind it to loopback then).
    ``cors_origins`` lists web origins (e.g. an OHIF viewer) allowed to call the API from a browser.
    ``public_url`` is the address clients reach the server at (used in RetrieveURL and
    BulkDataURI); by default it comes from each request's Host header.

    ``secret_key`` keys token digests and CSRF tokens; when unset, a random one is generated at
    first start in ``data_dir/secret_key`` (mode 0600). A short or placeholder secret is refused.
    ``ssl_certfile``/``ssl_keyfile`` make ``carina serve`` speak HTTPS; ``https`` says clients reach
    the server over HTTPS anyway (a TLS-terminating reverse proxy): both turn on HSTS and secure
    cookies. ``max_body_bytes`` limits request bodies, ``max_upload_bytes`` those of STOW-RS.

    Jobs run on a local Dask cluster of ``jobs_workers`` worker processes started with the server,
    or, with ``jobs_scheduler`` (``tcp://host:8786``), on the workers of that scheduler. With
    ``jobs_workers`` 0 and no scheduler the server runs no jobs: they are recorded and wait for a
    server that does. Queued jobs start at most ``jobs_max_per_user`` at a time per user and
    ``jobs_max_per_project`` per project (0: no limit), highest priority first, users taking turns.

    ``viewer_cache_bytes`` bounds the memory of the series the viewer routes keep loaded.

    ``ingest_processes`` parse incoming instances beside the server process, so that several
    connections storing at once are parsed in parallel; ``None`` lets ``carina serve`` and
    ``carina import`` pick one per CPU core (at most 4, none on a single core); ``0`` parses in the
    receiving thread.
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
    secret_key: SecretStr | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    https: bool = False
    access_token_ttl_s: int = 3600
    session_ttl_s: int = 8 * 3600
    max_body_bytes: int = 1024 * 1024
    max_upload_bytes: int = 2 * 1024**3
    login_max_failures: int = 5
    login_window_s: int = 300
    jobs_workers: int = Field(default=1, ge=0)
    jobs_scheduler: str | None = None
    jobs_max_per_user: int = Field(default=4, ge=0)
    jobs_max_per_project: int = Field(default=8, ge=0)
    web_dir: Path = DEFAULT_WEB_DIR
    viewer_cache_bytes: int = Field(default=2 * 1024**3, ge=0)
    ingest_processes: int | None = Field(default=None, ge=0, le=64)

    @property
    def tls(self) -> bool:
        """Whether clients reach the server over HTTPS (own certificate or a proxy)."""
        return self.https or self.ssl_certfile is not None

    dicom_peers: dict[str, str] = {}
    dicomweb_peers: dict[str, dict[str, str] | str] = {}
    pacs_sync_check_s: float = Field(default=60.0, ge=0)
    dicom_allowed_callers: list[str] = []
    cors_origins: list[str] = []

    def to_env(self) -> dict[str, str]:
        """These settings as ``CARINA_*`` environment variables."""
        env = {
            "CARINA_DATA_DIR": str(self.data_dir),
            "CARINA_HOST": self.host,
            "CARINA_PORT": str(self.port),
            "CARINA_DICOM_PORT": "none" if self.dicom_port is None else str(self.dicom_port),
            "CARINA_AE_TITLE": self.ae_title,
            "CARINA_HTTPS": str(self.https).lower(),
            "CARINA_ACCESS_TOKEN_TTL_S": str(self.access_token_ttl_s),
            "CARINA_SESSION_TTL_S": str(self.session_ttl_s),
            "CARINA_MAX_BODY_BYTES": str(self.max_body_bytes),
            "CARINA_MAX_UPLOAD_BYTES": str(self.max_upload_bytes),
            "CARINA_LOGIN_MAX_FAILURES": str(self.login_max_failures),
            "CARINA_LOGIN_WINDOW_S": str(self.login_window_s),
            "CARINA_JOBS_WORKERS": str(self.jobs_workers),
            "CARINA_JOBS_MAX_PER_USER": str(self.jobs_max_per_user),
            "CARINA_JOBS_MAX_PER_PROJECT": str(self.jobs_max_per_project),
            "CARINA_WEB_DIR": str(self.web_dir),
            "CARINA_VIEWER_CACHE_BYTES": str(self.viewer_cache_bytes),
            "CARINA_PACS_SYNC_CHECK_S": str(self.pacs_sync_check_s),
        }
        if self.secret_key is not None:
            env["CARINA_SECRET_KEY"] = self.secret_key.get_secret_value()
        if self.ssl_certfile is not None:
            env["CARINA_SSL_CERTFILE"] = str(self.ssl_certfile)
        if self.ssl_keyfile is not None:
            env["CARINA_SSL_KEYFILE"] = str(self.ssl_keyfile)
        if self.database_url is not None:
            env["CARINA_DATABASE_URL"] = self.database_url
        if self.dicom_peers:
            env["CARINA_DICOM_PEERS"] = json.dumps(self.dicom_peers)
        if self.dicomweb_peers:
            env["CARINA_DICOMWEB_PEERS"] = json.dumps(self.dicomweb_peers)
        if self.dicom_allowed_callers:
            env["CARINA_DICOM_ALLOWED_CALLERS"] = json.dumps(self.dicom_allowed_callers)
        if self.cors_origins:
            env["CARINA_CORS_ORIGINS"] = json.dumps(self.cors_origins)
        if self.jobs_scheduler is not None:
            env["CARINA_JOBS_SCHEDULER"] = self.jobs_scheduler
        if self.ingest_processes is not None:
            env["CARINA_INGEST_PROCESSES"] = str(self.ingest_processes)
        if self.public_url is not None:
            env["CARINA_PUBLIC_URL"] = self.public_url
        return env


def auto_ingest_processes() -> int:
    """Parsing processes for a server or an import: one per core, at most 4, none on one core."""
    cores = os.cpu_count() or 1
    return 0 if cores < 2 else min(cores, 4)
