"""`carina info` and `carina convert` on the TotalSegmentator CT series and its reference seg."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from carina import __version__
from carina.cli.main import app
from carina.core import LabelSet
from carina.imaging import read_image, read_labelmap, resample_to_geometry

runner = CliRunner()


@pytest.fixture(scope="module")
def ref(shared_data: Path) -> Path:
    return shared_data / "totalsegmentator_ref"


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_info_reports_shape_spacing_orientation(ref: Path) -> None:
    result = runner.invoke(app, ["info", str(ref / "ct_dicom")])
    assert result.exit_code == 0, result.output
    assert "512x512x20" in result.output
    assert "0.9766 x 0.9766 x 2" in result.output
    assert "LPS" in result.output
    assert "CT" in result.output


def test_info_json(ref: Path) -> None:
    result = runner.invoke(app, ["info", "--json", str(ref / "ct_dicom")])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    (series,) = payload["series"]
    assert series["shape"] == [512, 512, 20]
    assert series["spacing"] == pytest.approx([0.9765625, 0.9765625, 2.0], abs=1e-4)
    assert series["orientation"] == "LPS"
    assert series["n_instances"] == 20
    lo, hi = series["value_range"]
    assert lo >= -1024
    assert hi > 1000
    assert payload["rejected"] == []


def test_convert_matches_reference_segmentation(ref: Path, tmp_path: Path) -> None:
    out = tmp_path / "ct.nii.gz"
    result = runner.invoke(app, ["convert", str(ref / "ct_dicom"), str(out)])
    assert result.exit_code == 0, result.output
    ct_nifti = nib.load(str(out))
    seg_nifti = nib.load(str(ref / "ct_dicom_seg_total.nii.gz"))
    assert ct_nifti.shape == seg_nifti.shape == (512, 512, 20)
    # Same voxel grid in world space: the seg is stored LAS, ours LPS -> compare reoriented.
    ct = read_image(out)
    labels = LabelSet.from_json(ref / "label_map_total.json")
    seg = read_labelmap(ref / "ct_dicom_seg_total.nii.gz", labels)
    seg_on_ct_axes = seg.reorient(ct.geometry.orientation)
    np.testing.assert_allclose(seg_on_ct_axes.geometry.affine, ct.geometry.affine, atol=1e-3)
    # On disk (RAS): voxel (i, j, k) of ours (LPS) is voxel (i, 511 - j, k) of the LAS seg.
    corners = np.array([[0, 0, 0, 1], [511, 511, 19, 1], [0, 511, 19, 1]], dtype=float).T
    flip_j = np.array([[1, 0, 0, 0], [0, -1, 0, 511], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    np.testing.assert_allclose(
        ct_nifti.affine @ corners, seg_nifti.affine @ flip_j @ corners, atol=1e-3
    )
    # The segmentation overlays the CT: organ HU in the expected ranges.
    on_ct = resample_to_geometry(seg, ct.geometry)
    np.testing.assert_array_equal(on_ct.array, seg_on_ct_axes.array)
    liver = ct.array[on_ct.mask("liver")]
    assert liver.size > 10_000
    assert 0 < float(liver.mean()) < 200
    lungs = [lab.value for lab in labels if lab.name.startswith("lung_")]
    lung_mask = np.isin(on_ct.array, lungs)
    if lung_mask.any():
        assert float(ct.array[lung_mask].mean()) < -500
    spleen = ct.array[on_ct.mask("spleen")]
    assert 0 < float(spleen.mean()) < 250


def test_convert_zip_equals_folder_and_other_formats(ref: Path, tmp_path: Path) -> None:
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted((ref / "ct_dicom").iterdir()):
            zf.write(f, arcname=f"study/{f.name}")
    for src, name in [(archive, "from_zip.nrrd"), (ref / "ct_dicom", "from_dir.mha")]:
        result = runner.invoke(app, ["convert", str(src), str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    a, b = read_image(tmp_path / "from_zip.nrrd"), read_image(tmp_path / "from_dir.mha")
    np.testing.assert_array_equal(a.array, b.array)
    assert a.geometry.same_grid(b.geometry)


def test_convert_folder_output_one_file_per_series(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "dicom_variants" / "dcmqi" / "segmentations"
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "out").glob("*.nii.gz"))
    assert len(written) == result.output.count("wrote ")
    assert written
    for path in written:
        assert read_image(path).shape[0] > 0
    # the SEG objects in that folder are not image volumes: skipped with the reason
    assert "skipped" in result.output
    assert "DICOM SEG" in result.output


def test_errors_are_clear(tmp_path: Path) -> None:
    result = runner.invoke(app, ["info", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "no such file or folder" in result.output
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image")
    result = runner.invoke(app, ["convert", str(junk), str(tmp_path / "x.nii.gz")])
    assert result.exit_code == 2
    assert "no image series found" in result.output
    result = runner.invoke(app, ["convert", str(junk), str(tmp_path / "ct.png")])
    assert result.exit_code == 2
    assert "unsupported output format .png" in result.output
    assert not (tmp_path / "ct.png").exists()
