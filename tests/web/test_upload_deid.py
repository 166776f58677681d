"""The browser's de-identification (web/src/deid, run by node) against the server's Deidentifier.

Both de-identify the same real files with the same options, the server deriving replacements as
browsers do (carina.deid.browser: UIDs from the project salt, the pseudonym and date shift of the
patient key). For every element, at every depth of sequences, both must have done the same thing
(removed, emptied, kept, replaced) and given the same value, UIDs and pseudonyms included; the
rules are the server's resolved_rules for the options.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset

from carina.deid import PROFILE_EDITION, Deidentifier, DeidOptions
from carina.deid.browser import (
    BrowserPseudonymizer,
    browser_salt,
    key_pseudonym,
    resolved_rules,
)
from carina.deid.browser import browser_uid as server_browser_uid
from carina.deid.browser import patient_key as server_patient_key

from ..conftest import shared_data_dir

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
SECRET = b"browser-cross-check-secret-0123456789"
SALT = browser_salt(SECRET)

PHI_FILES = [
    *[f"deid_fake_phi/dicom-cookies/image{i}.dcm" for i in range(1, 8)],
    "deid_fake_phi/humans/ctbrain1.dcm",
    "deid_fake_phi/ultrasounds/GREYSCALE_IMAGE.dcm",
    "deid_fake_phi/ultrasounds/RGB_IMAGE.dcm",
    "deid_fake_phi/examples/MR_with_sequences.dcm",
    "lung_ct_tumor_boxes/ct_dicom/001.dcm",
    "lung_ct_tumor_boxes/ct_dicom/030.dcm",
]

OPTION_SETS = {
    "basic": (),
    "research": (
        "retain_long_modified_dates",
        "retain_patient_characteristics",
        "retain_device_identity",
        "clean_descriptors",
        "clean_structured_content",
        "clean_graphics",
    ),
    "retain": (
        "retain_uids",
        "retain_safe_private",
        "retain_institution_identity",
        "retain_long_full_dates",
    ),
}
PSEUDONYM_TAGS = {"(0010,0010)", "(0010,0020)"}
# Encoded otherwise than their transfer syntax says (implicit VR under an explicit VR syntax):
# pydicom guesses, the browser refuses them (decision 0009).
MISENCODED = {"SC_rgb_jpeg.dcm"}


def read(path: Path | bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds = pydicom.dcmread(path)
        for _ in ds.iterall():
            pass
        return ds


def browser_uid(uid: str) -> str:
    return server_browser_uid(SALT, uid)


def patient_key(ds: Dataset) -> str:
    pid = str(ds.get("PatientID", "") or "") or str(ds.get("PatientName", "") or "")
    return server_patient_key(SALT, pid)


def rules_for(options: DeidOptions) -> Any:
    """The rules document the server gives for these options (with this test's salt)."""
    doc = resolved_rules(options)
    doc.update(profile="basic", edition=PROFILE_EDITION, options=list(options.active()), salt=SALT)
    return doc


def run_node(job: dict[str, Any]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node, "node is needed for the browser tests"
    assert (WEB / "node_modules" / "tsx").exists(), "run `npm ci` in web/ first (make test does)"
    proc = subprocess.run(
        [node, "--import", "tsx", "src/deid/test/cli.ts"],
        cwd=WEB,
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def flatten(ds: Dataset, prefix: str = "") -> dict[str, Any]:
    """Every element by path: sequences as their item count, then their items' elements."""
    out: dict[str, Any] = {}
    for elem in ds:
        path = f"{prefix}({elem.tag.group:04X},{elem.tag.element:04X})"
        if elem.VR == "SQ":
            out[path] = ("SQ", len(elem.value))
            for i, item in enumerate(elem.value):
                out.update(flatten(item, f"{path}[{i}] > "))
        else:
            out[path] = (elem.VR, elem.value)
    return out


def category(before: Any, after: Any) -> str:
    if after is None:
        return "removed"
    if before is None:
        return "added"
    if before == after:
        return "kept"
    if after[1] in (None, "", b"", 0) or after == ("SQ", 0):
        return "emptied"
    return "replaced"


def value_text(v: Any) -> str:
    """A value as text; an element absent, or with no value (None in memory, "" as read), is ""."""
    return "" if v is None or v[1] is None else str(v[1])


def variant_files(shared: Path) -> list[Path]:
    """The stored objects of dicom_variants the browser takes: Part 10 files (with a DICM
    preamble), every transfer syntax, not damaged on purpose."""
    out: list[Path] = []
    for path in sorted((shared / "dicom_variants").rglob("*")):
        if not path.is_file() or path.suffix in {".csv", ".md", ".json", ".nrrd", ".gz"}:
            continue
        if "truncated" in path.name or path.name in MISENCODED:
            continue
        try:
            ds = read(path)
        except Exception:
            continue  # not DICOM Part 10, or not readable
        if "SOPInstanceUID" in ds and "SOPClassUID" in ds and "DirectoryRecordSequence" not in ds:
            out.append(path)
    return out


def cross_check(files: list[Path], options: DeidOptions, tmp_path: Path) -> int:
    """De-identify ``files`` in node and with the server's Deidentifier deriving replacements as
    browsers do; both results must be the same data set, element for element at every depth.
    Returns the number of elements compared."""
    server = Deidentifier(SECRET, options, pseudonymizer=BrowserPseudonymizer(SECRET))
    originals = {f: read(f) for f in files}
    pseudonyms: dict[str, Any] = {}
    for ds in originals.values():
        key = patient_key(ds)
        found = key_pseudonym(SECRET, key)
        pseudonyms[key] = {
            "patient_id": found.patient_id,
            "patient_name": found.patient_id,
            "date_shift_days": found.date_shift_days,
        }
    job = {
        "rules": rules_for(options),
        "pseudonyms": pseudonyms,
        "files": [[str(f), str(tmp_path / f"{i}.dcm")] for i, f in enumerate(files)],
    }
    results = run_node(job)
    assert [(r["source"], r.get("error")) for r in results] == [(str(f), None) for f in files]

    compared = 0
    for i, f in enumerate(files):
        original = originals[f]
        browser = read(tmp_path / f"{i}.dcm")
        srv, _report = server.apply(original, str(f))
        before, b_out, s_out = flatten(original), flatten(browser), flatten(srv)
        assert results[i]["key"] == patient_key(original)
        for path in sorted(set(before) | set(b_out) | set(s_out)):
            b_cat = category(before.get(path), b_out.get(path))
            s_cat = category(before.get(path), s_out.get(path))
            assert b_cat == s_cat, (
                f.name,
                path,
                before.get(path),
                b_out.get(path),
                s_out.get(path),
            )
            b_val, s_val = b_out.get(path), s_out.get(path)
            assert value_text(b_val) == value_text(s_val), (f.name, path, b_val, s_val)
            compared += 1
            if b_cat == "replaced" and b_val is not None and b_val[0] == "UI":
                # replaced UIDs follow the browser derivation from the salt
                old = before[path][1]
                olds = old if isinstance(old, list | tuple) else [old]
                news = b_val[1] if isinstance(b_val[1], list | tuple) else [b_val[1]]
                assert [browser_uid(str(u)) for u in olds] == [str(u) for u in news]
        assert browser.PatientID == srv.PatientID == pseudonyms[patient_key(original)]["patient_id"]
        assert browser.PatientIdentityRemoved == "YES"
        if "PixelData" in original:
            assert browser.PixelData == original.PixelData
        assert browser.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    return compared


@pytest.mark.parametrize("option_set", sorted(OPTION_SETS))
def test_fake_phi_and_ct_same_as_server(
    web_bundle: Path, shared_data: Path, option_set: str, tmp_path: Path
) -> None:
    options = DeidOptions(**dict.fromkeys(OPTION_SETS[option_set], True))
    assert cross_check([shared_data / f for f in PHI_FILES], options, tmp_path) > 1000


@pytest.mark.parametrize("option_set", ["basic", "research"])
def test_dicom_variants_same_as_server(
    web_bundle: Path, shared_data: Path, option_set: str, tmp_path: Path
) -> None:
    files = variant_files(shared_data)
    assert len(files) > 150
    options = DeidOptions(**dict.fromkeys(OPTION_SETS[option_set], True))
    assert cross_check(files, options, tmp_path) > 10000


def test_browser_unit_tests(web_bundle: Path) -> None:
    """`npm run test:unit` (node --test on the real files) passes."""
    npm = shutil.which("npm")
    assert npm
    env = {**os.environ, "CARINA_SHARED_DATA": str(shared_data_dir())}
    done = subprocess.run(
        [npm, "run", "--silent", "test:unit"],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = dict(
        line[2:].split(" ", 1) for line in done.stdout.splitlines() if line.startswith("# ")
    )
    assert int(summary["fail"]) == 0
    assert int(summary["pass"]) >= 30


@pytest.mark.parametrize("option_set", sorted(OPTION_SETS))
def test_unit_test_rules_are_the_servers(web_bundle: Path, option_set: str) -> None:
    """The rules the node unit tests resolve from annex_e.csv are those the server gives."""
    options = DeidOptions(**dict.fromkeys(OPTION_SETS[option_set], True))
    done = subprocess.run(
        [
            str(shutil.which("node")),
            "--import",
            "tsx",
            "src/deid/test/table-cli.ts",
            *options.active(),
        ],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    mine = json.loads(done.stdout)
    server = rules_for(options)
    assert {r["tag"]: (r["vr"], r["action"]) for r in mine["rules"]} == {
        r["tag"]: (r["vr"], r["action"]) for r in server["rules"]
    }
    for key in (
        "options",
        "remove_private",
        "remove_curves",
        "remove_overlays",
        "safe_private",
        "dummy",
        "dummy_text",
        "deidentification_method",
        "deidentification_codes",
        "longitudinal_temporal_information_modified",
    ):
        assert mine[key] == server[key], key
