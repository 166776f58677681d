"""The catalog on PostgreSQL: migrations, ingest and QIDO answers identical to SQLite.

Runs when a PostgreSQL server binary (Debian's ``postgresql`` package) and psycopg are installed;
a throwaway cluster is started on a free loopback port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from carina.api import create_app
from carina.archive import Archive
from carina.services.settings import Settings

from .helpers import admin_headers, free_port

PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    pytest.importorskip("psycopg")
    if not PG_BIN:
        pytest.skip("PostgreSQL is not installed")
    bin_dir = PG_BIN[-1]
    base = Path(tempfile.mkdtemp(prefix="carina-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(base, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = base / "db"
    subprocess.run(
        [
            *run_as,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "carina",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [
            *run_as,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(base / "log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://carina@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


QUERIES = [
    "/dicom-web/studies",
    "/dicom-web/studies?PatientName=*a*",
    "/dicom-web/studies?PatientName=doe*",
    "/dicom-web/studies?StudyDate=19900101-20051231",
    "/dicom-web/studies?StudyTime=-120000",
    "/dicom-web/studies?ModalitiesInStudy=MR&includefield=all",
    "/dicom-web/studies?AccessionNumber=*1*",
    "/dicom-web/studies?limit=5&offset=3",
    "/dicom-web/series?Modality=CT",
    "/dicom-web/series?SeriesDescription=*a*",
    "/dicom-web/instances?SOPClassUID=1.2.840.10008.5.1.4.1.1.4",
    "/dicom-web/instances?InstanceNumber=1",
]


def test_postgres_answers_like_sqlite(postgres_url: str, shared_data: Path, tmp_path: Path) -> None:
    paths = sorted((shared_data / "lung_ct_tumor_boxes" / "ct_dicom").glob("*.dcm"))
    paths += sorted((shared_data / "dicom_variants").rglob("*.dcm"))
    items: list[tuple[str | None, bytes]] = [(str(p), p.read_bytes()) for p in paths]
    answers: dict[str, list[object]] = {}
    for name, url in (("sqlite", None), ("postgres", postgres_url)):
        data_dir = tmp_path / name
        with Archive(data_dir, url) as archive:
            assert archive.engine.dialect.name == name.replace("postgres", "postgresql")
            results = archive.ingest(items)
            again = archive.ingest(items)
            assert all(r.status.value != "stored" for r in again)
        app = create_app(Settings(data_dir=data_dir, database_url=url, dicom_port=None))
        with TestClient(app) as client:
            client.headers.update(admin_headers(app))
            answers[name] = [[r.status.value for r in results]]
            for query in QUERIES:
                response = client.get(query)
                assert response.status_code == 200, (query, response.text)
                answers[name].append(response.json())
    assert answers["postgres"] == answers["sqlite"]
    assert any(answers["sqlite"][1:])
