"""Crash safety of the server: ``carina serve`` killed with SIGKILL in the middle of a C-STORE
ingest keeps every acknowledged instance whole, leaves no partial file or orphan row, and takes
the same instances again without duplicating them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from .helpers import free_ports
from .test_crash import _assert_consistent

_CLI = "from carina.cli.main import app; app()"
COPIES = 5
KILL_AFTER = 40


def _datasets(files: list[Path]) -> list[Dataset]:
    """The 30-slice lung CT as COPIES series of one study, with their own UIDs."""
    study = generate_uid(entropy_srcs=["crash-study"])
    out = []
    for copy in range(COPIES):
        series = generate_uid(entropy_srcs=["crash-series", str(copy)])
        for path in files:
            ds = pydicom.dcmread(path)
            ds.StudyInstanceUID = study
            ds.SeriesInstanceUID = series
            ds.SeriesNumber = copy + 1
            ds.SOPInstanceUID = generate_uid(entropy_srcs=["crash", str(copy), path.name])
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            out.append(ds)
    return out


def _serve(data_dir: Path, http_port: int, dicom_port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), CARINA_JOBS_WORKERS="0")
    command = [sys.executable, "-c", _CLI, "serve", "--data-dir", str(data_dir)]
    command += ["--port", str(http_port), "--dicom-port", str(dicom_port)]
    log = data_dir.parent / "serve.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/api/health").status_code == 200:
                return process
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "carina serve did not start"
        time.sleep(0.1)


_SENDER = """
import sys
from pathlib import Path
import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
from pydicom.uid import ExplicitVRLittleEndian

port, folder, log = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
ae = AE(ae_title="CRASHSCU")
ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 180
ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
assoc = ae.associate("127.0.0.1", port, ae_title="CARINA")
assert assoc.is_established
with log.open("a") as out:
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        status = assoc.send_c_store(ds)
        if not assoc.is_established or "Status" not in status:
            sys.exit(3)  # the server went away: this one was not acknowledged
        if status.Status != 0:
            sys.exit(4)
        out.write(str(ds.SOPInstanceUID) + "\\n")
        out.flush()
assoc.release()
"""


def _sender(port: int, folder: Path, log: Path) -> subprocess.Popen[bytes]:
    """A modality in its own process: C-STOREs the files of ``folder`` in name order over one
    association, writing each acknowledged SOP Instance UID to ``log`` as the ack arrives."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.Popen(
        [sys.executable, "-c", _SENDER, str(port), str(folder), str(log)], env=env
    )


def _acknowledged(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [line for line in log.read_text().split("\n") if line]


def test_sigkill_of_the_server_during_cstore_loses_no_acknowledged_instance(
    tmp_path: Path, lung_ct_files: list[Path]
) -> None:
    datasets = _datasets(lung_ct_files)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in datasets}
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    for n, ds in enumerate(datasets):
        ds.save_as(outbox / f"{n:04d}.dcm", enforce_file_format=True)
    data_dir = tmp_path / "data"
    http_port, dicom_port = free_ports(2)

    server = _serve(data_dir, http_port, dicom_port)
    log = tmp_path / "acknowledged.txt"
    sender = _sender(dicom_port, outbox, log)
    deadline = time.monotonic() + 180
    while len(_acknowledged(log)) < KILL_AFTER:
        assert sender.poll() is None, "the ingest ended before the server could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    os.kill(server.pid, signal.SIGKILL)
    server.wait(30)
    assert sender.wait(60) != 0  # it saw the server go away
    acknowledged = _acknowledged(log)
    assert KILL_AFTER <= len(acknowledged) < len(datasets)

    # restart: recovery runs at start; then stop it cleanly and look at what is on disk
    server = _serve(data_dir, http_port, dicom_port)
    server.terminate()
    server.wait(30)
    rows = _assert_consistent(data_dir)  # no partial file, no orphan row, digests match
    stored = {pydicom.dcmread(data_dir / path).SOPInstanceUID: path for path in rows}
    missing = [uid for uid in acknowledged if uid not in stored]
    assert missing == [], f"{len(missing)} acknowledged instance(s) lost"
    for uid in acknowledged:
        back = pydicom.dcmread(data_dir / stored[uid])
        sent = by_uid[uid]
        assert back.PixelData == sent.PixelData
        assert Dataset(back) == Dataset(sent)  # every data element as sent

    # sending everything again stores the rest once and the acknowledged ones not twice
    server = _serve(data_dir, http_port, dicom_port)
    try:
        again = tmp_path / "again.txt"
        assert _sender(dicom_port, outbox, again).wait(300) == 0
        assert len(_acknowledged(again)) == len(datasets)
    finally:
        server.terminate()
        server.wait(30)
    final = _assert_consistent(data_dir)
    assert len(final) == len(datasets)
    uids = sorted(
        str(pydicom.dcmread(data_dir / p, stop_before_pixels=True).SOPInstanceUID) for p in final
    )
    assert uids == sorted(by_uid)
