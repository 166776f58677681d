"""Sign-in flows, tokens, CSRF, throttling, audit rows, project-scoped DICOMweb, limits, headers."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from carina.api.security import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from tests.archive.helpers import multipart_body
from tests.dicom_factory import ct_instance

from .conftest import PASSWORD, Site, build_site

STOW_OK = "application/dicom+json"


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Site]:
    yield from build_site(
        tmp_path / "data", login_max_failures=3, max_body_bytes=2000, max_upload_bytes=4000
    )


def _audit(site: Site, **params: str) -> list[dict[str, object]]:
    response = site.client.get("/api/audit", params=params, headers=site.headers("admin"))
    assert response.status_code == 200
    rows: list[dict[str, object]] = response.json()
    return rows


# -- bearer tokens ---------------------------------------------------------------------------------


def test_password_flow_token_and_wrong_password(site: Site) -> None:
    response = site.client.post(
        "/api/auth/token", data={"username": "viewer", "password": PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    me = site.client.get(
        "/api/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.json()["name"] == "viewer"
    assert me.json()["projects"] == {"alpha": "viewer"}
    wrong = site.client.post("/api/auth/token", data={"username": "viewer", "password": "nope"})
    assert wrong.status_code == 401
    nobody = site.client.post("/api/auth/token", data={"username": "ghost", "password": "nope"})
    assert nobody.status_code == 401
    assert nobody.json() == wrong.json()


def test_expired_and_forged_tokens_are_refused(site: Site) -> None:
    expired = site.token("viewer", ttl=timedelta(seconds=-1))
    response = site.client.get("/api/users/me", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    forged = site.client.get("/api/users/me", headers={"Authorization": "Bearer cat_forged"})
    assert forged.status_code == 401
    refused = _audit(site, action="auth.credentials")
    assert [r["detail"] for r in refused[-2:]] == ["invalid or expired token"] * 2
    anonymous = site.client.get("/api/users/me")
    assert anonymous.status_code == 401


def test_personal_tokens_are_shown_once_and_revocable(site: Site) -> None:
    headers = site.headers("annotator")
    created = site.client.post("/api/tokens", json={"name": "laptop"}, headers=headers)
    assert created.status_code == 201
    token = created.json()["token"]
    personal = {"Authorization": f"Bearer {token}"}
    assert site.client.get("/api/users/me", headers=personal).status_code == 200
    listed = site.client.get("/api/tokens", headers=headers).json()
    mine = next(t for t in listed if t["id"] == created.json()["id"])
    assert "token" not in mine
    assert mine["revoked"] is False
    # another user cannot revoke it
    other = site.client.delete(f"/api/tokens/{mine['id']}", headers=site.headers("viewer"))
    assert other.status_code == 404
    assert site.client.get("/api/users/me", headers=personal).status_code == 200
    revoked = site.client.delete(f"/api/tokens/{mine['id']}", headers=headers)
    assert revoked.status_code == 204
    assert site.client.get("/api/users/me", headers=personal).status_code == 401


def test_logout_revokes_the_bearer_token(site: Site) -> None:
    headers = site.headers("viewer")
    assert site.client.post("/api/auth/logout", headers=headers).status_code == 204
    assert site.client.get("/api/users/me", headers=headers).status_code == 401


# -- cookie sessions and CSRF ----------------------------------------------------------------------


def test_cookie_session_needs_the_csrf_header_to_change_state(fresh_site: Site) -> None:
    client = fresh_site.client
    login = client.post("/api/auth/login", json={"username": "viewer", "password": PASSWORD})
    assert login.status_code == 200
    cookies = login.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in session_cookie
    assert "SameSite=strict" in session_cookie
    assert "HttpOnly" not in next(c for c in cookies if c.startswith(CSRF_COOKIE + "="))
    csrf = login.json()["csrf_token"]
    assert client.cookies[CSRF_COOKIE] == csrf

    assert client.get("/api/users/me").json()["name"] == "viewer"
    body = {"name": "cookie-project"}
    assert client.post("/api/projects", json=body).status_code == 403
    assert (
        client.post("/api/projects", json=body, headers={CSRF_HEADER: "0" * 64}).status_code == 403
    )
    odd = client.post("/api/projects", json=body, headers={CSRF_HEADER: "\u00e9".encode("latin-1")})
    assert odd.status_code == 403
    refused = _audit(fresh_site, action="auth.credentials")
    assert [(r["user_name"], r["detail"]) for r in refused] == [
        ("viewer", "missing or wrong CSRF token")
    ] * 3
    assert client.get("/api/projects").json() == [{"name": "alpha", "title": "", "role": "viewer"}]
    created = client.post("/api/projects", json=body, headers={CSRF_HEADER: csrf})
    assert created.status_code == 201

    assert client.post("/api/auth/logout").status_code == 403
    assert client.post("/api/auth/logout", headers={CSRF_HEADER: csrf}).status_code == 204
    client.cookies.set(SESSION_COOKIE, session_cookie.split(";")[0].split("=", 1)[1])
    assert client.get("/api/users/me").status_code == 401
    client.cookies.clear()


def test_session_cookie_is_not_a_bearer_token(fresh_site: Site) -> None:
    login = fresh_site.client.post(
        "/api/auth/login", json={"username": "viewer", "password": PASSWORD}
    )
    session = fresh_site.client.cookies[SESSION_COOKIE]
    fresh_site.client.cookies.clear()
    assert login.status_code == 200
    response = fresh_site.client.get(
        "/api/users/me", headers={"Authorization": f"Bearer {session}"}
    )
    assert response.status_code == 401


# -- login throttling ------------------------------------------------------------------------------


def test_failed_logins_are_throttled_per_user(limited: Site) -> None:
    client = limited.client
    for _ in range(3):
        bad = client.post("/api/auth/token", data={"username": "viewer", "password": "wrong"})
        assert bad.status_code == 401
    good = {"username": "viewer", "password": PASSWORD}
    assert client.post("/api/auth/token", data=good).status_code == 429
    assert client.post("/api/auth/login", json=good).status_code == 429
    other = client.post("/api/auth/token", data={"username": "owner", "password": PASSWORD})
    assert other.status_code == 200
    outcomes = [r["outcome"] for r in _audit(limited, action="auth.login", user="viewer")]
    assert outcomes == ["failed", "failed", "failed", "denied", "denied"]


# -- audit -----------------------------------------------------------------------------------------


def test_reads_writes_denials_and_role_changes_are_audited(fresh_site: Site) -> None:
    site = fresh_site
    alpha = site.studies["alpha"]
    path = f"/projects/alpha/dicom-web/studies/{alpha.study}/metadata"
    assert site.client.get(path, headers=site.headers("viewer")).status_code == 200
    denied = site.client.post(
        "/projects/alpha/dicom-web/studies", content=b"", headers=site.headers("viewer")
    )
    assert denied.status_code == 403
    guessed = f"/projects/alpha/dicom-web/studies/{site.studies['beta'].study}"
    assert site.client.get(guessed, headers=site.headers("viewer")).status_code == 404
    changed = site.client.put(
        "/api/projects/alpha/members/target",
        json={"role": "annotator"},
        headers=site.headers("manager"),
    )
    assert changed.status_code == 200

    rows = _audit(site, user="viewer")
    read = next(r for r in rows if r["resource"] == f"GET {path}")
    assert (read["action"], read["project"], read["outcome"]) == ("study.read", "alpha", "allowed")
    assert read["client_ip"] == "testclient"
    assert read["user_id"] == site.principals["viewer"].user_id
    store = next(r for r in rows if r["action"] == "study.store")
    assert (store["outcome"], store["detail"]) == ("denied", "policy")
    idor = next(r for r in rows if r["resource"] == f"GET {guessed}")
    assert (idor["outcome"], idor["detail"]) == ("denied", "study not in project")
    change = _audit(site, action="project.members.set")
    assert [(r["user_name"], r["resource"], r["detail"]) for r in change] == [
        ("manager", "user target", "role=annotator")
    ]
    anonymous = site.client.get("/dicom-web/studies")
    assert anonymous.status_code == 401
    assert _audit(site, action="study.read", outcome="denied")[-1]["detail"] == "anonymous"

    export = site.client.get(
        "/api/audit", params={"format": "csv", "user": "viewer"}, headers=site.headers("admin")
    )
    assert export.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(export.text)))
    assert len(table) == len(rows)
    assert table[0]["user_name"] == "viewer"


# -- project-scoped DICOMweb -----------------------------------------------------------------------


def _uids(items: list[dict[str, dict[str, list[str]]]], tag: str) -> set[str]:
    return {item[tag]["Value"][0] for item in items}


def test_qido_returns_the_project_studies_only(site: Site) -> None:
    headers = site.headers("viewer")
    alpha, beta = site.studies["alpha"], site.studies["beta"]
    base = "/projects/alpha/dicom-web"
    studies = site.client.get(f"{base}/studies", headers=headers).json()
    assert _uids(studies, "0020000D") == {alpha.study}
    by_uid = site.client.get(
        f"{base}/studies", params={"StudyInstanceUID": beta.study}, headers=headers
    )
    assert by_uid.json() == []
    assert _uids(site.client.get(f"{base}/series", headers=headers).json(), "0020000E") == {
        alpha.series
    }
    instances = site.client.get(f"{base}/instances", params={"PatientID": "P2"}, headers=headers)
    assert instances.json() == []
    assert _uids(site.client.get(f"{base}/instances", headers=headers).json(), "00080018") == {
        alpha.sop
    }
    everything = site.client.get("/dicom-web/studies", headers=site.headers("admin")).json()
    assert _uids(everything, "0020000D") == {alpha.study, beta.study}


def test_stow_into_a_project_adds_the_study_and_refuses_foreign_ones(fresh_site: Site) -> None:
    site = fresh_site
    headers = site.headers("annotator")
    new_study = "1.2.826.0.1.3680043.10.9.1"
    body, content_type = multipart_body([ct_instance(new_study, patient_id="P9")])
    stored = site.client.post(
        "/projects/alpha/dicom-web/studies",
        content=body,
        headers={**headers, "Content-Type": content_type},
    )
    assert stored.status_code == 200, stored.text
    retrieve_url = stored.json()["00081190"]["Value"][0]
    assert retrieve_url.endswith(f"/projects/alpha/dicom-web/studies/{new_study}")
    assert site.store.studies("alpha") == sorted([site.studies["alpha"].study, new_study])
    assert (
        site.client.get(
            f"/projects/beta/dicom-web/studies/{new_study}", headers=site.headers("outsider")
        ).status_code
        == 404
    )

    beta = site.studies["beta"]
    sneaked = "1.2.826.0.1.3680043.10.3.99"
    body, content_type = multipart_body(
        [ct_instance(beta.study, beta.series, sneaked, patient_id="P2")]
    )
    refused = site.client.post(
        "/projects/alpha/dicom-web/studies",
        content=body,
        headers={**headers, "Content-Type": content_type},
    )
    assert refused.status_code == 409
    (failed,) = refused.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC001]
    assert failed["00081155"]["Value"] == [sneaked]
    assert beta.study not in site.store.studies("alpha")
    into = site.client.post(
        f"/projects/alpha/dicom-web/studies/{beta.study}",
        content=body,
        headers={**headers, "Content-Type": content_type},
    )
    assert into.status_code == 404
    assert len(site.app.state.archive.instances(beta.study)) == 1
    stow_rows = _audit(site, action="project.studies.add")
    assert [r["resource"] for r in stow_rows] == [f"study {new_study}"]


def test_studies_are_shared_only_by_who_can_see_them(fresh_site: Site) -> None:
    site = fresh_site
    beta = site.studies["beta"].study
    body = {"study_uids": [beta]}
    manager = site.client.post(
        "/api/projects/alpha/studies", json=body, headers=site.headers("manager")
    )
    assert manager.status_code == 404
    missing = site.client.post(
        "/api/projects/alpha/studies",
        json={"study_uids": ["1.2.3.4"]},
        headers=site.headers("admin"),
    )
    assert missing.status_code == 404
    admin = site.client.post(
        "/api/projects/alpha/studies", json=body, headers=site.headers("admin")
    )
    assert admin.json() == {"project": "alpha", "study_uids": [beta]}
    seen = site.client.get(
        f"/projects/alpha/dicom-web/studies/{beta}/metadata", headers=site.headers("viewer")
    )
    assert seen.status_code == 200
    removed = site.client.delete(
        f"/api/projects/alpha/studies/{beta}", headers=site.headers("manager")
    )
    assert removed.status_code == 204
    gone = site.client.get(
        f"/projects/alpha/dicom-web/studies/{beta}/metadata", headers=site.headers("viewer")
    )
    assert gone.status_code == 404


def test_members_by_role(fresh_site: Site) -> None:
    site = fresh_site
    put = site.client.put(
        "/api/projects/alpha/members/outsider",
        json={"role": "owner"},
        headers=site.headers("manager"),
    )
    assert put.status_code == 403
    put = site.client.put(
        "/api/projects/alpha/members/outsider",
        json={"role": "reviewer"},
        headers=site.headers("manager"),
    )
    assert put.status_code == 200
    members = site.client.get("/api/projects/alpha/members", headers=site.headers("viewer")).json()
    assert {"user": "outsider", "role": "reviewer"} in members
    outsider = site.headers("outsider")
    assert site.client.get("/projects/alpha/dicom-web/studies", headers=outsider).status_code == 200
    gone = site.client.delete("/api/projects/alpha/members/outsider", headers=site.headers("owner"))
    assert gone.status_code == 204
    assert site.client.get("/projects/alpha/dicom-web/studies", headers=outsider).status_code == 404


# -- limits and headers ----------------------------------------------------------------------------


def test_request_bodies_over_the_limits_are_refused(limited: Site) -> None:
    headers = limited.headers("admin")
    big_json = {"name": "p", "title": "x" * 3000}
    assert limited.client.post("/api/projects", json=big_json, headers=headers).status_code == 413
    body, content_type = multipart_body([b"\0" * 5000])
    stow = limited.client.post(
        "/dicom-web/studies", content=body, headers={**headers, "Content-Type": content_type}
    )
    assert stow.status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"\0" * 1000

    streamed = limited.client.post(
        "/dicom-web/studies", content=chunks(), headers={**headers, "Content-Type": content_type}
    )
    assert streamed.status_code == 413
    small, content_type = multipart_body([ct_instance("1.2.826.0.1.3680043.10.9.2")])
    assert len(small) < 4000
    ok = limited.client.post(
        "/dicom-web/studies", content=small, headers={**headers, "Content-Type": content_type}
    )
    assert ok.status_code == 200


def test_security_headers(site: Site, tmp_path: Path) -> None:
    response = site.client.get("/api/health")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in response.headers
    denied = site.client.get("/dicom-web/studies")
    assert denied.headers["x-frame-options"] == "DENY"
    for https in build_site(tmp_path / "https", https=True):
        hsts = https.client.get("/api/health").headers["strict-transport-security"]
        assert hsts.startswith("max-age=31536000")
        login = https.client.post(
            "/api/auth/login", json={"username": "viewer", "password": PASSWORD}
        )
        assert all("Secure" in c for c in login.headers.get_list("set-cookie"))
        https.client.cookies.clear()


def test_deactivated_users_lose_access_at_once(fresh_site: Site) -> None:
    site = fresh_site
    token = {"Authorization": f"Bearer {site.token('viewer')}"}
    assert site.client.get("/api/users/me", headers=token).status_code == 200
    admin = site.headers("admin")
    off = site.client.patch("/api/users/viewer", json={"is_active": False}, headers=admin)
    assert off.json()["is_active"] is False
    assert site.client.get("/api/users/me", headers=token).status_code == 401
    login = site.client.post("/api/auth/token", data={"username": "viewer", "password": PASSWORD})
    assert login.status_code == 401
    last = site.client.patch("/api/users/admin", json={"is_admin": False}, headers=admin)
    assert last.status_code == 409
    assert _audit(site, action="users.update")[-1]["detail"] == "active=False admin=False"


def test_changing_the_password_revokes_tokens(fresh_site: Site) -> None:
    site = fresh_site
    headers = site.headers("viewer")
    other = site.headers("viewer")
    wrong = {"current_password": "not-the-password", "new_password": "a-brand-new-password"}
    assert (
        site.client.post("/api/users/me/password", json=wrong, headers=headers).status_code == 403
    )
    change = {"current_password": PASSWORD, "new_password": "a-brand-new-password"}
    done = site.client.post("/api/users/me/password", json=change, headers=headers)
    assert done.status_code == 204
    assert site.client.get("/api/users/me", headers=other).status_code == 401
    old = site.client.post("/api/auth/token", data={"username": "viewer", "password": PASSWORD})
    assert old.status_code == 401
    new = site.client.post(
        "/api/auth/token", data={"username": "viewer", "password": "a-brand-new-password"}
    )
    assert new.status_code == 200
    assert _audit(site, action="users.password")[-1]["user_name"] == "viewer"
