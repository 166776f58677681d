"""The viewer bundle as ``carina serve`` serves it: files, SPA fallback, API untouched, and a
clear page when the bundle is not built (no browser needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from carina.api import create_app
from carina.services.settings import Settings


def _client(tmp_path: Path, web_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path / "data", dicom_port=None, jobs_workers=0, web_dir=web_dir
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    web = tmp_path / "dist"
    (web / "assets").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><div id=app></div>")
    (web / "assets" / "index-abc123.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("outside the bundle")
    return web


def test_files_fallback_and_api(tmp_path: Path, bundle: Path) -> None:
    for client in _client(tmp_path, bundle):
        asset = client.get("/assets/index-abc123.js")
        assert asset.status_code == 200
        assert asset.text == "console.log(1)"
        assert asset.headers["content-type"].startswith("text/javascript") or asset.headers[
            "content-type"
        ].startswith("application/javascript")
        assert "immutable" in asset.headers["cache-control"]
        page = client.get("/p/alpha/study/1.2.3")
        assert page.status_code == 200
        assert page.text == "<!doctype html><div id=app></div>"
        assert page.headers["cache-control"] == "no-cache"
        assert page.headers["x-frame-options"] == "DENY"  # security headers apply too
        assert client.get("/api/health").json()["status"] == "ok"
        assert client.get("/api/nothing-here").status_code == 404
        assert client.get("/dicom-web/studies").status_code == 401
        assert client.get("/projects/alpha/dicom-web/studies").status_code == 401
        # a path out of the bundle gets the app page, never the file
        escaped = client.get("/assets/../../secret.txt")
        assert "outside the bundle" not in escaped.text
        # POSTs to non-API paths are not the bundle's business
        assert client.post("/p/alpha").status_code in (404, 405)


def test_missing_bundle_says_how_to_build_it(tmp_path: Path) -> None:
    for client in _client(tmp_path, tmp_path / "not-built"):
        page = client.get("/")
        assert page.status_code == 503
        assert "make run" in page.text
        assert client.get("/api/health").status_code == 200
