"""Real CT series: TotalSegmentator reference CT (JPEG 2000) and a TCIA chest CT."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from carina.core import Geometry, LabelMap
from carina.dicom import LoadedSeries, load_series, read_pixels, read_volume, scan


@pytest.fixture(scope="module")
def ts_dir(shared_data: Path) -> Path:
    return shared_data / "totalsegmentator_ref" / "ct_dicom"


@pytest.fixture(scope="module")
def ts_loaded(ts_dir: Path) -> LoadedSeries:
    result = scan(ts_dir)
    assert len(result.series) == 1
    return load_series(result.series[0])


def test_ts_scan_finds_one_series(ts_dir: Path) -> None:
    calls: list[tuple[int, int]] = []
    result = scan(ts_dir, progress=lambda done, total: calls.append((done, total)))
    assert result.rejected == []
    (info,) = result.series
    assert info.modality == "CT"
    assert info.n_instances == 20
    assert info.has_pixels
    assert info.series_description == "CT Body 3.0"
    assert calls[-1] == (20, 20)
    assert len(calls) == 20


def test_ts_shape_spacing_orientation(ts_loaded: LoadedSeries) -> None:
    vol = ts_loaded.volume
    assert vol.shape == (512, 512, 20)
    assert vol.geometry.orientation == "LPS"
    np.testing.assert_allclose(vol.geometry.spacing, (0.9765625, 0.9765625, 2.0), atol=1e-6)
    # Ascending along the normal (+z): the first slice is the most inferior one.
    assert vol.geometry.origin[2] == pytest.approx(-804.5)
    assert vol.geometry.index_to_world([0, 0, 19])[2] == pytest.approx(-766.5)
    assert vol.modality == "CT"
    assert vol.metadata["units"] == "HU"
    assert vol.geometry.frame_of_reference_uid
    assert np.issubdtype(vol.array.dtype, np.signedinteger)


def test_ts_hu_matches_pydicom(ts_loaded: LoadedSeries, ts_dir: Path) -> None:
    vol = ts_loaded.volume
    for path in sorted(ts_dir.iterdir())[::7]:
        ds = pydicom.dcmread(path)
        z = float(ds.ImagePositionPatient[2])
        k = int(np.rint(vol.geometry.world_to_index([0.0, 0.0, z])[2]))
        expected = ds.pixel_array.astype(np.int32) - 1024
        assert float(ds.RescaleIntercept) == -1024
        # array[i, j, k] = pixel (row j, column i)
        np.testing.assert_array_equal(vol.array[:, :, k], expected.T)
        np.testing.assert_array_equal(read_pixels(path)[0], ds.pixel_array)
        # voxel (i=100, j=200) is pixel row 200, column 100
        assert vol.array[100, 200, k] == int(ds.pixel_array[200, 100]) - 1024


def test_ts_geometry_matches_reference_segmentation(
    ts_loaded: LoadedSeries, shared_data: Path
) -> None:
    ref = shared_data / "totalsegmentator_ref"
    img = nib.load(ref / "ct_dicom_seg_total.nii.gz")
    seg = LabelMap(
        np.asarray(img.dataobj).astype(np.uint8),
        Geometry.from_ras_affine(img.affine, img.shape),
    )
    assert seg.geometry.orientation == "LAS"
    seg_lps = seg.reorient("LPS")
    vol = ts_loaded.volume
    assert seg_lps.geometry.same_grid(vol.geometry, atol=1e-3)
    # World positions of the centre of the same voxel agree.
    corners = vol.geometry.corners()
    np.testing.assert_allclose(seg_lps.geometry.corners(), corners, atol=1e-3)

    names = {int(k): v for k, v in json.loads((ref / "label_map_total.json").read_text()).items()}
    assert names[5] == "liver"
    present = set(seg_lps.present_values())
    liver = vol.array[seg_lps.array == 5]
    assert liver.size > 1000
    assert 0 < float(liver.mean()) < 200
    lung_labels = {v for v, n in names.items() if n.startswith("lung_")}
    lungs = [v for v in present if v in lung_labels]
    if lungs:
        assert float(vol.array[np.isin(seg_lps.array, lungs)].mean()) < -500
    bone = [v for v in present if names[v].startswith("vertebrae_")]
    assert bone, "the reference segmentation holds vertebrae in these slices"
    assert float(vol.array[np.isin(seg_lps.array, bone)].mean()) > 150
    # Air outside the body in a corner voxel.
    assert vol.array[0, 0, 0] < -900


def test_read_volume_ts(ts_dir: Path) -> None:
    vol = read_volume(ts_dir)
    assert vol.shape == (512, 512, 20)


def test_lung_ct_series_loads(shared_data: Path) -> None:
    root = shared_data / "lung_ct_tumor_boxes"
    result = scan(root)
    (info,) = result.series
    assert info.n_instances == 30
    # The annotations, CSVs and licence text are rejected as not DICOM.
    assert all(r.reason == "not a DICOM file" for r in result.rejected)
    assert any(r.source.endswith("PROVENANCE.md") for r in result.rejected)
    loaded = load_series(info)
    vol = loaded.volume
    assert vol.shape == (512, 512, 30)
    assert vol.geometry.orientation == "LPS"
    assert vol.geometry.spacing[2] == pytest.approx(8.0)
    assert loaded.problems == ()
    # slice_index.csv lists z per file: the volume covers 80..312 mm.
    zs = [vol.geometry.index_to_world([0, 0, k])[2] for k in (0, 29)]
    assert zs == pytest.approx([80.0, 312.0])
    lines = (root / "slice_index.csv").read_text().splitlines()
    header = lines[0].split(",")
    first = dict(zip(header, lines[1].split(","), strict=True))
    assert float(first["z_mm"]) == pytest.approx(80.0)
    ds = pydicom.dcmread(root / first["file"])
    k = int(np.rint(vol.geometry.world_to_index(np.array(ds.ImagePositionPatient, float))[2]))
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(vol.array[:, :, k], expected.T)


def test_projection_image_uses_its_pixel_spacing(shared_data: Path) -> None:
    path = shared_data / "dicom_variants" / "highdicom" / "dx_image.dcm"
    loaded = load_series(scan(path).series[0])
    vol = loaded.volume
    assert vol.shape == (211, 169, 1)
    # PixelSpacing is (between rows, between columns) = (j, i).
    np.testing.assert_allclose(vol.geometry.spacing[:2], (1.201199999999, 1.2))
    np.testing.assert_allclose(vol.geometry.direction, np.eye(3))
    assert "no patient geometry; pixel grid only" in loaded.problems
    assert any("MONOCHROME1" in p for p in loaded.problems)


def test_colour_cine_frames_along_k(shared_data: Path) -> None:
    path = shared_data / "dicom_variants" / "pydicom" / "examples_ybr_color.dcm"
    ds = pydicom.dcmread(path)
    loaded = load_series(scan(path).series[0])
    vol = loaded.volume
    assert vol.shape == (320, 240, 30)
    assert vol.channels == 3
    assert vol.metadata["PhotometricInterpretation"] == "RGB"
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    assert "no patient geometry; pixel grid only" in loaded.problems
    np.testing.assert_array_equal(vol.array[:, :, 12, :], np.swapaxes(ds.pixel_array[12], 0, 1))
