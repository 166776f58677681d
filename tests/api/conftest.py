"""A server with two projects, one user per role and a few synthetic studies."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from carina.api import create_app
from carina.auth import AuthStore, Principal, Role
from carina.services.settings import Settings
from tests.dicom_factory import ct_instance

PASSWORD = "a-long-test-password"
ROLES = ("owner", "manager", "annotator", "reviewer", "viewer")


@dataclass(frozen=True)
class StudyUIDs:
    study: str
    series: str
    sop: str


@dataclass
class Site:
    app: FastAPI
    client: TestClient
    store: AuthStore
    studies: dict[str, StudyUIDs]  # project name -> a study of it
    principals: dict[str, Principal] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)  # project name -> a job of it

    def token(self, user: str, kind: str = "access", ttl: timedelta | None = None) -> str:
        principal = self.principals[user]
        return self.store.issue_token(principal.user_id, kind, ttl or timedelta(hours=1)).token

    def headers(self, user: str | None) -> dict[str, str]:
        return {} if user is None else {"Authorization": f"Bearer {self.token(user)}"}


def make_settings(data_dir: Path, **extra: object) -> Settings:
    # no jobs engine unless a test asks for one: jobs are recorded and stay queued
    extra.setdefault("jobs_workers", 0)
    return Settings(data_dir=data_dir, dicom_port=None, **extra)  # type: ignore[arg-type]


def build_site(data_dir: Path, **extra: object) -> Iterator[Site]:
    app = create_app(make_settings(data_dir, **extra))
    with TestClient(app) as client:
        store: AuthStore = app.state.auth
        archive = app.state.archive
        site = Site(app, client, store, {})
        site.principals["admin"] = _user(store, "admin", admin=True)
        for name in (*ROLES, "outsider", "target"):
            site.principals[name] = _user(store, name)
        store.create_project(site.principals["owner"], "alpha")
        store.create_project(site.principals["outsider"], "beta")
        owner = site.principals["owner"]
        for role in ROLES[1:]:
            store.set_member(owner, "alpha", role, Role(role))
        store.set_member(owner, "alpha", "target", Role.VIEWER)
        store.set_member(site.principals["outsider"], "beta", "target", Role.VIEWER)
        for project, number in (("alpha", 1), ("beta", 2)):
            uids = StudyUIDs(
                f"1.2.826.0.1.3680043.10.1.{number}",
                f"1.2.826.0.1.3680043.10.2.{number}",
                f"1.2.826.0.1.3680043.10.3.{number}",
            )
            data = ct_instance(uids.study, uids.series, uids.sop, patient_id=f"P{number}")
            (result,) = archive.ingest([(None, data)])
            assert result.status.ok
            store.add_studies(project, [uids.study])
            site.studies[project] = uids
            job_store = app.state.job_store
            job = job_store.submit("echo", {}, project_id=job_store.project_id(project))
            site.jobs[project] = job.id
        for name in list(site.principals):  # reload roles
            site.principals[name] = store.principal(name)
        yield site


def _user(store: AuthStore, name: str, admin: bool = False) -> Principal:
    store.create_user(name, PASSWORD, is_admin=admin)
    return store.principal(name)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from build_site(tmp_path_factory.mktemp("site") / "data")


@pytest.fixture
def fresh_site(tmp_path: Path) -> Iterator[Site]:
    yield from build_site(tmp_path / "data")
