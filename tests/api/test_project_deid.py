"""Research projects that de-identify at ingest: policy, STOW-RS, shared studies, re-identify."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from carina.services import project_deid
from tests.archive.helpers import multipart_body, split_multipart

from .conftest import Site

COOKIES = "deid_fake_phi/dicom-cookies"


def _phi_strings(ds: Dataset) -> set[str]:
    """Values of the input that name or date the patient, institution or staff."""
    found: set[str] = set()
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "InstitutionName",
        "InstitutionAddress",
        "ReferringPhysicianName",
        "OperatorsName",
        "StudyDate",
        "AccessionNumber",
    ):
        value = str(ds.get(keyword, "") or "")
        if len(value) >= 5:
            found.add(value)
    for uid_kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        found.add(str(ds[uid_kw].value))
    return found


def _stow(site: Site, user: str, files: list[Path], project: str = "alpha") -> dict[str, object]:
    body, content_type = multipart_body([f.read_bytes() for f in files])
    response = site.client.post(
        f"/projects/{project}/dicom-web/studies",
        content=body,
        headers={**site.headers(user), "Content-Type": content_type},
    )
    assert response.status_code in (200, 202, 409), response.text
    result: dict[str, object] = {"status": response.status_code, **response.json()}
    return result


# The fake-PHI files are secondary captures (burned-in text risk): projects that take them clean
# pixel data, or refuse them (see test_burned_in_text_needs_pixel_cleaning).
CLEAN_PIXELS = {"options": ["clean-pixel-data"]}


def _enable(site: Site, user: str = "owner", **extra: object) -> None:
    response = site.client.put(
        "/api/projects/alpha/deid", json={"enabled": True, **extra}, headers=site.headers(user)
    )
    assert response.status_code == 200, response.text


def test_policy_is_set_by_owners_and_managers_only(fresh_site: Site) -> None:
    site = fresh_site
    initial = site.client.get("/api/projects/alpha/deid", headers=site.headers("viewer"))
    assert initial.json()["enabled"] is False
    for user in ("annotator", "reviewer", "viewer"):
        denied = site.client.put(
            "/api/projects/alpha/deid", json={"enabled": True}, headers=site.headers(user)
        )
        assert denied.status_code == 403
    bad = site.client.put(
        "/api/projects/alpha/deid",
        json={"enabled": True, "options": ["keep-everything"]},
        headers=site.headers("manager"),
    )
    assert bad.status_code == 422
    assert "keep-everything" in bad.text
    _enable(site, "manager", profile="research", options=["retain-uids"])
    policy = site.client.get("/api/projects/alpha/deid", headers=site.headers("viewer")).json()
    assert policy["enabled"] is True
    assert policy["profile"] == "research"
    assert policy["options"] == ["retain-uids"]
    assert "2024b" in policy["edition"]
    data_dir = site.app.state.settings.data_dir
    secret = project_deid.project_dir(data_dir, "alpha") / project_deid.SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    # another project is not affected
    beta = site.client.get("/api/projects/beta/deid", headers=site.headers("outsider"))
    assert beta.json()["enabled"] is False


def test_stow_into_a_deidentifying_project_stores_no_phi(
    fresh_site: Site, shared_data: Path
) -> None:
    site = fresh_site
    _enable(site, **CLEAN_PIXELS)
    ct = shared_data / "deid_fake_phi" / "humans" / "ctbrain1.dcm"
    files = [*sorted((shared_data / COOKIES).glob("*.dcm"))[:3], ct]
    originals = [pydicom.dcmread(f) for f in files]
    phi = set().union(*(_phi_strings(ds) for ds in originals))
    answer = _stow(site, "annotator", files)
    assert answer["status"] == 200
    viewer = site.headers("viewer")
    studies = site.client.get("/projects/alpha/dicom-web/studies", headers=viewer).json()
    stored_uids = {s["0020000D"]["Value"][0] for s in studies}
    original_uids = {str(ds.StudyInstanceUID) for ds in originals}
    assert not stored_uids & original_uids
    names = {s["00100010"]["Value"][0]["Alphabetic"] for s in studies if "Value" in s["00100010"]}
    assert not names & {str(ds.PatientName) for ds in originals}
    # the three cookies are one patient (same PatientID): one pseudonym for them
    new_uids = stored_uids - {site.studies["alpha"].study}
    assert len(new_uids) == 4
    patient_ids = {
        s["00100020"]["Value"][0] for s in studies if s["0020000D"]["Value"][0] in new_uids
    }
    assert len(patient_ids) == 2  # the cookie patient (one PatientID) and the CT patient
    assert all(p.startswith("ANON") for p in patient_ids)
    # the stored bytes, retrieved by WADO-RS, hold none of the input's identifying values
    for study in new_uids:
        response = site.client.get(
            f"/projects/alpha/dicom-web/studies/{study}",
            headers={**viewer, "Accept": 'multipart/related; type="application/dicom"'},
        )
        assert response.status_code == 200
        for _, content in split_multipart(response.content, response.headers["content-type"]):
            for value in phi:
                assert value.encode() not in content, value
            ds = pydicom.dcmread(io.BytesIO(content))
            assert ds.PatientIdentityRemoved == "YES"
            assert ds.DeidentificationMethodCodeSequence
    # sending the same files again: the same pseudonymous instances, already stored
    again = _stow(site, "annotator", files[:1])
    assert again["status"] == 200
    studies_after = site.client.get("/projects/alpha/dicom-web/studies", headers=viewer).json()
    assert len(studies_after) == len(studies)


def test_reidentification_for_owners_only_and_audited(fresh_site: Site, shared_data: Path) -> None:
    site = fresh_site
    _enable(site, **CLEAN_PIXELS)
    source = shared_data / "deid_fake_phi" / "humans" / "ctbrain1.dcm"
    original = pydicom.dcmread(source, stop_before_pixels=True)
    _stow(site, "annotator", [source])
    studies = site.client.get(
        "/projects/alpha/dicom-web/studies?PatientID=ANON*", headers=site.headers("viewer")
    ).json()
    (study,) = [s for s in studies if s["0020000D"]["Value"][0] != site.studies["alpha"].study]
    pseudonym = study["00100020"]["Value"][0]
    study_uid = study["0020000D"]["Value"][0]
    for user, status in (("manager", 403), ("annotator", 403), ("viewer", 403), ("outsider", 404)):
        denied = site.client.post(
            "/api/projects/alpha/reidentify",
            json={"pseudonym": pseudonym},
            headers=site.headers(user),
        )
        assert denied.status_code == status, user
    answer = site.client.post(
        "/api/projects/alpha/reidentify",
        json={"pseudonym": pseudonym, "study_uid": study_uid},
        headers=site.headers("owner"),
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["patient_id"] == str(original.PatientID)
    assert body["patient_name"] == str(original.PatientName)
    assert body["original_study_uid"] == str(original.StudyInstanceUID)
    unknown = site.client.post(
        "/api/projects/alpha/reidentify",
        json={"pseudonym": "ANON-NOPE"},
        headers=site.headers("owner"),
    )
    assert unknown.status_code == 404
    rows = site.client.get(
        "/api/audit", params={"action": "project.reidentify"}, headers=site.headers("admin")
    ).json()
    details = [r["detail"] for r in rows if r["user_name"] == "owner" and r["outcome"] == "allowed"]
    assert "identity disclosed" in details
    assert any(d.startswith("not found") for d in details)
    denied = {r["user_name"] for r in rows if r["outcome"] == "denied"}
    assert {"manager", "annotator", "viewer", "outsider"} <= denied


def test_shared_study_arrives_as_a_deidentified_copy(fresh_site: Site) -> None:
    site = fresh_site
    _enable(site)
    beta_study = site.studies["beta"].study
    response = site.client.post(
        "/api/projects/alpha/studies",
        json={"study_uids": [beta_study]},
        headers=site.headers("admin"),
    )
    assert response.status_code == 200, response.text
    (copy_uid,) = response.json()["study_uids"]
    assert copy_uid != beta_study
    viewer = site.headers("viewer")
    meta = site.client.get(f"/projects/alpha/dicom-web/studies/{copy_uid}/metadata", headers=viewer)
    assert meta.status_code == 200
    (instance,) = meta.json()
    assert instance["00100020"]["Value"][0].startswith("ANON")
    # the identified original is not visible in the de-identifying project, and beta keeps it
    hidden = site.client.get(
        f"/projects/alpha/dicom-web/studies/{beta_study}/metadata", headers=viewer
    )
    assert hidden.status_code == 404
    kept = site.client.get(
        f"/projects/beta/dicom-web/studies/{beta_study}/metadata", headers=site.headers("outsider")
    )
    assert kept.json()[0]["00100020"]["Value"][0] == "P2"


def test_parts_that_cannot_be_deidentified_are_refused_and_not_stored(fresh_site: Site) -> None:
    site = fresh_site
    _enable(site)
    body, content_type = multipart_body([b"not a dicom file at all"])
    response = site.client.post(
        "/projects/alpha/dicom-web/studies",
        content=body,
        headers={**site.headers("annotator"), "Content-Type": content_type},
    )
    assert response.status_code == 409
    failed = response.json()["00081198"]["Value"]
    assert failed[0]["00081197"]["Value"] == [0xC000]
    studies = site.client.get("/projects/alpha/dicom-web/studies", headers=site.headers("viewer"))
    assert len(studies.json()) == 1  # only the study the project had before


@pytest.mark.parametrize("user", ["owner"])
def test_without_a_policy_nothing_changes(fresh_site: Site, shared_data: Path, user: str) -> None:
    site = fresh_site
    source = shared_data / "deid_fake_phi" / "humans" / "ctbrain1.dcm"
    _stow(site, user, [source])
    original = pydicom.dcmread(source, stop_before_pixels=True)
    studies = site.client.get(
        f"/projects/alpha/dicom-web/studies?StudyInstanceUID={original.StudyInstanceUID}",
        headers=site.headers("viewer"),
    ).json()
    assert studies[0]["00100020"]["Value"][0] == str(original.PatientID)


def test_burned_in_text_needs_pixel_cleaning(fresh_site: Site, shared_data: Path) -> None:
    site = fresh_site
    ultrasound = shared_data / "deid_fake_phi" / "ultrasounds" / "GREYSCALE_IMAGE.dcm"
    _enable(site)  # basic profile: pixels are not cleaned, so such objects are refused
    refused = _stow(site, "annotator", [ultrasound])
    assert refused["status"] == 409
    before = site.client.get("/projects/alpha/dicom-web/studies", headers=site.headers("viewer"))
    assert len(before.json()) == 1
    _enable(site, options=["clean-pixel-data"])
    stored = _stow(site, "annotator", [ultrasound])
    assert stored["status"] == 200
    (url,) = [
        item["00081190"]["Value"][0]
        for item in stored["00081199"]["Value"]  # type: ignore[index]
    ]
    path = url[url.index("/projects/") :]
    response = site.client.get(
        path,
        headers={**site.headers("viewer"), "Accept": 'multipart/related; type="application/dicom"'},
    )
    ((_, content),) = split_multipart(response.content, response.headers["content-type"])
    ds = pydicom.dcmread(io.BytesIO(content))
    assert ds.BurnedInAnnotation == "NO"
    assert ds.PatientIdentityRemoved == "YES"
