"""``carina user``, ``carina audit``, ``carina login`` and ``carina project``."""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from carina.auth.audit import to_csv
from carina.client import CarinaAPIError, CarinaClient
from carina.core.errors import CarinaError
from carina.services.auth import open_directory
from carina.services.settings import Settings

console = Console()
err_console = Console(stderr=True)

user_app = typer.Typer(help="Manage users of a data directory.", no_args_is_help=True)
project_app = typer.Typer(help="Manage projects on a Carina server.", no_args_is_help=True)

DataDir = typer.Option(..., "--data-dir", help="Data directory of the server.")
DatabaseUrl = typer.Option(None, "--database-url", help="Database URL (default: the data dir's).")


def _settings(data_dir: Path, database_url: str | None) -> Settings:
    return Settings(data_dir=data_dir, database_url=database_url)


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="User name."),
    data_dir: Path = DataDir,
    database_url: str | None = DatabaseUrl,
    admin: bool = typer.Option(False, "--admin", help="Make the user a site administrator."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input."
    ),
) -> None:
    """Create a user. Without --password-stdin a random password is generated and printed once."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        generated = False
    else:
        password = secrets.token_urlsafe(18)
        generated = True
    try:
        with open_directory(_settings(data_dir, database_url)) as directory:
            user = directory.store.create_user(name, password, is_admin=admin)
            directory.audit.record(
                action="users.create",
                outcome="allowed",
                user_name="(cli)",
                resource=f"user {user.name}",
                client_ip="local",
                detail=f"admin={user.is_admin}",
            )
    except CarinaError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"created user {user.name}" + (" (administrator)" if user.is_admin else ""))
    if generated:
        console.print(f"password (shown once): {password}", highlight=False)


@user_app.command("set-password")
def user_set_password(
    name: str = typer.Argument(..., help="User name."),
    data_dir: Path = DataDir,
    database_url: str | None = DatabaseUrl,
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input."
    ),
) -> None:
    """Reset a password (revokes the user's tokens). Without --password-stdin a random password is
    generated and printed once."""
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else secrets.token_urlsafe(18)
    try:
        with open_directory(_settings(data_dir, database_url)) as directory:
            directory.store.set_password(name, password)
            directory.audit.record(
                action="users.password",
                outcome="allowed",
                user_name="(cli)",
                resource=f"user {name}",
                client_ip="local",
            )
    except CarinaError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"password of {name} set; their tokens are revoked")
    if not password_stdin:
        console.print(f"password (shown once): {password}", highlight=False)


@user_app.command("list")
def user_list(data_dir: Path = DataDir, database_url: str | None = DatabaseUrl) -> None:
    """List the users of a data directory."""
    with open_directory(_settings(data_dir, database_url)) as directory:
        users = directory.store.users()
    table = Table("name", "admin", "active")
    for user in users:
        table.add_row(user.name, "yes" if user.is_admin else "", "yes" if user.is_active else "no")
    console.print(table)


def audit_command(
    data_dir: Path = DataDir,
    database_url: str | None = DatabaseUrl,
    since: datetime | None = typer.Option(
        None,
        "--since",
        help="Only events at or after this time (local time unless it has an offset).",
    ),
    user: str | None = typer.Option(None, "--user", help="Only events of this user."),
    action: str | None = typer.Option(None, "--action", help="Only actions starting with this."),
    project: str | None = typer.Option(None, "--project", help="Only events of this project."),
    csv_file: Path | None = typer.Option(None, "--csv", help="Write the events to this CSV file."),
) -> None:
    """Show the audit trail of a data directory (or export it as CSV)."""
    if since is not None and since.tzinfo is None:
        since = since.astimezone()
    with open_directory(_settings(data_dir, database_url)) as directory:
        records = directory.audit.events(since=since, user=user, action=action, project=project)
    if csv_file is not None:
        csv_file.write_text(to_csv(records))
        console.print(f"{len(records)} events written to {csv_file}")
        return
    table = Table("time", "user", "action", "resource", "project", "client", "outcome")
    for r in records:
        table.add_row(
            r.at.isoformat(timespec="seconds"),
            r.user_name,
            r.action,
            r.resource,
            r.project,
            r.client_ip,
            r.outcome,
        )
    console.print(table)


# -- server commands through the SDK ------------------------------------------------------------


def credentials_path() -> Path:
    """Where ``carina login`` keeps the server URL and token (``CARINA_CONFIG_DIR`` or
    ``~/.config/carina``)."""
    base = os.environ.get("CARINA_CONFIG_DIR")
    return (Path(base) if base else Path.home() / ".config" / "carina") / "credentials.json"


def _save_credentials(url: str, token: str) -> Path:
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "token": token}, handle)
    os.chmod(path, 0o600)
    return path


def _client(url: str | None, token: str | None) -> CarinaClient:
    saved: dict[str, Any] = {}
    path = credentials_path()
    if path.is_file():
        saved = json.loads(path.read_text())
    url = url or os.environ.get("CARINA_URL") or saved.get("url")
    token = token or os.environ.get("CARINA_TOKEN") or saved.get("token")
    if not url or not token:
        raise _fail("not logged in: run `carina login URL --user NAME` (or set CARINA_TOKEN)")
    return CarinaClient(url, token)


UrlOption = typer.Option(None, "--url", help="Server URL (default: from `carina login`).")
TokenOption = typer.Option(None, "--token", help="API token (default: from `carina login`).")


def login_command(
    url: str = typer.Argument(..., help="Server URL, e.g. https://carina.example.org"),
    user: str = typer.Option(..., "--user", help="User name."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input."
    ),
    days: int = typer.Option(30, "--days", help="Lifetime of the stored personal token."),
) -> None:
    """Sign in and keep a personal token for later commands (file mode 0600)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True)
    try:
        with CarinaClient.login(url, user, password) as client:
            created = client.create_token(f"carina-cli@{socket.gethostname()}", days)
            client.logout()
    except CarinaAPIError as exc:
        raise _fail(str(exc)) from exc
    path = _save_credentials(url, created["token"])
    console.print(f"logged in as {user}; token saved in {path}")


@project_app.command("create")
def project_create(
    name: str = typer.Argument(..., help="Project name."),
    title: str = typer.Option("", "--title", help="Title."),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
) -> None:
    """Create a project (you become its owner)."""
    try:
        with _client(url, token) as client:
            client.create_project(name, title)
    except CarinaAPIError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"created project {name}")


@project_app.command("add-member")
def project_add_member(
    project: str = typer.Argument(..., help="Project name."),
    user: str = typer.Argument(..., help="User name."),
    role: str = typer.Option(
        "viewer", "--role", help="owner, manager, annotator, reviewer, viewer"
    ),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
) -> None:
    """Add a member to a project or change their role."""
    try:
        with _client(url, token) as client:
            client.set_member(project, user, role)
    except CarinaAPIError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"{user} is {role} of {project}")


@project_app.command("list")
def project_list(url: str | None = UrlOption, token: str | None = TokenOption) -> None:
    """List your projects."""
    try:
        with _client(url, token) as client:
            projects = client.projects()
    except CarinaAPIError as exc:
        raise _fail(str(exc)) from exc
    table = Table("name", "title", "role")
    for project in projects:
        table.add_row(project["name"], project["title"], project["role"] or "")
    console.print(table)
