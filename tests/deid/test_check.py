"""The residual-PHI check: finds what the profile would change, is silent on clean output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from carina.deid import Deidentifier, DeidOptions, find_residual_phi

from .conftest import SECRET, Run, read


def test_check_lists_identifiers_private_tags_and_risk(shared_data: Path) -> None:
    ds = read(shared_data / "deid_fake_phi/ultrasounds/GREYSCALE_IMAGE.dcm")
    findings = find_residual_phi(ds)
    names = {f.name for f in findings}
    assert {"Patient's Name", "Patient ID", "Patient's Birth Date", "Institution Name"} <= names
    assert any(f.reason == "private attribute" for f in findings)
    assert any(f.reason == "UID not replaced" for f in findings)
    assert any(f.reason == "burned-in text risk" for f in findings)
    assert any(f.value.startswith("ZZZ TEST") for f in findings)


def test_check_is_silent_on_basic_output(basic_run: Run) -> None:
    for src, dst in basic_run.outputs.items():
        out = read(dst)
        residue = [f for f in find_residual_phi(out) if f.reason != "burned-in text risk"]
        assert residue == [], src.name


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs tesseract-ocr")
def test_check_is_silent_after_pixel_cleaning(shared_data: Path) -> None:
    opts = DeidOptions(clean_pixel_data=True)
    for src in sorted((shared_data / "deid_fake_phi").rglob("*.dcm"))[:4]:
        out, _ = Deidentifier(SECRET, opts).apply(read(src))
        assert find_residual_phi(out, opts) == [], src.name


def test_check_respects_options(shared_data: Path) -> None:
    ds = read(shared_data / "deid_fake_phi/ultrasounds/GREYSCALE_IMAGE.dcm")
    inst = DeidOptions(retain_institution_identity=True)
    assert "Institution Name" in {f.name for f in find_residual_phi(ds)}
    assert "Institution Name" not in {f.name for f in find_residual_phi(ds, inst)}
