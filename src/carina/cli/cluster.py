"""``carina scheduler`` and ``carina worker``: a Dask cluster for the jobs of a Carina server."""

from __future__ import annotations

import asyncio

import typer


def parse_resources(text: str) -> dict[str, float]:
    """``GPU=1,MEM=16e9`` as a dict; an empty text is no resources."""
    resources: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            resources[name.strip()] = float(value)
        except ValueError:
            raise typer.BadParameter(f"{item!r} is not NAME=NUMBER") from None
    return resources


async def _scheduler(host: str, port: int, dashboard_port: int) -> None:
    from distributed import Scheduler  # imported here: other commands start faster without it

    dashboard = f"{host}:{dashboard_port}"
    async with Scheduler(host=host, port=port, dashboard_address=dashboard) as scheduler:
        http = scheduler.http_server.port
        typer.echo(f"scheduler at {scheduler.address}, dashboard on port {http}", err=True)
        await scheduler.finished()


async def _worker(
    scheduler: str, host: str, nthreads: int, resources: dict[str, float], name: str | None
) -> None:
    from distributed import Worker

    async with Worker(
        scheduler,
        host=host,
        nthreads=nthreads,
        resources=resources,
        name=name,
        dashboard_address=f"{host}:0",
    ) as worker:
        typer.echo(f"worker {worker.name} at {worker.address}, resources {resources}", err=True)
        await worker.finished()


def scheduler_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8786, "--port", help="Port to listen on."),
    dashboard_port: int = typer.Option(
        0, "--dashboard-port", help="Port of the Dask dashboard on the same address (0: any)."
    ),
) -> None:
    """Run a Dask scheduler that `carina worker` processes join and a server submits jobs to
    (`CARINA_JOBS_SCHEDULER=tcp://HOST:PORT`). It has no authentication: keep it on a trusted
    network."""
    asyncio.run(_scheduler(host, port, dashboard_port))


def worker_command(
    scheduler: str = typer.Option(..., "--scheduler", help="Scheduler, e.g. tcp://host:8786."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    nthreads: int = typer.Option(1, "--nthreads", help="Jobs run at the same time."),
    gpus: int = typer.Option(0, "--gpus", help="GPUs offered (the GPU resource)."),
    resources: str = typer.Option("", "--resources", help="Other resources, e.g. GPU=1,MEM=64e9."),
    name: str | None = typer.Option(None, "--name", help="Worker name."),
) -> None:
    """Join a Dask scheduler and run Carina jobs; jobs that ask for resources (GPU=1) land only
    on workers that offer them. The worker connects to the database URL each job carries."""
    offered = parse_resources(resources)
    if gpus:
        offered["GPU"] = float(gpus)
    asyncio.run(_worker(scheduler, host, nthreads, offered, name))
