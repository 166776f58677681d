"""`carina export seg|mesh` and `carina quant` from files on disk, read back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import trimesh
from typer.testing import CliRunner

from carina.cli.main import app
from carina.core import LabelSet
from carina.dicom import read_volume
from carina.dicom.seg import read_segmentation
from carina.imaging import read_image, read_labelmap, resample_to_geometry, write_image

runner = CliRunner()


def test_quant_cli_csv_json(shared_data: Path, tmp_path: Path) -> None:
    ref = shared_data / "totalsegmentator_ref"
    result = runner.invoke(
        app,
        [
            "quant",
            str(ref / "ct_dicom"),
            str(ref / "ct_dicom_seg_total.nii.gz"),
            "--names",
            str(ref / "label_map_total.json"),
            "--csv",
            str(tmp_path / "q.csv"),
            "--json",
            str(tmp_path / "q.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "q.csv").read_text().splitlines()))
    liver = next(r for r in rows if r["name"] == "liver")
    # independent computation: CT from DICOM, seg resampled by affine onto it
    ct = read_volume(ref / "ct_dicom")
    seg = read_labelmap(
        ref / "ct_dicom_seg_total.nii.gz", LabelSet.from_json(ref / "label_map_total.json")
    )
    on_ct = resample_to_geometry(seg, ct.geometry)
    values = np.asarray(ct.array)[np.asarray(on_ct.array) == 5]
    assert int(liver["voxel_count"]) == values.size
    assert float(liver["mean"]) == pytest.approx(values.mean(), rel=1e-9)
    assert liver["units"] == "HU"
    payload = json.loads((tmp_path / "q.json").read_text())
    assert len(payload["regions"]) == len(rows)


def test_export_seg_from_nifti_on_another_axis_order(shared_data: Path, tmp_path: Path) -> None:
    """A label map in LAS order (as TotalSegmentator writes it) lands on the LPS series grid."""
    folder = shared_data / "lung_ct_tumor_boxes" / "ct_dicom"
    ct = read_volume(folder)
    arr = (np.asarray(ct.array) > 300).astype(np.uint8)  # dense bone-like voxels
    from carina.core import LabelMap  # local: only this test builds a label map by hand

    bone = LabelMap(arr, ct.geometry).reorient("RAS")
    write_image(bone, tmp_path / "bone.nii.gz")
    out = tmp_path / "bone_seg.dcm"
    result = runner.invoke(
        app,
        [
            "export",
            "seg",
            str(tmp_path / "bone.nii.gz"),
            str(folder),
            str(out),
            "--type",
            "binary",
            "--algorithm",
            "threshold-300HU",
        ],
    )
    assert result.exit_code == 0, result.output
    ds = pydicom.dcmread(out)
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    back = read_segmentation(out).reorient("LPS")
    assert back.geometry.same_grid(ct.geometry, atol=1e-3)
    np.testing.assert_array_equal(back.array, arr)


def test_export_mesh(shared_data: Path, tmp_path: Path) -> None:
    ref = shared_data / "totalsegmentator_ref" / "ct_3mm"
    out = tmp_path / "organs.glb"
    result = runner.invoke(
        app,
        [
            "export",
            "mesh",
            str(ref / "seg_total_fast.nii.gz"),
            str(out),
            "--names",
            str(ref.parent / "label_map_total.json"),
            "--label",
            "liver",
            "--label",
            "spleen",
            "--smooth",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    scene = trimesh.load(str(out))
    meshes = list(scene.geometry.values()) if isinstance(scene, trimesh.Scene) else [scene]
    assert isinstance(scene, trimesh.Scene)
    assert sorted(scene.geometry) == ["liver", "spleen"]
    assert len(meshes) == 2
    ct = read_image(ref / "ct.nii.gz")
    lo, hi = np.sort(ct.geometry.corners(), axis=0)[[0, -1]]
    for mesh in meshes:
        assert np.all(mesh.bounds[0] >= lo - 3)
        assert np.all(mesh.bounds[1] <= hi + 3)
    result = runner.invoke(
        app, ["export", "mesh", str(ref / "seg_total_fast.nii.gz"), str(tmp_path / "x.fbx")]
    )
    assert result.exit_code == 2
    assert "unsupported mesh format" in result.output


def test_render_cli(shared_data: Path, tmp_path: Path) -> None:
    from PIL import Image

    src = shared_data / "totalsegmentator_ref" / "ct_dicom"
    out = tmp_path / "mip.png"
    result = runner.invoke(
        app,
        [
            "render",
            str(src),
            str(out),
            "--plane",
            "axial",
            "--slab",
            "40",
            "--projection",
            "max",
            "--window",
            "-600,1500",
        ],
    )
    assert result.exit_code == 0, result.output
    img = np.asarray(Image.open(out))
    assert img.shape == (512, 512)
    ct = read_volume(src)
    from carina.render import Window, apply_window

    expected = apply_window(np.asarray(ct.array).max(axis=2).T, Window(-600, 1500))
    np.testing.assert_array_equal(img, expected)
    result = runner.invoke(app, ["render", str(src), str(out), "--window", "nope"])
    assert result.exit_code == 2
    assert "unknown window preset" in result.output


def test_export_slicer_names_the_segments(shared_data: Path, tmp_path: Path) -> None:
    ref = shared_data / "totalsegmentator_ref"
    seg = ref / "ct_dicom_seg_total.nii.gz"
    names = ref / "label_map_total.json"
    out = tmp_path / "total.seg.nrrd"
    result = runner.invoke(app, ["export", "slicer", str(seg), str(out), "--names", str(names)])
    assert result.exit_code == 0, result.output
    expected = read_labelmap(seg, LabelSet.from_json(names))
    back = read_labelmap(out)
    np.testing.assert_array_equal(back.array, expected.array)
    assert back.geometry.same_grid(expected.geometry, atol=1e-6)
    assert back.labels == expected.labels
    assert back.labels[5].name == "liver"
    result = runner.invoke(app, ["export", "slicer", str(seg), str(tmp_path / "total.nrrd")])
    assert result.exit_code == 2
    assert ".seg.nrrd" in result.output
    assert not (tmp_path / "total.nrrd").exists()
