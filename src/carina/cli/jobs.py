"""``carina jobs``: submit, list, watch and cancel the jobs of a project on a server."""

from __future__ import annotations

import json
import time

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from carina.cli.users import TokenOption, UrlOption, _client, _fail
from carina.client import CarinaAPIError

console = Console()
jobs_app = typer.Typer(help="Jobs of a project on a Carina server.", no_args_is_help=True)

FINISHED = {"succeeded", "failed", "cancelled"}


@jobs_app.command("submit")
def jobs_submit(
    project: str = typer.Argument(..., help="Project name."),
    kind: str = typer.Argument(..., help="Job kind, e.g. echo or sleep."),
    params: str = typer.Option("{}", "--params", help="Parameters as a JSON object."),
    max_attempts: int = typer.Option(1, "--max-attempts", help="Attempts for transient failures."),
    timeout: float | None = typer.Option(None, "--timeout", help="Time limit per attempt (s)."),
    priority: int = typer.Option(
        0, "--priority", help="-10..10, higher starts first; above 0 takes a manager."
    ),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
) -> None:
    """Submit a job; prints its id."""
    try:
        values = json.loads(params)
    except json.JSONDecodeError as exc:
        raise _fail(f"--params is not JSON: {exc}") from exc
    if not isinstance(values, dict):
        raise _fail("--params must be a JSON object")
    try:
        with _client(url, token) as client:
            job = client.submit_job(
                project,
                kind,
                values,
                max_attempts=max_attempts,
                timeout_s=timeout,
                priority=priority,
            )
    except CarinaAPIError as exc:
        raise _fail(str(exc)) from exc
    console.print(job["id"])


@jobs_app.command("list")
def jobs_list(
    project: str = typer.Argument(..., help="Project name."),
    status: str | None = typer.Option(None, "--status", help="Only jobs in this state."),
    limit: int = typer.Option(100, "--limit", help="At most this many, newest first."),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
) -> None:
    """List the jobs of a project, newest first."""
    try:
        with _client(url, token) as client:
            jobs = client.jobs(project, status, limit)
    except CarinaAPIError as exc:
        raise _fail(str(exc)) from exc
    table = Table("id", "kind", "status", "progress", "message", "owner", "created")
    for job in jobs:
        position, priority = job.get("queue_position"), job.get("priority", 0)
        table.add_row(
            str(job["id"]),
            job["kind"] + (f" (p{priority:+d})" if priority else ""),
            job["status"] if position is None else f"queued #{position}",
            f"{job['progress']:.0%}",
            job["message"],
            job["owner"] or "",
            job["created_at"][:19],
        )
    console.print(table)


@jobs_app.command("watch")
def jobs_watch(
    project: str = typer.Argument(..., help="Project name."),
    job_id: int = typer.Argument(..., help="Job id."),
    interval: float = typer.Option(1.0, "--interval", help="Seconds between polls."),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
) -> None:
    """Follow a job until it ends; exit status 0 when it succeeded, 1 otherwise."""
    try:
        with (
            _client(url, token) as client,
            Progress(
                TextColumn("job {task.fields[job]}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}% {task.fields[status]} {task.description}"),
                console=console,
                transient=False,
            ) as bar,
        ):
            task = bar.add_task("", total=1.0, job=job_id, status="")
            while True:
                job = client.job(project, job_id)
                position = job.get("queue_position")
                shown = job["status"] if position is None else f"queued #{position}"
                bar.update(
                    task, completed=job["progress"], description=job["message"], status=shown
                )
                if job["status"] in FINISHED:
                    break
                time.sleep(interval)
    except CarinaAPIError as exc:
        raise _fail(str(exc)) from exc
    if job["status"] != "succeeded":
        console.print(f"job {job_id} {job['status']}: {job['error']}".rstrip(": "))
        raise typer.Exit(1)
    console.print(json.dumps(job["result"]))


@jobs_app.command("cancel")
def jobs_cancel(
    project: str = typer.Argument(..., help="Project name."),
    job_id: int = typer.Argument(..., help="Job id."),
    url: str | None = UrlOption,
    token: str | None = TokenOption,
) -> None:
    """Request cancellation of a job."""
    try:
        with _client(url, token) as client:
            job = client.cancel_job(project, job_id)
    except CarinaAPIError as exc:
        raise _fail(str(exc)) from exc
    state = "cancellation requested" if job["status"] == "running" else job["status"]
    console.print(f"job {job_id}: {state}")
