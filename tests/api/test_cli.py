"""`carina user`, `carina audit`, `carina login` and `carina project` against a live server."""

from __future__ import annotations

import csv
import io
import json
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from carina.api import create_app
from carina.cli.main import app as cli
from carina.client import CarinaAPIError, CarinaClient
from carina.services.settings import Settings
from tests.archive.helpers import free_port

PASSWORD = "first-admin-password"


def test_user_add_with_stdin_and_generated_passwords(tmp_path: Path) -> None:
    runner = CliRunner()
    data = str(tmp_path / "data")
    added = runner.invoke(
        cli,
        ["user", "add", "root", "--admin", "--password-stdin", "--data-dir", data],
        input=PASSWORD + "\n",
    )
    assert added.exit_code == 0, added.output
    assert "administrator" in added.output
    assert PASSWORD not in added.output
    generated = runner.invoke(cli, ["user", "add", "bob", "--data-dir", data])
    assert generated.exit_code == 0
    password = generated.output.split("password (shown once): ")[1].strip()
    assert len(password) >= 20
    again = runner.invoke(cli, ["user", "add", "bob", "--data-dir", data])
    assert again.exit_code == 1
    short = runner.invoke(
        cli, ["user", "add", "eve", "--password-stdin", "--data-dir", data], input="short\n"
    )
    assert short.exit_code == 1
    listed = runner.invoke(cli, ["user", "list", "--data-dir", data])
    assert "root" in listed.output
    assert "bob" in listed.output
    assert "eve" not in listed.output

    reset = runner.invoke(
        cli,
        ["user", "set-password", "bob", "--password-stdin", "--data-dir", data],
        input="a-reset-password\n",
    )
    assert reset.exit_code == 0, reset.output
    missing = runner.invoke(cli, ["user", "set-password", "nobody", "--data-dir", data])
    assert missing.exit_code == 1

    exported = tmp_path / "audit.csv"
    audit = runner.invoke(cli, ["audit", "--data-dir", data, "--csv", str(exported)])
    assert audit.exit_code == 0, audit.output
    rows = list(csv.DictReader(io.StringIO(exported.read_text())))
    assert [(r["action"], r["resource"]) for r in rows] == [
        ("users.create", "user root"),
        ("users.create", "user bob"),
        ("users.password", "user bob"),
    ]
    since = runner.invoke(cli, ["audit", "--data-dir", data, "--since", "2999-01-01"])
    assert "users.create" not in since.output


def test_serve_refuses_a_placeholder_secret(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["serve", "--data-dir", str(tmp_path / "data"), "--no-dimse"],
        env={"CARINA_SECRET_KEY": "changethis"},
    )
    assert result.exit_code == 1
    assert "placeholder" in result.output


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    app = create_app(Settings(data_dir=tmp_path / "data", port=port, dicom_port=None))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not served.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    app.state.auth.create_user("root", PASSWORD, is_admin=True)
    app.state.auth.create_user("carol", PASSWORD)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        served.should_exit = True
        thread.join(10)


def test_login_then_project_commands(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    monkeypatch.setenv("CARINA_CONFIG_DIR", str(config))
    monkeypatch.delenv("CARINA_TOKEN", raising=False)
    monkeypatch.delenv("CARINA_URL", raising=False)
    runner = CliRunner()
    bad = runner.invoke(cli, ["login", server, "--user", "root", "--password-stdin"], input="no\n")
    assert bad.exit_code == 1
    assert runner.invoke(cli, ["project", "list"]).exit_code == 1
    login = runner.invoke(
        cli, ["login", server, "--user", "root", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert login.exit_code == 0, login.output
    saved = config / "credentials.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text())["token"].startswith("cap_")
    assert runner.invoke(cli, ["project", "create", "lungs", "--title", "Lung CT"]).exit_code == 0
    added = runner.invoke(cli, ["project", "add-member", "lungs", "carol", "--role", "annotator"])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(cli, ["project", "list"])
    assert "lungs" in listed.output
    assert "owner" in listed.output

    with CarinaClient.login(server, "carol", PASSWORD) as carol:
        assert carol.me()["projects"] == {"lungs": "annotator"}
        assert carol.members("lungs") == [
            {"user": "carol", "role": "annotator"},
            {"user": "root", "role": "owner"},
        ]
        with pytest.raises(CarinaAPIError) as denied:
            carol.set_member("lungs", "carol", "manager")
        assert denied.value.status_code == 403
        with pytest.raises(CarinaAPIError) as hidden:
            carol.audit()
        assert hidden.value.status_code == 403
        carol.logout()
        with pytest.raises(CarinaAPIError) as gone:
            carol.me()
        assert gone.value.status_code == 401


def test_jobs_commands(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARINA_CONFIG_DIR", str(tmp_path / "config"))
    with CarinaClient.login(server, "root", PASSWORD) as root:
        root.create_project("liver")
        root.set_member("liver", "carol", "viewer")
        monkeypatch.setenv("CARINA_TOKEN", root.create_token("cli")["token"])
    monkeypatch.setenv("CARINA_URL", server)
    runner = CliRunner()
    submitted = runner.invoke(
        cli, ["jobs", "submit", "liver", "echo", "--params", '{"organ": "liver"}']
    )
    assert submitted.exit_code == 0, submitted.output
    echo_id = int(submitted.output.strip())
    watched = runner.invoke(cli, ["jobs", "watch", "liver", str(echo_id), "--interval", "0.1"])
    assert watched.exit_code == 0, watched.output
    assert '{"organ": "liver"}' in watched.output
    long = runner.invoke(
        cli, ["jobs", "submit", "liver", "sleep", "--params", '{"seconds": 60, "steps": 600}']
    )
    long_id = int(long.output.strip())
    cancelled = runner.invoke(cli, ["jobs", "cancel", "liver", str(long_id)])
    assert cancelled.exit_code == 0, cancelled.output
    ended = runner.invoke(cli, ["jobs", "watch", "liver", str(long_id), "--interval", "0.1"])
    assert ended.exit_code == 1
    assert f"job {long_id} cancelled" in ended.output
    listed = runner.invoke(cli, ["jobs", "list", "liver"])
    assert listed.exit_code == 0, listed.output
    assert "succeeded" in listed.output
    assert "cancelled" in listed.output
    only = runner.invoke(cli, ["jobs", "list", "liver", "--status", "succeeded"])
    assert "cancelled" not in only.output
    urgent = runner.invoke(cli, ["jobs", "submit", "liver", "echo", "--priority", "4"])
    assert urgent.exit_code == 0, urgent.output
    with CarinaClient.login(server, "carol", PASSWORD) as carol:
        assert carol.job("liver", int(urgent.output.strip()))["priority"] == 4
    refused = runner.invoke(cli, ["jobs", "submit", "liver", "echo", "--params", "[1]"])
    assert refused.exit_code == 1
    with CarinaClient.login(server, "carol", PASSWORD) as carol:
        assert carol.job("liver", echo_id)["result"] == {"organ": "liver"}
        with pytest.raises(CarinaAPIError) as denied:
            carol.cancel_job("liver", echo_id)
        assert denied.value.status_code == 403
