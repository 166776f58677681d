"""``carina pacs``: query, pull from, push to and sync with a remote PACS (DIMSE)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from carina.archive.pacs import PacsClient, Peer
from carina.core.errors import CarinaError
from carina.services.archive import open_archive
from carina.services.settings import Settings

pacs_app = typer.Typer(help="Exchange studies with a remote PACS.", no_args_is_help=True)
console = Console()

PEER_HELP = "AE@host:port, or an AE title from CARINA_DICOM_PEERS."
DataDir = typer.Option(Path("data"), "--data-dir", envvar="CARINA_DATA_DIR", help="Data dir.")
DatabaseUrl = typer.Option(None, "--database-url", envvar="CARINA_DATABASE_URL")
AeTitle = typer.Option("CARINA", "--ae-title", envvar="CARINA_AE_TITLE", help="Calling AE.")


def _client(data_dir: Path, database_url: str | None, ae_title: str) -> tuple[PacsClient, Settings]:
    settings = Settings(data_dir=data_dir, database_url=database_url, ae_title=ae_title)
    return PacsClient(open_archive(settings), settings.ae_title), settings


def _filters(patient_id: str | None, study_date: str | None, study: str | None) -> dict[str, str]:
    filters = {"PatientID": patient_id, "StudyDate": study_date, "StudyInstanceUID": study}
    return {k: v for k, v in filters.items() if v}


@pacs_app.command("find")
def find_command(
    peer: str = typer.Argument(..., help=PEER_HELP),
    patient_id: str | None = typer.Option(None, "--patient-id"),
    study_date: str | None = typer.Option(None, "--study-date", help="YYYYMMDD or a range."),
    data_dir: Path = DataDir,
    database_url: str | None = DatabaseUrl,
    ae_title: str = AeTitle,
) -> None:
    """List the studies on a peer."""
    client, settings = _client(data_dir, database_url, ae_title)
    try:
        studies = client.find(
            Peer.parse(peer, settings.dicom_peers),
            "STUDY",
            _filters(patient_id, study_date, None),
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
    data_dir: Path = DataDir,
    database_url: str | None = DatabaseUrl,
    ae_title: str = AeTitle,
) -> None:
    """Retrieve a study from a peer (C-GET) into the archive."""
    client, settings = _client(data_dir, database_url, ae_title)
    try:
        report = client.pull(Peer.parse(peer, settings.dicom_peers), study)
    except CarinaError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    finally:
        client.archive.close()
    problems = [r for r in report.results if not r.status.ok]
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
        statuses = client.push(Peer.parse(peer, settings.dicom_peers), study)
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
    data_dir: Path = DataDir,
    database_url: str | None = DatabaseUrl,
    ae_title: str = AeTitle,
) -> None:
    """Pull the matching studies that are missing or incomplete here."""
    filters = _filters(patient_id, study_date, study)
    if not filters:
        console.print("[red]give at least one of --patient-id, --study-date, --study")
        raise typer.Exit(2)
    client, settings = _client(data_dir, database_url, ae_title)
    try:
        report = client.sync(Peer.parse(peer, settings.dicom_peers), filters)
    except CarinaError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1) from exc
    finally:
        client.archive.close()
    for uid, pulled in report.studies.items():
        outcome = "complete here" if pulled is None else f"pulled, {pulled.stored} new"
        console.print(f"{uid}: {outcome}")
