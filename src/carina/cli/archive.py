"""``carina import``: bring DICOM files (a folder, recursively, or a ZIP) into the archive."""

from __future__ import annotations

import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from carina.archive import IngestResult, IngestStatus
from carina.core.errors import CarinaError
from carina.services.archive import open_archive
from carina.services.settings import Settings, auto_ingest_processes

BATCH_FILES = 200
BATCH_BYTES = 64 * 1024 * 1024
SHOWN_PROBLEMS = 50

console = Console()


def _sources(path: Path) -> tuple[int, Iterator[tuple[str, bytes]]]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())

        def read_files() -> Iterator[tuple[str, bytes]]:
            for file in files:
                yield str(file), file.read_bytes()

        return len(files), read_files()
    if zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        members = [m for m in archive.infolist() if not m.is_dir()]

        def read_members() -> Iterator[tuple[str, bytes]]:
            with archive:
                for member in members:
                    yield f"{path}:{member.filename}", archive.read(member)

        return len(members), read_members()
    return 1, iter([(str(path), path.read_bytes())])


def _batches(
    items: Iterator[tuple[str, bytes]], files: int
) -> Iterator[list[tuple[str | None, bytes]]]:
    batch: list[tuple[str | None, bytes]] = []
    size = 0
    for source, data in items:
        batch.append((source, data))
        size += len(data)
        if len(batch) >= files or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _summary(results: list[IngestResult]) -> None:
    counts = Counter(r.status for r in results)
    table = Table(title="Import summary")
    table.add_column("outcome")
    table.add_column("instances", justify="right")
    for status in IngestStatus:
        table.add_row(status.value, str(counts.get(status, 0)))
    console.print(table)
    problems = [r for r in results if not r.status.ok]
    if problems:
        details = Table(title="Not stored")
        details.add_column("file", overflow="fold")
        details.add_column("outcome")
        details.add_column("reason", overflow="fold")
        for r in problems[:SHOWN_PROBLEMS]:
            details.add_row(r.source or "", r.status.value, r.reason or "")
        console.print(details)
        if len(problems) > SHOWN_PROBLEMS:
            console.print(f"... and {len(problems) - SHOWN_PROBLEMS} more not stored")


def import_command(
    path: Path = typer.Argument(..., exists=True, help="A DICOM file, a folder or a ZIP file."),
    data_dir: Path = typer.Option(
        Path("data"), "--data-dir", envvar="CARINA_DATA_DIR", help="Archive data directory."
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", envvar="CARINA_DATABASE_URL", help="Catalog database URL."
    ),
    batch_size: int = typer.Option(
        BATCH_FILES, "--batch-size", min=1, help="Files per catalog transaction."
    ),
) -> None:
    """Import DICOM files into the archive; already stored instances are skipped."""
    try:
        settings = Settings(data_dir=data_dir, database_url=database_url)
        if settings.ingest_processes is None:
            settings.ingest_processes = auto_ingest_processes()
        archive = open_archive(settings)
    except CarinaError as exc:
        console.print(f"[red]cannot open the archive: {exc}")
        raise typer.Exit(1) from exc
    results: list[IngestResult] = []
    total, items = _sources(path)
    with (
        archive,
        Progress(
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        task = progress.add_task("import", total=total)
        try:
            for batch in _batches(items, batch_size):
                results.extend(archive.ingest(batch))
                progress.advance(task, len(batch))
        except CarinaError as exc:
            progress.stop()
            _summary(results)
            console.print(f"[red]import stopped: {exc}")
            raise typer.Exit(1) from exc
    _summary(results)


def check_command(
    data_dir: Path = typer.Option(
        Path("data"), "--data-dir", envvar="CARINA_DATA_DIR", help="Archive data directory."
    ),
    database_url: str | None = typer.Option(
        None, "--database-url", envvar="CARINA_DATABASE_URL", help="Catalog database URL."
    ),
    verify: bool = typer.Option(False, "--verify", help="Also re-hash every stored file."),
) -> None:
    """Check the archive: clear leftovers of interrupted writes, report missing or damaged files."""
    try:
        archive = open_archive(Settings(data_dir=data_dir, database_url=database_url))
    except CarinaError as exc:
        console.print(f"[red]cannot open the archive: {exc}")
        raise typer.Exit(1) from exc
    with archive:
        report = archive.recover(full=True)
        damaged = archive.verify() if verify else []
    console.print(f"temporary files removed: {report.temp_files_removed}")
    console.print(f"files without catalog row removed: {report.orphan_files_removed}")
    console.print(f"catalog rows without file: {len(report.missing_files)}")
    for relative in report.missing_files:
        console.print(f"  missing {relative}", soft_wrap=True)
    if verify:
        console.print(f"files not matching their sha256: {len(damaged)}")
        for relative in damaged:
            console.print(f"  damaged {relative}", soft_wrap=True)
    if report.missing_files or damaged:
        raise typer.Exit(1)
