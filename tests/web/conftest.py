"""A real Carina server on loopback for the browser tests, and a runner for web/e2e/*.mjs.

The server is ``carina serve`` in a subprocess (uvicorn) on a free 127.0.0.1 port, with a
temporary data directory, one user (owner of project ``alpha``), no DIMSE and no job workers.
The viewer bundle is built first (scripts/build-web.sh: nothing to do when it is up to date).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from carina.api import create_app
from carina.services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
USER = "radiologist"
PASSWORD = "a-long-viewer-password"
PROJECT = "alpha"
CHROMIUM = Path(os.environ.get("CARINA_CHROMIUM", "/usr/bin/chromium"))


@dataclass(frozen=True)
class WebServer:
    url: str
    data_dir: Path
    token: str

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def web_bundle() -> Path:
    """web/dist, built when missing or stale."""
    if shutil.which("npm") is None:
        pytest.fail("npm is needed for the browser tests (scripts/system-deps.sh installs it)")
    subprocess.run(["bash", str(ROOT / "scripts" / "build-web.sh")], check=True, timeout=600)
    index = WEB / "dist" / "index.html"
    assert index.is_file()
    return WEB / "dist"


@contextmanager
def serve(data_dir: Path, web_bundle: Path) -> Iterator[WebServer]:
    """``carina serve`` on a free loopback port over ``data_dir`` (users and projects are made
    through the same store beforehand), stopped on exit."""
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT),
        "CARINA_WEB_DIR": str(web_bundle),
    }
    command = [
        sys.executable,
        "-c",
        "from carina.cli.main import app; app()",
        "serve",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-dimse",
        "--jobs-workers",
        "0",
    ]
    log = (data_dir.parent / "server.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError(
                    "server did not start:\n" + (data_dir.parent / "server.log").read_text()
                )
            time.sleep(0.2)
        response = httpx.post(
            f"{url}/api/auth/token", data={"username": USER, "password": PASSWORD}, timeout=10
        )
        response.raise_for_status()
        yield WebServer(url, data_dir, response.json()["access_token"])
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def prepare(data_dir: Path, web_bundle: Path) -> None:
    """The data directory of a test server: user USER, owner of project PROJECT."""
    settings = Settings(data_dir=data_dir, dicom_port=None, jobs_workers=0, web_dir=web_bundle)
    app = create_app(settings)
    # the user and project through the same store the server opens
    from fastapi.testclient import TestClient

    with TestClient(app):
        store = app.state.auth
        store.create_user(USER, PASSWORD)
        store.create_project(store.principal(USER), PROJECT, "Lung nodules")


@pytest.fixture(scope="session")
def web_server(tmp_path_factory: pytest.TempPathFactory, web_bundle: Path) -> Iterator[WebServer]:
    if not CHROMIUM.exists():
        pytest.fail(f"chromium not found at {CHROMIUM} (scripts/system-deps.sh installs it)")
    data_dir = tmp_path_factory.mktemp("web") / "data"
    prepare(data_dir, web_bundle)
    with serve(data_dir, web_bundle) as server:
        yield server


def run_e2e(
    server: WebServer, script: str, params: dict[str, Any] | None = None, timeout: float = 240
) -> dict[str, Any]:
    """Runs web/e2e/<script> against the server (``params`` as its --params JSON) and returns its
    JSON findings; the script's failure (non-zero exit) fails the test with what it printed."""
    artifacts = WEB / "e2e" / "artifacts"
    command = [
        "node",
        str(WEB / "e2e" / script),
        "--url",
        server.url,
        "--user",
        USER,
        "--password",
        PASSWORD,
        "--project",
        PROJECT,
        "--out",
        str(artifacts),
    ]
    if params is not None:
        command += ["--params", json.dumps(params)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, (
        f"{script} printed no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    )
    result: dict[str, Any] = json.loads(lines[-1])
    assert done.returncode == 0, f"{script} failed: {json.dumps(result, indent=1)}\n{done.stderr}"
    return result
