"""Weight-free segmentation tools against the TotalSegmentator reference labels.

Run ``python bench/tools.py`` (CARINA_SHARED_DATA points at the shared data). For each tool and
case: Dice per structure against the reference, and seconds per stage. Cases (read in place):

- ``ct_3mm``: abdomen/pelvis CT, 3 mm, 112 slices, reference ``seg_total_fast`` (lungs: lung bases);
- ``ct_3mm_30sl``: its top 30 slices, reference ``seg_total`` and ``tissue_types``;
- ``ct_dicom``: 20-slice 512x512 DICOM series (upper abdomen, contrast), reference NIfTI;
- ``lung_ct``: Lung-PET-CT-Dx chest CT, 8 mm, with radiologist tumour boxes (nodule recall).

Surface Dice (normalised surface distance) at 3 mm beside Dice: the share of both surfaces within
3 mm of the other, 3 mm being the voxel size the references were made at (``ct_dicom``'s label map
is a 3 mm map on the 0.98 x 0.98 x 2 mm grid: its label slices repeat 1-2-1-2 and its in-plane
edges recur every 3 voxels), so a boundary disagreement of one voxel along an axis does not
count, a missed or extra structure does. The targets are on Dice.

Body reference: no body mask is shipped. The reference used is the per-slice hole-filled union of
every ``total`` class and the three ``tissue_types`` masks (subcutaneous fat, torso fat, skeletal
muscle) of ``ct_3mm_30sl``; it lacks the skin (about one 3 mm voxel), so Dice is capped below 1.

Runtime on 512x512x300: the 20 real slices of ``ct_dicom`` repeated 15 times, and the 30 slices of
the chest series repeated 10 times for the lung tools (runtime only).
Results go to ``bench/results/tools.md``.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from carina.annotation.agreement import surface_dice
from carina.core import LabelMap, LabelSet, Volume
from carina.dicom import read_volume
from carina.imaging import read_image, read_labelmap
from carina.models import default_registry
from carina.models.evaluation import TOTALSEG_GROUPS, totalseg_bone_names, union_mask
from carina.models.morphology import dice, fill_holes_per_slice

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CARINA_SHARED_DATA", ROOT.parent / "shared" / "data"))
TS = DATA / "totalsegmentator_ref"
LUNG = DATA / "lung_ct_tumor_boxes"
#: the voxel size the references were made at (the surface Dice tolerance)
REFERENCE_MM = 3.0


@dataclass
class Case:
    name: str
    volume: Volume
    reference: LabelMap | None
    body_reference: np.ndarray | None = None


def _on_grid(ref: LabelMap, volume: Volume) -> LabelMap:
    out = ref.reorient(volume.geometry.orientation)
    if not out.geometry.same_grid(volume.geometry, atol=1e-3):
        raise SystemExit(f"reference grid differs from the image: {out.geometry} {volume.geometry}")
    return out


def load_cases() -> list[Case]:
    labels = LabelSet.from_json(TS / "label_map_total.json")
    cases = []
    v = read_image(TS / "ct_3mm/ct.nii.gz")
    cases.append(
        Case("ct_3mm", v, _on_grid(read_labelmap(TS / "ct_3mm/seg_total_fast.nii.gz", labels), v))
    )
    v = read_image(TS / "ct_3mm_30sl/ct.nii.gz")
    ref = _on_grid(read_labelmap(TS / "ct_3mm_30sl/seg_total.nii.gz", labels), v)
    tissue = [
        _on_grid(read_labelmap(TS / f"ct_3mm_30sl/tissue_types/{n}.nii.gz"), v).array > 0
        for n in ("subcutaneous_fat", "torso_fat", "skeletal_muscle")
    ]
    body = fill_holes_per_slice((ref.array > 0) | tissue[0] | tissue[1] | tissue[2])
    cases.append(Case("ct_3mm_30sl", v, ref, body))
    v = read_volume(TS / "ct_dicom")
    cases.append(
        Case("ct_dicom", v, _on_grid(read_labelmap(TS / "ct_dicom_seg_total.nii.gz", labels), v))
    )
    cases.append(Case("lung_ct", read_volume(LUNG / "ct_dicom"), None))
    return cases


def references(case: Case, tool: str) -> dict[str, np.ndarray]:
    ref = case.reference
    out: dict[str, np.ndarray] = {}
    if tool == "body" and case.body_reference is not None:
        out["body"] = case.body_reference
    if ref is None:
        return out
    if tool == "lungs":
        for name in ("lung_right", "lung_left"):
            out[name] = union_mask(ref, TOTALSEG_GROUPS[name])
    if tool == "bones":
        out["bone"] = union_mask(ref, totalseg_bone_names(lab.name for lab in ref.labels))
    if tool == "tissue" and case.name == "ct_3mm_30sl":
        for name, file in (
            ("subcutaneous_fat", "subcutaneous_fat"),
            ("skeletal_muscle", "skeletal_muscle"),
            ("visceral_fat", "torso_fat"),
        ):
            m = read_labelmap(TS / f"ct_3mm_30sl/tissue_types/{file}.nii.gz")
            out[name] = _on_grid(m, case.volume).array > 0
    return out


def tumour_boxes(volume: Volume) -> list[tuple[int, int, int, int, int]]:
    """(k, xmin, ymin, xmax, ymax) of every radiologist box, k the slice index in ``volume``."""
    rows = (LUNG / "slice_index.csv").read_text().splitlines()[1:]
    out = []
    z_of_k = volume.geometry.index_to_world(
        np.stack(
            [np.zeros(volume.shape[2]), np.zeros(volume.shape[2]), np.arange(volume.shape[2])], 1
        )
    )[:, 2]
    for row in rows:
        _file, _uid, z, xml = row.split(",")
        if not xml:
            continue
        k = int(np.argmin(np.abs(z_of_k - float(z))))
        box = ET.parse(LUNG / "annotations_voc" / Path(xml).name).getroot().find(".//bndbox")
        assert box is not None
        vals = [int(float(box.findtext(t) or 0)) for t in ("xmin", "ymin", "xmax", "ymax")]
        out.append((k, vals[0], vals[1], vals[2], vals[3]))
    return out


def nodule_recall(
    volume: Volume, points: list[dict[str, object]], margin: int = 10
) -> tuple[int, int]:
    """Boxes with a candidate inside (grown by ``margin`` pixels, +-1 slice)."""
    lps = volume.reorient("LPS")
    hit = 0
    boxes = tumour_boxes(volume)
    for k, x0, y0, x1, y1 in boxes:
        for p in points:
            idx = p["index_lps_grid"]
            assert isinstance(idx, list)
            world = lps.geometry.index_to_world(np.array(idx, dtype=float))
            i, j, kk = np.round(volume.geometry.world_to_index(world)).astype(int)
            if (
                x0 - margin <= i <= x1 + margin
                and y0 - margin <= j <= y1 + margin
                and abs(kk - k) <= 1
            ):
                hit += 1
                break
    return hit, len(boxes)


def main() -> int:
    runtime = "--no-runtime" not in sys.argv
    only = [a for a in sys.argv[1:] if not a.startswith("--")]
    reg = default_registry()
    cases = load_cases()
    rows = []
    notes = []
    for tool in reg:
        tid = tool.spec.id
        if only and tid not in only:
            continue
        for case in cases:
            if case.name == "lung_ct" and tid not in (
                "lungs",
                "airways",
                "lung-vessels",
                "nodule-candidates",
                "body",
            ):
                continue
            res = tool.run(case.volume)
            refs = references(case, tid)
            dices = {}
            surface: dict[str, float | None] = {}
            for name, ref in refs.items():
                dices[name] = dice(res.labels.mask(name), ref)
                surface[name] = surface_dice(
                    res.labels.mask(name), ref, case.volume.geometry.spacing, REFERENCE_MM
                )
            found = {
                lab.name: res.labels.volumes_ml().get(lab.value, 0.0) for lab in res.labels.labels
            }
            extra = ""
            if tid == "nodule-candidates" and case.name == "lung_ct":
                cands = list(res.findings.get("candidates", []))
                hit, total = nodule_recall(case.volume, cands)
                extra = f"recall {hit}/{total} boxes, {len(cands)} candidates"
            t = res.timings
            rows.append(
                (
                    tid,
                    case.name,
                    "x".join(map(str, case.volume.shape)),
                    ", ".join(f"{k} {v:.3f}" for k, v in dices.items()) or "-",
                    ", ".join(
                        f"{k} {'both empty' if v is None else f'{v:.3f}'}"
                        for k, v in surface.items()
                    )
                    or "-",
                    ", ".join(f"{k} {v:.1f}" for k, v in found.items()),
                    extra,
                    t["preprocess"],
                    t["infer"],
                    t["postprocess"],
                )
            )
            print(rows[-1], flush=True)
    # runtime on 512x512x300: abdomen (ct_dicom x 15) and chest (lung_ct x 10) stacks
    from carina.core import Geometry

    def stacked(name: str, times: int) -> Volume:
        base = next(c.volume for c in cases if c.name == name)
        arr = np.tile(np.asarray(base.array), (1, 1, times))
        g = base.geometry
        geometry = Geometry.from_components(
            shape=arr.shape, spacing=g.spacing, origin=g.origin, direction=g.direction
        )
        return Volume(arr, geometry, modality="CT")

    stacks = {"abdomen": stacked("ct_dicom", 15), "chest": stacked("lung_ct", 10)}
    chest_tools = {"lungs", "airways", "lung-vessels", "nodule-candidates"}
    timing_rows = []
    for tool in reg if runtime else []:
        for stack, big in stacks.items():
            if stack == "chest" and tool.spec.id not in chest_tools:
                continue
            cpu0 = time.process_time()
            res = tool.run(big)
            cpu = time.process_time() - cpu0
            t = res.timings
            timing_rows.append(
                (
                    f"{tool.spec.id} ({stack})",
                    t["preprocess"],
                    t["infer"],
                    t["postprocess"],
                    sum(t.values()),
                    cpu,
                )
            )
            print(timing_rows[-1], flush=True)
    lines = [
        "# Weight-free segmentation tools",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}. `python bench/tools.py`.",
        "",
        "References are TotalSegmentator outputs (silver labels, not manual). Body "
        "reference: hole-filled union of all classes and tissue types of ct_3mm_30sl (no "
        "skin). Bone reference: vertebrae, ribs, sternum, sacrum, hips, femurs, humeri, "
        "scapulae, claviculae, skull (costal cartilage excluded). Lungs: lobes merged per "
        "side. Nodule recall: a candidate within 10 pixels of a radiologist box, +-1 slice.",
        "",
        "Surface Dice at 3 mm: the share of both surfaces (voxel centres) within 3 mm of the "
        "other, the references' voxel size along an axis (ct_dicom's reference is a 3 mm "
        "label map on its 1 mm grid; on a 3 mm grid a diagonal neighbour is 4.2 mm away and "
        "counts as a miss). Targets are on Dice.",
        "",
        "| tool | case | shape | Dice | surface Dice 3 mm | volumes (mL) | other "
        "| preprocess s | infer s | postprocess s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]} "
            f"| {r[7]:.2f} | {r[8]:.2f} | {r[9]:.2f} |"
        )
    lines += [
        "",
        "## Runtime on 512 x 512 x 300",
        "",
        "abdomen: the 20 slices of ct_dicom (0.98 x 0.98 x 2 mm) repeated 15 times; chest: the "
        "30 slices of the Lung-PET-CT-Dx series (0.65 x 0.65 x 8 mm) repeated 10 times. The "
        "stacks serve runtime only.",
        "",
        "Wall-clock seconds per stage, and the CPU seconds of the process (the tools are "
        "single-threaded numpy/scipy/SimpleITK code; on a shared, loaded machine the CPU "
        f"seconds are the better estimate of an idle core). Load average at the end: "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.",
        "",
        "| tool | preprocess s | infer s | postprocess s | total wall s | CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for r in timing_rows:
        lines.append(f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.2f} |")
    lines += notes
    if only or not runtime:
        return 0
    out = ROOT / "bench" / "results" / "tools.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
