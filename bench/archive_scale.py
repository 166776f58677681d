"""QIDO-RS latency as the catalog grows to 20,000 instances (and more with --instances).

Ingests synthetic CT instances (200 patients, 100 instances per study) into a fresh archive in
batches, and at each checkpoint measures the median latency of typical QIDO-RS requests through
the HTTP application (authentication included). Writes ``bench/results/archive_scale.md``.

    .venv/bin/python bench/archive_scale.py [--instances 20000]
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from carina.api import create_app
from carina.services.settings import Settings

PER_STUDY = 100
PATIENTS = 200
ROOT = "1.2.826.0.1.3680043.10.999"


def instance(n: int) -> bytes:
    """Instance ``n``: study ``n // PER_STUDY``, patient ``study % PATIENTS``, 8x8 pixels."""
    study = n // PER_STUDY
    patient = study % PATIENTS
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = f"{ROOT}.3.{n}"
    ds.StudyInstanceUID = f"{ROOT}.1.{study}"
    ds.SeriesInstanceUID = f"{ROOT}.2.{study}"
    ds.PatientID = f"P{patient:05d}"
    ds.PatientName = f"Doe{patient:05d}^Jane"
    ds.StudyDate = (datetime(2020, 1, 1) + timedelta(days=study)).strftime("%Y%m%d")
    ds.StudyTime = "120000"
    ds.AccessionNumber = f"A{study:07d}"
    ds.StudyDescription = "CT CHEST" if study % 2 else "CT ABDOMEN"
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = n % PER_STUDY + 1
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.full(64, n % 4096, dtype="<u2").tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def queries(total: int) -> dict[str, str]:
    last_study = (total - 1) // PER_STUDY
    return {
        "studies by PatientID": "/dicom-web/studies?PatientID=P00007",
        "studies by name wildcard": "/dicom-web/studies?PatientName=doe0001*",
        "studies in a date range": "/dicom-web/studies?StudyDate=20200201-20200301",
        "first 100 studies": "/dicom-web/studies?limit=100",
        "series of a study": f"/dicom-web/studies/{ROOT}.1.{last_study}/series",
        "instances of a series (100)": (
            f"/dicom-web/studies/{ROOT}.1.{last_study}/series/{ROOT}.2.{last_study}/instances"
        ),
        "series metadata (100 instances)": (
            f"/dicom-web/studies/{ROOT}.1.{last_study}/series/{ROOT}.2.{last_study}/metadata"
        ),
    }


def median_ms(client: TestClient, url: str, repeat: int = 15) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code, response.text[:200])
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    checkpoints = [c for c in (1_000, 2_000, 5_000, 10_000, 20_000, 50_000) if c <= args.instances]
    if args.instances not in checkpoints:
        checkpoints.append(args.instances)
    rows: list[tuple[int, float, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp) / "data", dicom_port=None))
        with TestClient(app) as client:
            store = app.state.auth
            store.create_user("bench", "bench-password-long-enough", is_admin=True)
            principal = store.authenticate("bench", "bench-password-long-enough")
            token = store.issue_token(principal.user_id, "access", timedelta(hours=4)).token
            client.headers["Authorization"] = f"Bearer {token}"
            archive = app.state.archive
            done = 0
            for checkpoint in checkpoints:
                start = time.perf_counter()
                ingested = checkpoint - done
                while done < checkpoint:
                    batch = [(None, instance(n)) for n in range(done, min(done + 500, checkpoint))]
                    results = archive.ingest(batch)
                    assert all(r.status.ok for r in results)
                    done += len(batch)
                rate = ingested / (time.perf_counter() - start)
                latencies = {name: median_ms(client, url) for name, url in queries(done).items()}
                rows.append((done, rate, latencies))
                print(done, f"{rate:.0f}/s", {k: round(v, 1) for k, v in latencies.items()})
    names = list(rows[0][2])
    lines = [
        "# Archive scale: QIDO-RS latency as the catalog grows",
        "",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Machine: {platform.machine()}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}. "
        "SQLite (WAL) catalog, files on local disk. Produced by `python bench/archive_scale.py`.",
        "",
        f"Synthetic CT instances ({PATIENTS} patients, {PER_STUDY} instances per study, 8x8 "
        "pixels) ingested in batches of 500 through `Archive.ingest` (atomic file writes with "
        "fsync, one catalog transaction per batch). Latency: median of 15 requests through the "
        "HTTP application (FastAPI test client, bearer token checked, audit row written), in ms.",
        "",
        "| instances | ingest rate (instances/s) | " + " | ".join(names) + " |",
        "|---:|---:|" + "---:|" * len(names),
    ]
    for total, rate, latencies in rows:
        cells = " | ".join(f"{latencies[n]:.1f}" for n in names)
        lines.append(f"| {total:,} | {rate:.0f} | {cells} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "archive_scale.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
