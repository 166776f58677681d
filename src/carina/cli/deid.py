"""``carina deid``: de-identify DICOM files or folders, or check them for residual PHI."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from carina.cli.progress import stage_progress
from carina.core.errors import CarinaError
from carina.deid import (
    PROFILE_EDITION,
    PROFILES,
    Deidentifier,
    DeidOptions,
    FileResult,
    MappingStore,
    deidentify_tree,
    find_residual_phi,
    load_secret,
    options_for,
)

console = Console()
err_console = Console(stderr=True)


def _options(profile: str, names: list[str]) -> DeidOptions:
    if profile not in PROFILES:
        raise typer.BadParameter(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    return options_for(profile, names)


def deid_command(
    source: Path = typer.Argument(..., help="A DICOM file or a folder (walked recursively)."),
    output: Path | None = typer.Argument(
        None, help="Output file or folder (the folder layout is kept)."
    ),
    profile: str = typer.Option(
        "basic", "--profile", help=f"Preset options: {', '.join(PROFILES)}."
    ),
    option: list[str] = typer.Option(
        [], "--option", "-o", help=f"Profile option, repeatable: {', '.join(DeidOptions.names())}."
    ),
    secret_file: Path | None = typer.Option(
        None, "--secret-file", help="File holding the project secret (at least 16 bytes)."
    ),
    mapping: Path | None = typer.Option(
        None, "--mapping", help="Encrypted pseudonym mapping file to create or extend."
    ),
    report: Path | None = typer.Option(
        None, "--report", help="Write one JSON line per file (actions, review items) here."
    ),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Worker processes."),
    check: bool = typer.Option(
        False, "--check", help="Only list residual PHI candidates in SOURCE; write nothing."
    ),
) -> None:
    """De-identify DICOM objects with the DICOM PS3.15 Annex E profile (or --check them)."""
    try:
        opts = _options(profile, option)
        if check:
            raise typer.Exit(_check(source, opts))
        if output is None:
            raise typer.BadParameter("OUTPUT is required unless --check is given")
        if secret_file is None:
            raise typer.BadParameter("--secret-file is required to de-identify")
        if output.resolve() == source.resolve():
            raise typer.BadParameter("OUTPUT must differ from SOURCE")
        secret = load_secret(secret_file)
        store = MappingStore(mapping, secret) if mapping is not None else None
        deid = Deidentifier(secret, opts, mapping=store)
        if source.is_dir():
            output.mkdir(parents=True, exist_ok=True)
        results = _run(source, output, deid, jobs)
    except CarinaError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    _print(results, opts)
    if report is not None:
        _write_report(report, results)
    raise typer.Exit(1 if any(r.error and not r.skipped for r in results) else 0)


def _run(source: Path, output: Path, deid: Deidentifier, jobs: int) -> list[FileResult]:
    with stage_progress() as bar:
        assert bar is not None

        def update(done: int, total: int) -> None:
            bar("deid", done, total)

        return deidentify_tree(source, output, deid, update, workers=jobs)


def _print(results: list[FileResult], opts: DeidOptions) -> None:
    done = [r for r in results if r.report is not None]
    table = Table(title=f"{PROFILE_EDITION}; options: {', '.join(opts.active()) or 'none'}")
    table.add_column("file")
    table.add_column("result")
    for r in results:
        if r.report is not None:
            counts = ", ".join(f"{k}={v}" for k, v in sorted(r.report.actions.items()))
            if r.report.pixels_cleaned:
                counts += f"; {r.report.masked_boxes} text box(es) masked"
            if r.report.review:
                counts += f"; [yellow]{len(r.report.review)} to review[/yellow]"
            table.add_row(str(r.source), counts)
        elif r.skipped:
            table.add_row(str(r.source), f"skipped: {r.error}")
        else:
            table.add_row(str(r.source), f"[red]failed:[/red] {r.error}")
    console.print(table)
    review = sum(len(r.report.review) for r in done if r.report is not None)
    skipped = sum(r.skipped for r in results)
    failed = len(results) - len(done) - skipped
    console.print(
        f"{len(done)} de-identified, {skipped} skipped, {failed} failed, {review} review item(s)"
    )


def _write_report(path: Path, results: list[FileResult]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for r in results:
            row: dict[str, object] = {"source": str(r.source), "output": str(r.output or "")}
            if r.report is not None:
                row.update(
                    sop_instance_uid=r.report.sop_instance_uid,
                    patient_pseudonym=r.report.patient_pseudonym,
                    actions=dict(r.report.actions),
                    burned_in_risk=r.report.burned_in_risk,
                    pixels_cleaned=r.report.pixels_cleaned,
                    masked_boxes=r.report.masked_boxes,
                    review=r.report.review,
                )
            else:
                row["error"] = r.error
            fh.write(json.dumps(row) + "\n")


def _check(source: Path, opts: DeidOptions) -> int:
    """Print residual PHI candidates per file; 1 when any was found."""
    import warnings

    import pydicom
    from pydicom.errors import InvalidDicomError

    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    total = 0
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                ds = pydicom.dcmread(path)
            except (InvalidDicomError, OSError, EOFError, ValueError):
                continue
            findings = find_residual_phi(ds, opts)
        if not findings:
            console.print(f"[green]clean[/green] {path}")
            continue
        total += len(findings)
        table = Table(title=f"{path}: {len(findings)} residual PHI candidate(s)")
        for column in ("where", "attribute", "why", "value"):
            table.add_column(column)
        for f in findings:
            table.add_row(f.path, f.name, f.reason, f.value)
        console.print(table)
    return 1 if total else 0
