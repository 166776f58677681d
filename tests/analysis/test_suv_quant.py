"""`carina quant` on a PET DICOM series: SUVbw with decay correction, SUVpeak, MTV and TLG."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PositronEmissionTomographyImageStorage, generate_uid
from typer.testing import CliRunner

from carina.cli.main import app
from carina.core import Geometry, LabelMap
from carina.imaging import write_image

runner = CliRunner()

SHAPE = (32, 32, 24)  # columns (x), rows (y), slices (z)
PIXEL_MM = 4.0
SLICE_MM = 4.0
ORIGIN = (-60.0, -50.0, -40.0)
WEIGHT_KG = 68.0
DOSE_BQ = 370e6
HALF_LIFE_S = 6586.2  # F-18
ELAPSED_S = 62 * 60  # injection 09:03:00, series start 10:05:00
CENTRE = (16, 15, 12)  # index of the sphere centre


def _activity() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Bq/mL on the (x, y, z) grid: background 2 kBq/mL, a 14 mm-radius sphere of 24 kBq/mL
    with a hotter 36 kBq/mL core voxel; and the distance (mm) from the sphere centre."""
    i, j, k = np.indices(SHAPE)
    r = np.sqrt(
        ((i - CENTRE[0]) * PIXEL_MM) ** 2
        + ((j - CENTRE[1]) * PIXEL_MM) ** 2
        + ((k - CENTRE[2]) * SLICE_MM) ** 2
    )
    act = np.full(SHAPE, 2000.0)
    act[r <= 14.0] = 24000.0
    act[CENTRE] = 36000.0
    return act, r


def _write_series(folder: Path, act: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """One PET instance per slice, stored as uint16 with a per-slice rescale slope (as scanners
    do); returns the activity the stored values represent."""
    folder.mkdir()
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    stored = np.zeros(SHAPE)
    for k in range(SHAPE[2]):
        plane = act[:, :, k]
        slope = float(plane.max()) / 30000.0
        pixels = np.round(plane / slope).astype(np.uint16)
        stored[:, :, k] = pixels * slope
        ds = Dataset()
        ds.SOPClassUID = PositronEmissionTomographyImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID, ds.PatientName = "PET1", "Pet^One"
        ds.PatientWeight = WEIGHT_KG
        ds.Modality = "PT"
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20240611"
        ds.StudyTime = "090000"
        ds.SeriesTime = "100500"
        ds.AcquisitionTime = f"1005{k:02d}"  # per-slice times after the series start
        ds.Units = "BQML"
        ds.CorrectedImage = ["DECY", "ATTN", "SCAT"]
        ds.DecayCorrection = "START"
        info = Dataset()
        info.Radiopharmaceutical = "Fluorodeoxyglucose"
        info.RadionuclideTotalDose = DOSE_BQ
        info.RadionuclideHalfLife = HALF_LIFE_S
        info.RadiopharmaceuticalStartDateTime = "20240611090300"
        ds.RadiopharmaceuticalInformationSequence = [info]
        ds.SeriesNumber = 2
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], ORIGIN[2] + SLICE_MM * k]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [PIXEL_MM, PIXEL_MM]
        ds.SliceThickness = SLICE_MM
        ds.Rows, ds.Columns = SHAPE[1], SHAPE[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.RescaleSlope = f"{slope:.10g}"
        ds.RescaleIntercept = 0
        stored[:, :, k] = pixels * float(ds.RescaleSlope)
        ds.PixelData = np.ascontiguousarray(pixels.T).astype("<u2").tobytes()  # rows = y
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    return stored


def _peak_by_hand(suv: npt.NDArray[np.float64], region: npt.NDArray[np.bool_]) -> float:
    """Highest mean of the 1 mL sphere (radius 6.20 mm) centred on a region voxel, by shifts."""
    radius = (3 * 1000 / (4 * math.pi)) ** (1 / 3)
    offsets = [
        (a, b, c)
        for a in range(-2, 3)
        for b in range(-2, 3)
        for c in range(-2, 3)
        if (a * PIXEL_MM) ** 2 + (b * PIXEL_MM) ** 2 + (c * SLICE_MM) ** 2 <= radius**2
    ]
    assert len(offsets) == 19  # the centre, 6 faces at 4 mm and 12 edges at 5.7 mm
    padded = np.pad(suv, 2)
    total = np.zeros_like(suv)
    for a, b, c in offsets:
        total += padded[
            2 + a : 2 + a + SHAPE[0], 2 + b : 2 + b + SHAPE[1], 2 + c : 2 + c + SHAPE[2]
        ]
    return float((total / len(offsets))[region].max())


def test_quant_pet_series_in_suv(tmp_path: Path) -> None:
    act, r = _activity()
    stored = _write_series(tmp_path / "pet", act)
    geometry = Geometry.from_components(
        shape=SHAPE, spacing=(PIXEL_MM, PIXEL_MM, SLICE_MM), origin=ORIGIN
    )
    labels = np.zeros(SHAPE, np.uint8)
    labels[r <= 20.0] = 1  # the lesion with a margin of background
    labels[2:10, 2:10, 2:10] = 2  # background only
    write_image(LabelMap(labels, geometry), tmp_path / "labels.nii.gz")

    out = runner.invoke(
        app,
        [
            "quant",
            str(tmp_path / "pet"),
            str(tmp_path / "labels.nii.gz"),
            "--json",
            str(tmp_path / "q.json"),
            "--csv",
            str(tmp_path / "q.csv"),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "(SUVbw)" in out.output
    rows = {
        (r_["label"], r_["component"]): r_
        for r_ in json.loads((tmp_path / "q.json").read_text())["regions"]
    }

    factor = WEIGHT_KG * 1000 / (DOSE_BQ * 2 ** (-ELAPSED_S / HALF_LIFE_S))
    suv = stored * factor
    lesion = labels == 1
    row = rows[(1, 0)]
    assert row["units"] == "SUVbw"
    assert row["voxel_count"] == int(lesion.sum())
    assert row["maximum"] == pytest.approx(suv[lesion].max(), rel=1e-6)
    assert row["maximum"] == pytest.approx(36000 * factor, rel=1e-3)  # about 5.9
    assert row["mean"] == pytest.approx(suv[lesion].mean(), rel=1e-6)
    assert row["suv_peak"] == pytest.approx(_peak_by_hand(suv, lesion), rel=1e-6)
    # 41 % of SUVmax (14.8 kBq/mL) keeps the 24 kBq/mL sphere and its core, not the background
    sphere = r <= 14.0
    cut = 0.41 * suv[lesion].max()
    assert row["mtv_threshold"] == pytest.approx(cut, rel=1e-6)
    assert row["metabolic_volume_ml"] == pytest.approx(sphere.sum() * 64 / 1000)
    assert row["suv_mean"] == pytest.approx(suv[sphere].mean(), rel=1e-6)
    assert row["total_lesion_glycolysis"] == pytest.approx(
        suv[sphere].mean() * sphere.sum() * 0.064, rel=1e-6
    )
    background = rows[(2, 0)]
    assert background["mean"] == pytest.approx(2000 * factor, rel=1e-3)  # about 0.33
    assert "suv_peak" in (tmp_path / "q.csv").read_text().splitlines()[0]

    # an absolute SUV threshold of 2.5, and the raw Bq/mL without SUV
    out = runner.invoke(
        app,
        [
            "quant",
            str(tmp_path / "pet"),
            str(tmp_path / "labels.nii.gz"),
            "--mtv-threshold",
            "2.5",
            "--json",
            str(tmp_path / "t.json"),
        ],
    )
    assert out.exit_code == 0, out.output
    fixed = json.loads((tmp_path / "t.json").read_text())["regions"][0]
    assert fixed["metabolic_volume_ml"] == pytest.approx((lesion & (suv >= 2.5)).sum() * 0.064)
    out = runner.invoke(
        app,
        [
            "quant",
            str(tmp_path / "pet"),
            str(tmp_path / "labels.nii.gz"),
            "--no-suv",
            "--json",
            str(tmp_path / "b.json"),
        ],
    )
    assert out.exit_code == 0, out.output
    raw = json.loads((tmp_path / "b.json").read_text())["regions"][0]
    assert raw["units"] == "BQML"
    assert raw["suv_peak"] is None
    assert raw["maximum"] == pytest.approx(stored[lesion].max(), rel=1e-6)


def test_quant_suv_required_but_header_lacks_weight(tmp_path: Path) -> None:
    act, _r = _activity()
    _write_series(tmp_path / "pet", act)
    for f in sorted((tmp_path / "pet").iterdir()):
        ds = pydicom.dcmread(f)
        del ds.PatientWeight
        ds.save_as(f, enforce_file_format=True)
    geometry = Geometry.from_components(
        shape=SHAPE, spacing=(PIXEL_MM, PIXEL_MM, SLICE_MM), origin=ORIGIN
    )
    labels = np.zeros(SHAPE, np.uint8)
    labels[10:20, 10:20, 8:16] = 1
    write_image(LabelMap(labels, geometry), tmp_path / "labels.nii.gz")
    out = runner.invoke(
        app, ["quant", str(tmp_path / "pet"), str(tmp_path / "labels.nii.gz"), "--suv"]
    )
    assert out.exit_code == 2
    assert "PatientWeight is missing" in out.output


def test_quant_suv_refused_on_ct(shared_data: Path, tmp_path: Path) -> None:
    ref = shared_data / "totalsegmentator_ref"
    out = runner.invoke(
        app, ["quant", str(ref / "ct_dicom"), str(ref / "ct_dicom_seg_total.nii.gz"), "--suv"]
    )
    assert out.exit_code == 2
    assert "SUV needs a DICOM PET series" in out.output
