"""NIfTI / NRRD / MetaImage reading and writing, with the RAS↔LPS conversion at the edge."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carina.core import Geometry, LabelMap, LabelSet, Volume
from carina.core.errors import ImageIOError, UnsupportedFormatError
from carina.imaging import read_image, read_labelmap, write_image
from carina.imaging.sitk import from_sitk

REFERENCE_FILES = [
    "totalsegmentator_ref/ct_dicom_seg_total.nii.gz",
    "totalsegmentator_ref/ct_3mm/ct.nii.gz",
    "totalsegmentator_ref/mr_3mm/mr.nii.gz",
    "totalsegmentator_ref/pulmonary_report/heart.nii.gz",
    "brats2013_deepmedic/brats_2013_pat0003_1/Flair_subtrMeanDivStd.nii.gz",
    "pyradiomics_cases/brain1_image.nrrd",
    "pyradiomics_cases/breast1_label.nrrd",
]


def _existing(shared: Path, rel: str) -> Path:
    path = shared / rel
    if not path.exists():
        pytest.fail(f"test data {rel} is missing from {shared}")
    return path


@pytest.mark.parametrize("rel", REFERENCE_FILES)
def test_reader_agrees_with_simpleitk(shared_data: Path, rel: str) -> None:
    """Carina (nibabel for NIfTI, explicit RAS→LPS) and ITK's own reader see the same grid."""
    path = _existing(shared_data, rel)
    ours = read_image(path)
    theirs = from_sitk(sitk.ReadImage(str(path)))
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours.geometry.affine, theirs.geometry.affine, atol=1e-3)
    np.testing.assert_array_equal(ours.array, theirs.array)


def test_nifti_affine_is_converted_to_lps(shared_data: Path) -> None:
    path = shared_data / "totalsegmentator_ref" / "ct_dicom_seg_total.nii.gz"
    ras = nib.load(str(path)).affine
    volume = read_image(path)
    np.testing.assert_allclose(volume.geometry.affine, np.diag([-1, -1, 1, 1]) @ ras)
    assert volume.geometry.orientation == "LAS"
    assert volume.shape == (512, 512, 20)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_round_trip_real_volume(shared_data: Path, tmp_path: Path, suffix: str) -> None:
    volume = read_image(shared_data / "totalsegmentator_ref" / "mr_3mm" / "mr.nii.gz")
    out = write_image(volume, tmp_path / f"mr{suffix}")
    back = read_image(out)
    assert back.geometry.same_grid(volume.geometry, atol=1e-5)
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.array.dtype == volume.array.dtype
    assert not list(tmp_path.glob(".*partial*"))


@st.composite
def volumes(draw: st.DrawFn) -> Volume:
    shape = draw(st.tuples(*[st.integers(1, 6)] * 3))
    spacing = draw(st.tuples(*[st.floats(0.1, 5.0)] * 3))
    origin = draw(st.tuples(*[st.floats(-500, 500)] * 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    geometry = Geometry.from_components(
        shape=shape, spacing=spacing, origin=origin, direction=q * np.sign(np.diag(r))
    )
    return Volume(rng.integers(-1024, 3000, size=shape).astype(np.int16), geometry)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(volume=volumes(), suffix=st.sampled_from([".nii.gz", ".nrrd", ".mha"]))
def test_write_read_round_trips_affine(tmp_path: Path, volume: Volume, suffix: str) -> None:
    back = read_image(write_image(volume, tmp_path / f"v{suffix}"))
    np.testing.assert_allclose(back.geometry.affine, volume.geometry.affine, atol=1e-4)
    np.testing.assert_array_equal(back.array, volume.array)


def test_labelmap_read_with_label_set(shared_data: Path, tmp_path: Path) -> None:
    ref = shared_data / "totalsegmentator_ref"
    labels = LabelSet.from_json(ref / "label_map_total.json")
    lm = read_labelmap(ref / "ct_dicom_seg_total.nii.gz", labels)
    assert isinstance(lm, LabelMap)
    assert 5 in lm.present_values()
    assert lm.labels[5].name == "liver"
    back = read_labelmap(write_image(lm, tmp_path / "seg.nrrd"), labels)
    np.testing.assert_array_equal(back.array, lm.array)


def test_rgb_nifti(shared_data: Path, tmp_path: Path) -> None:
    volume = read_image(
        shared_data / "totalsegmentator_ref" / "spine_report" / "spine_report_rgb.nii.gz"
    )
    assert volume.channels == 3
    assert volume.array.dtype == np.uint8
    back = read_image(write_image(volume, tmp_path / "rgb.nii.gz"))
    np.testing.assert_array_equal(back.array, volume.array)


def test_errors_name_the_cause(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError, match=r"unsupported image format \.png"):
        read_image(tmp_path / "x.png")
    with pytest.raises(ImageIOError, match="no such file"):
        read_image(tmp_path / "missing.nii.gz")
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ImageIOError, match="cannot read NIfTI"):
        read_image(broken)
    bad_nrrd = tmp_path / "bad.nrrd"
    bad_nrrd.write_text("NRRD0004\ntype: float\n")
    with pytest.raises(ImageIOError, match=r"bad\.nrrd: cannot read"):
        read_image(bad_nrrd)
    four_d = tmp_path / "4d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 3), np.float32), np.eye(4)), str(four_d))
    with pytest.raises(UnsupportedFormatError, match="4-D NIfTI"):
        read_image(four_d)
