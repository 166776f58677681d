"""Settings of a Carina server, from arguments or ``CARINA_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server settings; every field can be set as ``CARINA_<FIELD>`` (e.g. ``CARINA_DATA_DIR``).

    ``database_url`` defaults to SQLite at ``data_dir/catalog.sqlite``. ``dicom_port`` ``None``
    disables the DIMSE service; ``0`` picks a free port.
    """

    model_config = SettingsConfigDict(env_prefix="CARINA_", extra="ignore")

    data_dir: Path = Path("data")
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    dicom_port: int | None = 11112
    ae_title: str = "CARINA"
