"""The viewer in a real browser on the real lung CT (30 slices of 512x512, 8 mm).

The series is stored through STOW-RS; the browser signs in, finds it in the worklist, opens it,
and the test checks what the screenshots show against the pixel data read here with pydicom.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from carina.core.labels import Label, LabelSet
from carina.core.volume import LabelMap
from carina.dicom import load_series, scan
from carina.dicom.seg import build_segmentation

from .conftest import PROJECT, WebServer, run_e2e


def _stow(server: WebServer, files: list[Path]) -> dict[str, Any]:
    boundary = f"carina-{uuid.uuid4().hex}"
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + path.read_bytes()
        + b"\r\n"
        for path in files
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


def _hu(ds: pydicom.Dataset) -> np.ndarray:
    slope = float(getattr(ds, "RescaleSlope", 1))
    intercept = float(getattr(ds, "RescaleIntercept", 0))
    return np.asarray(ds.pixel_array, dtype=np.float64) * slope + intercept


def _box_mean(image: np.ndarray, size: int) -> np.ndarray:
    """The mean over a size x size box around every pixel (edges: valid part only)."""
    padded = np.pad(image, size // 2, mode="edge")
    integral = padded.cumsum(0).cumsum(1)
    integral = np.pad(integral, ((1, 0), (1, 0)))
    rows, cols = image.shape
    total = (
        integral[size : size + rows, size : size + cols]
        - integral[:rows, size : size + cols]
        - integral[size : size + rows, :cols]
        + integral[:rows, :cols]
    )
    return np.asarray(total / (size * size))


def _lung_seg(files: list[Path]) -> tuple[bytes, np.ndarray]:
    """A DICOM SEG of the lungs (air inside the body, label 1) on the CT's grid, and its mask
    (slice, row, column along the series' own order)."""
    volume = load_series(scan(files[0].parent).series[0]).volume
    hu = np.asarray(volume.array)
    regions, _ = ndimage.label(hu < -400)
    border = np.unique(
        np.r_[
            regions[0].ravel(), regions[-1].ravel(), regions[:, 0].ravel(), regions[:, -1].ravel()
        ]
    )
    mask = (regions > 0) & ~np.isin(regions, border)
    labels = LabelMap(
        mask.astype(np.uint8), volume.geometry, labels=LabelSet([Label(1, "lung", (0, 200, 255))])
    )
    seg = build_segmentation(
        labels, [pydicom.dcmread(p) for p in files], series_description="lungs"
    )
    buffer = io.BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), np.transpose(mask, (2, 1, 0))  # [i, j, k] -> [slice, row, column]


@pytest.fixture(scope="module")
def lung_ct(shared_data: Path, web_server: WebServer) -> dict[str, Any]:
    files = sorted((shared_data / "lung_ct_tumor_boxes" / "ct_dicom").glob("*.dcm"))
    assert len(files) == 30
    stored = _stow(web_server, files)
    assert len(stored["00081199"]["Value"]) == 30
    seg, mask = _lung_seg(files)
    seg_file = web_server.data_dir.parent / "lungs-seg.dcm"
    seg_file.write_bytes(seg)
    _stow(web_server, [seg_file])
    datasets = [pydicom.dcmread(path) for path in files]
    normal = np.cross(
        np.asarray(datasets[0].ImageOrientationPatient[:3], dtype=float),
        np.asarray(datasets[0].ImageOrientationPatient[3:], dtype=float),
    )
    datasets.sort(key=lambda ds: float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))))
    middle = datasets[len(datasets) // 2]  # the slice the stack viewport opens on
    hu = _hu(middle)
    smooth = _box_mean(hu, 15)
    rows, cols = hu.shape
    # a lung point: the darkest smoothed spot in the middle band of the chest
    band = smooth[rows // 3 : 2 * rows // 3, cols // 5 : 4 * cols // 5]
    r, c = np.unravel_index(np.argmin(band), band.shape)
    lung = (int(c + cols // 5), int(r + rows // 3))
    # a mediastinum point: soft tissue (0..100 HU, smoothed) nearest the image centre
    soft = (smooth > 0) & (smooth < 100)
    rr, cc = np.nonzero(soft[rows // 3 : 2 * rows // 3, 2 * cols // 5 : 3 * cols // 5])
    nearest = np.argmin((rr + rows // 3 - rows / 2) ** 2 + (cc + 2 * cols // 5 - cols / 2) ** 2)
    mediastinum = (int(cc[nearest] + 2 * cols // 5), int(rr[nearest] + rows // 3))
    # an ROI: the ellipse tool is drawn from its centre (the lung point) to a corner of its
    # bounding box: semi-axes of 15 and 10 pixels
    roi = [[lung[0], lung[1]], [lung[0] + 15, lung[1] + 10]]
    # voxels of the volume the browser loads (column, row, slice along the normal) and their HU
    rng = np.random.default_rng(7)
    voxels = [[0, 0, 0], [cols - 1, rows - 1, len(datasets) - 1]]
    voxels += [[int(rng.integers(cols)), int(rng.integers(rows)), int(k)] for k in range(30)]
    voxels += [[lung[0], lung[1], len(datasets) // 2], [mediastinum[0], mediastinum[1], 3]]
    voxel_hu = [float(_hu(datasets[k])[j, i]) for i, j, k in voxels]
    yy, xx = np.mgrid[0:rows, 0:cols]
    inside = ((xx - lung[0]) / 15) ** 2 + ((yy - lung[1]) / 10) ** 2 <= 1
    return {
        "study": str(middle.StudyInstanceUID),
        "patient": str(middle.PatientName),
        "spacing": [float(v) for v in middle.PixelSpacing],  # row, column spacing (mm)
        "lung": lung,
        "lung_hu": float(smooth[lung[1], lung[0]]),
        "mediastinum": mediastinum,
        "mediastinum_hu": float(smooth[mediastinum[1], mediastinum[0]]),
        "roi": roi,
        "roi_mean": float(hu[inside].mean()),
        "voxels": voxels,
        "voxel_hu": voxel_hu,
        "mask": mask,
        "roi_area": float(np.pi * 15 * 10 * float(middle.PixelSpacing[0] * middle.PixelSpacing[1])),
    }


def test_viewer_shows_the_lung_ct(web_server: WebServer, lung_ct: dict[str, Any]) -> None:
    # the sample points are what they claim to be, in the data itself
    assert lung_ct["lung_hu"] < -600
    assert 0 < lung_ct["mediastinum_hu"] < 100
    length_points = [[100, 256], [400, 256]]  # 300 columns apart on one row
    result = run_e2e(
        web_server,
        "viewer.mjs",
        {
            "study": lung_ct["study"],
            "lung": lung_ct["lung"],
            "mediastinum": lung_ct["mediastinum"],
            "length": length_points,
            "roi": lung_ct["roi"],
            "voxels": lung_ct["voxels"],
        },
        timeout=300,
    )
    assert result["pageErrors"] == []
    assert result["patient"] == lung_ct["patient"]
    assert result["thumbnails"] == [True, True]  # the CT and its SEG, server-rendered
    assert result["stack"]["index"] == 15
    # three wheel notches move three slices (either way: the tool's direction convention)
    assert abs(result["scrolled"] - 15) == 3

    stack = result["stack"]
    # not blank, and in a lung window the lung is dark and the mediastinum bright
    assert stack["default"]["std"] > 20
    lung_grey, mediastinum_grey = stack["lung"]["at"]
    assert lung_grey < 110
    assert mediastinum_grey > 200
    # presets change the pixels: in a bone window the mediastinum goes dark too
    assert stack["lungVsDefault"] > 5
    assert stack["boneVsLung"] > 5
    assert stack["bone"]["at"][1] < mediastinum_grey - 60

    # 300 columns at the real column spacing, within 1 mm
    expected = 300 * lung_ct["spacing"][1]
    assert result["length"] == pytest.approx(expected, abs=1.0)
    # the ROI's mean HU is the mean of the same ellipse in the data (which edge pixels count
    # differs: Cornerstone includes a few more of them)
    assert result["roi"]["mean"] == pytest.approx(lung_ct["roi_mean"], abs=40)
    assert result["roi"]["area"] == pytest.approx(lung_ct["roi_area"], rel=0.1)

    # the lung mask shows in its colour (0, 200, 255) over the lung, not over the mediastinum,
    # and hiding its label takes it away again
    overlay = result["overlay"]
    mask = lung_ct["mask"]
    assert overlay["voxels"] == int(mask.sum())
    middle = mask[len(mask) // 2]
    lung_c, lung_r = lung_ct["lung"]
    med_c, med_r = lung_ct["mediastinum"]
    assert middle[lung_r, lung_c]
    assert not middle[med_r, med_c]
    red, _, blue = overlay["shown"]["rgb"][0]
    assert blue - red > 40
    before_red, _, before_blue = overlay["before"]["rgb"][0]
    assert abs(before_blue - before_red) < 10
    red, _, blue = overlay["shown"]["rgb"][1]
    assert abs(blue - red) < 10
    assert overlay["shown"]["coloured"] > overlay["before"]["coloured"] + 5000
    assert overlay["hidden"]["coloured"] < overlay["before"]["coloured"] + 500

    for kind in ("axial", "sagittal", "coronal", "3d"):
        assert result["views"][kind]["std"] > 10, kind
    # the volume came in one response (every frame of the series) and holds the files' HU
    assert result["voxels"]["prefetched"] == 30
    assert result["voxels"]["values"] == lung_ct["voxel_hu"]
    # the MIP slab is brighter than the thin plane it replaces
    assert result["mip"]["slab"] == "mip:40"
    assert result["mip"]["vsThin"] > 2
    assert result["mip"]["stats"]["mean"] > result["views"]["axial"]["mean"]
    assert result["volume"]["presetDifference"] > 2

    # auto-rotate turns the 3D camera about its view-up axis through the focal point, then stops
    spin = result["spin"]
    before, during = (
        np.asarray(spin["before"]["viewPlaneNormal"]),
        np.asarray(spin["during"]["viewPlaneNormal"]),
    )
    turned = np.degrees(np.arccos(np.clip(before @ during, -1, 1)))
    assert turned > 10, (turned, spin)
    # at 30 degrees a second of the clock (one step of at most a second beyond)
    assert turned <= 30 * (spin["seconds"] + 1) + 1, (turned, spin)
    up = np.asarray(spin["before"]["viewUp"])
    assert np.asarray(spin["during"]["viewUp"]) == pytest.approx(up, abs=1e-6)
    assert abs(during @ up) < 1e-6  # still perpendicular to the axis it turns about
    assert spin["during"]["focalPoint"] == pytest.approx(spin["before"]["focalPoint"], abs=1e-6)
    assert spin["later"]["viewPlaneNormal"] == pytest.approx(
        spin["stopped"]["viewPlaneNormal"], abs=1e-9
    )
    # the lung surface (STL from the server) is drawn in the 3D viewport
    state, points = result["mesh"]["state"].split(":")
    assert state == "shown"
    assert int(points) > 1000
    assert result["mesh"]["count"] == "1"
    assert result["mesh"]["difference"] > 2
