"""Latency of the viewer's server-rendered planes, first request (series loaded) and later ones
(series from the cache), through the HTTP application with authentication.

Series: the real 30-slice lung CT (``CARINA_SHARED_DATA``/lung_ct_tumor_boxes) and a synthetic
512x512x2000 CT written with ``tests/dicom_factory.py``.
Writes ``bench/results/render_fallback.md``.

    .venv/bin/python bench/render_fallback.py [--slices 2000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.dicom_factory import ct_series  # noqa: E402

from carina.api import create_app  # noqa: E402
from carina.services.settings import Settings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "render_fallback.md"
SHARED = Path(os.environ.get("CARINA_SHARED_DATA", ROOT.parent / "shared" / "data"))


def phantom_slab(first: int, count: int, size: int = 512) -> np.ndarray:
    """Slices ``first..first+count`` of a cylinder of water with air lungs and bright spheres."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) - size / 2
    body = (x / (0.42 * size)) ** 2 + (y / (0.32 * size)) ** 2 < 1
    lungs = ((np.abs(x) - 0.2 * size) / (0.12 * size)) ** 2 + (y / (0.2 * size)) ** 2 < 1
    out = np.full((count, size, size), -1000, dtype=np.int16)
    for n in range(count):
        k = first + n
        plane = np.where(body, 40, -1000).astype(np.int16)
        plane[lungs] = -850
        r = 0.05 * size * (1 + np.sin(k / 37.0))
        plane[(x - 0.2 * size) ** 2 + y**2 < r**2] = 300
        out[n] = plane
    return out


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def measure(
    client: TestClient, headers: dict[str, str], base: str, n: int
) -> list[tuple[str, float]]:
    def get(**params: object) -> Callable[[], object]:
        def call() -> object:
            response = client.get(base + "/render", params=params, headers=headers)
            assert response.status_code == 200, response.text
            return response

        return call

    rows = [("first request: axial, middle (series loaded)", timed(get(plane="axial")))]
    rows.append(
        (
            "volume description (cached)",
            timed(lambda: client.get(base + "/volume", headers=headers)),
        )
    )
    axial = [timed(get(plane="axial", index=i)) for i in range(0, n, max(1, n // 10))]
    rows.append((f"axial, other planes (median of {len(axial)})", statistics.median(axial)))
    rows.append(("coronal, middle", timed(get(plane="coronal"))))
    rows.append(("sagittal, middle", timed(get(plane="sagittal"))))
    rows.append(("coronal, middle, size=512", timed(get(plane="coronal", size=512))))
    rows.append(("axial MIP slab 20 mm", timed(get(plane="axial", slab=20, mode="mip"))))
    rows.append(("axial JPEG", timed(get(plane="axial", format="jpeg"))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", dicom_port=None, jobs_workers=0)
        app = create_app(settings)
        with TestClient(app) as client:
            store, archive = app.state.auth, app.state.archive
            store.create_user("bench", "a-long-bench-password", is_admin=True)
            admin = store.principal("bench")
            store.create_project(admin, "bench")
            token = store.issue_token(admin.user_id, "access", timedelta(hours=2)).token
            headers = {"Authorization": f"Bearer {token}"}
            sections = []

            lung = sorted((SHARED / "lung_ct_tumor_boxes" / "ct_dicom").glob("*.dcm"))
            first = pydicom.dcmread(lung[0], stop_before_pixels=True)
            archive.ingest([(None, p.read_bytes()) for p in lung])
            store.add_studies("bench", [str(first.StudyInstanceUID)])
            base = (
                f"/api/projects/bench/studies/{first.StudyInstanceUID}"
                f"/series/{first.SeriesInstanceUID}"
            )
            sections.append(
                ("lung CT, 30 x 512 x 512, 8 mm slices", measure(client, headers, base, 30))
            )

            study, series, frame = generate_uid(), generate_uid(), generate_uid()
            start = time.perf_counter()
            for at in range(0, args.slices, 100):
                count = min(100, args.slices - at)
                parts = ct_series(
                    phantom_slab(at, count),
                    spacing=(0.7, 0.7, 0.625),
                    study_uid=study,
                    series_uid=series,
                    frame_uid=frame,
                    first_slice=at,
                )
                archive.ingest([(None, p) for p in parts])
            ingest_s = time.perf_counter() - start
            store.add_studies("bench", [study])
            base = f"/api/projects/bench/studies/{study}/series/{series}"
            sections.append(
                (
                    f"synthetic CT, {args.slices} x 512 x 512, 0.625 mm slices "
                    f"(ingested in {ingest_s:.0f} s)",
                    measure(client, headers, base, args.slices),
                )
            )
            cache = app.state.viewer_cache
            cached = (
                f"{cache.size / 1024**2:.0f} MiB in cache, {cache.misses} loads, {cache.hits} hits"
            )

    lines = [
        "# Server-rendered planes (viewer fallback)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the end), "
        f"Python {platform.python_version()}; `bench/render_fallback.py`.",
        "Each row is one HTTP request through the application (token authentication, audit), "
        "PNG unless said; planes are full resolution with square pixels.",
        "",
    ]
    for title, rows in sections:
        lines += [f"## {title}", "", "| request | ms |", "|---|---:|"]
        lines += [f"| {name} | {ms:.0f} |" for name, ms in rows]
        lines.append("")
    lines += [f"Cache after the run: {cached}.", ""]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
