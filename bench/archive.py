"""The archive against Orthanc on this machine: ingest, retrieval and query, side by side.

Starts Debian's Orthanc (through ``../shared/tools/orthanc-peer``) and ``carina serve`` as separate
processes on loopback, with TCP_NODELAY on both, and measures the same operations on the same
files (CT slices of 512 x 512 from the Lung-PET-CT-Dx series, given new UIDs for every send):
C-STORE from dcmtk's ``storescu`` over one and four associations, STOW-RS, plain HTTP upload (one
file per request, and one ZIP), QIDO-RS, series metadata, WADO-RS instances, frames and whole
series. Each round runs every measure on both servers, alternating which goes first; the table
gives the median over rounds. It also measures what pynetdicom alone can receive (an SCP that
discards what it gets: the ceiling of any Python C-STORE SCP built on it) and where Carina's ingest
time goes per instance. Writes ``bench/results/archive.md``.

    .venv/bin/python bench/archive.py [--count 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pydicom
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CARINA_SHARED_DATA", REPO.parent / "shared" / "data"))
ORTHANC_PEER = SHARED.parent / "tools" / "orthanc-peer"
SOURCE = SHARED / "lung_ct_tumor_boxes" / "ct_dicom"
STORESCU = "/usr/bin/storescu"
PASSWORD = "bench-admin-password"
ONE = "C-STORE, 1 association (storescu)"
FOUR = "C-STORE, 4 associations"
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TCP_NODELAY="1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def multipart(parts: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks = [
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
        for p in parts
    ]
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def instances(count: int, tag: str) -> list[bytes]:
    """``count`` CT slices of one new series (new Study/Series/SOP Instance UIDs)."""
    files = sorted(SOURCE.glob("*.dcm"))
    study, series = generate_uid(), generate_uid()
    out = []
    for index in range(count):
        ds = pydicom.dcmread(files[index % len(files)])
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription = tag
        ds.InstanceNumber = index + 1
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


@dataclass
class Server:
    name: str
    ae_title: str
    url: str
    dicom_port: int
    token: str | None

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(timeout=300, headers=headers)

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def upload(self) -> str:
        return f"{self.url}/api/instances" if self.token else f"{self.url}/instances"


def wait_http(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 90
    while True:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            httpx.get(url).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextmanager
def servers(base: Path) -> Iterator[tuple[Server, Server]]:
    orthanc_http, orthanc_dicom = free_port(), free_port()
    subprocess.run(
        [str(ORTHANC_PEER), "start", str(base / "orthanc"), str(orthanc_http), str(orthanc_dicom)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    carina_cli = [sys.executable, "-c", "from carina.cli.main import app; app()"]
    data_dir = base / "carina"
    data_arg = ["--data-dir", str(data_dir)]
    subprocess.run(
        [*carina_cli, "user", "add", "bench", "--admin", "--password-stdin", *data_arg],
        input=PASSWORD.encode(),
        env=ENV,
        check=True,
        capture_output=True,
    )
    port, dicom_port = free_port(), free_port()
    serve = subprocess.Popen(
        [*carina_cli, "serve", *data_arg, "--port", str(port), "--dicom-port", str(dicom_port)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/health", serve)
        token = httpx.post(
            f"http://127.0.0.1:{port}/api/auth/token",
            data={"username": "bench", "password": PASSWORD},
        ).json()["access_token"]
        yield (
            Server("Carina", "CARINA", f"http://127.0.0.1:{port}", dicom_port, token),
            Server("Orthanc", "ORTHANC", f"http://127.0.0.1:{orthanc_http}", orthanc_dicom, None),
        )
    finally:
        serve.terminate()
        serve.wait(30)
        subprocess.run([str(ORTHANC_PEER), "stop", str(base / "orthanc")], check=False)


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def storescu(server: Server, folders: list[Path]) -> None:
    senders = [
        subprocess.Popen(
            [STORESCU, "-aec", server.ae_title, "127.0.0.1", str(server.dicom_port), "+sd", str(f)],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for f in folders
    ]
    for sender in senders:
        _, err = sender.communicate(timeout=600)
        if sender.returncode != 0:
            raise SystemExit(f"storescu failed: {err.decode()[-500:]}")


def write_folders(data: list[bytes], root: Path, parts: int) -> list[Path]:
    folders = [root / f"part{n}" for n in range(parts)]
    for folder in folders:
        folder.mkdir(parents=True)
    for index, blob in enumerate(data):
        (folders[index % parts] / f"{index:05}.dcm").write_bytes(blob)
    return folders


# -- one round of measures on one server -----------------------------------------------------------

Figures = dict[str, tuple[float, str]]  # measure -> (value, unit: "/s" or "ms")


def ingest_measures(server: Server, count: int, scratch: Path) -> Figures:
    figures: Figures = {}
    one = write_folders(instances(count, "cstore"), scratch / "one", 1)
    figures[ONE] = (
        count / timed(lambda: storescu(server, one)),
        "/s",
    )
    four = write_folders(instances(count, "cstore4"), scratch / "four", 4)
    rate = count / timed(lambda: storescu(server, four))
    figures[FOUR] = (rate, "/s")
    stow = instances(count, "stow")
    with server.client() as http:

        def stow_all() -> None:
            for start in range(0, count, 20):
                body, content_type = multipart(stow[start : start + 20])
                answer = http.post(
                    f"{server.dicomweb}/studies",
                    content=body,
                    headers={"Content-Type": content_type},
                )
                if answer.status_code != 200:
                    raise SystemExit(f"STOW-RS to {server.name}: {answer.status_code}")

        figures["STOW-RS (20 per request)"] = (count / timed(stow_all), "/s")
        files = instances(count, "upload")

        def upload_each() -> None:
            for blob in files:
                answer = http.post(
                    server.upload, content=blob, headers={"Content-Type": "application/dicom"}
                )
                answer.raise_for_status()

        figures["upload, one file per request"] = (count / timed(upload_each), "/s")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as bundle:
            for index, blob in enumerate(instances(count, "zip")):
                bundle.writestr(f"{index:05}.dcm", blob)
        archive = buffer.getvalue()

        def upload_zip() -> None:
            http.post(
                server.upload, content=archive, headers={"Content-Type": "application/zip"}
            ).raise_for_status()

        figures["upload, one ZIP"] = (count / timed(upload_zip), "/s")
    figures["_stow_series"] = (0.0, pydicom.dcmread(io.BytesIO(stow[0])).SeriesInstanceUID)
    figures["_stow_study"] = (0.0, pydicom.dcmread(io.BytesIO(stow[0])).StudyInstanceUID)
    figures["_sops"] = (
        0.0,
        "\\".join(pydicom.dcmread(io.BytesIO(b)).SOPInstanceUID for b in stow[:100]),
    )
    return figures


def read_measures(
    server: Server, count: int, study: str, series_uid: str, sops: list[str]
) -> Figures:
    figures: Figures = {}
    series = f"{server.dicomweb}/studies/{study}/series/{series_uid}"
    accept = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    octets = {"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'}
    with server.client() as http:

        def metadata() -> None:
            assert len(http.get(f"{series}/metadata").raise_for_status().json()) == count

        figures[f"series metadata ({count} instances)"] = (timed(metadata) * 1000, "ms")

        def wado() -> None:
            for sop in sops:
                http.get(f"{series}/instances/{sop}", headers=accept).raise_for_status()

        figures["WADO-RS instance"] = (len(sops) / timed(wado), "/s")

        def frames() -> None:
            for sop in sops:
                http.get(f"{series}/instances/{sop}/frames/1", headers=octets).raise_for_status()

        figures["WADO-RS frame (stored syntax)"] = (len(sops) / timed(frames), "/s")

        def whole() -> None:
            assert len(http.get(series, headers=accept).raise_for_status().content) > count * 2**19

        figures[f"WADO-RS whole series ({count})"] = (count / timed(whole), "/s")

        def qido_instances() -> None:
            http.get(f"{series}/instances").raise_for_status()

        figures[f"QIDO-RS instances of the series ({count})"] = (timed(qido_instances) * 1000, "ms")

        def qido_studies() -> None:
            http.get(
                f"{server.dicomweb}/studies", params={"ModalitiesInStudy": "CT"}
            ).raise_for_status()

        figures["QIDO-RS studies"] = (timed(qido_studies) * 1000, "ms")
    return figures


# -- what pynetdicom alone can receive, and where Carina's ingest time goes ------------------------

NULL_SCP = textwrap.dedent(
    """
    import socket, sys
    from pynetdicom import AE, evt, AllStoragePresentationContexts, ALL_TRANSFER_SYNTAXES
    ae = AE("NULL")
    ae.maximum_pdu_size = 4 * 1024 * 1024
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    def nodelay(event):
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def store(event):
        event.encoded_dataset(include_meta=True)
        return 0
    ae.start_server(("127.0.0.1", int(sys.argv[1])), block=True,
                    evt_handlers=[(evt.EVT_CONN_OPEN, nodelay), (evt.EVT_C_STORE, store)])
    """
)


def pynetdicom_ceiling(count: int, scratch: Path) -> dict[str, float]:
    port = free_port()
    scp = subprocess.Popen([sys.executable, "-c", NULL_SCP, str(port)], env=ENV)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("the null SCP did not start")
            time.sleep(0.1)
        null = Server("null", "NULL", "", port, None)
        out = {}
        for parts in (1, 4):
            folders = write_folders(instances(count, "null"), scratch / f"null{parts}", parts)
            out[f"{parts}"] = count / timed(functools.partial(storescu, null, folders))
        return out
    finally:
        scp.terminate()
        scp.wait(10)


def ingest_profile(count: int, scratch: Path) -> dict[str, float]:
    """Milliseconds per instance of each stage of ``Archive.ingest`` (one instance per call)."""
    import hashlib

    from carina.archive import Archive
    from carina.archive import archive as archive_module
    from carina.archive.dicomjson import instance_json

    data = instances(count, "profile")
    n = len(data)
    stages: dict[str, float] = {}
    start = time.perf_counter()
    for blob in data:
        ds = pydicom.dcmread(io.BytesIO(blob))
        for _ in ds:
            pass
    stages["read and decode every element (pydicom)"] = time.perf_counter() - start
    start = time.perf_counter()
    for blob in data:
        ds = pydicom.dcmread(io.BytesIO(blob))
        instance_json(ds, "1", "2", "3")
    stages["DICOM JSON of the dataset (beyond reading)"] = (
        time.perf_counter() - start - stages["read and decode every element (pydicom)"]
    )
    start = time.perf_counter()
    for blob in data:
        hashlib.sha256(blob).hexdigest()
        hashlib.sha256(blob).hexdigest()
    stages["two SHA-256 digests"] = time.perf_counter() - start
    parse_time = commit_time = 0.0
    parse = getattr(archive_module, "parse_instance")  # noqa: B009
    commit = getattr(Archive, "_commit_batch")  # noqa: B009

    def timed_parse(blob: bytes) -> object:
        nonlocal parse_time
        begin = time.perf_counter()
        try:
            return parse(blob)
        finally:
            parse_time += time.perf_counter() - begin

    def timed_commit(self: Archive, batch: list[object]) -> object:
        nonlocal commit_time
        begin = time.perf_counter()
        try:
            return commit(self, batch)
        finally:
            commit_time += time.perf_counter() - begin

    setattr(archive_module, "parse_instance", timed_parse)  # noqa: B010
    setattr(Archive, "_commit_batch", timed_commit)  # noqa: B010
    try:
        with Archive(scratch / "profile-archive") as archive:
            start = time.perf_counter()
            for blob in data:
                archive.ingest_one(blob)
            total = time.perf_counter() - start
    finally:
        setattr(archive_module, "parse_instance", parse)  # noqa: B010
        setattr(Archive, "_commit_batch", commit)  # noqa: B010
    stages["parse_instance in all (validation, catalog fields, JSON, digests)"] = parse_time
    stages["file write + fsyncs + catalog commit"] = commit_time
    stages["ingest_one in all"] = total
    return {stage: seconds * 1000 / n for stage, seconds in stages.items()}


# -- the report ------------------------------------------------------------------------------------


def fmt(value: float, unit: str) -> str:
    return f"{value:.0f}/s" if unit == "/s" else f"{value:.0f} ms"


def ratio(carina: float, orthanc: float, unit: str) -> str:
    if unit == "/s":  # throughput: higher is better
        return f"{carina / orthanc:.2f}x"
    return f"{carina / orthanc:.2f}x the time"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="instances per series")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("Orthanc") is None and not ORTHANC_PEER.exists():
        raise SystemExit("Orthanc is needed (Debian package orthanc, started by orthanc-peer)")
    if not Path(STORESCU).exists():
        raise SystemExit("dcmtk's storescu is needed (apt-get install dcmtk)")
    results: dict[str, dict[str, list[float]]] = {"Carina": {}, "Orthanc": {}}
    units: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp, servers(Path(tmp)) as pair:
        for round_number in range(args.rounds):
            order = pair if round_number % 2 == 0 else pair[::-1]
            for server in order:
                scratch = Path(tmp) / f"r{round_number}-{server.name}"
                figures = ingest_measures(server, args.count, scratch)
                study, series = figures.pop("_stow_study")[1], figures.pop("_stow_series")[1]
                sops = figures.pop("_sops")[1].split("\\")
                figures |= read_measures(server, args.count, study, series, sops)
                for measure, (value, unit) in figures.items():
                    results[server.name].setdefault(measure, []).append(value)
                    units[measure] = unit
                print(f"round {round_number + 1} {server.name}: done", flush=True)
        ceiling = pynetdicom_ceiling(args.count, Path(tmp))
        profile = ingest_profile(min(args.count, 100), Path(tmp))
    medians = {
        name: {m: statistics.median(v) for m, v in by_measure.items()}
        for name, by_measure in results.items()
    }
    lines = [
        "# Archive: Carina and Orthanc side by side",
        "",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()}. Produced by "
        f"`python bench/archive.py --count {args.count} --rounds {args.rounds}`: `carina serve` "
        "(embedded defaults: SQLite, local files) and Debian's Orthanc 1.10 (its SQLite index, "
        "files on the same disk) as separate processes on loopback, TCP_NODELAY on both; "
        f"{args.count} CT slices of 512 x 512 (Lung-PET-CT-Dx, new UIDs for every send) per "
        "measure. Carina answers behind its authentication (bearer token), Orthanc with "
        f"authentication off. Medians over {args.rounds} rounds, alternating which server goes "
        "first; single rounds on this 2-core machine vary by about 20 %.",
        "",
        "| measure | Carina | Orthanc | Carina / Orthanc | rounds (Carina; Orthanc) |",
        "|---|---:|---:|---:|---|",
    ]
    for measure, unit in units.items():
        c, o = medians["Carina"][measure], medians["Orthanc"][measure]
        spread = "; ".join(
            ", ".join(fmt(v, unit) for v in results[name][measure])
            for name in ("Carina", "Orthanc")
        )
        lines.append(
            f"| {measure} | {fmt(c, unit)} | {fmt(o, unit)} | {ratio(c, o, unit)} | {spread} |"
        )
    lines += [
        "",
        "## The ceiling of a C-STORE SCP on pynetdicom",
        "",
        "The same storescu sends to a pynetdicom SCP that decodes nothing and stores nothing "
        "(maximum PDU 4 MiB, TCP_NODELAY): what Carina's DIMSE listener could reach if its own "
        "work took no time.",
        "",
        "| associations | pynetdicom, discarding | Carina | Orthanc |",
        "|---|---:|---:|---:|",
        *(
            f"| {n} | {ceiling[n]:.0f}/s | {medians['Carina'][m]:.0f}/s "
            f"| {medians['Orthanc'][m]:.0f}/s |"
            for n, m in (("1", ONE), ("4", FOUR))
        ),
        "",
        "## Where Carina's ingest time goes (per instance, in one process, no network)",
        "",
        "| stage | ms per instance |",
        "|---|---:|",
        *(f"| {stage} | {ms:.2f} |" for stage, ms in profile.items()),
    ]
    out = REPO / "bench" / "results" / "archive.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
