"""Entry point of the ``carina`` command."""

from __future__ import annotations

import typer
from rich.console import Console

from carina import __version__
from carina.cli import deid, export, images, measure, models, render, segment
from carina.cli.archive import check_command, import_command
from carina.cli.cluster import scheduler_command, worker_command
from carina.cli.jobs import jobs_app
from carina.cli.pacs import pacs_app
from carina.cli.serve import serve_command
from carina.cli.users import audit_command, login_command, project_app, user_app

app = typer.Typer(
    name="carina",
    help="Carina: research platform for AI in medical imaging.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"carina {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version."
    ),
) -> None:
    """Carina: research platform for AI in medical imaging."""


app.command("info")(images.info_command)
app.command("convert")(images.convert_command)
app.command("quant")(measure.quant_command)
app.command("render")(render.render_command)
app.command("deid")(deid.deid_command)
app.command("segment")(segment.segment_command)
app.add_typer(export.app, name="export")
app.add_typer(models.app, name="models")
app.command("import")(import_command)
app.command("check")(check_command)
app.command("serve")(serve_command)
app.command("audit")(audit_command)
app.command("login")(login_command)
app.add_typer(user_app, name="user")
app.add_typer(project_app, name="project")
app.add_typer(pacs_app, name="pacs")
app.add_typer(jobs_app, name="jobs")
app.command("scheduler")(scheduler_command)
app.command("worker")(worker_command)
