"""The built-in weight-free CT tools: ``body``, ``lungs``, ``airways``, ``bones``,
``lung-vessels``, ``nodule-candidates`` and ``tissue``.

Every tool reorients the volume to LPS, works on a grid of about 3 mm (see
:mod:`carina.models.grid`; vessel and nodule search keep the full grid), refines boundaries at full
resolution, and returns labels on the input geometry. Methods: :mod:`carina.models.ct`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from carina.core.errors import ModelError
from carina.core.labels import Code, Label, LabelSet
from carina.core.volume import LabelMap, Volume
from carina.models import ct
from carina.models.base import SegmentationResult, Timings, ToolSpec
from carina.models.grid import WorkingGrid
from carina.models.morphology import BoolArray

FloatArray = npt.NDArray[Any]  # HU, any numeric dtype
LabelArray = npt.NDArray[np.uint8]

#: Grid used by the region tools (body, lungs, airways, bones, tissue).
WORKING_MM = 3.0
#: Airways are narrow: a finer grid.
AIRWAY_MM = 2.0
#: Vessel and nodule search grid.
VESSEL_MM = 1.5
NODULE_MM = 2.0


def _sct(value: str, meaning: str) -> Code:
    return Code(value, "SCT", meaning)


def _local(value: str, meaning: str) -> Code:
    return Code(value, "99CARINA", meaning)


BODY = Label(1, "body", (177, 122, 101), _sct("38266002", "Entire body"))
LUNG_RIGHT = Label(1, "lung_right", (128, 174, 128), _sct("3341006", "Right lung"))
LUNG_LEFT = Label(2, "lung_left", (111, 184, 210), _sct("44029006", "Left lung"))
AIRWAYS = Label(1, "airways", (182, 228, 255), _sct("89187006", "Airway structure"))
BONE = Label(1, "bone", (241, 214, 145), _sct("272673000", "Bone structure"))
CONTRAST = Label(2, "contrast_vessel", (216, 101, 79), _sct("59820001", "Blood vessel"))
LUNG_VESSEL = Label(1, "lung_vessel", (200, 60, 60), _sct("59820001", "Blood vessel"))
NODULE = Label(1, "nodule_candidate", (255, 200, 0), _sct("27925004", "Nodule"))
SUBCUT_FAT = Label(1, "subcutaneous_fat", (230, 220, 70), _sct("71966008", "Subcutaneous tissue"))
MUSCLE = Label(2, "skeletal_muscle", (192, 104, 88), _sct("127954009", "Skeletal muscle"))
VISCERAL_FAT = Label(3, "visceral_fat", (255, 244, 209), _local("VFAT", "Visceral fat"))

_CITATIONS = {
    "morphology": "Soille P. Morphological Image Analysis. Springer, 2003.",
    "frangi": "Frangi AF et al. Multiscale vessel enhancement filtering. MICCAI 1998:130-137.",
    "log": "Lindeberg T. Feature detection with automatic scale selection. IJCV 1998;30:79-116.",
    "tissue": (
        "Mourtzakis M et al. A practical and precise approach to quantification of body "
        "composition in cancer patients using CT images. Appl Physiol Nutr Metab 2008;33:997-1006."
    ),
    "airways": (
        "Mori K et al. Automated extraction and visualization of bronchus from 3D CT images of "
        "lung. CVRMed 1995:542-548."
    ),
}


@dataclass(frozen=True)
class _Output:
    labels: LabelArray
    findings: dict[str, Any]


Method = Callable[[FloatArray, tuple[float, float, float], dict[str, Any]], _Output]


class ClassicalTool:
    """A :class:`~carina.models.base.Runner` around a method on LPS-ordered HU arrays."""

    def __init__(self, spec: ToolSpec, method: Method) -> None:
        self._spec = spec
        self._method = method

    @property
    def spec(self) -> ToolSpec:
        return self._spec

    def __repr__(self) -> str:
        return f"ClassicalTool({self._spec.id!r})"

    def run(self, volume: Volume, **params: Any) -> SegmentationResult:
        timings = Timings()
        with timings.stage("preprocess"):
            if volume.modality and volume.modality.upper() not in self._spec.modalities:
                raise ModelError(
                    f"tool {self._spec.id!r} works on {', '.join(self._spec.modalities)}, "
                    f"not {volume.modality}"
                )
            if volume.channels != 1:
                raise ModelError(f"tool {self._spec.id!r} needs a single-channel volume")
            perm, flips = volume.geometry.reorientation("LPS")
            canonical = volume.reorient("LPS")
            hu = np.asarray(canonical.array)  # a view; methods convert what they use
            spacing = canonical.geometry.spacing
        with timings.stage("infer"):
            out = self._method(hu, spacing, dict(params))
        with timings.stage("postprocess"):
            # undo the reorientation: flip back, then put the axes in the input's order
            arr = out.labels
            for axis, flip in enumerate(flips):
                if flip:
                    arr = np.flip(arr, axis=axis)
            arr = np.transpose(arr, np.argsort(perm))
            result = LabelMap(
                np.ascontiguousarray(arr),
                volume.geometry,
                labels=self._spec.labels,
                description=f"{self._spec.id} {self._spec.version}",
            )
        return SegmentationResult(
            labels=result,
            timings=dict(timings.seconds),
            tool=self._spec.id,
            version=self._spec.version,
            findings=out.findings,
        )


# ------------------------------------------------------------------------------- the methods


def _grid(hu: FloatArray, spacing: tuple[float, float, float]) -> tuple[WorkingGrid, FloatArray]:
    grid = WorkingGrid.choose(hu.shape, spacing, WORKING_MM)
    return grid, grid.downsample(hu)


def _body_fine(hu: FloatArray, spacing: tuple[float, float, float]) -> BoolArray:
    grid, coarse = _grid(hu, spacing)
    body_c = ct.body_mask(coarse, grid.coarse_spacing)
    # the interior comes from the hole-filled coarse mask; only the skin band is re-decided
    return grid.refine(body_c, lambda box: hu[box] > ct.BODY_HU)


def _body(hu: FloatArray, spacing: tuple[float, float, float], p: dict[str, Any]) -> _Output:
    return _Output(_body_fine(hu, spacing).astype(np.uint8), {})


def _lungs(hu: FloatArray, spacing: tuple[float, float, float], p: dict[str, Any]) -> _Output:
    airways = _airways(hu, spacing, p).labels.astype(bool)
    grid, coarse = _grid(hu, spacing)
    airways_c = grid.downsample(airways.astype(np.float32)) > 0
    lab_c = ct.lungs_labels(coarse, grid.coarse_spacing, grid.density_probe(hu), airways_c)
    out = np.zeros(hu.shape, dtype=np.uint8)
    for value in (1, 2):
        fine = grid.refine(lab_c == value, lambda box: hu[box] < ct.AIR_HU)
        out[fine & (out == 0) & ~airways] = value
    return _Output(out, {})


def _regions_on(
    hu: FloatArray, spacing: tuple[float, float, float], target: WorkingGrid, lungs: bool
) -> tuple[BoolArray, BoolArray | None]:
    """Body (and lungs) found on the 3 mm grid, carried to the ``target`` grid."""
    grid, coarse = _grid(hu, spacing)
    cs = grid.coarse_spacing
    body_c = ct.body_mask(coarse, cs)
    lungs_c = ct.lung_mask(coarse, cs, body_c, density=grid.density_probe(hu)) if lungs else None

    def carry(mask: BoolArray) -> BoolArray:
        if grid.factors == target.factors:
            return mask
        fine = np.asarray(grid.upsample(mask), dtype=bool)
        if target.identity:
            return fine
        out: BoolArray = target.downsample(fine) >= 0.5
        return out

    return carry(body_c), (carry(lungs_c) if lungs_c is not None else None)


def _airways(hu: FloatArray, spacing: tuple[float, float, float], p: dict[str, Any]) -> _Output:
    grid = WorkingGrid.choose(hu.shape, spacing, AIRWAY_MM)
    coarse = grid.downsample(hu)
    body, _lungs = _regions_on(hu, spacing, grid, lungs=False)
    air_c = ct.airway_mask(coarse, grid.coarse_spacing, body)
    fine = grid.refine(air_c, lambda box: hu[box] < -800.0)
    return _Output(fine.astype(np.uint8), {"found": bool(fine.any())})


def _bones(hu: FloatArray, spacing: tuple[float, float, float], p: dict[str, Any]) -> _Output:
    grid, coarse = _grid(hu, spacing)
    lab_c, low = ct.bone_labels(coarse, grid.coarse_spacing)
    out = np.zeros(hu.shape, dtype=np.uint8)
    for value in (1, 2):
        fine = grid.refine(lab_c == value, lambda box: hu[box] > low)
        out[fine & (out == 0)] = value
    return _Output(out, {"low_threshold_hu": float(low)})


def _fine_grid_run(
    hu: FloatArray,
    spacing: tuple[float, float, float],
    target_mm: float,
    method: Callable[[FloatArray, tuple[float, float, float], BoolArray, BoolArray], LabelArray],
) -> tuple[LabelArray, WorkingGrid]:
    """Run ``method(hu, spacing, lungs, body)`` on a grid of ``target_mm``; body and lungs come
    from the 3 mm grid. Nothing runs (an empty map) when there is no lung."""
    grid = WorkingGrid.choose(hu.shape, spacing, target_mm)
    body, lungs = _regions_on(hu, spacing, grid, lungs=True)
    assert lungs is not None
    if not lungs.any():
        return np.zeros(grid.coarse_shape, dtype=np.uint8), grid
    coarse = grid.downsample(hu)
    return method(coarse, grid.coarse_spacing, lungs, body), grid


def _vessels(hu: FloatArray, spacing: tuple[float, float, float], p: dict[str, Any]) -> _Output:
    threshold = float(p.get("threshold", 0.1))

    def method(
        h: FloatArray, sp: tuple[float, float, float], lungs: BoolArray, _body: BoolArray
    ) -> LabelArray:
        return ct.lung_vessel_labels(h, sp, lungs, threshold=threshold)[0]

    lab, grid = _fine_grid_run(hu, spacing, VESSEL_MM, method)
    up = np.asarray(grid.upsample(lab), dtype=np.uint8)
    if not grid.identity:
        up = (up.astype(bool) & (hu > -600.0)).astype(np.uint8)
    return _Output(up, {"threshold": threshold})


def _nodules(hu: FloatArray, spacing: tuple[float, float, float], p: dict[str, Any]) -> _Output:
    found: list[ct.Candidate] = []

    def method(
        h: FloatArray, sp: tuple[float, float, float], lungs: BoolArray, body: BoolArray
    ) -> LabelArray:
        cands, _region = ct.nodule_candidates(
            h,
            sp,
            lungs,
            body,
            min_score=float(p.get("min_score", 150.0)),
            max_candidates=int(p.get("max_candidates", 30)),
        )
        found.extend(cands)
        return np.zeros(h.shape, dtype=np.uint8)

    _lab, grid = _fine_grid_run(hu, spacing, NODULE_MM, method)
    f = grid.factors
    cands = [
        ct.Candidate(
            (
                min(c.index[0] * f[0] + f[0] // 2, hu.shape[0] - 1),
                min(c.index[1] * f[1] + f[1] // 2, hu.shape[1] - 1),
                min(c.index[2] * f[2] + f[2] // 2, hu.shape[2] - 1),
            ),
            c.radius_mm,
            c.score,
        )
        for c in found
    ]
    mask = ct.spheres(hu.shape, spacing, cands)
    points = [
        {"index_lps_grid": list(c.index), "radius_mm": c.radius_mm, "score": round(c.score, 2)}
        for c in cands
    ]
    return _Output(mask.astype(np.uint8), {"candidates": points})


def _tissue(hu: FloatArray, spacing: tuple[float, float, float], p: dict[str, Any]) -> _Output:
    grid, coarse = _grid(hu, spacing)
    lab_c = ct.tissue_labels(coarse, grid.coarse_spacing)
    if grid.identity:
        return _Output(lab_c, {})
    up = np.asarray(grid.upsample(lab_c), dtype=np.uint8)
    # re-decide every voxel of the upsampled classes by its own HU
    fat = (hu >= ct.FAT_HU[0]) & (hu <= ct.FAT_HU[1])
    soft = (hu >= ct.MUSCLE_HU[0]) & (hu <= ct.MUSCLE_HU[1])
    out = np.zeros(hu.shape, dtype=np.uint8)
    out[(up == 1) & fat] = 1
    out[(up == 2) & soft] = 2
    out[(up == 3) & fat] = 3
    return _Output(out, {})


def _spec(
    tool_id: str,
    task: str,
    labels: list[Label],
    method: str,
    citation: str,
    version: str = "1.0",
) -> ToolSpec:
    return ToolSpec(
        id=tool_id,
        version=version,
        task=task,
        modalities=("CT",),
        labels=LabelSet(labels),
        method=method,
        citation=citation,
    )


def builtin_tools() -> list[ClassicalTool]:
    """Fresh instances of the built-in tools."""
    return [
        ClassicalTool(
            _spec(
                "body",
                "body outline",
                [BODY],
                "Threshold -500 HU, 5 mm in-plane opening, thick components kept (table and "
                "cables removed), holes filled per slice; boundary refined at full resolution.",
                _CITATIONS["morphology"],
            ),
            _body,
        ),
        ClassicalTool(
            _spec(
                "lungs",
                "lungs, left and right",
                [LUNG_RIGHT, LUNG_LEFT],
                "Air (< -400 HU) inside the body; components with a lung-like interior density "
                "(median > -940 HU, unlike bowel gas); airways removed by region growing from the "
                "trachea; left/right by components or the sagittal plane of fewest lung voxels.",
                _CITATIONS["morphology"],
            ),
            _lungs,
        ),
        ClassicalTool(
            _spec(
                "airways",
                "trachea and bronchi",
                [AIRWAYS],
                "Trachea found as a round air region near the midline in the top slices; "
                "connected-threshold region growing with the threshold raised until leakage.",
                _CITATIONS["airways"],
            ),
            _airways,
        ),
        ClassicalTool(
            _spec(
                "bones",
                "bones (and contrast-filled structures kept apart)",
                [BONE, CONTRAST],
                "Hysteresis threshold (a low threshold set from the soft-tissue HU "
                "distribution, so contrast scans get a higher one; seeds 100 HU above it; "
                "growth <= 6 mm), 2 mm closing, holes filled in axial, coronal and sagittal "
                "slices except the spinal canal (enclosed only axially, on the midline, CSF "
                "density); thick parts denser inside than on their surface (enhanced blood, "
                "unlike marrow in cortex) and thick components without cortical density are "
                "labelled contrast_vessel, thin ones (ribs) stay bone; what a 6 mm closing of "
                "the bone bridges or encloses is added where above 100 HU (marrow).",
                _CITATIONS["morphology"],
                version="1.1",
            ),
            _bones,
        ),
        ClassicalTool(
            _spec(
                "lung-vessels",
                "pulmonary vessels",
                [LUNG_VESSEL],
                "Multiscale Frangi vesselness (1-3 mm) of bright tubes inside the lungs, "
                "thresholded, denser than -600 HU.",
                _CITATIONS["frangi"],
            ),
            _vessels,
        ),
        ClassicalTool(
            _spec(
                "nodule-candidates",
                "lung nodule candidates (detection, not diagnosis)",
                [NODULE],
                "Multiscale scale-normalised Laplacian of Gaussian (radii 3-18 mm) inside the "
                "closed lung region; local maxima above a score, non-maximum suppression; "
                "spheres of the detected radius plus scored points.",
                _CITATIONS["log"],
            ),
            _nodules,
        ),
        ClassicalTool(
            _spec(
                "tissue",
                "body composition",
                [SUBCUT_FAT, MUSCLE, VISCERAL_FAT],
                "Fat -190..-30 HU, muscle -29..150 HU inside the body; the muscle wall is the "
                "closed, hole-filled non-fat tissue under the skin; subcutaneous fat lies outside "
                "it, visceral fat inside, muscle is soft tissue in a 20 mm shell inside it.",
                _CITATIONS["tissue"],
            ),
            _tissue,
        ),
    ]
