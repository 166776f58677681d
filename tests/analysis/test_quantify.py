"""Quantification checked against pyradiomics' own baselines and independent numpy sums."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from carina.analysis import quantify, shape_stats
from carina.core import Geometry, LabelMap, LabelSet, Volume
from carina.imaging import read_image, read_labelmap

CASES = ["brain1", "brain2", "breast1"]


def _baseline(shared: Path, name: str) -> dict[str, dict[str, str]]:
    rows = list(
        csv.reader((shared / "pyradiomics_cases" / "baseline" / name).read_text().splitlines())
    )
    header = rows[0]
    return {case: {r[0]: r[header.index(case)] for r in rows[1:]} for case in CASES}


@pytest.mark.parametrize("case", CASES)
def test_first_order_equals_pyradiomics(shared_data: Path, case: str) -> None:
    base = _baseline(shared_data, "baseline_firstorder.csv")[case]
    d = shared_data / "pyradiomics_cases"
    q = quantify(read_image(d / f"{case}_image.nrrd"), read_labelmap(d / f"{case}_label.nrrd"))
    row = q.for_label(1)
    assert row.voxel_count == int(base["diagnostics_Mask-original_VoxelNum"])
    expected = {
        "mean": "Mean",
        "median": "Median",
        "minimum": "Minimum",
        "maximum": "Maximum",
        "p10": "10Percentile",
        "p90": "90Percentile",
        "interquartile_range": "InterquartileRange",
    }
    for ours, theirs in expected.items():
        assert getattr(row, ours) == pytest.approx(float(base[f"original_firstorder_{theirs}"]))
    assert row.std**2 == pytest.approx(float(base["original_firstorder_Variance"]))


@pytest.mark.parametrize("case", CASES)
def test_shape_equals_pyradiomics(shared_data: Path, case: str) -> None:
    base = _baseline(shared_data, "baseline_shape.csv")[case]
    d = shared_data / "pyradiomics_cases"
    s = shape_stats(read_labelmap(d / f"{case}_label.nrrd"), 1)
    exact = {
        "voxel_volume_mm3": "VoxelVolume",
        "major_axis_length": "MajorAxisLength",
        "minor_axis_length": "MinorAxisLength",
        "least_axis_length": "LeastAxisLength",
        "elongation": "Elongation",
        "flatness": "Flatness",
        "maximum_3d_diameter": "Maximum3DDiameter",
    }
    for ours, theirs in exact.items():
        assert getattr(s, ours) == pytest.approx(float(base[f"original_shape_{theirs}"]), rel=1e-6)
    # Marching cubes resolves ambiguous cells differently from pyradiomics' own: within 1 %.
    mesh = {"mesh_volume_mm3": "MeshVolume", "surface_area_mm2": "SurfaceArea"}
    for ours, theirs in mesh.items():
        assert getattr(s, ours) == pytest.approx(float(base[f"original_shape_{theirs}"]), rel=0.01)


def test_per_label_and_components_against_numpy(shared_data: Path, tmp_path: Path) -> None:
    ref = shared_data / "totalsegmentator_ref" / "ct_3mm"
    ct = read_image(ref / "ct.nii.gz")
    labels = LabelSet.from_json(shared_data / "totalsegmentator_ref" / "label_map_total.json")
    seg = read_labelmap(ref / "seg_total_fast.nii.gz", labels)
    q = quantify(ct, seg, components=True, min_component_voxels=5)
    present = seg.present_values()
    assert sorted({r.label for r in q.rows if r.component == 0}) == present
    for name in ("liver", "spleen", "kidney_left", "vertebrae_L1"):
        row = q.for_label(name)
        values = ct.array[seg.mask(name)].astype(np.float64)
        assert row.voxel_count == values.size
        assert row.volume_ml == pytest.approx(values.size * 27 / 1000)
        assert row.mean == pytest.approx(values.mean())
        assert row.std == pytest.approx(values.std())
        assert row.p95 == pytest.approx(np.percentile(values, 95))
        comps = [r for r in q.rows if r.name == name and r.component > 0]
        assert comps
        assert comps[0].voxel_count <= row.voxel_count
        assert [c.voxel_count for c in comps] == sorted(
            (c.voxel_count for c in comps), reverse=True
        )
    liver = q.for_label("liver")
    assert 40 < liver.mean < 200  # HU of (contrast) liver parenchyma
    assert liver.units == "" or liver.units == "HU"
    # CSV written and read back
    q.to_csv(tmp_path / "q.csv")
    rows = list(csv.DictReader((tmp_path / "q.csv").read_text().splitlines()))
    assert len(rows) == len(q.rows)
    back = next(r for r in rows if r["name"] == "liver" and r["component"] == "0")
    assert float(back["mean"]) == pytest.approx(liver.mean)


def test_label_map_on_other_grid_is_resampled_in_patient_space() -> None:
    g = Geometry.from_components(shape=(10, 10, 10), spacing=(1, 1, 1))
    img = Volume(np.arange(1000, dtype=np.float32).reshape(10, 10, 10), g, modality="CT")
    arr = np.zeros((5, 5, 5), np.uint8)
    arr[1, 1, 1] = 1  # the voxel at world (2, 2, 2) on a 2 mm grid
    coarse = LabelMap(arr, Geometry.from_components(shape=(5, 5, 5), spacing=(2, 2, 2)))
    row = quantify(img, coarse).for_label(1)
    assert row.voxel_count == 8  # one 2 mm voxel covers 2x2x2 1 mm voxels
    assert row.units == "HU"
    assert row.centroid_lps == pytest.approx((2.0, 2.0, 2.0), abs=0.51)
