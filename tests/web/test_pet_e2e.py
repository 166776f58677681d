"""PET in a real browser: colour map and SUV readout, PET/CT fusion, synchronized scrolling.

There is no real PET in the shared data: the test writes one on the frame of reference of the
real lung CT (same study, FrameOfReferenceUID), 128x128 pixels over the CT's field of view and
4 mm slices (the CT's are 8 mm), Units BQML with decay correction to the start of the scan, a
uniform background and a hot sphere of known activity in the lung. The SUVbw the browser shows
is checked against the value computed here from the DICOM values and the decay formula.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PositronEmissionTomographyImageStorage, generate_uid
from scipy import ndimage

from .conftest import PROJECT, WebServer, prepare, run_e2e, serve

MATRIX = 128
PET_SLICE_MM = 4.0
BACKGROUND_BQML = 2000.0
SPHERE_BQML = 15000.0
SPHERE_RADIUS_MM = 15.0
SLOPE = 0.5  # stored value = activity / SLOPE
DOSE_BQ = 370e6
HALF_LIFE_S = 6586.2  # F-18
WEIGHT_KG = 75.0
INJECTION = "100000"
SCAN = "110000"  # SeriesTime = AcquisitionTime: one hour after injection


def _stow(server: WebServer, parts: list[bytes]) -> dict[str, Any]:
    boundary = f"carina-{uuid.uuid4().hex}"
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
        for part in parts
    )
    body += f"--{boundary}--\r\n".encode()
    with server.client() as client:
        response = client.post(
            f"/projects/{PROJECT}/dicom-web/studies",
            content=body,
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": "application/dicom+json",
            },
        )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _seconds(hhmmss: str) -> float:
    t = dt.datetime.strptime(hhmmss, "%H%M%S")
    return t.hour * 3600.0 + t.minute * 60.0 + t.second


def expected_suv(activity_bqml: float) -> float:
    """SUVbw of a BQML value decay-corrected to the scan start: activity x weight (g) / the
    injected dose decayed from injection to the scan start."""
    elapsed = _seconds(SCAN) - _seconds(INJECTION)
    decayed = DOSE_BQ * math.exp(-math.log(2) * elapsed / HALF_LIFE_S)
    return activity_bqml * WEIGHT_KG * 1000.0 / decayed


def pet_series(ct: list[pydicom.Dataset], centre: np.ndarray) -> tuple[list[bytes], list[float]]:
    """The synthetic PET on the CT's frame of reference (``ct`` sorted by z); returns its Part 10
    instances and their slice z positions."""
    first = ct[0]
    ct_spacing = float(first.PixelSpacing[0])
    spacing = ct_spacing * first.Columns / MATRIX
    # the PET pixel (0, 0) covers the CT's first MATRIX-th of the field of view
    origin = np.asarray(first.ImagePositionPatient, float) + (spacing - ct_spacing) / 2 * np.array(
        [1.0, 1.0, 0.0]
    )
    z0 = float(first.ImagePositionPatient[2])
    z1 = float(ct[-1].ImagePositionPatient[2])
    slices = round((z1 - z0) / PET_SLICE_MM) + 1
    series_uid = generate_uid()
    grid = np.arange(MATRIX) * spacing
    yy, xx = np.meshgrid(origin[1] + grid, origin[0] + grid, indexing="ij")
    out = []
    zs = []
    for k in range(slices):
        z = z0 + k * PET_SLICE_MM
        inside = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (z - centre[2]) ** 2
        activity = np.where(inside <= SPHERE_RADIUS_MM**2, SPHERE_BQML, BACKGROUND_BQML)
        ds = Dataset()
        ds.SOPClassUID = PositronEmissionTomographyImageStorage
        ds.SOPInstanceUID = generate_uid()
        for keyword in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID", "PatientName"):
            setattr(ds, keyword, getattr(first, keyword))
        for keyword in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID"):
            setattr(ds, keyword, getattr(first, keyword, ""))
        ds.AccessionNumber = getattr(first, "AccessionNumber", "")
        ds.ReferringPhysicianName = ""
        ds.SeriesInstanceUID = series_uid
        ds.Modality = "PT"
        ds.SeriesNumber = 900
        ds.SeriesDescription = "PET AC (synthetic)"
        ds.InstanceNumber = k + 1
        ds.SeriesDate = ds.AcquisitionDate = first.StudyDate
        ds.SeriesTime = ds.AcquisitionTime = SCAN
        ds.Units = "BQML"
        ds.DecayCorrection = "START"
        ds.CorrectedImage = ["ATTN", "DECY"]
        ds.PatientWeight = WEIGHT_KG
        info = Dataset()
        info.RadiopharmaceuticalStartTime = INJECTION
        info.RadionuclideTotalDose = DOSE_BQ
        info.RadionuclideHalfLife = HALF_LIFE_S
        info.Radiopharmaceutical = "Fluorodeoxyglucose F^18^"
        ds.RadiopharmaceuticalInformationSequence = [info]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [float(origin[0]), float(origin[1]), z]
        ds.PixelSpacing = [spacing, spacing]
        ds.SliceThickness = PET_SLICE_MM
        ds.Rows = ds.Columns = MATRIX
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.RescaleIntercept = 0
        ds.RescaleSlope = SLOPE
        ds.PixelData = np.round(activity / SLOPE).astype("<u2").tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
        zs.append(z)
    return out, zs


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory, web_bundle: Path) -> Iterator[WebServer]:
    """A server of this module's own: what it stores stays out of the other browser tests."""
    data_dir = tmp_path_factory.mktemp("pet") / "data"
    prepare(data_dir, web_bundle)
    with serve(data_dir, web_bundle) as server:
        yield server


@pytest.fixture(scope="module")
def pet_ct(shared_data: Path, web_server: WebServer) -> dict[str, Any]:
    files = sorted((shared_data / "lung_ct_tumor_boxes" / "ct_dicom").glob("*.dcm"))
    assert len(files) == 30
    _stow(web_server, [path.read_bytes() for path in files])
    ct = sorted(
        (pydicom.dcmread(path) for path in files), key=lambda d: float(d.ImagePositionPatient[2])
    )
    assert [float(v) for v in ct[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    middle = ct[len(ct) // 2]  # the CT slice the side-by-side view opens on
    hu = np.asarray(middle.pixel_array, float) * float(middle.RescaleSlope) + float(
        middle.RescaleIntercept
    )
    # the sphere's centre: the darkest smoothed spot (lung) in the right half of the chest
    smooth = ndimage.uniform_filter(hu, 41)
    rows, cols = hu.shape
    band = smooth[rows // 3 : 2 * rows // 3, cols // 6 : cols // 2]
    r, c = np.unravel_index(np.argmin(band), band.shape)
    row, col = int(r + rows // 3), int(c + cols // 6)
    assert hu[row - 10 : row + 10, col - 10 : col + 10].mean() < -600  # lung
    spacing = float(middle.PixelSpacing[0])
    position = np.asarray(middle.ImagePositionPatient, float)
    centre = position + np.array([col * spacing, row * spacing, 0.0])
    parts, zs = pet_series(ct, centre)
    stored = _stow(web_server, parts)
    assert len(stored["00081199"]["Value"]) == len(parts)
    # the far point: the opposite lung, well away from the sphere
    far = centre + np.array([cols * spacing / 3, 0.0, 0.0])
    return {
        "study": str(middle.StudyInstanceUID),
        "ct_series": str(middle.SeriesInstanceUID),
        "pet_series": pydicom.dcmread(io.BytesIO(parts[0])).SeriesInstanceUID,
        "centre": [float(v) for v in centre],
        "far": [float(v) for v in far],
        "pet_z": zs,
        "ct_z": [float(d.ImagePositionPatient[2]) for d in ct],
        "pet_middle": pydicom.dcmread(io.BytesIO(parts[len(parts) // 2])),
    }


def test_pet_colour_suv_fusion_and_sync(web_server: WebServer, pet_ct: dict[str, Any]) -> None:
    # the SUV the browser must show, from the stored pixel values and the header
    ds = pet_ct["pet_middle"]
    info = ds.RadiopharmaceuticalInformationSequence[0]
    assert float(info.RadionuclideTotalDose) == DOSE_BQ
    stored = np.asarray(ds.pixel_array, float) * float(ds.RescaleSlope)
    assert stored.max() == SPHERE_BQML
    sphere_suv = expected_suv(SPHERE_BQML)
    background_suv = expected_suv(BACKGROUND_BQML)
    assert sphere_suv == pytest.approx(4.44, abs=0.01)

    result = run_e2e(
        web_server,
        "pet.mjs",
        {
            "study": pet_ct["study"],
            "ct": pet_ct["ct_series"],
            "pet": str(pet_ct["pet_series"]),
            "centre": pet_ct["centre"],
            "far": pet_ct["far"],
            "scroll": 3,
        },
        timeout=240,
    )
    assert result["pageErrors"] == []

    # the PET opens in its colour map: coloured pixels, the hot sphere brighter than the rest
    pet = result["pet"]
    assert pet["index"] == len(pet_ct["pet_z"]) // 2
    assert pet["stats"]["coloured"] > 1000
    sphere_rgb, background_rgb = pet["stats"]["rgb"]
    assert sum(sphere_rgb) > sum(background_rgb) + 150
    assert max(sphere_rgb) - min(sphere_rgb) > 60  # a colour, not a grey
    # the readout at the sphere's centre and on the background, in SUVbw
    assert pet["suv"] == pytest.approx(sphere_suv, rel=0.02)
    assert pet["backgroundSuv"] == pytest.approx(background_suv, rel=0.02)
    assert "SUV" in pet["readout"]

    # fusion: the CT's pixels change at the sphere and not far from it (below the fusion
    # threshold the PET is transparent); the opacity slider fades the sphere's colour
    fusion = result["fusion"]
    # both volumes came in one response each: the CT's 30 frames and the PET's
    assert fusion["prefetched"] == [30, len(pet_ct["pet_z"])]
    (before_centre, before_far), (after_centre, after_far) = (
        fusion["before"]["rgb"],
        fusion["after"]["rgb"],
    )
    change_centre = sum(abs(a - b) for a, b in zip(after_centre, before_centre, strict=True))
    change_far = sum(abs(a - b) for a, b in zip(after_far, before_far, strict=True))
    assert change_centre > 300
    assert change_far < 5
    assert after_centre[0] - after_centre[2] > 60  # in the colour map, not grey
    assert fusion["fusedSuv"] == pytest.approx(sphere_suv, rel=0.02)
    faint, fainter = fusion["opacities"]["0.95"][0], fusion["opacities"]["0.3"][0]
    assert sum(after_centre) > sum(faint) + 100
    assert sum(faint) > sum(fainter)
    assert fusion["opacities"]["0.3"][1] == pytest.approx(before_far, abs=2)
    # the same in a coronal plane through the sphere (MPR): its colour at the centre
    coronal_centre = fusion["coronal"]["rgb"][0]
    assert coronal_centre[0] - coronal_centre[2] > 60
    assert sum(coronal_centre) > 300

    # synchronized scrolling: the CT moves by N slices, the PET follows to the same patient z
    sync = result["sync"]
    ct_z, pet_z = pet_ct["ct_z"], pet_ct["pet_z"]
    before_ct = sync["before"]["left"]
    after_ct = sync["after"]["left"]
    after_pet = sync["after"]["right"]
    assert abs(after_ct["focalPoint"][2] - before_ct["focalPoint"][2]) == pytest.approx(
        3 * (ct_z[1] - ct_z[0]), abs=0.01
    )
    z = after_ct["focalPoint"][2]
    assert min(abs(z - v) for v in ct_z) < 0.01  # on a CT slice
    assert abs(after_pet["focalPoint"][2] - z) <= PET_SLICE_MM / 2
    assert after_pet["imagePosition"][2] == pytest.approx(after_pet["focalPoint"][2], abs=0.01)
    assert min(abs(after_pet["imagePosition"][2] - v) for v in pet_z) < 0.01
    # unlinked, the PET stays where it is
    assert sync["unlinked"]["right"]["focalPoint"][2] == pytest.approx(
        after_pet["focalPoint"][2], abs=0.01
    )
    assert sync["unlinked"]["left"]["focalPoint"][2] != pytest.approx(z, abs=0.01)
    # linked zoom: the CT zoomed, the PET to the same scale
    zoom = sync["zoom"]
    assert zoom["after"]["left"]["scale"] != pytest.approx(
        zoom["before"]["left"]["scale"], rel=0.02
    )
    assert zoom["after"]["right"]["scale"] == pytest.approx(
        zoom["after"]["left"]["scale"], rel=0.01
    )
    assert zoom["before"]["right"]["scale"] != pytest.approx(
        zoom["after"]["right"]["scale"], rel=0.02
    )
