"""``carina pacs``: query, pull from, push to and sync with a remote PACS (DIMSE or DICOMweb),
and the sync rules the server runs as jobs."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from carina.archive.pacs import AnyPeer, PacsClient, PullMethod, parse_peer
from carina.core.errors import CarinaError
from carina.jobs import Engine, JobStore
from carina.services import jobs as jobs_services
from carina.services.archive import open_archive
from carina.services.pacs_sync import KIND, SyncRules, rule_dict, submit_rule
from carina.services.settings import Settings

pacs_app = typer.Typer(help="Exchange studies with a remote PACS.", no_args_is_help=True)
console = Console()

PEER_HELP = (
    "AE@host:port, an AE title from CARINA_DICOM_PEERS, a DICOMweb URL (http[s]://...) "
    "or a name from CARINA_DICOMWEB_PEERS."
)
DataDir = typer.Option(Path("data"), "--data-dir", envvar="CARINA_DATA_DIR", help="Data dir.")
DatabaseUrl = typer.Option(None, "--database-url", envvar="CARINA_DATABASE_URL")
AeTitle = typer.Option("CARINA", "--ae-title", envvar="CARINA_AE_TITLE", help="Calling AE.")


def _client(data_dir: Path, database_url: str | None, ae_title: str) -> tuple[PacsClient, Settings]:
    settings = Settings(data_dir=data_dir, database_url=database_url, ae_title=ae_title)
    return PacsClient(open_archive(settings), settings.ae_title), settings


def _peer(text: str, settings: Settings) -> AnyPeer:
    return parse_peer(text, settings.dicom_peers, settings.dicomweb_peers)


def _filters(
    patient_id: str | None,
    study_date: str | None,
    study: str | None,
    modality: str | None = None,
) -> dict[str, str]:
    filters = {
        "PatientID": patient_id,
        "StudyDate": study_date,
        "StudyInstanceUID": study,
        "ModalitiesInStudy": modality,
    }
    return {k: v for k, v in filters.items() if v}


MethodOption = typer.Option(
    "get", "--method", help="DIMSE retrieve: get (C-GET) or move (C-MOVE to --ae-title)."
)
StoreHostOption = typer.Option(
    "127.0.0.1",
    "--store-host",
    help="With --store-port: the address to listen on (one the peer can reach).",
)
StorePortOption = typer.Option(
    None,
    "--store-port",
    help="With --method move: listen on this port for the peer's C-STOREs (else the running "
    "carina serve listener receives them).",
)


def _method(value: str) -> PullMethod:
    if value not in ("get", "move"):
        console.print("[red]--method is get or move")
        raise typer.Exit(2)
    return "move" if value == "move" else "get"


@pacs_app.command("find")
@pacs_app.command("query")
def find_command(
    peer: str = typer.Argument(..., help=PEER_HELP),
    patient_id: str | None = typer.Option(None, "--patient-id"),
    study_date: str | None = typer.Option(None, "--study-date", help="YYYYMMDD or a range."),
    modality: str | None = typer.Option(None, "--modality", help="ModalitiesInStudy, e.g. CT."),
    data_dir: Path = DataDir,
    database_url: str | None = DatabaseUrl,
    ae_title: str = AeTitle,
) -> None:
    """List the studies on a peer (query is another name of find)."""
    client, settings = _client(data_dir, database_url, ae_title)
    try:
        studies = client.find(
            _peer(peer, settings),
            "STUDY",
            _filters(patient_id, study_date, None, modality),
            [
                "PatientID",
                "PatientName",
                "StudyDate",
                "StudyDescription",
                "NumberOfStudyRelatedInstances",
            ],
        )
    except CarinaError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    finally:
        client.archive.close()
    table = Table(title=f"Studies on {peer}")
    for column in ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "Instances"):
        table.add_column(column)
    for ds in studies:
        table.add_row(
            str(ds.get("StudyInstanceUID", "")),
            str(ds.get("PatientID", "")),
            str(ds.get("PatientName", "")),
            str(ds.get("StudyDate", "")),
            str(ds.get("NumberOfStudyRelatedInstances", "")),
        )
    console.print(table)


@pacs_app.command("pull")
def pull_command(
    peer: str = typer.Argument(..., help=PEER_HELP),
    study: str = typer.Argument(..., help="StudyInstanceUID."),
    method: str = MethodOption,
    store_port: int | None = StorePortOption,
    store_host: str = StoreHostOption,
    data_dir: Path = DataDir,
    database_url: str | None = DatabaseUrl,
    ae_title: str = AeTitle,
) -> None:
    """Retrieve a study from a peer (C-GET, C-MOVE or WADO-RS) into the archive."""
    how = _method(method)
    client, settings = _client(data_dir, database_url, ae_title)
    try:
        report = client.pull(
            _peer(peer, settings), study, method=how, store_port=store_port, store_host=store_host
        )
    except CarinaError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    finally:
        client.archive.close()
    problems = [r for r in report.results if not r.status.ok]
    if not report.results and report.completed:
        console.print(f"the peer sent {report.completed} to the {ae_title} listener")
        return
    console.print(
        f"received {len(report.results)}, stored {report.stored}, not stored {len(problems)}"
    )
    for result in problems:
        console.print(f"  {result.sop_instance_uid}: {result.status.value}: {result.reason}")


@pacs_app.command("push")
def push_command(
    peer: str = typer.Argument(..., help=PEER_HELP),
    study: str = typer.Argument(..., help="StudyInstanceUID."),
    data_dir: Path = DataDir,
    database_url: str | None = DatabaseUrl,
    ae_title: str = AeTitle,
) -> None:
    """Send a stored study to a peer (C-STORE)."""
    client, settings = _client(data_dir, database_url, ae_title)
    try:
        statuses = client.push(_peer(peer, settings), study)
    except CarinaError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    finally:
        client.archive.close()
    failed = {uid: s for uid, s in statuses.items() if s != 0}
    console.print(f"sent {len(statuses)}, failed {len(failed)}")
    for uid, status in failed.items():
        console.print(f"  {uid}: status 0x{status:04X}")
    if failed:
        raise typer.Exit(1)


@pacs_app.command("sync")
def sync_command(
    peer: str = typer.Argument(..., help=PEER_HELP),
    patient_id: str | None = typer.Option(None, "--patient-id"),
    study_date: str | None = typer.Option(None, "--study-date", help="YYYYMMDD or a range."),
    study: str | None = typer.Option(None, "--study", help="StudyInstanceUID."),
    modality: str | None = typer.Option(None, "--modality", help="ModalitiesInStudy, e.g. CT."),
    method: str = MethodOption,
    store_port: int | None = StorePortOption,
    store_host: str = StoreHostOption,
    data_dir: Path = DataDir,
    database_url: str | None = DatabaseUrl,
    ae_title: str = AeTitle,
) -> None:
    """Pull the matching studies that are missing or incomplete here."""
    filters = _filters(patient_id, study_date, study, modality)
    if not filters:
        console.print("[red]give at least one of --patient-id, --study-date, --study, --modality")
        raise typer.Exit(2)
    how = _method(method)
    client, settings = _client(data_dir, database_url, ae_title)
    try:
        report = client.sync(
            _peer(peer, settings),
            filters,
            method=how,
            store_port=store_port,
            store_host=store_host,
        )
    except CarinaError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    finally:
        client.archive.close()
    for uid, pulled in report.studies.items():
        outcome = (
            "complete here"
            if pulled is None
            else f"pulled, {pulled.stored if pulled.results else pulled.completed} new"
        )
        console.print(f"{uid}: {outcome}")


rules_app = typer.Typer(
    help="PACS sync rules: standing pulls into a project, run as jobs by the server.",
    no_args_is_help=True,
)
pacs_app.add_typer(rules_app, name="rules")


def _rules(data_dir: Path, database_url: str | None) -> tuple[SyncRules, Any]:
    archive = open_archive(Settings(data_dir=data_dir, database_url=database_url))
    return SyncRules(archive.engine), archive


@rules_app.command("add")
def rules_add(
    project: str = typer.Argument(..., help="Project the studies join."),
    peer: str = typer.Argument(..., help=PEER_HELP),
    name: str = typer.Option("", "--name"),
    modality: str = typer.Option("", "--modality", help="ModalitiesInStudy, e.g. CT."),
    last_days: int | None = typer.Option(None, "--last-days", help="Studies of the last N days."),
    patient_id: list[str] = typer.Option([], "--patient-id", help="Repeat for several."),
    project_patients: bool = typer.Option(
        False, "--project-patients", help="Also the patients already in the project."
    ),
    interval: int | None = typer.Option(
        None, "--interval", help="Run every N seconds (at least 60); default: on request."
    ),
    method: str = MethodOption,
    data_dir: Path = DataDir,
    database_url: str | None = DatabaseUrl,
) -> None:
    """Record a rule; prints its id."""
    how = _method(method)
    rules, archive = _rules(data_dir, database_url)
    try:
        rule = rules.create(
            project,
            peer=peer,
            name=name,
            method=how,
            modality=modality,
            study_age_days=last_days,
            patient_ids=patient_id,
            project_patients=project_patients,
            interval_s=interval,
        )
    except CarinaError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    finally:
        archive.close()
    console.print(rule.id)


@rules_app.command("list")
def rules_list(
    project: str | None = typer.Argument(None, help="Only this project's rules."),
    as_json: bool = typer.Option(False, "--json", help="One JSON list instead of a table."),
    data_dir: Path = DataDir,
    database_url: str | None = DatabaseUrl,
) -> None:
    """List the rules."""
    rules, archive = _rules(data_dir, database_url)
    try:
        found = rules.all(project)
    except CarinaError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    finally:
        archive.close()
    if as_json:
        typer.echo(json.dumps([rule_dict(r) for r in found], default=str, indent=2))
        return
    table = Table(title="PACS sync rules")
    for column in ("id", "project", "name", "peer", "filters", "every", "last job"):
        table.add_column(column)
    for rule in found:
        filters = [
            f"modality {rule.modality}" if rule.modality else "",
            f"last {rule.study_age_days} days" if rule.study_age_days is not None else "",
            f"patients {', '.join(rule.patient_ids)}" if rule.patient_ids else "",
            "project patients" if rule.project_patients else "",
        ]
        table.add_row(
            str(rule.id),
            rule.project,
            rule.name,
            f"{rule.peer} ({rule.method})",
            "; ".join(f for f in filters if f),
            f"{rule.interval_s} s" if rule.interval_s else "on request",
            str(rule.last_job_id or ""),
        )
    console.print(table)


@rules_app.command("remove")
def rules_remove(
    rule_id: int = typer.Argument(...),
    data_dir: Path = DataDir,
    database_url: str | None = DatabaseUrl,
) -> None:
    """Delete a rule."""
    rules, archive = _rules(data_dir, database_url)
    try:
        rules.remove(rule_id)
    except CarinaError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    finally:
        archive.close()
    console.print(f"removed rule {rule_id}")


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` set in the environment for the time of the block."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@rules_app.command("run")
def rules_run(
    rule_id: int = typer.Argument(...),
    here: bool = typer.Option(
        False,
        "--here",
        help="Run the job in this process and wait for it, instead of leaving it to the server.",
    ),
    timeout: float = typer.Option(3600, "--timeout", help="With --here: seconds to wait."),
    data_dir: Path = DataDir,
    database_url: str | None = DatabaseUrl,
    ae_title: str = AeTitle,
) -> None:
    """Submit the rule's pacs-sync job (the running server runs it); prints the job id, or with
    --here the job's result."""
    settings = Settings(data_dir=data_dir, database_url=database_url, ae_title=ae_title)
    rules, archive = _rules(data_dir, database_url)
    try:
        rule = rules.get(rule_id)
        if not here:
            record = submit_rule(rules, rule, JobStore(archive.engine).submit)
            console.print(record.id)
            return
        with (
            _environment(settings.to_env()),  # the job opens the archive these settings name
            Engine(
                jobs_services.database_url(archive.engine),
                n_workers=1,
                processes=False,
                kind_modules=("carina.services.pacs_sync",),
            ) as engine,
        ):
            record = submit_rule(rules, rule, engine.submit)
            done = engine.wait(record.id, timeout=timeout)
    except (CarinaError, TimeoutError) as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    finally:
        archive.close()
    if done.result is None:
        console.print(f"[red]job {done.id} {done.status.value}: {done.error}")
        raise typer.Exit(1)
    result = done.result
    console.print(
        f"job {done.id} ({KIND}): found {result['found']}, pulled {result['pulled']}, "
        f"skipped {result['skipped']}, instances stored {result['instances_stored']}"
    )
