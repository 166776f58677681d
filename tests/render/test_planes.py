"""MPR planes, slabs (MIP/MinIP/average) and windowing on real CT."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from carina.core import LabelSet, Volume
from carina.core.errors import CarinaError
from carina.dicom import read_volume
from carina.imaging import read_image, read_labelmap
from carina.render import Window, apply_window, encode, reformat, window_for


@pytest.fixture(scope="module")
def ct(shared_data: Path) -> Volume:
    return read_volume(shared_data / "totalsegmentator_ref" / "ct_dicom")


def test_window_is_the_dicom_linear_function() -> None:
    w = Window(40, 400)
    x = np.array([-1000, -160.5, -160, 39.5, 239, 239.5, 3000])
    y = apply_window(x, w)
    assert y[0] == 0
    assert y[1] == 0  # x <= c - 0.5 - (w - 1) / 2
    assert y[-1] == 255
    assert y[-2] == 255  # x > c - 0.5 + (w - 1) / 2
    assert y[3] == 128  # centre maps to the middle (127.5 rounds to even: 128)
    assert np.all(np.diff(y.astype(int)) >= 0)
    assert window_for("lung") == Window(-600, 1500)
    assert window_for((10, 20)) == Window(10, 20)
    with pytest.raises(CarinaError, match="unknown window preset"):
        window_for("sparkly")


def test_axial_plane_through_a_slice_is_that_slice(ct: Volume) -> None:
    k = 7
    center = ct.geometry.index_to_world([255.5, 255.5, k])
    s = reformat(ct, "axial", center=center)
    assert s.array.shape == (512, 512)
    np.testing.assert_allclose(s.array, np.asarray(ct.array)[:, :, k].T, atol=1e-3)
    np.testing.assert_allclose(s.pixel_to_world(0, 0), ct.geometry.index_to_world([0, 0, k]))


@pytest.mark.parametrize(
    ("projection", "reduce"), [("max", np.max), ("min", np.min), ("mean", np.mean)]
)
def test_slabs_over_the_whole_volume_equal_numpy(
    ct: Volume, projection: str, reduce: object
) -> None:
    s = reformat(ct, "axial", slab_mm=40, projection=projection)
    expected = reduce(np.asarray(ct.array, dtype=np.float64), axis=2).T  # type: ignore[operator]
    np.testing.assert_allclose(s.array, expected, atol=1e-3)
    assert s.thickness_mm == pytest.approx(40.0)


def test_radiological_orientation(shared_data: Path) -> None:
    ref = shared_data / "totalsegmentator_ref" / "ct_3mm"
    ct = read_image(ref / "ct.nii.gz")  # stored RAS on disk: orientation must not matter
    labels = LabelSet.from_json(shared_data / "totalsegmentator_ref" / "label_map_total.json")
    seg = read_labelmap(ref / "seg_total_fast.nii.gz", labels)
    liver_center = ct.geometry.index_to_world(np.argwhere(seg.mask("liver")).mean(axis=0))
    body_center = ct.geometry.corners().mean(axis=0)
    at_liver = (body_center[0], body_center[1], liver_center[2])
    axial = reformat(seg, "axial", center=at_liver)
    _rows, cols = np.nonzero(axial.array == labels.by_name("liver").value)
    assert cols.mean() < axial.array.shape[1] / 2  # the patient's right on the image's left
    coronal = reformat(seg, "coronal", slab_mm=400, projection="max")
    liver_rows = np.nonzero(coronal.array == labels.by_name("liver").value)[0]
    bladder_rows = np.nonzero(coronal.array == labels.by_name("urinary_bladder").value)[0]
    assert liver_rows.mean() < bladder_rows.mean()  # head at the top
    sagittal = reformat(seg, "sagittal", slab_mm=400, projection="max")
    vertebra = np.nonzero(sagittal.array == labels.by_name("vertebrae_L3").value)[1]
    assert vertebra.mean() > sagittal.array.shape[1] / 2  # anterior on the left, spine right


def test_oblique_plane_samples_patient_space(ct: Volume) -> None:
    s = reformat(ct, ((1.0, 0.4, 0.1), (0.0, 1.0, 0.0)))
    arr = np.asarray(ct.array, dtype=np.float64)
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(200):
        r, c = rng.integers(0, s.array.shape[0]), rng.integers(0, s.array.shape[1])
        idx = ct.geometry.world_to_index(s.pixel_to_world(r, c))
        if np.all(idx >= 0) and np.all(idx <= np.array(ct.shape) - 1):
            expected = ndimage.map_coordinates(arr, idx.reshape(3, 1), order=1)[0]
            assert s.array[r, c] == pytest.approx(expected, abs=1e-2)
            checked += 1
    assert checked > 5


def test_png_and_jpeg_round_trip(ct: Volume) -> None:
    img = apply_window(reformat(ct, "coronal").array, window_for("bone"))
    back = np.asarray(Image.open(io.BytesIO(encode(img, "png"))))
    np.testing.assert_array_equal(back, img)
    jpeg = Image.open(io.BytesIO(encode(img, "jpeg")))
    assert jpeg.format == "JPEG"
    assert jpeg.size == (img.shape[1], img.shape[0])
    with pytest.raises(CarinaError, match="8-bit"):
        encode(np.zeros((2, 2), np.int16))
