"""``carina import`` on real data: every valid object stored intact, the rest rejected."""

from __future__ import annotations

import zipfile
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from carina.archive import Archive, ParsedInstance, parse_instance
from carina.cli.main import app
from carina.core.errors import InstanceRejected
from carina.db import Instance

runner = CliRunner()


def _import(path: Path, data_dir: Path) -> str:
    result = runner.invoke(app, ["import", str(path), "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    return result.output


def _catalog(data_dir: Path) -> dict[str, tuple[str, str]]:
    with Archive(data_dir) as archive, archive.session() as session:
        rows = session.execute(select(Instance.sop_instance_uid, Instance.path, Instance.sha256))
        return {uid: (path, digest) for uid, path, digest in rows}


def test_import_dicom_variants(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "dicom_variants"
    data_dir = tmp_path / "data"
    output = _import(source, data_dir)
    assert "Import summary" in output
    assert "not a DICOM file" in output

    parsed: dict[Path, ParsedInstance] = {}
    rejected: dict[Path, str] = {}
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        try:
            parsed[path] = parse_instance(path.read_bytes())
        except InstanceRejected as exc:
            rejected[path] = exc.reason
    indexed = {
        source / line.split(",")[0]
        for line in (source / "dicom_index.csv").read_text().splitlines()[1:]
    }
    assert len(indexed) == 217
    assert len(parsed) > 150
    assert all(rejected.values())
    assert source / "pydicom" / "MR_truncated.dcm" in rejected
    assert source / "pydicom" / "badVR.dcm" in rejected

    catalog = _catalog(data_dir)
    assert {p.sop_instance_uid for p in parsed.values()} == set(catalog)
    for path, p in parsed.items():
        relative, digest = catalog[p.sop_instance_uid]
        stored = (data_dir / relative).read_bytes()
        if digest == p.sha256:
            assert stored == p.data
            if not p.rewritten:
                assert stored == path.read_bytes()
        else:  # same UID, different bytes: another file with this UID was stored first
            assert any(
                q.sha256 == digest
                for q in parsed.values()
                if q.sop_instance_uid == p.sop_instance_uid
            )
    # no file without a row, no row without a file
    on_disk = {
        p.relative_to(data_dir).as_posix()
        for p in (data_dir / "instances").rglob("*")
        if p.is_file()
    }
    assert on_disk == {relative for relative, _ in catalog.values()}

    again = _import(source, data_dir)
    assert _catalog(data_dir) == catalog
    stored_row = next(line for line in again.splitlines() if line.strip("│ ").startswith("stored"))
    assert stored_row.split("│")[2].strip() == "0"


def test_import_zip(lung_ct_files: list[Path], tmp_path: Path) -> None:
    bundle = tmp_path / "series.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        for path in lung_ct_files[:6]:
            zf.write(path, f"sub/{path.name}")
    data_dir = tmp_path / "data"
    _import(bundle, data_dir)
    catalog = _catalog(data_dir)
    assert len(catalog) == 6
    with Archive(data_dir) as archive:
        for path in lung_ct_files[:6]:
            p = parse_instance(path.read_bytes())
            assert archive.store.read(catalog[p.sop_instance_uid][0]) == path.read_bytes()


def test_check_finds_damaged_and_missing_files(lung_ct_files: list[Path], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _import(lung_ct_files[0].parent, data_dir)
    clean = runner.invoke(app, ["check", "--data-dir", str(data_dir), "--verify"])
    assert clean.exit_code == 0, clean.output
    assert "files not matching their sha256: 0" in clean.output
    catalog = _catalog(data_dir)
    (damaged, _), (missing, _) = list(catalog.values())[:2]
    content = bytearray((data_dir / damaged).read_bytes())
    content[-1] ^= 0xFF
    (data_dir / damaged).write_bytes(bytes(content))
    (data_dir / missing).unlink()
    result = runner.invoke(app, ["check", "--data-dir", str(data_dir), "--verify"])
    assert result.exit_code == 1
    assert f"damaged {damaged}" in result.output
    assert f"missing {missing}" in result.output
