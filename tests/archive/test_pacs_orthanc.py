"""PACS sync against a real Orthanc on loopback: C-MOVE pulls, DICOMweb query and pull, and sync
rules run as jobs by a running server.

Orthanc holds three studies: the real lung CT (Lung_Dx-A0002, 30 instances, explicit little
endian), a follow-up study of the same patient derived from it (new UIDs, dated six months later)
and another patient's CT (the TotalSegmentator series, JPEG 2000 lossless, given PatientID
TS-0001). Pulled instances are compared with the files Orthanc itself holds (read over its REST
API) and with the bytes sent to it. Over DICOMweb the dataset after the file meta group must be
byte-identical (Orthanc writes its own file meta group); over DIMSE the sender re-encodes lengths,
so every element must be equal (and pixel data decode equal).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.uid import JPEG2000Lossless, generate_uid
from typer.testing import CliRunner

from carina.api import create_app
from carina.archive import Archive
from carina.archive.pacs import PacsClient, Peer, WebPeer
from carina.auth import Role
from carina.cli.main import app as cli
from carina.core.errors import NotFoundError
from carina.services.auth import auth_services
from carina.services.settings import Settings

from .helpers import free_ports, orthanc_peer

ORTHANC_PEER = orthanc_peer()
pytestmark = pytest.mark.skipif(
    shutil.which("Orthanc") is None or not ORTHANC_PEER.exists(), reason="Orthanc is not installed"
)
LUNG_PATIENT = "Lung_Dx-A0002"
OTHER_PATIENT = "TS-0001"
PASSWORD = "a-long-test-password"


@dataclass
class Orthanc:
    http: str
    dicom_port: int
    move_port: int  # where Orthanc sends C-MOVEs for the AE title LOCAL
    first: str  # the lung study
    follow_up: str
    other: str
    sent: dict[str, bytes] = field(default_factory=dict)  # SOPInstanceUID -> bytes sent

    @property
    def peer(self) -> Peer:
        return Peer("ORTHANC", "127.0.0.1", self.dicom_port)

    @property
    def web(self) -> WebPeer:
        return WebPeer(f"{self.http}/dicom-web")

    def file(self, sop_uid: str) -> bytes:
        """The file Orthanc holds for an instance (its REST API)."""
        (found,) = httpx.post(f"{self.http}/tools/lookup", content=sop_uid).json()
        return httpx.get(f"{self.http}/instances/{found['ID']}/file").content


def dataset_bytes(data: bytes) -> bytes:
    """A DICOM file's bytes after its file meta group."""
    assert data[128:132] == b"DICM"
    assert data[132:136] == b"\x02\x00\x00\x00"  # (0002,0000) group length, explicit VR
    length = int.from_bytes(data[140:144], "little")
    return data[144 + length :]


def _encode(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _follow_up(files: list[Path]) -> list[bytes]:
    """The lung CT as a later study of the same patient: new study, series and instance UIDs."""
    study = generate_uid(entropy_srcs=["carina-test-follow-up-study"])
    series = generate_uid(entropy_srcs=["carina-test-follow-up-series"])
    out = []
    for path in files:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["carina-test-follow-up", ds.SOPInstanceUID])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyDate = ds.SeriesDate = "20071025"
        out.append(_encode(ds))
    return out


def _other_patient(shared_data: Path) -> list[bytes]:
    """The TotalSegmentator CT with a PatientID, SOP class and the UIDs its anonymised export
    lacks (kept only in its file meta)."""
    study = generate_uid(entropy_srcs=["carina-test-other-study"])
    series = generate_uid(entropy_srcs=["carina-test-other-series"])
    out = []
    for path in sorted((shared_data / "totalsegmentator_ref" / "ct_dicom").iterdir()):
        ds = pydicom.dcmread(path)
        ds.PatientID, ds.PatientName = OTHER_PATIENT, "Other^Patient"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        out.append(_encode(ds))
    return out


@pytest.fixture(scope="module")
def orthanc(
    tmp_path_factory: pytest.TempPathFactory, lung_ct_files: list[Path], shared_data: Path
) -> Iterator[Orthanc]:
    directory = tmp_path_factory.mktemp("orthanc")
    http_port, dicom_port, move_port = free_ports(3)
    modalities = {"LOCAL": ["LOCAL", "127.0.0.1", move_port]}
    env = dict(os.environ, ORTHANC_MODALITIES=json.dumps(modalities))
    start = [str(ORTHANC_PEER), "start", str(directory), str(http_port), str(dicom_port)]
    subprocess.run(start, check=True, capture_output=True, env=env, timeout=120)
    try:
        lung = [p.read_bytes() for p in lung_ct_files]
        follow_up, other = _follow_up(lung_ct_files), _other_patient(shared_data)
        peer = Orthanc(
            f"http://127.0.0.1:{http_port}",
            dicom_port,
            move_port,
            first=str(pydicom.dcmread(io.BytesIO(lung[0])).StudyInstanceUID),
            follow_up=str(pydicom.dcmread(io.BytesIO(follow_up[0])).StudyInstanceUID),
            other=str(pydicom.dcmread(io.BytesIO(other[0])).StudyInstanceUID),
        )
        with httpx.Client(base_url=peer.http, timeout=60) as http:
            for data in [*lung, *follow_up, *other]:
                answer = http.post("/instances", content=data)
                assert answer.status_code == 200, answer.text
                peer.sent[str(pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID)] = data
        yield peer
    finally:
        subprocess.run([str(ORTHANC_PEER), "stop", str(directory)], check=False, timeout=60)


def test_cmove_pull_stores_what_orthanc_holds(
    orthanc: Orthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "CARINA_DICOM_PEERS", json.dumps({"ORTHANC": f"127.0.0.1:{orthanc.dicom_port}"})
    )
    data = ["--data-dir", str(tmp_path / "local"), "--ae-title", "LOCAL"]
    runner = CliRunner()
    found = runner.invoke(
        cli, ["pacs", "query", "ORTHANC", "--patient-id", LUNG_PATIENT, "--modality", "CT", *data]
    )
    assert found.exit_code == 0, found.output
    rows = [line for line in found.output.splitlines() if LUNG_PATIENT in line]
    assert len(rows) == 2  # the first study and its follow-up
    assert {row.split("│")[-2].strip() for row in rows} == {"30"}

    started = time.perf_counter()
    pulled = runner.invoke(
        cli,
        [
            *("pacs", "pull", "ORTHANC", orthanc.first, "--method", "move"),
            *("--store-port", str(orthanc.move_port), *data),
        ],
    )
    elapsed = time.perf_counter() - started
    assert pulled.exit_code == 0, pulled.output
    assert "received 30, stored 30, not stored 0" in pulled.output
    print(f"C-MOVE of 30 instances from Orthanc: {elapsed:.2f} s")
    with Archive(tmp_path / "local") as local:
        stored = local.instances(orthanc.first)
        assert len(stored) == 30
        for instance in stored:
            here = local.read(instance)
            theirs = orthanc.file(instance.sop_instance_uid)
            # over DIMSE the sender re-encodes (Orthanc gives sequences defined lengths): the
            # same elements with the same values, not the same bytes
            ours, held = pydicom.dcmread(io.BytesIO(here)), pydicom.dcmread(io.BytesIO(theirs))
            assert ours == held
            assert ours.PatientID == held.PatientID == LUNG_PATIENT
            assert np.array_equal(ours.pixel_array, held.pixel_array)
        with pytest.raises(NotFoundError):
            local.instances(orthanc.follow_up)  # only the study asked for


def test_dicomweb_query_and_pull_are_byte_identical(
    orthanc: Orthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Archive(tmp_path / "local") as local:
        client = PacsClient(local, "LOCAL")
        studies = client.find(
            orthanc.web,
            "STUDY",
            {"PatientID": LUNG_PATIENT, "ModalitiesInStudy": "CT"},
            ["NumberOfStudyRelatedInstances", "StudyDate"],
        )
        assert {s.StudyInstanceUID: s.StudyDate for s in studies} == {
            orthanc.first: "20070425",
            orthanc.follow_up: "20071025",
        }
        assert {int(s.NumberOfStudyRelatedInstances) for s in studies} == {30}
        dated = client.find(orthanc.web, "STUDY", {"StudyDate": "20071001-"})
        assert {s.StudyInstanceUID for s in dated} == {orthanc.follow_up, orthanc.other}

        for study, count in ((orthanc.first, 30), (orthanc.other, 20)):
            started = time.perf_counter()
            report = client.pull(orthanc.web, study)
            elapsed = time.perf_counter() - started
            print(f"WADO-RS of {count} instances from Orthanc: {elapsed:.2f} s")
            assert report.stored == count
            stored = local.instances(study)
            assert len(stored) == count
            for instance in stored:
                here = local.read(instance)
                sent = orthanc.sent[instance.sop_instance_uid]
                assert dataset_bytes(here) == dataset_bytes(sent)
                assert dataset_bytes(here) == dataset_bytes(orthanc.file(instance.sop_instance_uid))
        # sent as held: the other patient's study stays JPEG 2000, not transcoded
        assert {i.transfer_syntax_uid for i in local.instances(orthanc.other)} == {JPEG2000Lossless}

        again = client.sync(orthanc.web, {"PatientID": OTHER_PATIENT})
        assert again.studies == {orthanc.other: None}

    monkeypatch.setenv("CARINA_DICOMWEB_PEERS", json.dumps({"WEB": {"url": orthanc.web.url}}))
    synced = CliRunner().invoke(
        cli,
        [
            "pacs",
            "sync",
            "WEB",
            "--patient-id",
            LUNG_PATIENT,
            "--data-dir",
            str(tmp_path / "local"),
        ],
    )
    assert synced.exit_code == 0, synced.output
    assert f"{orthanc.first}: complete here" in synced.output
    assert f"{orthanc.follow_up}: pulled, 30 new" in synced.output


def test_rule_run_in_the_command(orthanc: Orthanc, tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    with Archive(tmp_path / "data") as archive:
        auth, _ = auth_services(archive.engine, None)
        auth.create_user("owner", PASSWORD)
        auth.create_project(auth.principal("owner"), "cohort")
    runner = CliRunner()
    added = runner.invoke(
        cli,
        [
            *("pacs", "rules", "add", "cohort", orthanc.web.url, "--modality", "CT"),
            *("--last-days", "36500", "--patient-id", OTHER_PATIENT, *data),
        ],
    )
    assert added.exit_code == 0, added.output
    rule = added.output.strip()
    before = dict(os.environ)
    ran = runner.invoke(cli, ["pacs", "rules", "run", rule, "--here", *data])
    assert ran.exit_code == 0, ran.output
    assert "found 1, pulled 1, skipped 0, instances stored 20" in ran.output
    assert dict(os.environ) == before
    again = runner.invoke(cli, ["pacs", "rules", "run", rule, "--here", *data])
    assert "found 1, pulled 0, skipped 1, instances stored 0" in again.output
    with Archive(tmp_path / "data") as archive:
        auth, _ = auth_services(archive.engine, None)
        assert auth.studies("cohort") == [orthanc.other]


def _wait_job(client: TestClient, project: str, job_id: int, headers: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(
            f"/api/projects/{project}/jobs/{job_id}", headers=headers
        ).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", job
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def test_sync_rules_run_as_jobs_in_the_server(
    orthanc: Orthanc, tmp_path: Path, lung_ct_files: list[Path]
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        host="127.0.0.1",
        dicom_port=orthanc.move_port,  # the server's DIMSE listener receives C-MOVEs
        ae_title="LOCAL",
        dicom_peers={"ORTHANC": f"127.0.0.1:{orthanc.dicom_port}"},
        dicomweb_peers={"ORTHANC-WEB": {"url": orthanc.web.url}},
        jobs_workers=1,
        pacs_sync_check_s=0.2,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        store = app.state.auth
        for name in ("owner", "manager", "annotator"):
            store.create_user(name, PASSWORD)
        owner = store.principal("owner")
        for project in ("cohort", "followup"):
            store.create_project(owner, project)
            store.set_member(owner, project, "manager", Role.MANAGER)
            store.set_member(owner, project, "annotator", Role.ANNOTATOR)

        def headers(user: str) -> dict[str, str]:
            token = store.issue_token(store.principal(user).user_id, "personal", None, "t")
            return {"Authorization": f"Bearer {token.token}"}

        manager = headers("manager")
        results = app.state.archive.ingest([(None, p.read_bytes()) for p in lung_ct_files])
        assert all(r.status.ok for r in results)
        store.add_studies("followup", [orthanc.first])

        rule = {"peer": "ORTHANC", "modality": "CT", "patient_ids": [OTHER_PATIENT]}
        denied = client.post(
            "/api/projects/cohort/pacs-rules", json=rule, headers=headers("annotator")
        )
        assert denied.status_code == 403
        inline = {**rule, "peer": f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"}
        refused = client.post("/api/projects/cohort/pacs-rules", json=inline, headers=manager)
        assert refused.status_code == 400
        assert "not a configured peer" in refused.text
        unfiltered = client.post(
            "/api/projects/cohort/pacs-rules", json={"peer": "ORTHANC"}, headers=manager
        )
        assert unfiltered.status_code == 400

        # follow-ups of the patients already in the project, over DICOMweb, on request
        created = client.post(
            "/api/projects/followup/pacs-rules",
            json={"peer": "ORTHANC-WEB", "project_patients": True, "name": "follow-ups"},
            headers=manager,
        )
        assert created.status_code == 201, created.text
        follow_rule = created.json()["id"]
        run = client.post(f"/api/projects/followup/pacs-rules/{follow_rule}/run", headers=manager)
        assert run.status_code == 202, run.text
        job = _wait_job(client, "followup", run.json()["job_id"], manager)
        result = job["result"]
        assert (result["found"], result["pulled"], result["skipped"]) == (2, 1, 1)
        assert result["instances_stored"] == 30
        assert result["studies"] == {orthanc.first: "complete here", orthanc.follow_up: "pulled"}
        assert set(store.studies("followup")) == {orthanc.first, orthanc.follow_up}
        with pytest.raises(NotFoundError):
            app.state.archive.instances(orthanc.other)  # another patient: not pulled

        # CT of one patient by C-MOVE to the server's listener, every hour: the scheduler
        # submits its first run at once
        created = client.post(
            "/api/projects/cohort/pacs-rules",
            json={**rule, "method": "move", "interval_s": 3600},
            headers=manager,
        )
        assert created.status_code == 201, created.text
        cohort_rule = created.json()["id"]
        deadline = time.monotonic() + 120
        while True:
            (listed,) = client.get("/api/projects/cohort/pacs-rules", headers=manager).json()
            if listed["last_job_id"] is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        scheduled = listed["last_job_id"]
        assert scheduled is not None
        result = _wait_job(client, "cohort", scheduled, manager)["result"]
        assert (result["found"], result["pulled"], result["skipped"]) == (1, 1, 0), result[
            "studies"
        ]
        assert result["instances_stored"] == 20
        assert store.studies("cohort") == [orthanc.other]
        stored = app.state.archive.instances(orthanc.other)
        assert len(stored) == 20
        for instance in stored:
            here = app.state.archive.read(instance)
            assert dataset_bytes(here) == dataset_bytes(orthanc.sent[instance.sop_instance_uid])

        # a second run pulls nothing; the scheduler does not run it again within the hour
        run = client.post(f"/api/projects/cohort/pacs-rules/{cohort_rule}/run", headers=manager)
        assert run.status_code == 202
        result = _wait_job(client, "cohort", run.json()["job_id"], manager)["result"]
        assert (result["found"], result["pulled"], result["skipped"]) == (1, 0, 1)
        assert result["instances_stored"] == 0
        time.sleep(0.5)
        jobs = client.get("/api/projects/cohort/jobs", headers=manager).json()
        assert sorted(j["id"] for j in jobs) == sorted([scheduled, run.json()["job_id"]])

        other = client.delete(f"/api/projects/followup/pacs-rules/{cohort_rule}", headers=manager)
        assert other.status_code == 404  # a rule of another project
        gone = client.delete(f"/api/projects/cohort/pacs-rules/{cohort_rule}", headers=manager)
        assert gone.status_code == 204
        assert client.get("/api/projects/cohort/pacs-rules", headers=manager).json() == []
