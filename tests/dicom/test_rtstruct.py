"""RTSTRUCT export of a label map on a real chest CT, read back by rasterizing the contours."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from carina.cli.main import app
from carina.core import Geometry, LabelMap
from carina.core.errors import GeometryError
from carina.dicom import read_volume
from carina.dicom.rtstruct import build_rtstruct, read_rtstruct
from carina.imaging import write_image
from carina.models.run import run_tool

runner = CliRunner()


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_lung_mask_round_trip_through_rtstruct(shared_data: Path, tmp_path: Path) -> None:
    series = shared_data / "lung_ct_tumor_boxes" / "ct_dicom"
    ct = read_volume(series)
    lungs = run_tool("lungs", ct).labels
    assert lungs.present_values() == [1, 2]
    write_image(lungs, tmp_path / "lungs.nii.gz")
    (tmp_path / "names.json").write_text('{"1": "lung_right", "2": "lung_left"}')
    out = tmp_path / "lungs.rtstruct.dcm"
    result = runner.invoke(
        app,
        [
            "export",
            "rtstruct",
            str(tmp_path / "lungs.nii.gz"),
            str(series),
            str(out),
            "--names",
            str(tmp_path / "names.json"),
            "--algorithm",
            "lungs",
        ],
    )
    assert result.exit_code == 0, result.output

    ds = pydicom.dcmread(out)
    assert ds.Modality == "RTSTRUCT"
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["lung_right", "lung_left"]
    assert {r.ROIGenerationAlgorithm for r in ds.StructureSetROISequence} == {"AUTOMATIC"}
    # the references point at the CT's own instances, in its frame of reference
    ct_files = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(series.iterdir())]
    ct_files = [f for f in ct_files if "SOPInstanceUID" in f]
    frame_uid = ct_files[0].FrameOfReferenceUID
    assert ds.FrameOfReferenceUID == frame_uid
    frame_ref = ds.ReferencedFrameOfReferenceSequence[0]
    assert frame_ref.FrameOfReferenceUID == frame_uid
    study_ref = frame_ref.RTReferencedStudySequence[0]
    assert study_ref.ReferencedSOPInstanceUID == ct_files[0].StudyInstanceUID
    series_ref = study_ref.RTReferencedSeriesSequence[0]
    assert series_ref.SeriesInstanceUID == ct_files[0].SeriesInstanceUID
    ct_uids = {f.SOPInstanceUID for f in ct_files}
    assert {i.ReferencedSOPInstanceUID for i in series_ref.ContourImageSequence} == ct_uids
    by_uid = {f.SOPInstanceUID: f for f in ct_files}
    for roi in ds.ROIContourSequence:
        for contour in roi.ContourSequence:
            image = by_uid[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
            z = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)[:, 2]
            # each contour lies in the plane of the slice it references (axial CT)
            assert np.allclose(z, float(image.ImagePositionPatient[2]), atol=1e-3)
            assert contour.NumberOfContourPoints * 3 == len(contour.ContourData)

    back = read_rtstruct(out, ct.geometry)
    assert [lab.name for lab in back.labels] == ["lung_right", "lung_left"]
    for value in (1, 2):
        dice = _dice(back.array == value, np.asarray(lungs.array) == value)
        assert dice >= 0.98, (value, dice)

    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy:
        report = subprocess.run([dciodvfy, str(out)], capture_output=True, text=True, check=False)
        errors = [line for line in report.stderr.splitlines() if line.startswith("Error")]
        assert errors == [], report.stderr


def test_holes_and_exact_small_shapes_survive() -> None:
    g = Geometry.from_components(shape=(20, 18, 3), spacing=(0.8, 0.7, 2.5), origin=(5, -7, 30))
    arr = np.zeros((20, 18, 3), np.uint8)
    arr[3:15, 2:16, 1] = 1
    arr[6:10, 6:11, 1] = 0  # a hole
    arr[7:9, 8:10, 1] = 1  # an island inside the hole
    arr[0, 0, 2] = 2  # a single voxel at the edge
    sources = []
    for k in range(3):
        ds = pydicom.Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = f"1.2.3.{k + 1}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "1.2", "1.3", "1.4"
        ds.ImagePositionPatient = [5, -7, 30 + 2.5 * k]
        sources.append(ds)
    rt = build_rtstruct(LabelMap(arr, g), sources)
    back = read_rtstruct(rt, g)
    assert np.array_equal(back.array, arr)
    with pytest.raises(GeometryError, match="not a slice"):
        build_rtstruct(LabelMap(arr, g), [*sources[:2], _moved(sources[2])])


def _moved(ds: pydicom.Dataset) -> pydicom.Dataset:
    out = pydicom.Dataset(ds)
    out.ImagePositionPatient = [5, -7, 31.0]
    return out


def test_segment_writes_rtstruct(shared_data: Path, tmp_path: Path) -> None:
    series = shared_data / "lung_ct_tumor_boxes" / "ct_dicom"
    out = tmp_path / "body.rtstruct.dcm"
    result = runner.invoke(app, ["segment", str(series), "--tool", "body", "-o", str(out)])
    assert result.exit_code == 0, result.output
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == pydicom.uid.RTStructureSetStorage
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["body"]
    assert ds.StructureSetROISequence[0].ROIGenerationDescription == "body"
    ct = read_volume(series)
    body = run_tool("body", ct).labels
    back = read_rtstruct(out, ct.geometry)
    assert _dice(back.array == 1, np.asarray(body.array) == 1) >= 0.99
