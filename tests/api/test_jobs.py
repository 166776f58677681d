"""The jobs endpoints: submission by role, reading, cancellation, project isolation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from carina.jobs import JobStatus
from tests.jobs.conftest import poll

from .conftest import Site, build_site


@pytest.fixture(scope="module")
def working_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A site whose server runs jobs on one local worker process."""
    yield from build_site(tmp_path_factory.mktemp("jobs") / "data", jobs_workers=1)


def _job(site: Site, user: str, job_id: int, project: str = "alpha") -> dict[str, Any]:
    response = site.client.get(f"/api/projects/{project}/jobs/{job_id}", headers=site.headers(user))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_submitted_job_runs_and_members_read_it(working_site: Site) -> None:
    site = working_site
    response = site.client.post(
        "/api/projects/alpha/jobs",
        json={"kind": "echo", "params": {"series": "1.2.3"}},
        headers=site.headers("annotator"),
    )
    assert response.status_code == 201, response.text
    submitted = response.json()
    assert (submitted["status"], submitted["owner"], submitted["project"]) == (
        "queued",
        "annotator",
        "alpha",
    )
    done = poll(lambda: (j := _job(site, "viewer", submitted["id"]))["status"] == "succeeded" and j)
    assert done["result"] == {"series": "1.2.3"}
    assert done["worker"].startswith("tcp://127.0.0.1:")
    assert "succeeded" in done["log"]
    listed = site.client.get("/api/projects/alpha/jobs", headers=site.headers("reviewer")).json()
    assert submitted["id"] in [j["id"] for j in listed]
    assert all(j["project"] == "alpha" for j in listed)
    assert "log" not in listed[0]
    only = site.client.get(
        "/api/projects/alpha/jobs?status=succeeded", headers=site.headers("viewer")
    ).json()
    assert {j["status"] for j in only} == {"succeeded"}
    audit = site.client.get("/api/audit", headers=site.headers("admin")).json()
    assert any(
        e["action"] == "job.submit" and e["resource"] == f"job {submitted['id']}" for e in audit
    )


def test_running_job_is_cancelled(working_site: Site) -> None:
    site = working_site
    job = site.client.post(
        "/api/projects/alpha/jobs",
        json={"kind": "sleep", "params": {"seconds": 60, "steps": 600}},
        headers=site.headers("manager"),
    ).json()
    poll(lambda: _job(site, "owner", job["id"])["progress"] > 0)
    response = site.client.post(
        f"/api/projects/alpha/jobs/{job['id']}/cancel", headers=site.headers("annotator")
    )
    assert response.status_code == 200
    assert response.json()["cancel_requested"] is True
    poll(lambda: _job(site, "owner", job["id"])["status"] == "cancelled", timeout=10)


def test_viewers_and_reviewers_cannot_submit_or_cancel(site: Site) -> None:
    for user in ("viewer", "reviewer"):
        headers = site.headers(user)
        body = {"kind": "echo"}
        assert (
            site.client.post("/api/projects/alpha/jobs", json=body, headers=headers).status_code
            == 403
        )
        cancel = f"/api/projects/alpha/jobs/{site.jobs['alpha']}/cancel"
        assert site.client.post(cancel, headers=headers).status_code == 403


def test_a_job_of_another_project_is_not_found(site: Site) -> None:
    foreign = site.jobs["beta"]
    for user in ("owner", "admin"):
        headers = site.headers(user)
        missing = site.client.get("/api/projects/alpha/jobs/999999", headers=headers)
        other = site.client.get(f"/api/projects/alpha/jobs/{foreign}", headers=headers)
        assert (other.status_code, other.json()) == (missing.status_code, missing.json())
        assert other.status_code == 404
        cancel = site.client.post(f"/api/projects/alpha/jobs/{foreign}/cancel", headers=headers)
        assert cancel.status_code == 404
    assert site.client.get(
        f"/api/projects/beta/jobs/{foreign}", headers=site.headers("outsider")
    ).json()["status"] in {"queued", "cancelled"}
    listed = site.client.get("/api/projects/alpha/jobs", headers=site.headers("admin")).json()
    assert foreign not in [j["id"] for j in listed]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"kind": "quantify", "params": {"image": "/etc/passwd"}}, "cannot be submitted over HTTP"),
        ({"kind": "no.such"}, "unknown job kind"),
    ],
)
def test_kinds_not_offered_over_http_are_refused(
    site: Site, body: dict[str, Any], detail: str
) -> None:
    response = site.client.post(
        "/api/projects/alpha/jobs", json=body, headers=site.headers("owner")
    )
    assert response.status_code == 400
    assert detail in response.json()["detail"]


def test_without_an_engine_jobs_wait_queued_and_cancel_at_once(fresh_site: Site) -> None:
    site = fresh_site
    headers = site.headers("annotator")
    job = site.client.post(
        "/api/projects/alpha/jobs", json={"kind": "echo", "max_attempts": 3}, headers=headers
    ).json()
    assert _job(site, "viewer", job["id"])["status"] == JobStatus.QUEUED
    cancelled = site.client.post(f"/api/projects/alpha/jobs/{job['id']}/cancel", headers=headers)
    assert cancelled.json()["status"] == "cancelled"
    assert "cancelled before it started" in cancelled.json()["log"]


def test_job_request_limits(site: Site) -> None:
    headers = site.headers("owner")
    for body in (
        {"kind": "echo", "max_attempts": 0},
        {"kind": "echo", "timeout_s": 0},
        {"kind": "echo", "resources": {"GPU": "one"}},
    ):
        response = site.client.post("/api/projects/alpha/jobs", json=body, headers=headers)
        assert response.status_code == 422, body


def test_priority_above_normal_takes_a_manager_and_queue_positions_follow_it(
    fresh_site: Site,
) -> None:
    site = fresh_site  # no workers: jobs stay queued

    def submit(user: str, priority: int) -> Any:
        return site.client.post(
            "/api/projects/alpha/jobs",
            json={"kind": "echo", "priority": priority},
            headers=site.headers(user),
        )

    denied = submit("annotator", 3)
    assert denied.status_code == 403
    assert "priority" in denied.json()["detail"]
    low = submit("annotator", -2).json()
    normal = submit("annotator", 0).json()
    urgent = submit("manager", 5).json()
    assert (low["priority"], normal["priority"], urgent["priority"]) == (-2, 0, 5)
    assert submit("manager", 11).status_code == 422
    listed = {
        j["id"]: j["queue_position"]
        for j in site.client.get("/api/projects/alpha/jobs", headers=site.headers("viewer")).json()
    }
    # positions are server-wide (the site holds other queued jobs): urgent first, low last
    assert listed[urgent["id"]] == 1
    assert listed[urgent["id"]] < listed[normal["id"]] < listed[low["id"]]
    cancelled = site.client.post(
        f"/api/projects/alpha/jobs/{urgent['id']}/cancel", headers=site.headers("manager")
    ).json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["queue_position"] is None
    assert _job(site, "viewer", low["id"])["queue_position"] == listed[low["id"]] - 1


def test_force_cancel_takes_a_manager_and_stops_a_running_job(working_site: Site) -> None:
    site = working_site
    job = site.client.post(
        "/api/projects/alpha/jobs",
        json={"kind": "sleep", "params": {"seconds": 60, "steps": 600}},
        headers=site.headers("annotator"),
    ).json()
    poll(lambda: _job(site, "viewer", job["id"])["status"] == "running")
    url = f"/api/projects/alpha/jobs/{job['id']}/cancel?force=true"
    denied = site.client.post(url, headers=site.headers("annotator"))
    assert denied.status_code == 403
    assert _job(site, "viewer", job["id"])["status"] == "running"
    forced = site.client.post(url, headers=site.headers("manager"))
    assert forced.status_code == 200, forced.text
    assert forced.json()["status"] == "cancelled"
    assert "cancelled by force" in forced.json()["log"]
    again = site.client.post(
        "/api/projects/alpha/jobs", json={"kind": "echo"}, headers=site.headers("annotator")
    ).json()
    poll(lambda: _job(site, "viewer", again["id"])["status"] == "succeeded", timeout=60)
