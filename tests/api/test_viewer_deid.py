"""De-identification rules and pseudonyms for the browser agree with what the server applies."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session

from carina.db import BrowserPseudonym
from carina.deid import Deidentifier, options_for
from carina.deid.browser import browser_uid, patient_key
from carina.deid.engine import DUMMY_BY_VR
from carina.deid.pseudonym import shift_date
from carina.services import project_deid
from tests.archive.helpers import multipart_body

from .conftest import Site

FAKE_PHI = "deid_fake_phi"


def _rules(site: Site, user: str = "viewer") -> dict[str, object]:
    response = site.client.get("/api/projects/alpha/deid/rules", headers=site.headers(user))
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def _files(shared_data: Path) -> list[Path]:
    return sorted(p for p in (shared_data / FAKE_PHI).rglob("*.dcm"))


@pytest.mark.parametrize(
    ("profile", "options"),
    [
        ("basic", []),
        (
            "basic",
            [
                "retain-uids",
                "retain-safe-private",
                "retain-long-modified-dates",
                "retain-device-identity",
                "clean-descriptors",
            ],
        ),
    ],
)
def test_every_rule_is_what_the_server_applies(
    fresh_site: Site, shared_data: Path, profile: str, options: list[str]
) -> None:
    site = fresh_site
    policy = {"enabled": True, "profile": profile, "options": options}
    assert site.client.put("/api/projects/alpha/deid", json=policy, headers=site.headers("owner"))
    rules = _rules(site)
    assert rules["profile"] == profile
    assert rules["version"] == "2024b"
    active = options_for(profile, options)
    assert rules["options"] == list(active.active())
    data_dir = site.app.state.settings.data_dir
    secret = project_deid.ensure_secret(data_dir, "alpha")
    deidentifier = Deidentifier(secret, active)
    by_tag = {int(r["tag"], 16): r for r in rules["rules"]}  # type: ignore[attr-defined]
    assert len(by_tag) > 500
    checked: dict[str, int] = {}
    for path in _files(shared_data):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # over-long values in the inputs
            _check_file(path, deidentifier, by_tag, rules, checked)
    # every kind of action was met on real data, many times
    assert set(checked) >= {"X", "Z", "K" if active.retain_uids else "U"}, checked
    assert sum(checked.values()) > 100, checked


def _check_file(
    path: Path,
    deidentifier: Deidentifier,
    by_tag: dict[int, Any],
    rules: dict[str, Any],
    checked: dict[str, int],
) -> None:
    if True:
        original = pydicom.dcmread(path)
        clean, _report = deidentifier.apply(original)
        assert clean.DeidentificationMethod == rules["deidentification_method"]
        codes = [
            {"value": c.CodeValue, "scheme": c.CodingSchemeDesignator, "meaning": c.CodeMeaning}
            for c in clean.DeidentificationMethodCodeSequence
        ]
        assert codes == rules["deidentification_codes"]
        assert clean.PatientIdentityRemoved == rules["patient_identity_removed"]
        for elem in original:
            rule = by_tag.get(int(elem.tag))
            if rule is None or rule["keyword"] in ("PatientName", "PatientID"):
                continue  # the pseudonym tags are written after the rules
            action = rule["action"]
            after = clean.get(elem.tag)
            if action == "X":
                assert after is None, (path.name, rule)
            elif action == "Z":
                assert after is not None, (path.name, rule)
                assert after.is_empty, (path.name, rule)
            elif action == "K" and elem.VR != "SQ":
                assert after is not None, (path.name, rule)
                assert after.value == elem.value, (path.name, rule)
            elif action == "D" and not elem.is_empty and elem.VR not in ("SQ", "UI"):
                assert after is not None
                expected = DUMMY_BY_VR.get(elem.VR, rules["dummy_text"])
                assert after.value == expected, (path.name, rule, after.value)
            elif action in ("U", "D") and elem.VR == "UI" and not elem.is_empty:
                assert after is not None
                assert str(after.value).startswith("2.25.")
                assert after.value != elem.value
            else:
                continue
            checked[action] = checked.get(action, 0) + 1
        private = [e for e in clean if e.tag.is_private]
        if rules["remove_private"]:
            assert private == []


def test_salt_is_per_project_and_does_not_reveal_the_secret(fresh_site: Site) -> None:
    site = fresh_site
    alpha = _rules(site)["salt"]
    beta = site.client.get("/api/projects/beta/deid/rules", headers=site.headers("outsider"))
    assert isinstance(alpha, str)
    assert len(alpha) == 64
    assert beta.json()["salt"] != alpha
    secret = project_deid.ensure_secret(site.app.state.settings.data_dir, "alpha")
    assert secret.hex() != alpha
    assert secret.hex() not in alpha
    assert _rules(site, "owner")["salt"] == alpha  # stable


def test_uid_derivation_is_the_documented_one() -> None:
    salt = "ab" * 32
    uid = "1.2.826.0.1.3680043.8.498.1"
    digest = hashlib.sha256((salt + uid).encode()).digest()
    assert browser_uid(salt, uid) == "2.25." + str(int.from_bytes(digest[:16], "big"))
    assert browser_uid(salt, uid + "\x00") == browser_uid(salt, uid)
    assert len(browser_uid(salt, uid)) <= 64


def test_pseudonym_is_stable_per_key_and_project(fresh_site: Site, shared_data: Path) -> None:
    site = fresh_site
    salt = str(_rules(site)["salt"])
    ds: Dataset = pydicom.dcmread(shared_data / FAKE_PHI / "humans" / "ctbrain1.dcm")
    key = patient_key(salt, str(ds.PatientID))
    assert key == hashlib.sha256((salt + str(ds.PatientID)).encode()).hexdigest()
    url = "/api/projects/alpha/deid/pseudonym"
    first = site.client.post(url, json={"key": key}, headers=site.headers("annotator"))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["patient_id"].startswith("ANON-")
    assert body["patient_name"] == body["patient_id"]
    assert str(ds.PatientID) not in body["patient_id"]
    assert -3650 <= body["date_shift_days"] <= -1
    again = site.client.post(url, json={"key": key}, headers=site.headers("owner"))
    assert again.json() == body
    other = site.client.post(url, json={"key": "0" * 64}, headers=site.headers("owner"))
    assert other.json()["patient_id"] != body["patient_id"]
    # another project gives another pseudonym for the same key
    beta = site.client.post(
        "/api/projects/beta/deid/pseudonym", json={"key": key}, headers=site.headers("outsider")
    )
    assert beta.status_code == 200
    assert beta.json()["patient_id"] != body["patient_id"]
    # recorded in the database
    with Session(site.app.state.archive.engine) as session:
        rows = session.scalars(select(BrowserPseudonym).where(BrowserPseudonym.patient_key == key))
        assert sorted(r.pseudonym for r in rows) == sorted(
            [body["patient_id"], beta.json()["patient_id"]]
        )


def test_pseudonym_needs_store_permission_and_a_key(fresh_site: Site) -> None:
    site = fresh_site
    url = "/api/projects/alpha/deid/pseudonym"
    key = "1" * 64
    assert (
        site.client.post(url, json={"key": key}, headers=site.headers("viewer")).status_code == 403
    )
    assert site.client.post(url, json={"key": key}).status_code == 401
    for bad in ("XYZ", "A" * 64, "1" * 63):
        response = site.client.post(url, json={"key": bad}, headers=site.headers("owner"))
        assert response.status_code == 422, bad


def test_server_ingest_agrees_with_the_browser_derivations(
    fresh_site: Site, shared_data: Path
) -> None:
    site = fresh_site
    policy = {"enabled": True, "options": ["retain-long-modified-dates"]}
    response = site.client.put(
        "/api/projects/alpha/deid", json=policy, headers=site.headers("owner")
    )
    assert response.status_code == 200, response.text
    rules = _rules(site)
    assert rules["derivation"] == "browser"
    salt = str(rules["salt"])
    path = shared_data / FAKE_PHI / "examples" / "MR_with_sequences.dcm"  # no burned-in text
    original = pydicom.dcmread(path)
    body, content_type = multipart_body([path.read_bytes()])
    stored = site.client.post(
        "/projects/alpha/dicom-web/studies",
        content=body,
        headers={**site.headers("annotator"), "Content-Type": content_type},
    )
    assert stored.status_code == 200, stored.text
    # what a browser derives, without the PatientID leaving it
    key = patient_key(salt, str(original.PatientID))
    pseudonym = site.client.post(
        "/api/projects/alpha/deid/pseudonym", json={"key": key}, headers=site.headers("annotator")
    ).json()
    study_uid = browser_uid(salt, str(original.StudyInstanceUID))
    found = site.client.get(
        f"/projects/alpha/dicom-web/studies?StudyInstanceUID={study_uid}",
        headers=site.headers("viewer"),
    ).json()
    assert len(found) == 1
    study = found[0]
    assert study["00100020"]["Value"] == [pseudonym["patient_id"]]
    assert study["00100010"]["Value"][0]["Alphabetic"] == pseudonym["patient_name"]
    shifted = shift_date(str(original.StudyDate), pseudonym["date_shift_days"])
    assert study["00080020"]["Value"] == [shifted]
    instance = site.client.get(
        f"/projects/alpha/dicom-web/studies/{study_uid}/instances", headers=site.headers("viewer")
    ).json()[0]
    assert instance["00080018"]["Value"] == [browser_uid(salt, str(original.SOPInstanceUID))]


def test_a_project_keeps_its_derivation(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    folder = project_deid.project_dir(data_dir, "old")
    folder.mkdir(parents=True)
    # a policy written before browser derivations existed
    (folder / project_deid.POLICY_FILE).write_text(
        '{"enabled": true, "profile": "basic", "options": []}', encoding="utf-8"
    )
    assert project_deid.load_policy(data_dir, "old").derivation == "keyed"
    saved = project_deid.save_policy(
        data_dir, "old", project_deid.DeidPolicy(True, "basic", ("retain-uids",))
    )
    assert (saved.derivation, saved.options) == ("keyed", ("retain-uids",))
    new = project_deid.save_policy(data_dir, "new", project_deid.DeidPolicy(True))
    assert new.derivation == "browser"
