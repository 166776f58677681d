"""``carina deid`` and ``carina deid --check`` on the fake-PHI folder."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from carina.cli.main import app
from carina.deid import MappingStore, reidentify

from .conftest import SECRET, read

runner = CliRunner()


def test_deid_folder_then_check(shared_data: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    src = shared_data / "deid_fake_phi"
    out = tmp_path / "out"
    args = ["deid", str(src), str(out), "--secret-file", str(secret)]
    args += ["--option", "retain-long-modified-dates", "--mapping", str(tmp_path / "p.map")]
    args += ["--report", str(tmp_path / "report.jsonl")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "11 de-identified, 2 skipped, 0 failed" in result.output

    outputs = sorted(out.rglob("*.dcm"))
    assert len(outputs) == 11
    rows = [json.loads(line) for line in (tmp_path / "report.jsonl").read_text().splitlines()]
    assert len(rows) == 13
    done = [r for r in rows if "error" not in r]
    assert {r["sop_instance_uid"] for r in done} == {read(p).SOPInstanceUID for p in outputs}
    us = next(r for r in done if r["source"].endswith("GREYSCALE_IMAGE.dcm"))
    assert us["burned_in_risk"] == ["BurnedInAnnotation=YES", "Modality=US"]
    assert any("not cleaned" in item for item in us["review"])
    identity = reidentify(us["patient_pseudonym"], tmp_path / "p.map", SECRET)
    assert identity.patient_id == "2020202020202"

    check = runner.invoke(app, ["deid", "--check", str(src)])
    assert check.exit_code == 1
    assert "Patient's Name" in check.output
    check_out = runner.invoke(
        app, ["deid", "--check", str(out / "examples"), "-o", "retain-long-modified-dates"]
    )
    assert check_out.exit_code == 0, check_out.output
    assert "clean" in check_out.output


def test_deid_refuses_bad_arguments(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "deid_fake_phi/humans/ctbrain1.dcm"
    no_secret = runner.invoke(app, ["deid", str(src), str(tmp_path / "o.dcm")])
    assert no_secret.exit_code != 0
    short = tmp_path / "short"
    short.write_text("abc")
    weak = runner.invoke(
        app, ["deid", str(src), str(tmp_path / "o.dcm"), "--secret-file", str(short)]
    )
    assert weak.exit_code == 2
    assert "16 bytes" in weak.output
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    unknown = runner.invoke(
        app, ["deid", str(src), str(tmp_path / "o.dcm"), "--secret-file", str(secret), "-o", "x"]
    )
    assert unknown.exit_code == 2
    assert not (tmp_path / "o.dcm").exists()
    one = runner.invoke(
        app, ["deid", str(src), str(tmp_path / "o.dcm"), "--secret-file", str(secret)]
    )
    assert one.exit_code == 0, one.output
    assert read(tmp_path / "o.dcm").PatientIdentityRemoved == "YES"


def test_parallel_run_matches_serial_run(shared_data: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    src = shared_data / "dicom_variants/dcmqi"
    for jobs in ("1", "2"):
        args = ["deid", str(src), str(tmp_path / jobs), "--secret-file", str(secret), "-j", jobs]
        args += ["--mapping", str(tmp_path / f"{jobs}.map")]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    serial = sorted((tmp_path / "1").rglob("*.dcm"))
    assert len(serial) >= 10
    for path in serial:
        twin = tmp_path / "2" / path.relative_to(tmp_path / "1")
        assert read(path).SOPInstanceUID == read(twin).SOPInstanceUID
        assert path.read_bytes() == twin.read_bytes()
    one = MappingStore(tmp_path / "1.map", SECRET)
    two = MappingStore(tmp_path / "2.map", SECRET)
    assert one.patients == two.patients
    assert one.studies == two.studies
    assert one.studies
