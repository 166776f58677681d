"""HTTP upload (POST /api/instances): single file, ZIP and browser form, through the one ingest."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from fastapi.testclient import TestClient

from carina.api import create_app
from carina.archive import parse_instance
from carina.services.settings import Settings

from .helpers import admin_headers


def test_upload_file_zip_and_form(lung_ct_files: list[Path], tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", dicom_port=None))
    with TestClient(app) as client:
        client.headers.update(admin_headers(app))
        single = client.post(
            "/api/instances",
            content=lung_ct_files[0].read_bytes(),
            headers={"Content-Type": "application/dicom"},
        )
        assert single.status_code == 200
        assert single.json()["counts"]["stored"] == 1

        bundle = io.BytesIO()
        with zipfile.ZipFile(bundle, "w") as zf:
            for path in lung_ct_files[:4]:
                zf.write(path, path.name)
            zf.writestr("notes.txt", "not an image")
        zipped = client.post(
            "/api/instances",
            content=bundle.getvalue(),
            headers={"Content-Type": "application/zip"},
        )
        counts = zipped.json()["counts"]
        assert counts == {"stored": 3, "already stored": 1, "rejected": 1, "conflict": 0}
        rejected = [r for r in zipped.json()["results"] if r["status"] == "rejected"]
        assert rejected[0]["source"].endswith("notes.txt")
        assert "not a DICOM file" in rejected[0]["reason"]

        form = client.post(
            "/api/instances",
            files=[
                ("files", (p.name, p.read_bytes(), "application/dicom")) for p in lung_ct_files[3:8]
            ],
        )
        assert form.json()["counts"]["stored"] == 4
        assert form.json()["counts"]["already stored"] == 1

        archive = app.state.archive
        for path in lung_ct_files[:8]:
            p = parse_instance(path.read_bytes())
            (stored,) = archive.instances(p.study_instance_uid, sop_uid=p.sop_instance_uid)
            assert archive.read(stored) == path.read_bytes()
        assert (
            client.post(
                "/api/instances", content=b"x", headers={"Content-Type": "text/plain"}
            ).status_code
            == 415
        )


def test_cors_for_configured_viewer_origin(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", dicom_port=None, cors_origins=["http://viewer.local"]
    )
    with TestClient(create_app(settings)) as client:
        allowed = client.get("/dicom-web/studies", headers={"Origin": "http://viewer.local"})
        assert allowed.headers["access-control-allow-origin"] == "http://viewer.local"
        other = client.get("/dicom-web/studies", headers={"Origin": "http://elsewhere"})
        assert "access-control-allow-origin" not in other.headers
