"""Series built from one real CT slice: sorting, gaps, tilt, duplicates, mixing, ZIP, truncation."""

from __future__ import annotations

import copy
import dataclasses
import io
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path
from random import Random

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.uid import generate_uid

from carina.core.errors import (
    DicomError,
    GantryTiltError,
    IrregularSpacingError,
    NotDicomError,
    SeriesError,
)
from carina.dicom import LoadedSeries, SeriesInfo, load_series, read_pixels, read_volume, scan

STEP = 2.5


@pytest.fixture(scope="module")
def base(shared_data: Path) -> pydicom.Dataset:
    return pydicom.dcmread(shared_data / "dicom_variants" / "pydicom" / "CT_small.dcm")


def _stored(base: pydicom.Dataset, k: int) -> npt.NDArray[np.int16]:
    """Stored pixels of synthetic slice k: the real slice plus 10*k."""
    return (base.pixel_array.astype(np.int32) + 10 * k).astype(np.int16)


def write_series(
    base: pydicom.Dataset,
    folder: Path,
    ks: Sequence[int],
    *,
    series_uid: str | None = None,
    z_of: dict[int, float] | None = None,
    shift_y_per_slice: float = 0.0,
    instance_numbers: Sequence[int] | None = None,
    orientation: Sequence[float] | None = None,
    pixel_k: dict[int, int] | None = None,
    intercepts: dict[int, float] | None = None,
) -> str:
    """Write slices ``ks`` (slice k at z0 + k*STEP) as separate files; return the series UID."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = series_uid or generate_uid()
    x0, y0, z0 = (float(v) for v in base.ImagePositionPatient)
    for n, k in enumerate(ks):
        ds = copy.deepcopy(base)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        z = z_of[k] if z_of and k in z_of else z0 + k * STEP
        ds.ImagePositionPatient = [x0, y0 + k * shift_y_per_slice, z]
        ds.ImageOrientationPatient = list(orientation or [1, 0, 0, 0, 1, 0])
        ds.InstanceNumber = instance_numbers[n] if instance_numbers else k + 1
        ds.PixelData = _stored(base, (pixel_k or {}).get(k, k)).tobytes()
        if intercepts and k in intercepts:
            ds.RescaleIntercept = intercepts[k]
        # File names in reverse order of position, so directory order is no help.
        ds.save_as(folder / f"im{1000 - k:04d}.dcm", enforce_file_format=True)
    return uid


def only_series(path: Path) -> SeriesInfo:
    result = scan(path)
    assert len(result.series) == 1, result
    return result.series[0]


def expected_hu(base: pydicom.Dataset, k: int) -> npt.NDArray[np.int32]:
    """HU of slice k in volume layout [i, j]."""
    return (_stored(base, k).astype(np.int32) - 1024).T


@pytest.fixture(scope="module")
def regular(base: pydicom.Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("regular")
    write_series(base, folder, range(6))
    return folder


def test_regular_series(base: pydicom.Dataset, regular: Path) -> None:
    loaded = load_series(only_series(regular))
    vol = loaded.volume
    assert vol.shape == (128, 128, 6)
    assert loaded.problems == ()
    np.testing.assert_allclose(vol.geometry.spacing, (0.661468, 0.661468, STEP), atol=1e-6)
    assert vol.geometry.orientation == "LPS"
    assert vol.array.dtype == np.int16
    for k in range(6):
        np.testing.assert_array_equal(vol.array[:, :, k], expected_hu(base, k))
    assert vol.geometry.origin == pytest.approx([float(v) for v in base.ImagePositionPatient])


def test_reversed_instance_numbers_sorted_by_position(
    base: pydicom.Dataset, regular: Path, tmp_path: Path
) -> None:
    write_series(base, tmp_path, range(6), instance_numbers=[6, 5, 4, 3, 2, 1])
    reversed_vol = load_series(only_series(tmp_path)).volume
    vol = load_series(only_series(regular)).volume
    np.testing.assert_array_equal(reversed_vol.array, vol.array)
    assert reversed_vol.geometry.same_grid(vol.geometry)


def test_missing_slices_detected_and_resampled(base: pydicom.Dataset, tmp_path: Path) -> None:
    write_series(base, tmp_path, [0, 1, 2, 5, 6, 7])
    info = only_series(tmp_path)
    z0 = float(base.ImagePositionPatient[2])
    with pytest.raises(IrregularSpacingError) as err:
        load_series(info)
    message = str(err.value)
    assert f"2 missing slice(s) between z={z0 + 2 * STEP:.2f} and z={z0 + 5 * STEP:.2f}" in message
    loaded = load_series(info, resample_irregular=True)
    vol = loaded.volume
    assert vol.shape == (128, 128, 8)
    assert vol.geometry.spacing[2] == pytest.approx(STEP)
    assert any("missing slice" in p and "interpolated" in p for p in loaded.problems)
    # Slice values are linear in k, so linear interpolation recovers the missing ones.
    for k in range(8):
        np.testing.assert_allclose(vol.array[:, :, k], expected_hu(base, k), atol=1e-3)


def test_uneven_step_named(base: pydicom.Dataset, tmp_path: Path) -> None:
    z0 = float(base.ImagePositionPatient[2])
    write_series(base, tmp_path, range(5), z_of={3: z0 + 3 * STEP + 0.8, 4: z0 + 4 * STEP + 0.8})
    with pytest.raises(IrregularSpacingError, match=r"step of 3\.300 mm between z="):
        load_series(only_series(tmp_path))


def test_gantry_tilt_detected_and_resampled(base: pydicom.Dataset, tmp_path: Path) -> None:
    spacing = float(base.PixelSpacing[0])
    # Each slice moves exactly one pixel row along +y: tilt = atan(spacing / STEP).
    write_series(base, tmp_path, range(5), shift_y_per_slice=spacing)
    info = only_series(tmp_path)
    angle = math.degrees(math.atan(spacing / STEP))
    with pytest.raises(GantryTiltError, match=f"gantry tilt of {angle:.2f} degrees"):
        load_series(info)
    loaded = load_series(info, resample_irregular=True)
    vol = loaded.volume
    assert vol.shape == (128, 128, 5)
    np.testing.assert_allclose(vol.geometry.direction, np.eye(3), atol=1e-9)
    assert vol.geometry.spacing[2] == pytest.approx(STEP)
    assert any("gantry tilt" in p for p in loaded.problems)
    # On the orthogonal grid, voxel row j of slice k is row j - k of the tilted slice k.
    for k in range(5):
        np.testing.assert_allclose(
            vol.array[:, k:, k], expected_hu(base, k)[:, : 128 - k], atol=1e-3
        )


def test_tilted_orientation_with_axial_steps(base: pydicom.Dataset, tmp_path: Path) -> None:
    # Scanner style: the image plane is tilted, the table moves along z.
    tilt = math.radians(15.0)
    orientation = [1, 0, 0, 0, math.cos(tilt), math.sin(tilt)]
    write_series(base, tmp_path, range(4), orientation=orientation)
    info = only_series(tmp_path)
    with pytest.raises(GantryTiltError, match=r"gantry tilt of 15\.00 degrees"):
        load_series(info)
    vol = load_series(info, resample_irregular=True).volume
    assert vol.shape == (128, 128, 4)
    normal = np.cross(orientation[:3], orientation[3:])
    np.testing.assert_allclose(vol.geometry.direction[:, 2], normal, atol=1e-9)
    assert vol.geometry.spacing[2] == pytest.approx(STEP * math.cos(tilt))


def test_two_series_in_one_folder_are_split(base: pydicom.Dataset, tmp_path: Path) -> None:
    uid_a = write_series(base, tmp_path / "a", range(4))
    uid_b = write_series(base, tmp_path / "b", range(3))
    # Put both series in one flat folder.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for sub in ("a", "b"):
        for f in (tmp_path / sub).iterdir():
            f.rename(mixed / f"{sub}_{f.name}")
    result = scan(mixed)
    by_uid = {s.series_instance_uid: s for s in result.series}
    assert set(by_uid) == {uid_a, uid_b}
    assert by_uid[uid_a].n_instances == 4
    assert by_uid[uid_b].n_instances == 3
    assert load_series(by_uid[uid_a]).volume.shape == (128, 128, 4)
    assert load_series(by_uid[uid_b]).volume.shape == (128, 128, 3)
    with pytest.raises(SeriesError, match="2 image series") as err:
        read_volume(mixed)
    assert uid_a in str(err.value)
    assert uid_b in str(err.value)


def test_mixed_orientations_rejected(base: pydicom.Dataset, tmp_path: Path) -> None:
    uid = write_series(base, tmp_path, range(3))
    write_series(base, tmp_path / "sag", [7], series_uid=uid, orientation=[0, 1, 0, 0, 0, -1])
    with pytest.raises(SeriesError, match="mixes 2 orientations"):
        load_series(only_series(tmp_path))


def test_duplicate_slices(base: pydicom.Dataset, tmp_path: Path) -> None:
    uid = write_series(base, tmp_path / "s", range(4))
    write_series(base, tmp_path / "s" / "copy", [2], series_uid=uid)
    loaded = load_series(only_series(tmp_path / "s"))
    assert loaded.volume.shape == (128, 128, 4)
    assert any("duplicate slice position" in p and "dropped" in p for p in loaded.problems)

    uid = write_series(base, tmp_path / "d", range(4))
    write_series(base, tmp_path / "d" / "other", [2], series_uid=uid, pixel_k={2: 9})
    with pytest.raises(SeriesError, match=r"same position z=.* different pixel data"):
        load_series(only_series(tmp_path / "d"))


def test_rescale_differs_per_slice(base: pydicom.Dataset, tmp_path: Path) -> None:
    write_series(base, tmp_path, range(3), intercepts={1: -1000.5})
    loaded = load_series(only_series(tmp_path))
    assert loaded.volume.array.dtype == np.float32
    assert any("rescale slope/intercept differ per slice" in p for p in loaded.problems)
    expected = (_stored(base, 1).astype(np.float64) - 1000.5).T
    np.testing.assert_allclose(loaded.volume.array[:, :, 1], expected)


def test_zip_gives_same_volume_as_folder(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "totalsegmentator_ref" / "ct_dicom"
    archive = tmp_path / "nested" / "ct.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"series/{f.name}")
        zf.writestr("series/notes.txt", "not DICOM")
    from_folder = read_volume(folder)
    for source in (archive, tmp_path):  # the ZIP itself, and a folder walk that meets it
        result = scan(source)
        assert len(result.series) == 1
        assert [r.source for r in result.rejected] == [f"{archive}::series/notes.txt"]
        (info,) = result.series
        assert all(ref.member is not None for ref in info.sources)
        loaded = load_series(info)
        np.testing.assert_array_equal(loaded.volume.array, from_folder.array)
        assert loaded.volume.geometry.same_grid(from_folder.geometry, atol=1e-9)
    # Nothing was extracted next to the archive.
    assert sorted(p.name for p in archive.parent.iterdir()) == ["ct.zip"]


def test_truncated_files_rejected(shared_data: Path, tmp_path: Path) -> None:
    src = sorted((shared_data / "totalsegmentator_ref" / "ct_dicom").iterdir())[0]
    data = src.read_bytes()
    (tmp_path / "half.dcm").write_bytes(data[: len(data) // 2])
    (tmp_path / "header_only.dcm").write_bytes(data[:300])
    uncompressed = pydicom.dcmread(shared_data / "dicom_variants" / "pydicom" / "CT_small.dcm")
    buf = io.BytesIO()
    uncompressed.save_as(buf, enforce_file_format=True)
    raw = buf.getvalue()
    (tmp_path / "native_cut.dcm").write_bytes(raw[:-1000])
    result = scan(tmp_path)
    reasons = {Path(r.source).name: r.reason for r in result.rejected}
    assert set(reasons) == {"half.dcm", "header_only.dcm", "native_cut.dcm"}, result
    assert result.series == []
    for name, reason in reasons.items():
        assert "truncated" in reason or "damaged" in reason, (name, reason)
    assert "truncated" in reasons["native_cut.dcm"]


def test_dicomdir_skipped_with_reason(shared_data: Path) -> None:
    root = shared_data / "dicom_variants" / "pydicom" / "dicomdirtests" / "TINY_ALPHA"
    result = scan(root)
    dicomdirs = [r for r in result.rejected if r.source.endswith("DICOMDIR")]
    assert len(dicomdirs) == 1
    assert "DICOMDIR" in dicomdirs[0].reason
    images = [p for p in root.rglob("IM*") if p.is_file()]
    assert sum(s.n_instances for s in result.series) == len(images) > 0


def test_legacy_multiframe_matches_single_frames(shared_data: Path) -> None:
    root = shared_data / "dicom_variants" / "dcmqi" / "segmentations" / "23x38x3"
    single = read_volume(root / "image")
    multi = read_volume(root / "multiframe" / "mf.dcm")
    assert multi.shape == single.shape == (23, 38, 3)
    assert multi.geometry.same_grid(single.geometry, atol=1e-4)
    np.testing.assert_array_equal(multi.array, single.array)


def test_rtdose_frames_follow_grid_frame_offsets(shared_data: Path) -> None:
    path = shared_data / "dicom_variants" / "pydicom" / "rtdose.dcm"
    ds = pydicom.dcmread(path)
    (info,) = scan(path).series
    vol = load_series(info).volume
    assert vol.shape == (10, 10, 15)
    np.testing.assert_allclose(vol.geometry.spacing, (10.0, 10.0, 5.0))
    assert vol.geometry.origin == pytest.approx([float(v) for v in ds.ImagePositionPatient])
    assert vol.array.dtype == np.float32
    # Dose in Gy: stored values times DoseGridScaling, frame f at offset f.
    expected = ds.pixel_array[7].astype(np.float64) * float(ds.DoseGridScaling)
    np.testing.assert_allclose(vol.array[:, :, 7], expected.T, rtol=1e-6)


@pytest.fixture(scope="module")
def shuffle_case(
    base: pydicom.Dataset, tmp_path_factory: pytest.TempPathFactory
) -> tuple[SeriesInfo, LoadedSeries]:
    folder = tmp_path_factory.mktemp("shuffle")
    write_series(base, folder, range(7))
    info = only_series(folder)
    return info, load_series(info)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rnd=st.randoms(use_true_random=False))
def test_slice_order_never_changes_volume(
    shuffle_case: tuple[SeriesInfo, LoadedSeries], rnd: Random
) -> None:
    info, reference = shuffle_case
    sources = list(info.sources)
    rnd.shuffle(sources)
    shuffled = load_series(dataclasses.replace(info, sources=tuple(sources)))
    np.testing.assert_array_equal(shuffled.volume.array, reference.volume.array)
    assert shuffled.volume.geometry.same_grid(reference.volume.geometry, atol=0)


def test_copies_of_an_instance_are_rejected_as_duplicates(
    base: pydicom.Dataset, tmp_path: Path
) -> None:
    write_series(base, tmp_path, range(3))
    original = sorted(tmp_path.iterdir())[0]
    (tmp_path / "copy.dcm").write_bytes(original.read_bytes())
    result = scan(tmp_path)
    assert len(result.series) == 1
    assert result.series[0].n_instances == 3
    (rejected,) = result.rejected
    assert "duplicate of SOP instance" in rejected.reason


def test_read_pixels_sources(base: pydicom.Dataset, regular: Path, tmp_path: Path) -> None:
    info = only_series(regular)
    ref = info.sources[0]
    from_ref = read_pixels(ref)
    from_path = read_pixels(ref.path)
    from_dataset = read_pixels(pydicom.dcmread(ref.path))
    assert from_ref.shape == (1, 128, 128)
    np.testing.assert_array_equal(from_ref, from_path)
    np.testing.assert_array_equal(from_ref, from_dataset)
    with pytest.raises(DicomError, match="cannot open"):
        read_pixels(tmp_path / "missing.dcm")
    with pytest.raises(NotDicomError):
        read_pixels(Path(__file__))
