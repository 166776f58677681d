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
body >= 0.98, bones >= 0.90.

Trained models go through the same pass (``--no-models`` leaves them out): the tiny lung U-Net of
:mod:`carina.models.train_tiny` saved as a PyTorch state dict, TorchScript, ONNX and a MONAI
bundle, and the tiny nnU-Net v2 body model of :mod:`carina.models.nnunet_tiny`, each trained here
first and installed with ``add_model`` as ``carina models add`` does; the time to load each
model's weights is its own column (once per model, before its first case). Their inference is
real network work, so their overhead is the platform's share where a model dominates. Results go
to ``bench/results/ai.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
from carina.models.installed import add_model, installed_models, runner_for
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


def model_references(case: tools_bench.Case, labels: LabelMap) -> dict[str, np.ndarray]:
    """References for the trained models' labels: ``lung`` (both lungs of TotalSegmentator as
    one) and ``body`` (the bench's body reference)."""
    names = {lab.name for lab in labels.labels}
    out = {}
    if "lung" in names:
        lungs = tools_bench.references(case, "lungs")
        if lungs:
            out["lung"] = lungs["lung_right"] | lungs["lung_left"]
    if "body" in names:
        body = tools_bench.references(case, "body").get("body")
        if body is not None:
            out["body"] = body
    return out


def train_models(work: Path) -> tuple[Path, dict[str, float]]:
    """Train the tiny models here and install them under ``work/models``; returns the models
    folder and the training seconds of each recipe."""
    import torch

    from carina.dicom import read_volume
    from carina.models import nnunet_tiny, train_tiny

    torch.set_num_threads(1)  # as the model tests do: two threads on two busy cores are slower
    models = work / "models"
    times = {}
    t0 = time.perf_counter()
    net, spec = train_tiny.train_lung_unet(read_volume(SOURCES["lung_ct"]))
    times["tiny lung U-Net (MONAI UNet, 120 Adam steps)"] = time.perf_counter() - t0
    for fmt in ("torch", "torchscript", "onnx"):
        folder = work / fmt
        train_tiny.save_model(net, spec, folder, fmt)
        add_model(models, folder, model_id=f"tiny-lung-{fmt}")
    add_model(
        models, train_tiny.save_bundle(net, spec, work / "bundle"), model_id="tiny-lung-bundle"
    )
    cases = nnunet_tiny.default_cases(tools_bench.DATA)
    trained = nnunet_tiny.train_tiny_nnunet(cases, work / "nnunet")
    times["tiny nnU-Net v2 (plan + preprocess)"] = trained.plan_s
    times["tiny nnU-Net v2 (training)"] = trained.train_s
    add_model(models, trained.folder, model_id="tiny-body-nnunet")
    return models, times


Row = tuple[Any, ...]


def _is_model(tid: str, rows: list[Row]) -> bool:
    """A trained model: its first row carries the weights' load time."""
    return any(r[0] == tid and r[11] > 0 for r in rows)


def table_rows(rows: list[Row]) -> list[str]:
    out = []
    for r in rows:
        rt = "-" if np.isnan(r[10]) else f"{r[10]:.2f}"
        out.append(
            f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.2f} | {r[6]:.2f} "
            f"| {r[7]:.2f} | {r[8]} | {r[9]:.2f} | {rt} |"
        )
    return out


def summary(rows: list[Row], tail: str) -> list[str]:
    """Overhead over inference for ``rows`` together and for their DICOM cases."""
    over = sum(r[3] + r[4] + r[6] + r[7] for r in rows)
    load = sum(r[3] for r in rows)
    write = sum(r[7] for r in rows)
    infer = sum(r[5] for r in rows)
    dicom = [r for r in rows if r[1] in ("ct_dicom", "lung_ct")]
    dicom_over = sum(r[3] + r[4] + r[6] + r[7] for r in dicom)
    dicom_infer = sum(r[5] for r in dicom)
    text = (
        f"All runs together: overhead {over:.1f} s for {infer:.1f} s of inference "
        f"({over / infer:.2f} of inference); loading is {load:.1f} s of it and writing "
        f"{write:.1f} s. DICOM cases only: {dicom_over:.1f} s for {dicom_infer:.1f} s "
        f"({dicom_over / dicom_infer:.2f})."
    )
    return ["", f"{text} {tail}".rstrip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-models", action="store_true", help="weight-free tools only")
    args = parser.parse_args(argv)
    cases = {c.name: c for c in tools_bench.load_cases()}
    rows = []
    dice_rows = []
    out_dir = Path(tempfile.mkdtemp(prefix="carina-bench-ai-"))
    runners: list[tuple[object, float]] = [(tool, 0.0) for tool in default_registry()]
    train_times: dict[str, float] = {}
    if not args.no_models:
        models, train_times = train_models(out_dir / "train")
        for spec, folder in installed_models(models):
            runner = runner_for(spec, folder)
            t0 = time.perf_counter()
            runner.load()  # type: ignore[attr-defined]
            runners.append((runner, time.perf_counter() - t0))
    for tool, t_model in runners:
        tid = tool.spec.id  # type: ignore[attr-defined]
        trained_model = t_model > 0
        for case in SOURCES:
            if case == "lung_ct" and tid not in ON_CHEST and not trained_model:
                continue
            t0 = time.perf_counter()
            volume, sources = load(case)
            t_load = time.perf_counter() - t0
            result = tool.run(volume)  # type: ignore[attr-defined]
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
                    t_model,
                )
            )
            t_model = 0.0  # the weights load once, before the model's first case
            print(rows[-1], flush=True)
            ref_case = cases[case]
            assert isinstance(labels, LabelMap)
            if trained_model:
                for name, ref in model_references(ref_case, labels).items():
                    if ref.any():
                        mask = np.asarray(labels.mask(name))
                        dice_rows.append((tid, case, name, dice(mask, ref), float("nan")))
                continue
            for name, ref in tools_bench.references(ref_case, tid).items():
                if name in TARGETS and ref.any():
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
    tool_rows = [r for r in rows if r[11] == 0 and not _is_model(r[0], rows)]
    model_rows = [r for r in rows if _is_model(r[0], rows)]
    lines += table_rows(tool_rows)
    lines += summary(
        tool_rows,
        "The weight-free tools infer in about a second, so reading (and, "
        "for `ct_dicom`, JPEG 2000 decoding of) the series dominates; a model taking minutes "
        "would see the same seconds of overhead.",
    )
    if model_rows:
        lines += [
            "",
            "## Trained models",
            "",
            "The tiny models trained here first (one PyTorch thread): "
            + "; ".join(f"{k} {v:.1f} s" for k, v in train_times.items())
            + ". *Model load s* is the runner's `load()` (weights read, network built, ONNX "
            "session or nnU-Net predictor created), once per model and not in the overhead; "
            "the PyTorch, TorchScript, ONNX and bundle rows are one network in four formats. "
            "The nnU-Net row's stages are nnU-Net's own (its preprocessing, its sliding window "
            "with test-time mirroring, its resampling back).",
            "",
            "| model | case | shape | model load s | load s | preprocess s | infer s "
            "| postprocess s | write s | written | overhead / infer |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in model_rows:
            ml = f"{r[11]:.2f}" if r[11] > 0 else ""
            lines.append(
                f"| {r[0]} | {r[1]} | {r[2]} | {ml} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.2f} "
                f"| {r[6]:.2f} | {r[7]:.2f} | {r[8]} | {r[9]:.2f} |"
            )
        lines += summary(model_rows, "")
    lines += [
        "",
        "## Dice against the TotalSegmentator references",
        "",
        "Trained models have no target: they are small networks trained in seconds against a "
        "weight-free tool, here to exercise the runners. The nnU-Net body model was trained on "
        "three CTs, ct_3mm among them; the lung U-Net on the chest CT alone, so it finds little "
        "of the lung bases in the abdomen CTs (the lungs' references are there only). The "
        "bundle's row differs from the other three formats of the same network because the "
        "bundle resamples with its own MONAI transforms (its parity is with MONAI's own run "
        "of the bundle, tests/models/test_model_runners.py).",
        "",
        "| tool | case | structure | Dice | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for tid, case, name, d, target in dice_rows:
        if np.isnan(target):
            lines.append(f"| {tid} | {case} | {name} | {d:.3f} | - | - |")
            continue
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
