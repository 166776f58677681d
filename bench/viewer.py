"""Viewer timings on loopback: a real ``carina serve`` and Debian's chromium (``bench/viewer.mjs``).

Series (synthetic, ``tests/dicom_factory.py``, the phantom of ``bench/render_fallback.py``):
a 300 x 512 x 512 CT, which the browser loads (stack, then MPR from the volume), and a long one
(2000 slices by default), over the viewer's limit, whose MPR planes the server renders.
Measured per series: time to the first image (opening the study page to the stack drawn) and to
MPR ready (2x2 layout: the three planes drawn). Writes ``bench/results/viewer.md``.

    .venv/bin/python bench/viewer.py [--large-slices 2000] [--large-size 512] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from render_fallback import phantom_slab  # noqa: E402
from tests.dicom_factory import ct_series  # noqa: E402

from carina.api import create_app  # noqa: E402
from carina.services.settings import Settings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "viewer.md"
USER, PASSWORD, PROJECT = "bench", "a-long-bench-password", "bench"
TARGETS = {"first image": 0.5, "MPR ready": 3.0}
PHASES = (
    "study-open",
    "study-series",
    "metadata-fetched",
    "series-loaded",
    "viewer-created",
    "first-image-loaded",
    "first-image",
)


def populate(
    data_dir: Path, series: list[tuple[str, int, int, float]]
) -> dict[str, dict[str, Any]]:
    """A user, a project and the synthetic series (name, slices, size, slice mm), ingested in
    parts of 100 slices; returns name -> study/series UIDs and the ingest time."""
    app = create_app(Settings(data_dir=data_dir, dicom_port=None, jobs_workers=0))
    out: dict[str, dict[str, Any]] = {}
    with TestClient(app):
        store, archive = app.state.auth, app.state.archive
        store.create_user(USER, PASSWORD)
        store.create_project(store.principal(USER), PROJECT, "Viewer benchmark")
        for name, slices, size, thickness in series:
            study, uid, frame = generate_uid(), generate_uid(), generate_uid()
            start = time.perf_counter()
            for first in range(0, slices, 100):
                count = min(100, slices - first)
                files = ct_series(
                    phantom_slab(first, count, size),
                    spacing=(0.7 * 512 / size, 0.7 * 512 / size, thickness),
                    study_uid=study,
                    series_uid=uid,
                    frame_uid=frame,
                    first_slice=first,
                    patient_id=name,
                )
                results = archive.ingest([(None, data) for data in files])
                assert all(r.status.ok for r in results)
            store.add_studies(PROJECT, [study])
            out[name] = {
                "study": study,
                "series": uid,
                "shape": f"{slices} x {size} x {size}",
                "ingest_s": time.perf_counter() - start,
            }
    return out


def serve(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [
        sys.executable,
        "-c",
        "from carina.cli.main import app; app()",
        "serve",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-dimse",
        "--jobs-workers",
        "0",
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--large-slices", type=int, default=2000)
    parser.add_argument("--large-size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    subprocess.run(["bash", str(ROOT / "scripts" / "build-web.sh")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        series = populate(
            data_dir,
            [
                ("CT300", args.slices, 512, 1.0),
                ("CT-LONG", args.large_slices, args.large_size, 0.625),
            ],
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        process = serve(data_dir, port)
        try:
            for info in series.values():
                params = {"study": info["study"], "series": info["series"], "runs": args.runs}
                done = subprocess.run(
                    [
                        "node",
                        str(ROOT / "bench" / "viewer.mjs"),
                        "--url",
                        f"http://127.0.0.1:{port}",
                        "--user",
                        USER,
                        "--password",
                        PASSWORD,
                        "--project",
                        PROJECT,
                        "--out",
                        str(Path(tmp) / "artifacts"),
                        "--params",
                        json.dumps(params),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=1800,
                    check=False,
                )
                info["result"] = json.loads(done.stdout.strip().splitlines()[-1])
        finally:
            process.terminate()
            process.wait(timeout=30)
    write(series, args)
    print(RESULTS.read_text())
    return 0


def write(series: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Viewer: time to first image and to MPR ready",
        "",
        f"Run {now} on {platform.machine()}, {os.cpu_count()} CPUs, headless Debian chromium with "
        "software WebGL (SwiftShader), server on loopback; `bench/viewer.py` "
        f"(--runs {args.runs}). Targets: first image < {TARGETS['first image']} s, "
        f"MPR < {TARGETS['MPR ready']} s.",
        "",
        "First image: from a click on the study in the worklist (the app loaded) to the stack "
        "viewport's first drawing of an image (QIDO of the study and its series, series metadata, "
        "Cornerstone start-up, one WADO-RS frame, its decoding and drawing), timed inside the page "
        "(the click's time to the viewer's `carina:first-image` mark); *observed* is the same as "
        "the automation sees it, its polling included. MPR ready: from choosing the 2x2 layout to "
        "the three planes drawn (the viewer's own lap where the browser builds the planes); for a "
        "series the browser loads, that includes fetching every frame of the series (one "
        "response from `.../frames`, decoded by Cornerstone's loader into the volume); over the "
        "viewer's "
        "limit (1000 slices or 1 GiB) the planes are server-rendered images (`/render`) and there "
        "is no 3D. The first run of each series is cold (server caches empty).",
        "",
        "| series | ingest s | mode | first image s (runs) | observed s | MPR ready s (runs) "
        "| meets targets |",
        "|---|---:|---|---|---|---|---|",
    ]
    phase_rows: list[str] = []
    for name, info in series.items():
        result = info.get("result", {})
        first = result.get("firstImage", [])
        mpr = result.get("mprInPage") or result.get("mprReady", [])
        ok = (
            bool(first and mpr)
            and statistics.median(first) < TARGETS["first image"]
            and statistics.median(mpr) < TARGETS["MPR ready"]
        )
        runs_first = ", ".join(f"{v:.2f}" for v in first) or result.get("error", "failed")
        observed = ", ".join(f"{v:.2f}" for v in result.get("observed", [])) or "-"
        runs_mpr = ", ".join(f"{v:.2f}" for v in mpr) or "-"
        mode = str(result.get("mode"))
        if result.get("prefetched"):
            mode += f" ({result['prefetched']} frames in one response)"
        lines.append(
            f"| {name} ({info['shape']}) | {info['ingest_s']:.0f} | {mode} "
            f"| {runs_first} | {observed} | {runs_mpr} | {'yes' if ok else 'no'} (medians) |"
        )
        for run, phases in enumerate(result.get("phases", []), start=1):
            cells = " | ".join(str(phases.get(key, "-")) for key in PHASES)
            phase_rows.append(f"| {name} | {run} | {cells} |")
    lines += [
        "",
        "Where the first image's time goes (ms after the click, marks set by the viewer): the "
        "study page opened, the study and its series listed (Cornerstone started meanwhile), the "
        "series metadata received, then sorted and registered, the viewer (rendering engine, "
        "tools) created, the middle image (requested as soon as the metadata is registered) "
        "loaded and decoded, the first image drawn.",
        "",
        "| series | run | " + " | ".join(PHASES) + " |",
        "|---|---:|" + "---:|" * len(PHASES),
        *phase_rows,
        "",
        f"Load average at the end of the run: {', '.join(f'{v:.1f}' for v in os.getloadavg())}. "
        "Rendering is software WebGL on the CPU and the browser, the server and the image "
        "decoding share the same cores, so these are upper bounds for a workstation with a GPU.",
        "",
    ]
    RESULTS.write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
