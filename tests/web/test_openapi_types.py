"""The viewer's API types are generated from the server's OpenAPI document: both committed
files must match what the server says now (``make web-schema`` regenerates them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from scripts.openapi import openapi_document

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "web" / "src" / "api"


def test_committed_openapi_document_is_current() -> None:
    assert (API / "openapi.json").read_text() == openapi_document(), (
        "web/src/api/openapi.json is stale: run `make web-schema`"
    )


def test_committed_typescript_types_are_generated_from_it(tmp_path: Path) -> None:
    generator = ROOT / "web" / "node_modules" / ".bin" / "openapi-typescript"
    if not generator.exists():
        if shutil.which("npm") is None:
            pytest.fail("npm is needed (scripts/system-deps.sh installs it)")
        subprocess.run(["bash", str(ROOT / "scripts" / "build-web.sh")], check=True, timeout=600)
    out = tmp_path / "schema.d.ts"
    subprocess.run(
        [str(generator), str(API / "openapi.json"), "-o", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert out.read_text() == (API / "schema.d.ts").read_text(), (
        "web/src/api/schema.d.ts is stale: run `make web-schema`"
    )
