"""The weight-free CT tools against TotalSegmentator references on real CT.

Thresholds are what the tools reach on these cases minus a small margin (see
bench/results/tools.md, docs/decisions/0010-weight-free-tools.md and
docs/decisions/0022-bones-and-body-methods.md for the figures and the targets they miss).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from carina.core import LabelMap, Volume
from carina.core.errors import ModelError
from carina.imaging import read_image, read_labelmap
from carina.models import SegmentationResult, get_tool
from carina.models.evaluation import TOTALSEG_GROUPS, totalseg_bone_names, union_mask
from carina.models.morphology import dice, plane_holes

from .conftest import Case, on_grid

_cache: dict[tuple[str, str], SegmentationResult] = {}


def run(tool: str, case: Case) -> SegmentationResult:
    key = (tool, case.name)
    if key not in _cache:
        _cache[key] = get_tool(tool).run(case.volume)
    return _cache[key]


def _same_grid(res: SegmentationResult, volume: Volume) -> None:
    assert res.labels.shape == volume.shape
    assert np.allclose(res.labels.geometry.affine, volume.geometry.affine)
    assert set(res.timings) == {"preprocess", "infer", "postprocess"}
    assert all(t >= 0 for t in res.timings.values())


@pytest.mark.parametrize(
    ("case_name", "minimum"),
    [("ct_3mm", (0.93, 0.93)), ("ct_3mm_30sl", (0.94, 0.93))],
)
def test_lungs_dice_against_merged_lobes(
    case_name: str, minimum: tuple[float, float], request: pytest.FixtureRequest
) -> None:
    case: Case = request.getfixturevalue(case_name.replace("ct_3mm_30sl", "ct_30sl"))
    res = run("lungs", case)
    _same_grid(res, case.volume)
    assert case.reference is not None
    for name, low in zip(("lung_right", "lung_left"), minimum, strict=True):
        ref = union_mask(case.reference, TOTALSEG_GROUPS[name])
        assert ref.sum() > 1000
        assert dice(res.labels.mask(name), ref) >= low, name


def test_lungs_sides_follow_patient_axes(lung_ct: Case) -> None:
    """Right lung on the patient's right (smaller LPS x) whatever the array order."""
    res = run("lungs", lung_ct)
    g = lung_ct.volume.geometry
    xs = {}
    for name in ("lung_right", "lung_left"):
        idx = np.argwhere(res.labels.mask(name))
        assert len(idx) > 0
        xs[name] = g.index_to_world(idx.mean(axis=0).astype(float))[0]
    assert xs["lung_right"] < xs["lung_left"]
    vols = res.labels.volumes_ml()
    assert 1500 < vols[1] + vols[2] < 6000  # both lungs of an adult chest CT, mL


def test_no_lungs_in_bowel_gas(ct_dicom: Case) -> None:
    """The upper-abdomen slab has stomach and colon gas (about 30 mL) and no lung."""
    res = run("lungs", ct_dicom)
    assert res.labels.present_values() == []


def test_body_dice_against_tissue_outline(ct_30sl: Case) -> None:
    res = run("body", ct_30sl)
    _same_grid(res, ct_30sl.volume)
    assert dice(res.labels.mask("body"), ct_30sl.extra["body"]) >= 0.95


def test_body_excludes_table(ct_dicom: Case) -> None:
    """Nothing posterior to the patient: the table lies below the lowest labelled structure."""
    res = run("body", ct_dicom)
    body = res.labels.mask("body")
    assert ct_dicom.reference is not None
    # every reference structure lies inside the body mask
    inside = body[ct_dicom.reference.array > 0].mean()
    assert inside > 0.995
    # the table (dense, below the patient) is not in it: the body's posterior extent stays
    # within 25 mm of the reference structures' posterior extent
    j_body = np.nonzero(body.any(axis=(0, 2)))[0].max()
    j_ref = np.nonzero((ct_dicom.reference.array > 0).any(axis=(0, 2)))[0].max()
    assert (j_body - j_ref) * ct_dicom.volume.geometry.spacing[1] < 25.0


@pytest.mark.parametrize(
    ("case_name", "minimum"), [("ct_3mm", 0.90), ("ct_3mm_30sl", 0.86), ("ct_dicom", 0.74)]
)
def test_bones_dice(case_name: str, minimum: float, request: pytest.FixtureRequest) -> None:
    case: Case = request.getfixturevalue(case_name.replace("ct_3mm_30sl", "ct_30sl"))
    res = run("bones", case)
    _same_grid(res, case.volume)
    assert case.reference is not None
    ref = union_mask(case.reference, totalseg_bone_names(lab.name for lab in case.reference.labels))
    assert dice(res.labels.mask("bone"), ref) >= minimum


@pytest.mark.parametrize("case_name", ["ct_3mm", "ct_3mm_30sl"])
def test_ribs_are_bone_not_contrast(case_name: str, request: pytest.FixtureRequest) -> None:
    """On a 3 mm grid the lower ribs have no voxel above the cortical level: they are still bone
    (thin), and a scan without contrast (aorta about 40 HU) has no contrast-filled structure."""
    case: Case = request.getfixturevalue(case_name.replace("ct_3mm_30sl", "ct_30sl"))
    res = run("bones", case)
    assert case.reference is not None
    ribs = union_mask(
        case.reference, [lab.name for lab in case.reference.labels if lab.name.startswith("rib_")]
    )
    assert ribs.sum() > 1000
    assert res.labels.mask("bone")[ribs].mean() >= 0.85
    assert not res.labels.mask("contrast_vessel").any()


@pytest.mark.parametrize("case_name", ["ct_3mm", "ct_3mm_30sl", "ct_dicom"])
def test_spinal_canal_is_not_marrow(case_name: str, request: pytest.FixtureRequest) -> None:
    """The vertebral arch encloses the canal in axial slices; the cord inside stays out of the
    bone, while the fatty marrow of the humeri (as light as the canal, away from the midline) is
    filled."""
    case: Case = request.getfixturevalue(case_name.replace("ct_3mm_30sl", "ct_30sl"))
    res = run("bones", case)
    assert case.reference is not None
    cord = union_mask(case.reference, ["spinal_cord"])
    assert cord.sum() > 400
    assert res.labels.mask("bone")[cord].mean() <= 0.02
    if case_name == "ct_dicom":
        humeri = union_mask(case.reference, ["humerus_left", "humerus_right"])
        fatty = humeri & (np.asarray(case.volume.array) < 0.0)
        assert fatty.sum() > 1000
        assert res.labels.mask("bone")[fatty].mean() >= 0.75


def test_arterial_lumens_touching_bone_are_contrast(ts: Path) -> None:
    """Arterial-phase chest/abdomen crop (aorta about 350 HU, as dense as bone on a 3 mm grid):
    the aorta, touching the spine, is labelled contrast-filled, T12 stays bone."""
    folder = ts / "aorta_report"
    volume = read_image(folder / "ct_cropped.nii.gz")
    res = get_tool("bones").run(volume)
    _same_grid(res, volume)

    aorta = np.asarray(on_grid(read_labelmap(folder / "aorta.nii.gz"), volume).array) > 0
    t12 = np.asarray(on_grid(read_labelmap(folder / "vertebrae_T12.nii.gz"), volume).array) > 0
    assert aorta.sum() > 50000
    assert t12.sum() > 5000
    assert res.labels.mask("bone")[aorta].mean() <= 0.2
    assert res.labels.mask("contrast_vessel")[aorta].mean() >= 0.55
    assert res.labels.mask("bone")[t12].mean() >= 0.55
    assert not res.labels.mask("contrast_vessel")[t12].any()


def test_thick_slice_bone_is_not_a_lumen(lung_ct: Case) -> None:
    """8 mm chest slices: compact bone (scapulae, vertebrae) cut by thick slices is brighter
    inside than on its surface in small cores; it stays bone, none of it inside the lungs."""
    res = run("bones", lung_ct)
    vols = res.labels.volumes_ml()
    assert 600.0 < vols.get(1, 0.0) < 1500.0
    assert vols.get(2, 0.0) < 5.0
    lungs = run("lungs", lung_ct).labels.array > 0
    assert not res.labels.mask("bone")[lungs].any()


def test_large_rings_enclose_no_marrow(ct_30sl: Case) -> None:
    """A ring around a body cavity (here the body's outer 6 mm shell) encloses holes far above
    the 30 cm² of any marrow cross-section: they are dropped; marrow holes are kept."""
    spacing = ct_30sl.volume.geometry.spacing
    body = ct_30sl.extra["body"]
    shell = body & ~ndi.binary_erosion(body, iterations=2)
    inside = plane_holes(shell, 2, spacing)
    assert inside.sum() > 0.5 * body.sum()
    assert not plane_holes(shell, 2, spacing, 3000.0).any()
    # the reference vertebrae's outer voxels enclose their marrow: small holes, all kept
    assert ct_30sl.reference is not None
    vertebrae = union_mask(
        ct_30sl.reference, [lab.name for lab in ct_30sl.reference.labels if "vertebrae" in lab.name]
    )
    cortex = vertebrae & ~ndi.binary_erosion(vertebrae)
    marrow = plane_holes(cortex, 2, spacing)
    assert marrow.sum() > 100
    assert np.array_equal(plane_holes(cortex, 2, spacing, 3000.0), marrow)


def test_bones_threshold_adapts_to_contrast(ct_3mm: Case, ct_dicom: Case) -> None:
    plain = run("bones", ct_3mm).findings["low_threshold_hu"]
    contrast = run("bones", ct_dicom).findings["low_threshold_hu"]
    assert plain < contrast


def test_airways_found_in_chest_and_not_in_abdomen(lung_ct: Case, ct_dicom: Case) -> None:
    res = run("airways", lung_ct)
    mask = res.labels.mask("airways")
    ml = res.labels.volumes_ml()[1]
    assert 5.0 < ml < 60.0
    assert mask[:, :, -1].any()  # the trachea leaves the scan at the top (LPS k = superior)
    # pure air inside: median below -850 HU
    assert np.median(np.asarray(lung_ct.volume.array)[mask]) < -850
    # one connected tree
    assert ndi.label(mask, structure=np.ones((3, 3, 3)))[1] == 1
    assert run("airways", ct_dicom).labels.present_values() == []


def test_airways_are_removed_from_lungs(lung_ct: Case) -> None:
    lungs = run("lungs", lung_ct).labels.array > 0
    airways = run("airways", lung_ct).labels.array > 0
    assert (lungs & airways).sum() < 0.05 * airways.sum()


def test_lung_vessels_inside_lungs_and_dense(lung_ct: Case) -> None:
    res = run("lung-vessels", lung_ct)
    vessels = res.labels.mask("lung_vessel")
    lungs = run("lungs", lung_ct).labels.array > 0
    hu = np.asarray(lung_ct.volume.array)
    frac = vessels.sum() / lungs.sum()
    assert 0.01 < frac < 0.15
    assert (vessels & ~ndi.binary_dilation(lungs, iterations=3)).sum() < 0.02 * vessels.sum()
    # blood, with partial volume along the walls; aerated parenchyma is about -850 HU
    assert np.median(hu[vessels]) > -550
    assert np.median(hu[lungs & ~vessels]) < -700


def _boxes(shared_data: Path, volume: Volume) -> list[tuple[int, int, int, int, int]]:
    folder = shared_data / "lung_ct_tumor_boxes"
    z = volume.geometry.index_to_world(
        np.stack(
            [np.zeros(volume.shape[2]), np.zeros(volume.shape[2]), np.arange(volume.shape[2])], 1
        )
    )[:, 2]
    out = []
    for row in (folder / "slice_index.csv").read_text().splitlines()[1:]:
        _f, _uid, zmm, xml = row.split(",")
        if xml:
            box = ET.parse(folder / "annotations_voc" / Path(xml).name).getroot().find(".//bndbox")
            assert box is not None
            v = [int(float(box.findtext(t) or 0)) for t in ("xmin", "ymin", "xmax", "ymax")]
            out.append((int(np.argmin(np.abs(z - float(zmm)))), *v))
    return out


def test_nodule_candidates_recall_on_tumour_boxes(lung_ct: Case, shared_data: Path) -> None:
    res = run("nodule-candidates", lung_ct)
    cands = res.findings["candidates"]
    assert 0 < len(cands) <= 30
    scores = [c["score"] for c in cands]
    assert scores == sorted(scores, reverse=True)
    lps = lung_ct.volume.reorient("LPS").geometry
    points = [
        np.rint(
            lung_ct.volume.geometry.world_to_index(
                lps.index_to_world(np.array(c["index_lps_grid"], float))
            )
        ).astype(int)
        for c in cands
    ]
    boxes = _boxes(shared_data, lung_ct.volume)
    assert len(boxes) == 10
    hits = sum(
        any(
            x0 - 10 <= p[0] <= x1 + 10 and y0 - 10 <= p[1] <= y1 + 10 and abs(p[2] - k) <= 1
            for p in points
        )
        for k, x0, y0, x1, y1 in boxes
    )
    assert hits >= 7
    # each candidate is drawn as a sphere in the label map
    for p in points:
        assert res.labels.array[tuple(p)] == 1


def test_tissue_against_tissue_types(ct_30sl: Case) -> None:
    res = run("tissue", ct_30sl)
    _same_grid(res, ct_30sl.volume)
    assert dice(res.labels.mask("subcutaneous_fat"), ct_30sl.extra["subcutaneous_fat"]) >= 0.78
    assert dice(res.labels.mask("visceral_fat"), ct_30sl.extra["torso_fat"]) >= 0.71
    # muscle by HU and position only: weak (organs share the HU range), kept as a floor
    assert dice(res.labels.mask("skeletal_muscle"), ct_30sl.extra["skeletal_muscle"]) >= 0.53
    hu = np.asarray(ct_30sl.volume.array)
    assert hu[res.labels.mask("subcutaneous_fat")].max() <= -30


def test_tools_refuse_other_modalities(ts: Path) -> None:
    from carina.imaging import read_image

    mr = read_image(ts / "mr_3mm/mr.nii.gz")
    mr = Volume(mr.array, mr.geometry, modality="MR")
    with pytest.raises(ModelError, match="CT"):
        get_tool("lungs").run(mr)


def test_result_is_a_labelmap_with_codes(ct_30sl: Case) -> None:
    res = run("lungs", ct_30sl)
    assert isinstance(res.labels, LabelMap)
    right = res.labels.labels.by_name("lung_right")
    assert right.code is not None
    assert right.code.value == "3341006"
