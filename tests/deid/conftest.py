"""Shared inputs for the de-identification tests: the real files, de-identified once per session."""

from __future__ import annotations

import re
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset

from carina.deid import Deidentifier, DeidOptions, DeidReport, deidentify_file

SECRET = b"test-project-secret-0123456789"
OTHER_SECRET = b"another-project-secret-98765432"

# Files that are damaged on purpose (truncated) or that dciodvfy cannot parse (deflate).
MALFORMED = {
    "dicom_variants/pydicom/MR_truncated.dcm",
    "dicom_variants/pydicom/rtplan_truncated.dcm",
}


def read(path: Path) -> Dataset:
    """dcmread without warnings about invalid values in the (third-party) inputs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            ds = pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError:
            ds = pydicom.dcmread(path, force=True)
        for _ in ds.iterall():
            pass  # convert every raw element now, while warnings are silenced
        return ds


def stored_objects(shared: Path) -> list[Path]:
    """Every readable composite object (with SOP Class and Instance UID) in the two folders."""
    out: list[Path] = []
    candidates = sorted((shared / "dicom_variants").rglob("*")) + sorted(
        (shared / "deid_fake_phi").rglob("*.dcm")
    )
    for path in candidates:
        rel = path.relative_to(shared).as_posix()
        if not path.is_file() or path.suffix in {".csv", ".md", ".json", ".nrrd", ".gz"}:
            continue
        if rel in MALFORMED:
            continue
        try:
            ds = read(path)
        except Exception:
            continue
        if "SOPInstanceUID" in ds and "SOPClassUID" in ds and "DirectoryRecordSequence" not in ds:
            out.append(path)
    return out


@dataclass
class Run:
    """One de-identification run over the corpus: input → output path and report."""

    root: Path
    outputs: dict[Path, Path]
    reports: dict[Path, DeidReport]


def run_corpus(shared: Path, out_dir: Path, secret: bytes, options: DeidOptions) -> Run:
    deid = Deidentifier(secret, options)
    outputs: dict[Path, Path] = {}
    reports: dict[Path, DeidReport] = {}
    for src in stored_objects(shared):
        dst = out_dir / src.relative_to(shared)
        reports[src] = deidentify_file(src, dst, deid)
        outputs[src] = dst
    return Run(out_dir, outputs, reports)


@pytest.fixture(scope="session")
def corpus(shared_data: Path) -> list[Path]:
    return stored_objects(shared_data)


@pytest.fixture(scope="session")
def basic_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_corpus(shared_data, tmp_path_factory.mktemp("basic"), SECRET, DeidOptions())


def flatten(ds: Dataset, prefix: str = "", chain: tuple[int, ...] = ()) -> dict[str, Any]:
    """Path → (tag chain, value) for every non-sequence element, sequences walked."""
    out: dict[str, Any] = {}
    for elem in ds:
        path = f"{prefix}{int(elem.tag):08X}"
        here = (*chain, int(elem.tag))
        if elem.VR == "SQ":
            out[path] = (here, f"<{len(elem.value)} items>")
            for i, item in enumerate(elem.value):
                out.update(flatten(item, f"{path}[{i}].", here))
        elif int(elem.tag) != 0x7FE00010:
            out[path] = (here, elem.value)
    return out


def dciodvfy_errors(path: Path) -> set[str] | None:
    """dciodvfy error lines with values masked; None when it cannot parse the file."""
    proc = subprocess.run(
        ["dciodvfy", "-new", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    lines = (proc.stdout + proc.stderr).splitlines()
    if any("Dicom dataset read failed" in ln for ln in lines):
        return None
    return {re.sub(r"= ?<[^>]*>", "=<V>", ln) for ln in lines if ln.startswith("Error")}
