"""Per-stage timings of the segmentation tools end to end, and the platform's overhead.

Run ``python bench/ai.py`` (CARINA_SHARED_DATA points at the shared data). For every weight-free
tool on the real CTs of the shared data, one pass as ``carina segment`` does it:

- ``load``: read the image (DICOM: scan, decode and assemble the series, read the instances'
  headers that the SEG references; NIfTI: read the file);
- ``preprocess``, ``infer``, ``postprocess``: the tool's own stage timings
  (:class:`carina.models.SegmentationResult`);
- ``write``: the DICOM SEG referencing the series (DICOM cases), or the NIfTI label map; and,
  for the DICOM cases, an RTSTRUCT of the same labels, timed apart (not in the overhead).

Platform overhead = (load + preprocess + postprocess + write SEG) / infer. Dice against the
TotalSegmentator references (see ``bench/tools.py``) is shown next to the targets: lungs >= 0.95,
body >= 0.98, bones >= 0.90. Results go to ``bench/results/ai.md``.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tools as tools_bench

from carina.core import LabelMap, Volume
from carina.dicom import load_series, scan
from carina.dicom.files import open_dataset
from carina.dicom.rtstruct import write_rtstruct
from carina.dicom.seg import Provenance, write_segmentation
from carina.imaging import read_image, write_image
from carina.models import default_registry
from carina.models.morphology import dice

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {
    "ct_dicom": tools_bench.TS / "ct_dicom",
    "lung_ct": tools_bench.LUNG / "ct_dicom",
    "ct_3mm": tools_bench.TS / "ct_3mm" / "ct.nii.gz",
    "ct_3mm_30sl": tools_bench.TS / "ct_3mm_30sl" / "ct.nii.gz",
}
ON_CHEST = {"lungs", "airways", "lung-vessels", "nodule-candidates", "body"}
TARGETS = {"lung_right": 0.95, "lung_left": 0.95, "body": 0.98, "bone": 0.90}


def load(case: str) -> tuple[Volume, list[object]]:
    """The volume and, for DICOM, the instance datasets a SEG references."""
    src = SOURCES[case]
    if src.is_file():
        return read_image(src), []
    info = next(s for s in scan(src).series if s.has_pixels)
    volume = load_series(info).volume
    sources = [open_dataset(ref)[0] for ref in info.sources]
    study, series = generate_uid(), generate_uid()
    for ds in sources:
        # the TotalSegmentator series has empty UIDs: give them UIDs, as storing it would
        if not str(ds.get("SOPInstanceUID", "") or ""):
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
            ds.SOPInstanceUID = generate_uid()
            ds.StudyInstanceUID = ds.get("StudyInstanceUID") or study
            ds.SeriesInstanceUID = ds.get("SeriesInstanceUID") or series
    return volume, sources


def main() -> int:
    cases = {c.name: c for c in tools_bench.load_cases()}
    rows = []
    dice_rows = []
    out_dir = Path(tempfile.mkdtemp(prefix="carina-bench-ai-"))
    for tool in default_registry():
        tid = tool.spec.id
        for case in SOURCES:
            if case == "lung_ct" and tid not in ON_CHEST:
                continue
            t0 = time.perf_counter()
            volume, sources = load(case)
            t_load = time.perf_counter() - t0
            result = tool.run(volume)
            labels = result.labels
            t0 = time.perf_counter()
            empty = not labels.present_values()
            if sources and not empty:
                write_segmentation(
                    labels,
                    sources,  # type: ignore[arg-type]
                    out_dir / f"{tid}-{case}.seg.dcm",
                    provenance=Provenance(tid, tool.spec.version),
                )
                written = "SEG"
            else:
                write_image(labels, out_dir / f"{tid}-{case}.nii.gz")
                written = "NIfTI" if not sources else "NIfTI (empty)"
            t_write = time.perf_counter() - t0
            t_rt = float("nan")
            if sources and not empty:
                t0 = time.perf_counter()
                write_rtstruct(labels, sources, out_dir / f"{tid}-{case}.rt.dcm", algorithm=tid)  # type: ignore[arg-type]
                t_rt = time.perf_counter() - t0
            t = result.timings
            overhead = t_load + t["preprocess"] + t["postprocess"] + t_write
            rows.append(
                (
                    tid,
                    case,
                    "x".join(map(str, volume.shape)),
                    t_load,
                    t["preprocess"],
                    t["infer"],
                    t["postprocess"],
                    t_write,
                    written,
                    overhead / t["infer"] if t["infer"] > 0 else float("nan"),
                    t_rt,
                )
            )
            print(rows[-1], flush=True)
            ref_case = cases[case]
            for name, ref in tools_bench.references(ref_case, tid).items():
                if name in TARGETS and ref.any():
                    assert isinstance(labels, LabelMap)
                    mask = np.asarray(labels.mask(name))
                    dice_rows.append((tid, case, name, dice(mask, ref), TARGETS[name]))
    lines = [
        "# Segmentation tools end to end: stage timings and platform overhead",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}. `python bench/ai.py`. "
        f"Load average at the end: {os.getloadavg()[0]:.1f} (the machine was shared).",
        "",
        "Cases: `ct_dicom` (TotalSegmentator 20-slice DICOM series, JPEG 2000 lossless), "
        "`lung_ct` (Lung-PET-CT-Dx chest CT, 30 slices), `ct_3mm` and `ct_3mm_30sl` (3 mm "
        "abdomen NIfTI and its top 30 slices; no DICOM, so the label map is written as "
        "NIfTI). The instances of `ct_dicom` carry empty study, series and SOP instance UIDs;"
        " the bench gives them new ones in memory (as the archive does on storing) so that "
        "the SEG can reference them. Wall-clock seconds. Overhead = (load + preprocess + "
        "postprocess + write) / infer. The RTSTRUCT column is the time to write the same "
        "labels as contours (not counted in the overhead). An empty result is written as "
        "NIfTI (a SEG needs at least one segment).",
        "",
        "| tool | case | shape | load s | preprocess s | infer s | postprocess s | write s "
        "| written | overhead / infer | RTSTRUCT s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rt = "-" if np.isnan(r[10]) else f"{r[10]:.2f}"
        lines.append(
            f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.2f} | {r[6]:.2f} "
            f"| {r[7]:.2f} | {r[8]} | {r[9]:.2f} | {rt} |"
        )
    total_over = sum(r[3] + r[4] + r[6] + r[7] for r in rows)
    total_load = sum(r[3] for r in rows)
    total_write = sum(r[7] for r in rows)
    total_infer = sum(r[5] for r in rows)
    dicom = [r for r in rows if r[1] in ("ct_dicom", "lung_ct")]
    dicom_over = sum(r[3] + r[4] + r[6] + r[7] for r in dicom)
    dicom_infer = sum(r[5] for r in dicom)
    lines += [
        "",
        f"All runs together: overhead {total_over:.1f} s for {total_infer:.1f} s of inference "
        f"({total_over / total_infer:.2f} of inference); loading is {total_load:.1f} s of it and "
        f"writing {total_write:.1f} s. DICOM cases only: {dicom_over:.1f} s for "
        f"{dicom_infer:.1f} s ({dicom_over / dicom_infer:.2f}). The weight-free tools infer in "
        "about a second, so reading (and, for `ct_dicom`, JPEG 2000 decoding of) the series "
        "dominates; a model taking minutes would see the same seconds of overhead.",
        "",
        "## Dice against the TotalSegmentator references",
        "",
        "| tool | case | structure | Dice | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for tid, case, name, d, target in dice_rows:
        lines.append(
            f"| {tid} | {case} | {name} | {d:.3f} | {target:.2f} | "
            f"{'yes' if d >= target else 'no'} |"
        )
    out = ROOT / "bench" / "results" / "ai.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
