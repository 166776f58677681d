"""PACS exchange: find, pull (C-GET), push (C-STORE) and sync against a remote DICOM node, and
the same over DICOMweb (QIDO-RS, WADO-RS, STOW-RS) against a second Carina server.

The remote is a second Carina archive serving DIMSE, and Orthanc when it is installed.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import uvicorn
from typer.testing import CliRunner

from carina.api import create_app
from carina.archive import Archive, IngestStatus
from carina.archive.dimse import DimseServer
from carina.archive.pacs import PacsClient, PacsError, Peer, WebPeer
from carina.cli.main import app
from carina.services.settings import Settings

from .helpers import admin_headers, free_port, free_ports, orthanc_peer


@pytest.fixture
def remote(tmp_path: Path, lung_ct_files: list[Path]) -> Iterator[tuple[Archive, Peer]]:
    with Archive(tmp_path / "remote") as archive:
        archive.ingest([(str(p), p.read_bytes()) for p in lung_ct_files])
        server = DimseServer(archive, "REMOTE", "127.0.0.1", 0)
        server.start()
        try:
            yield archive, Peer("REMOTE", "127.0.0.1", server.port)
        finally:
            server.stop()


def test_peer_parsing() -> None:
    assert Peer.parse("PACS@10.0.0.5:104") == Peer("PACS", "10.0.0.5", 104)
    assert Peer.parse("PACS", {"PACS": "pacs.local:11112"}) == Peer("PACS", "pacs.local", 11112)
    with pytest.raises(PacsError):
        Peer.parse("PACS")
    with pytest.raises(PacsError):
        Peer.parse("PACS@host")


def test_find_pull_sync_push(
    remote: tuple[Archive, Peer], lung_ct_files: list[Path], tmp_path: Path
) -> None:
    _, peer = remote
    first = pydicom.dcmread(lung_ct_files[0])
    with Archive(tmp_path / "local") as local:
        client = PacsClient(local, "LOCAL")
        (study,) = client.find(peer, "STUDY", {"PatientID": first.PatientID}, ["StudyDate"])
        assert study.StudyInstanceUID == first.StudyInstanceUID
        assert study.StudyDate == first.StudyDate

        report = client.pull(peer, first.StudyInstanceUID)
        assert report.stored == 30
        assert report.status == 0x0000
        by_uid = {pydicom.dcmread(p).SOPInstanceUID: p for p in lung_ct_files}
        for stored in local.instances(first.StudyInstanceUID):
            pulled = pydicom.dcmread(local.store.absolute(stored.path))
            original = pydicom.dcmread(by_uid[stored.sop_instance_uid])
            assert pulled == original
            assert np.array_equal(pulled.pixel_array, original.pixel_array)

        again = client.sync(peer, {"PatientID": first.PatientID})
        assert again.studies == {first.StudyInstanceUID: None}

        with Archive(tmp_path / "third") as third:
            target = DimseServer(third, "THIRD", "127.0.0.1", 0)
            target.start()
            try:
                statuses = client.push(
                    Peer("THIRD", "127.0.0.1", target.port), first.StudyInstanceUID
                )
            finally:
                target.stop()
            assert set(statuses.values()) == {0x0000}
            assert len(third.instances(first.StudyInstanceUID)) == 30


# pynetdicom drops (without closing) the socket of a refused connection
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_unreachable_peer(tmp_path: Path) -> None:
    with Archive(tmp_path / "local") as local:
        with pytest.raises(PacsError, match="refused"):
            PacsClient(local).find(Peer("NOBODY", "127.0.0.1", free_port()), "STUDY", {})
        gc.collect()


def test_sync_pulls_missing_and_incomplete_studies(
    remote: tuple[Archive, Peer], lung_ct_files: list[Path], tmp_path: Path
) -> None:
    _, peer = remote
    first = pydicom.dcmread(lung_ct_files[0])
    with Archive(tmp_path / "local") as local:
        local.ingest([(None, p.read_bytes()) for p in lung_ct_files[:10]])
        report = PacsClient(local, "LOCAL").sync(peer, {"StudyInstanceUID": first.StudyInstanceUID})
        pulled = report.studies[first.StudyInstanceUID]
        assert pulled is not None
        statuses = [r.status for r in pulled.results]
        assert statuses.count(IngestStatus.STORED) == 20
        assert statuses.count(IngestStatus.ALREADY_STORED) == 10
        assert len(local.instances(first.StudyInstanceUID)) == 30


ORTHANC_PEER = orthanc_peer()


@pytest.mark.skipif(
    shutil.which("Orthanc") is None or not ORTHANC_PEER.exists(), reason="Orthanc is not installed"
)
def test_with_orthanc(shared_data: Path, lung_ct_files: list[Path], tmp_path: Path) -> None:
    orthanc_dir = tmp_path / "orthanc"
    http_port, dicom_port, local_port = free_ports(3)
    env = dict(
        os.environ, ORTHANC_MODALITIES=json.dumps({"LOCAL": ["LOCAL", "127.0.0.1", local_port]})
    )
    start = [str(ORTHANC_PEER), "start", str(orthanc_dir), str(http_port), str(dicom_port)]
    subprocess.run(start, check=True, capture_output=True, env=env, timeout=60)
    try:
        peer = Peer("ORTHANC", "127.0.0.1", dicom_port)
        first = pydicom.dcmread(lung_ct_files[0])
        with Archive(tmp_path / "local") as local:
            local.ingest([(None, p.read_bytes()) for p in lung_ct_files])
            client = PacsClient(local, "LOCAL")
            statuses = client.push(peer, first.StudyInstanceUID)
            assert set(statuses.values()) == {0x0000}
            (study,) = client.find(
                peer,
                "STUDY",
                {"StudyInstanceUID": first.StudyInstanceUID},
                ["NumberOfStudyRelatedInstances"],
            )
            assert int(study.NumberOfStudyRelatedInstances) == 30
        with Archive(tmp_path / "fresh") as fresh:
            report = PacsClient(fresh, "LOCAL").pull(peer, first.StudyInstanceUID)
            assert report.stored == 30
            by_uid = {pydicom.dcmread(p).SOPInstanceUID: p for p in lung_ct_files}
            for stored in fresh.instances(first.StudyInstanceUID):
                pulled = pydicom.dcmread(fresh.store.absolute(stored.path))
                original = pydicom.dcmread(by_uid[stored.sop_instance_uid])
                assert np.array_equal(pulled.pixel_array, original.pixel_array)
                assert pulled.PatientID == original.PatientID
    finally:
        subprocess.run([str(ORTHANC_PEER), "stop", str(orthanc_dir)], check=False, timeout=60)


def test_pacs_commands(
    remote: tuple[Archive, Peer],
    lung_ct_files: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, peer = remote
    monkeypatch.setenv("CARINA_DICOM_PEERS", json.dumps({"REMOTE": f"127.0.0.1:{peer.port}"}))
    runner = CliRunner()
    first = pydicom.dcmread(lung_ct_files[0])
    data = ["--data-dir", str(tmp_path / "local")]
    found = runner.invoke(app, ["pacs", "find", "REMOTE", "--patient-id", first.PatientID, *data])
    assert found.exit_code == 0, found.output
    row = next(line for line in found.output.splitlines() if first.StudyDate in line)
    assert row.split("│")[-2].strip() == "30"
    pulled = runner.invoke(
        app, ["pacs", "sync", "REMOTE", "--study", first.StudyInstanceUID, *data]
    )
    assert pulled.exit_code == 0, pulled.output
    assert "pulled, 30 new" in pulled.output
    again = runner.invoke(
        app, ["pacs", "pull", f"REMOTE@127.0.0.1:{peer.port}", first.StudyInstanceUID, *data]
    )
    assert "received 30, stored 0, not stored 0" in again.output
    with Archive(tmp_path / "local") as local:
        assert len(local.instances(first.StudyInstanceUID)) == 30
    unknown = runner.invoke(app, ["pacs", "find", "ELSEWHERE", *data])
    assert unknown.exit_code == 1
    assert "unknown peer" in unknown.output


@pytest.fixture
def carina_web(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A Carina server on loopback (DICOMweb only): its DICOMweb URL and an admin token."""
    port = free_port()
    settings = Settings(
        data_dir=tmp_path / "server",
        port=port,
        dicom_port=None,
        jobs_workers=0,
        pacs_sync_check_s=0,
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "server failed to start"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        token = admin_headers(app)["Authorization"].removeprefix("Bearer ")
        yield f"http://127.0.0.1:{port}/dicom-web", token
    finally:
        server.should_exit = True
        thread.join(10)


def test_dicomweb_peer_with_a_token(
    carina_web: tuple[str, str], lung_ct_files: list[Path], tmp_path: Path
) -> None:
    """STOW-RS push, QIDO-RS search and WADO-RS pull against another Carina, which wants a
    bearer token."""
    url, token = carina_web
    peer = WebPeer(url, token=token)
    first = pydicom.dcmread(lung_ct_files[0])
    with Archive(tmp_path / "local") as local:
        local.ingest([(None, p.read_bytes()) for p in lung_ct_files])
        client = PacsClient(local)
        with pytest.raises(PacsError, match="401"):
            client.push(WebPeer(url), first.StudyInstanceUID)
        statuses = client.push(peer, first.StudyInstanceUID)
        assert len(statuses) == 30
        assert set(statuses.values()) == {0}
    with Archive(tmp_path / "fresh") as fresh:
        client = PacsClient(fresh)
        with pytest.raises(PacsError, match="401"):
            client.find(WebPeer(url), "STUDY", {})
        (study,) = client.find(
            peer, "STUDY", {"PatientID": first.PatientID}, ["NumberOfStudyRelatedInstances"]
        )
        assert study.StudyInstanceUID == first.StudyInstanceUID
        assert int(study.NumberOfStudyRelatedInstances) == 30
        series = client.find(peer, "SERIES", {"StudyInstanceUID": first.StudyInstanceUID})
        assert [s.SeriesInstanceUID for s in series] == [first.SeriesInstanceUID]
        report = client.pull(peer, first.StudyInstanceUID)
        assert report.stored == 30
        by_uid = {pydicom.dcmread(p).SOPInstanceUID: p for p in lung_ct_files}
        for stored in fresh.instances(first.StudyInstanceUID):
            # Carina sends files as stored: byte for byte what was pushed
            assert fresh.read(stored) == by_uid[stored.sop_instance_uid].read_bytes()
        assert client.sync(peer, {"PatientID": first.PatientID}).studies == {
            first.StudyInstanceUID: None
        }
        with pytest.raises(PacsError, match="no study"):
            client.pull(peer, "1.2.3.4")
