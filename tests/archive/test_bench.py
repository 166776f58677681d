"""Side-by-side timings of Carina and Orthanc on this machine (``make bench``; needs Orthanc).

Both servers run on loopback with TCP_NODELAY; the same generated CT instances go to each.
"""

from __future__ import annotations

import io
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom.events import Event

from .helpers import free_port, multipart_body, orthanc_peer

pytestmark = pytest.mark.bench
ORTHANC_PEER = orthanc_peer()
COUNT = 200
STORESCU = "/usr/bin/storescu"

BENCH_PASSWORD = "bench-admin-password"


def _nodelay(event: Event) -> None:
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _instances(files: list[Path], tag: str) -> list[bytes]:
    study, series = generate_uid(), generate_uid()
    out = []
    for index in range(COUNT):
        ds = pydicom.dcmread(files[index % len(files)])
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription = tag
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:7.0f}/s"


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[str, int, str | None]]]:
    if shutil.which("Orthanc") is None or not ORTHANC_PEER.exists():
        pytest.skip("Orthanc is not installed")
    if not Path(STORESCU).exists():
        pytest.skip("dcmtk is not installed")
    base = tmp_path_factory.mktemp("bench")
    orthanc_http, orthanc_dicom = free_port(), free_port()
    subprocess.run(
        [str(ORTHANC_PEER), "start", str(base / "orthanc"), str(orthanc_http), str(orthanc_dicom)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port, dicom_port = free_port(), free_port()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from carina.cli.main import app; app()",
            "user",
            "add",
            "bench",
            "--admin",
            "--password-stdin",
            "--data-dir",
            str(base / "carina"),
        ],
        input=BENCH_PASSWORD,
        text=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
        check=True,
        capture_output=True,
    )
    # a separate process, as Orthanc is: the client here does not share its interpreter
    serve = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from carina.cli.main import app; app()",
            "serve",
            "--data-dir",
            str(base / "carina"),
            "--port",
            str(port),
            "--dicom-port",
            str(dicom_port),
        ],
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        assert serve.poll() is None, "carina serve exited"
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/health").raise_for_status()
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    token = httpx.post(
        f"http://127.0.0.1:{port}/api/auth/token",
        data={"username": "bench", "password": BENCH_PASSWORD},
    ).json()["access_token"]
    try:
        yield {
            "carina": (f"http://127.0.0.1:{port}", dicom_port, token),
            "orthanc": (f"http://127.0.0.1:{orthanc_http}", orthanc_dicom, None),
        }
    finally:
        serve.terminate()
        serve.wait(20)
        subprocess.run([str(ORTHANC_PEER), "stop", str(base / "orthanc")], check=False)


def _measure(
    ae_title: str, url: str, dicom_port: int, token: str | None, files: list[Path], tmp: Path
) -> dict[str, str]:
    figures: dict[str, str] = {}
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx.Client(timeout=120, headers=auth)
    # C-STORE, one association, dcmtk's storescu (a C++ sender, as modalities are)
    folder = tmp / ae_title
    folder.mkdir()
    for index, data in enumerate(_instances(files, "cstore")):
        (folder / f"{index:04}.dcm").write_bytes(data)
    command = [STORESCU, "-aec", ae_title, "127.0.0.1", str(dicom_port), "+sd", str(folder)]
    env = dict(os.environ, TCP_NODELAY="1")
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=300)
    figures["C-STORE (storescu)"] = _rate(COUNT, time.perf_counter() - start)
    # C-STORE, four associations at once (four storescu processes, a quarter each)
    quarters = [tmp / f"{ae_title}-{n}" for n in range(4)]
    for quarter in quarters:
        quarter.mkdir()
    for index, data in enumerate(_instances(files, "cstore4")):
        (quarters[index % 4] / f"{index:04}.dcm").write_bytes(data)
    start = time.perf_counter()
    senders = [
        subprocess.Popen(
            [*command[:-1], str(quarter)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for quarter in quarters
    ]
    assert [sender.wait(300) for sender in senders] == [0, 0, 0, 0]
    figures["C-STORE (4 associations)"] = _rate(COUNT, time.perf_counter() - start)
    # STOW-RS, 20 instances per request
    stow = _instances(files, "stow")

    def stow_all() -> None:
        for start in range(0, COUNT, 20):
            body, content_type = multipart_body(stow[start : start + 20])
            response = http.post(
                f"{url}/dicom-web/studies", content=body, headers={"Content-Type": content_type}
            )
            assert response.status_code == 200, response.text

    figures["STOW-RS (20/request)"] = _rate(COUNT, _timed(stow_all))
    first = pydicom.dcmread(io.BytesIO(stow[0]))
    series = f"{url}/dicom-web/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}"

    def metadata() -> None:
        assert len(http.get(f"{series}/metadata").raise_for_status().json()) == COUNT

    figures[f"series metadata ({COUNT})"] = f"{_timed(metadata) * 1000:6.0f} ms"
    sops = [pydicom.dcmread(io.BytesIO(b)).SOPInstanceUID for b in stow[:100]]
    accept = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}

    def wado_all() -> None:
        for sop in sops:
            http.get(f"{series}/instances/{sop}", headers=accept).raise_for_status()

    figures["WADO-RS instance"] = _rate(len(sops), _timed(wado_all))
    octets = {"Accept": 'multipart/related; type="application/octet-stream"'}

    def frames_all() -> None:
        for sop in sops:
            http.get(f"{series}/instances/{sop}/frames/1", headers=octets).raise_for_status()

    figures["WADO-RS frames (uncompressed)"] = _rate(len(sops), _timed(frames_all))

    def whole_series() -> None:
        body = http.get(series, headers=accept).raise_for_status().content
        assert len(body) > COUNT * 512 * 512 * 2

    figures[f"WADO-RS whole series ({COUNT})"] = _rate(COUNT, _timed(whole_series))

    def qido() -> None:
        http.get(f"{url}/dicom-web/studies").raise_for_status()

    figures["QIDO-RS /studies"] = f"{_timed(qido) * 1000:6.0f} ms"
    http.close()
    return figures


def test_side_by_side(
    servers: dict[str, tuple[str, int, str | None]], lung_ct_files: list[Path], tmp_path: Path
) -> None:
    carina = _measure("CARINA", *servers["carina"], lung_ct_files, tmp_path)
    orthanc = _measure("ORTHANC", *servers["orthanc"], lung_ct_files, tmp_path)
    print(f"\n{'':28}{'Carina':>12}{'Orthanc':>12}")
    for measure, value in carina.items():
        print(f"{measure:28}{value:>12}{orthanc[measure]:>12}")
    lines = [
        "# Archive: Carina and Orthanc side by side",
        "",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()}. Produced by "
        "`make bench` (tests/archive/test_bench.py). Both servers on loopback in the same run, "
        f"TCP_NODELAY on both; the same {COUNT} CT slices (512x512, from the Lung-PET-CT-Dx "
        "series with new UIDs) sent to each. Carina behind its authentication (bearer token). "
        "Single runs on this shared 2-core machine vary by about +-30 %.",
        "",
        "| measure | Carina | Orthanc 1.10 |",
        "|---|---:|---:|",
        *(f"| {m} | {v.strip()} | {orthanc[m].strip()} |" for m, v in carina.items()),
    ]
    results = Path(__file__).resolve().parents[2] / "bench" / "results" / "archive.md"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("\n".join(lines) + "\n", encoding="utf-8")
