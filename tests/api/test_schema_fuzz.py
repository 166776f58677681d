"""Property-based requests generated from the OpenAPI description: no server errors (5xx).

Bounded to a few examples per operation; requests carry an administrator token so they reach the
route bodies (without one they would all stop at 401).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from carina.api import create_app
from tests.dicom_factory import ct_instance

from .conftest import make_settings

_DATA = Path(tempfile.mkdtemp(prefix="carina-fuzz-"))
atexit.register(shutil.rmtree, _DATA, True)
APP = create_app(make_settings(_DATA / "data"))
schema = schemathesis.openapi.from_asgi("/api/openapi.json", APP)


@pytest.fixture(scope="module")
def admin() -> Iterator[dict[str, str]]:
    with TestClient(APP) as client:
        store = APP.state.auth
        user = store.create_user("admin", "fuzzing-admin-password", is_admin=True)
        store.create_project(store.principal("admin"), "alpha")
        (stored,) = APP.state.archive.ingest([(None, ct_instance("1.2.826.0.1.3680043.10.1.1"))])
        store.add_studies("alpha", [stored.study_instance_uid])
        token = client.post(
            "/api/auth/token", data={"username": "admin", "password": "fuzzing-admin-password"}
        ).json()["access_token"]
        assert user.is_admin
        yield {"Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case, admin: dict[str, str]) -> None:
    if case.path == "/api/auth/logout":
        pytest.skip("would revoke the token the other cases use")
    if case.path.endswith("/jobs/events"):
        case.query = {**(case.query or {}), "timeout": 0}  # else the stream stays open
    case.call_and_validate(headers=admin, checks=[not_a_server_error])
