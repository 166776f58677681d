"""Crash safety: ``carina import`` killed with SIGKILL leaves a consistent archive."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from carina.archive import Archive
from carina.cli.main import app
from carina.db import Instance


def _stored_count(catalog: Path) -> int:
    if not catalog.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=5) as connection:
            return int(connection.execute("SELECT count(*) FROM instances").fetchone()[0])
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def _assert_consistent(data_dir: Path) -> dict[str, str]:
    with Archive(data_dir) as archive, archive.session() as session:
        rows: dict[str, str] = {}
        for path, digest in session.execute(select(Instance.path, Instance.sha256)):
            rows[path] = digest
    files = {
        p.relative_to(data_dir).as_posix()
        for p in (data_dir / "instances").rglob("*")
        if p.is_file()
    }
    assert files == set(rows), "files and catalog rows differ"
    for path, digest in rows.items():
        assert hashlib.sha256((data_dir / path).read_bytes()).hexdigest() == digest
    return rows


def test_sigkill_during_import_leaves_no_half_stored_instance(
    shared_data: Path, tmp_path: Path
) -> None:
    source = shared_data / "dicom_variants"
    reference = tmp_path / "reference"
    assert (
        CliRunner().invoke(app, ["import", str(source), "--data-dir", str(reference)]).exit_code
        == 0
    )
    expected = _assert_consistent(reference)

    data_dir = tmp_path / "data"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    command = [
        sys.executable,
        "-c",
        "from carina.cli.main import app; app()",
        "import",
        str(source),
        "--data-dir",
        str(data_dir),
        "--batch-size",
        "7",
    ]
    kills = 0
    for wanted in (1, 60):
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while process.poll() is None and _stored_count(data_dir / "catalog.sqlite") < wanted:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait(30)
        _assert_consistent(data_dir)
    assert kills >= 1, "the import finished before it could be interrupted"

    runner = CliRunner()
    assert runner.invoke(app, ["import", str(source), "--data-dir", str(data_dir)]).exit_code == 0
    assert _assert_consistent(data_dir) == expected
    again = runner.invoke(app, ["import", str(source), "--data-dir", str(data_dir)])
    assert _assert_consistent(data_dir) == expected
    lines = again.output.splitlines()
    stored_row = next(line for line in lines if line.strip("│ ").startswith("stored"))
    assert stored_row.split("│")[2].strip() == "0"
