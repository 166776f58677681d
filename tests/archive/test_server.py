"""A live server: uvicorn with DICOMweb and the DIMSE listener in one process, real clients."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
import uvicorn
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from carina.api import create_app
from carina.services.settings import Settings

from .helpers import ADMIN_PASSWORD, admin_headers, free_ports, split_multipart

STORESCU = Path("/usr/bin/storescu")


@dataclass
class Live:
    url: str
    dicom_port: int
    data_dir: Path
    headers: dict[str, str]
    move_port: int


def _nodelay(event: Event) -> None:
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data_dir = tmp_path_factory.mktemp("live") / "data"
    port, move_port = free_ports(2)
    settings = Settings(
        data_dir=data_dir,
        port=port,
        dicom_port=0,
        ae_title="CARINA",
        dicom_peers={"MOVEDEST": f"127.0.0.1:{move_port}"},
        public_url=f"http://127.0.0.1:{port}",  # dicomweb-client sends Host without the port
    )
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "server failed to start"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield Live(
            f"http://127.0.0.1:{settings.port}",
            app.state.dimse.port,
            data_dir,
            admin_headers(app),
            move_port,
        )
    finally:
        server.should_exit = True
        thread.join(10)


def _associate(live: Live, contexts: list[str]) -> object:
    ae = AE(ae_title="TESTSCU")
    for context in contexts:
        ae.add_requested_context(context, [ExplicitVRLittleEndian])
    assoc = ae.associate(
        "127.0.0.1",
        live.dicom_port,
        ae_title="CARINA",
        evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay)],
    )
    assert assoc.is_established
    return assoc


def _find(live: Live, query: Dataset, model: str = StudyRootQueryRetrieveInformationModelFind):
    assoc = _associate(live, [model])
    try:
        answers = []
        for status, identifier in assoc.send_c_find(query, model):  # type: ignore[attr-defined]
            assert status.Status in (0xFF00, 0x0000), hex(status.Status)
            if status.Status == 0xFF00:
                answers.append(identifier)
        return answers
    finally:
        assoc.release()  # type: ignore[attr-defined]


def test_cstore_cfind_then_wado(live: Live, lung_ct_files: list[Path]) -> None:
    assoc = _associate(live, [Verification, CTImageStorage])
    try:
        assert assoc.send_c_echo().Status == 0x0000  # type: ignore[attr-defined]
        for path in lung_ct_files:
            status = assoc.send_c_store(pydicom.dcmread(path))  # type: ignore[attr-defined]
            assert status.Status == 0x0000
        again = assoc.send_c_store(pydicom.dcmread(lung_ct_files[0]))  # type: ignore[attr-defined]
        assert again.Status == 0x0000
        edited = pydicom.dcmread(lung_ct_files[0])
        edited.ImageComments = "edited"
        conflict = assoc.send_c_store(edited)  # type: ignore[attr-defined]
        assert conflict.Status == 0x0111
    finally:
        assoc.release()  # type: ignore[attr-defined]
    first = pydicom.dcmread(lung_ct_files[0])

    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = first.PatientID
    query.StudyInstanceUID = ""
    query.StudyDate = ""
    query.NumberOfStudyRelatedInstances = ""
    (study,) = _find(live, query)
    assert study.StudyInstanceUID == first.StudyInstanceUID
    assert study.StudyDate == first.StudyDate
    assert int(study.NumberOfStudyRelatedInstances) == 30

    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = first.StudyInstanceUID
    query.SeriesInstanceUID = first.SeriesInstanceUID
    query.SOPInstanceUID = ""
    query.InstanceNumber = ""
    images = _find(live, query)
    assert len(images) == 30
    sops = {i.SOPInstanceUID for i in images}

    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = first.PatientID
    query.PatientName = ""
    (patient,) = _find(live, query, PatientRootQueryRetrieveInformationModelFind)
    assert patient.PatientName == first.PatientName

    by_sop = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in lung_ct_files}
    assert set(by_sop) == sops
    for sop in list(sops)[:5]:
        url = (
            f"{live.url}/dicom-web/studies/{first.StudyInstanceUID}/series/"
            f"{first.SeriesInstanceUID}/instances/{sop}"
        )
        accept = {"Accept": 'multipart/related; type="application/dicom"'}
        response = httpx.get(url, headers={**accept, **live.headers})
        assert response.status_code == 200
        ((_, content),) = split_multipart(response.content, response.headers["content-type"])
        # C-STORE carries the dataset, not the file: the stored dataset equals the sent one
        assert pydicom.dcmread(io.BytesIO(content)) == pydicom.dcmread(by_sop[sop])


def _study_identifier(study_uid: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    return identifier


def test_cget_and_cmove(live: Live, lung_ct_files: list[Path]) -> None:
    sent = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in lung_ct_files}
    study_uid = next(iter(sent.values())).StudyInstanceUID
    assoc = _associate(live, [CTImageStorage])
    for ds in sent.values():
        assoc.send_c_store(ds)  # type: ignore[attr-defined]
    assoc.release()  # type: ignore[attr-defined]

    received: dict[str, Dataset] = {}

    def on_store(event: Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        received[ds.SOPInstanceUID] = ds
        return 0x0000

    # C-GET: the instances come back on the same association
    ae = AE(ae_title="GETSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    role = build_role(CTImageStorage, scp_role=True)
    assoc = ae.associate(
        "127.0.0.1",
        live.dicom_port,
        ae_title="CARINA",
        ext_neg=[role],
        evt_handlers=[(evt.EVT_C_STORE, on_store), (evt.EVT_CONN_OPEN, _nodelay)],
    )
    assert assoc.is_established
    statuses = [
        status.Status
        for status, _ in assoc.send_c_get(
            _study_identifier(study_uid), StudyRootQueryRetrieveInformationModelGet
        )
    ]
    assoc.release()
    assert statuses[-1] == 0x0000
    assert set(received) == set(sent)
    for uid, ds in received.items():
        assert ds == sent[uid]
        assert ds.PixelData == sent[uid].PixelData

    # C-MOVE: the instances go to a configured peer
    received.clear()
    destination = AE(ae_title="MOVEDEST")
    destination.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian])
    server = destination.start_server(
        ("127.0.0.1", live.move_port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        assoc = _associate(live, [StudyRootQueryRetrieveInformationModelMove])
        responses = list(
            assoc.send_c_move(  # type: ignore[attr-defined]
                _study_identifier(study_uid), "MOVEDEST", StudyRootQueryRetrieveInformationModelMove
            )
        )
        unknown = list(
            assoc.send_c_move(  # type: ignore[attr-defined]
                _study_identifier(study_uid), "NOBODY", StudyRootQueryRetrieveInformationModelMove
            )
        )
        assoc.release()  # type: ignore[attr-defined]
    finally:
        server.shutdown()
    assert responses[-1][0].Status == 0x0000
    assert responses[-1][0].NumberOfCompletedSuboperations == 30
    assert set(received) == set(sent)
    assert all(received[uid] == sent[uid] for uid in sent)
    assert unknown[-1][0].Status == 0xA801


def test_dimse_activity_is_in_the_audit_log(live: Live, lung_ct_files: list[Path]) -> None:
    """After the C-STORE/C-FIND/C-GET/C-MOVE tests above: who did what over DIMSE is audited."""
    rows = httpx.get(
        f"{live.url}/api/audit", params={"limit": 1000}, headers=live.headers, timeout=30
    ).json()
    actions = {r["action"] for r in rows}
    assert {"dimse.c-store", "dimse.c-find", "dimse.c-get", "dimse.c-move"} <= actions
    study = str(pydicom.dcmread(lung_ct_files[0], stop_before_pixels=True).StudyInstanceUID)
    stores = [r for r in rows if r["action"] == "dimse.c-store"]
    assert any(study in r["resource"] and r["user_name"] == "AE TESTSCU" for r in stores)
    assert all(r["client_ip"] == "127.0.0.1" for r in stores)


def test_dicomweb_client(live: Live, lung_ct_files: list[Path], shared_data: Path) -> None:
    client = DICOMwebClient(url=f"{live.url}/dicom-web", headers=live.headers)
    jp2k = pydicom.dcmread(shared_data / "dicom_variants" / "pydicom" / "MR_small_jp2klossless.dcm")
    response = client.store_instances([jp2k])
    assert len(response.ReferencedSOPSequence) == 1

    found = client.search_for_studies(search_filters={"StudyInstanceUID": jp2k.StudyInstanceUID})
    assert [Dataset.from_json(f).PatientID for f in found] == [jp2k.PatientID]
    series = client.search_for_series(jp2k.StudyInstanceUID)
    assert Dataset.from_json(series[0]).Modality == "MR"

    retrieved = client.retrieve_instance(
        jp2k.StudyInstanceUID, jp2k.SeriesInstanceUID, jp2k.SOPInstanceUID
    )
    assert retrieved.file_meta.TransferSyntaxUID == jp2k.file_meta.TransferSyntaxUID
    assert retrieved == jp2k
    (metadata,) = client.retrieve_series_metadata(jp2k.StudyInstanceUID, jp2k.SeriesInstanceUID)
    assert metadata["00080018"]["Value"] == [jp2k.SOPInstanceUID]
    assert metadata["7FE00010"]["BulkDataURI"].startswith(f"{live.url}/dicom-web/studies/")
    (frame,) = client.retrieve_instance_frames(
        jp2k.StudyInstanceUID,
        jp2k.SeriesInstanceUID,
        jp2k.SOPInstanceUID,
        frame_numbers=[1],
        media_types=("application/octet-stream",),
    )
    assert frame == pixel_array(jp2k).astype("<i2").tobytes()
    png = client.retrieve_instance_rendered(
        jp2k.StudyInstanceUID,
        jp2k.SeriesInstanceUID,
        jp2k.SOPInstanceUID,
        media_types=("image/png",),
    )
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not STORESCU.exists(), reason="dcmtk is not installed")
def test_dcmtk_storescu(live: Live, shared_data: Path) -> None:
    variants = shared_data / "dicom_variants"
    sends = [
        ([], [variants / "highdicom" / "ct_image.dcm", variants / "highdicom" / "dx_image.dcm"]),
        (["-xv"], [variants / "pydicom" / "examples_jpeg2k.dcm"]),
    ]
    env = dict(os.environ, TCP_NODELAY="1")
    client = DICOMwebClient(url=f"{live.url}/dicom-web", headers=live.headers)
    for options, files in sends:
        run = subprocess.run(
            [str(STORESCU), *options, "-aec", "CARINA", "127.0.0.1", str(live.dicom_port)]
            + [str(f) for f in files],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        for path in files:
            ds = pydicom.dcmread(path)
            retrieved = client.retrieve_instance(
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
            )
            assert retrieved.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
            # dcmtk pads odd-length values on the wire: compare the decoded pixels
            assert np.array_equal(retrieved.pixel_array, ds.pixel_array)


def test_carina_serve_command(tmp_path: Path, lung_ct_files: list[Path]) -> None:
    http_port, dicom_port = free_ports(2)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    command = [
        sys.executable,
        "-c",
        "from carina.cli.main import app; app()",
        "serve",
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        str(http_port),
        "--dicom-port",
        str(dicom_port),
        "--ae-title",
        "SERVED",
    ]
    add_admin = [
        sys.executable,
        "-c",
        "from carina.cli.main import app; app()",
        "user",
        "add",
        "admin",
        "--admin",
        "--password-stdin",
        "--data-dir",
        str(tmp_path / "data"),
    ]
    created = subprocess.run(
        add_admin, env=env, input=ADMIN_PASSWORD + "\n", capture_output=True, text=True, check=False
    )
    assert created.returncode == 0, created.stderr
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 120  # a busy machine starts the job workers slowly
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(f"{base}/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "carina serve did not start"
            time.sleep(0.1)
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
        assoc = ae.associate("127.0.0.1", dicom_port, ae_title="SERVED")
        assert assoc.is_established
        assert assoc.send_c_store(pydicom.dcmread(lung_ct_files[0])).Status == 0x0000
        assoc.release()
        assert httpx.get(f"{base}/dicom-web/studies").status_code == 401
        login = {"username": "admin", "password": ADMIN_PASSWORD}
        token = httpx.post(f"{base}/api/auth/token", data=login).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        studies = httpx.get(f"{base}/dicom-web/studies", headers=bearer).json()
        assert [s["00201208"]["Value"] for s in studies] == [[1]]
    finally:
        process.terminate()
        process.communicate(timeout=20)
    assert (tmp_path / "data" / "catalog.sqlite").is_file()
