"""The web shell in a real browser: served by ``carina serve``, sign-in, project switcher."""

from __future__ import annotations

import httpx

from .conftest import PROJECT, USER, WebServer, run_e2e


def test_bundle_is_served_with_spa_fallback_and_api_untouched(web_server: WebServer) -> None:
    index = httpx.get(f"{web_server.url}/")
    assert index.status_code == 200
    assert '<div id="app">' in index.text
    # an unknown viewer path gets index.html; API and DICOMweb paths are never answered by it
    deep = httpx.get(f"{web_server.url}/p/{PROJECT}/study/1.2.3")
    assert deep.status_code == 200
    assert deep.text == index.text
    assert httpx.get(f"{web_server.url}/api/no-such-route").status_code == 404
    assert httpx.get(f"{web_server.url}/api/users/me").status_code == 401
    assert httpx.get(f"{web_server.url}/projects/{PROJECT}/dicom-web/studies").status_code == 401
    # no escape from the bundle directory
    escaped = httpx.get(f"{web_server.url}/%2E%2E/%2E%2E/pyproject.toml")
    assert "[project]" not in escaped.text


def test_sign_in_lands_on_the_requested_project(web_server: WebServer) -> None:
    result = run_e2e(web_server, "shell.mjs")
    assert result["redirected"] == "/login"
    assert result["landed"] == f"/p/{PROJECT}"
    assert result["projects"] == [PROJECT]
    assert result["user"] == USER
    assert result["jobsLive"] == "live"
    assert result["pageErrors"] == []
