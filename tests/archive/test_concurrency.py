"""Two processes ingesting into one data directory at once: no instance lost or half stored."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from carina.api import create_app
from carina.archive import Archive, parse_instance
from carina.core.errors import InstanceRejected
from carina.db import Instance
from carina.services.settings import Settings

from .helpers import admin_headers, multipart_body


def test_import_process_and_stow_share_a_data_dir(
    shared_data: Path, lung_ct_files: list[Path], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    variants = shared_data / "dicom_variants"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    importer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from carina.cli.main import app; app()",
            "import",
            str(variants),
            "--data-dir",
            str(data_dir),
            "--batch-size",
            "5",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    app = create_app(Settings(data_dir=data_dir, dicom_port=None))
    with TestClient(app) as client:
        client.headers.update(admin_headers(app))
        for start in range(0, 30, 3):
            body, content_type = multipart_body(
                [p.read_bytes() for p in lung_ct_files[start : start + 3]]
            )
            response = client.post(
                "/dicom-web/studies", content=body, headers={"Content-Type": content_type}
            )
            assert response.status_code == 200, response.text
    _, errors = importer.communicate(timeout=120)
    assert importer.returncode == 0, errors

    expected: dict[str, str] = {}
    for path in [*lung_ct_files, *sorted(p for p in variants.rglob("*") if p.is_file())]:
        try:
            parsed = parse_instance(path.read_bytes())
        except InstanceRejected:
            continue
        expected.setdefault(parsed.sop_instance_uid, parsed.sha256)
    with Archive(data_dir) as archive, archive.session() as session:
        rows = {
            uid: (path, digest)
            for uid, path, digest in session.execute(
                select(Instance.sop_instance_uid, Instance.path, Instance.sha256)
            )
        }
    assert set(rows) == set(expected)
    files = {
        p.relative_to(data_dir).as_posix()
        for p in (data_dir / "instances").rglob("*")
        if p.is_file()
    }
    assert files == {path for path, _ in rows.values()}
    for path, digest in rows.values():
        assert hashlib.sha256((data_dir / path).read_bytes()).hexdigest() == digest
    for path in lung_ct_files:
        uid = parse_instance(path.read_bytes()).sop_instance_uid
        assert (data_dir / rows[uid][0]).read_bytes() == path.read_bytes()
