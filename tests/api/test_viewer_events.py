"""Live job progress as server-sent events, from a real server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from carina.api import create_app
from carina.api import viewer as viewer_routes
from carina.auth import AuthStore, Role
from carina.services.settings import Settings
from tests.archive.helpers import free_port

PASSWORD = "a-long-test-password"


@dataclass
class Server:
    url: str
    tokens: dict[str, str]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    settings = Settings(data_dir=tmp_path / "data", port=port, dicom_port=None, jobs_workers=1)
    app = create_app(settings)
    served = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not served.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    store: AuthStore = app.state.auth
    tokens = {}
    for name in ("owner", "viewer", "outsider"):
        store.create_user(name, PASSWORD)
    owner = store.principal("owner")
    store.create_project(owner, "alpha")
    store.create_project(store.principal("outsider"), "beta")
    store.set_member(owner, "alpha", "viewer", Role.VIEWER)
    for name in ("owner", "viewer", "outsider"):
        principal = store.principal(name)
        tokens[name] = store.issue_token(principal.user_id, "access", timedelta(hours=1)).token
    try:
        yield Server(f"http://127.0.0.1:{port}", tokens)
    finally:
        served.should_exit = True
        thread.join(20)


def _auth(server: Server, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.tokens[user]}"}


def _events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event name, data) of each event, and ("comment", text) of comment lines."""
    name, data = "message", []
    for line in lines:
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            yield name, json.loads("\n".join(data))
            name, data = "message", []


def test_progress_of_a_running_job_is_pushed(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(viewer_routes, "KEEPALIVE_S", 1.0)
    seen: list[dict[str, Any]] = []
    comments: list[str] = []
    with httpx.Client(base_url=server.url, timeout=60) as client:
        url = "/api/projects/alpha/jobs/events"
        with client.stream("GET", url, headers=_auth(server, "viewer")) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = _events(stream.iter_lines())
            assert next(events) == ("comment", "connected")
            # nothing happens for a while: keep-alives
            assert next(events) == ("comment", "keep-alive")
            submitted = client.post(
                "/api/projects/alpha/jobs",
                json={"kind": "sleep", "params": {"seconds": 3, "steps": 3}},
                headers=_auth(server, "owner"),
            )
            assert submitted.status_code == 201, submitted.text
            job_id = submitted.json()["id"]
            deadline = time.monotonic() + 90
            for name, data in events:
                assert time.monotonic() < deadline
                if name == "comment":
                    comments.append(data)
                    continue
                assert name == "job"
                assert data["id"] == job_id
                seen.append(data)
                if data["state"] in ("succeeded", "failed", "cancelled"):
                    break
    states = [e["state"] for e in seen]
    assert states[-1] == "succeeded", seen
    assert "running" in states
    assert set(seen[0]) == {"id", "kind", "state", "progress", "message"}
    assert all(e["kind"] == "sleep" for e in seen)
    running = [e["progress"] for e in seen if e["state"] == "running"]
    assert running == sorted(running)
    # the three steps are reported as they happen (the last may arrive with the end)
    messages = {e["message"] for e in seen}
    assert {"step 1 of 3", "step 2 of 3"} <= messages
    assert seen[-1]["progress"] == 1.0


def test_events_need_project_access(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        url = "/api/projects/alpha/jobs/events?timeout=0"
        assert client.get(url).status_code == 401
        assert client.get(url, headers=_auth(server, "outsider")).status_code == 404
        # a short stream ends by itself
        quick = client.get(url, headers=_auth(server, "viewer"))
        assert quick.status_code == 200
        assert quick.text.startswith("retry: 2000\n: connected")
