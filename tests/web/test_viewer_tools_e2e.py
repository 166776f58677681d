"""The viewer's tools in a real browser on the real lung CT (30 slices of 512x512, 8 mm).

Layouts, angle and bidirectional measurements, zoom and pan, crosshairs, oblique MPR, the SEG
overlay's controls and the server-rendered planes; the measured values are checked against the
series' own geometry (pydicom), the overlay against the lung mask built here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from .conftest import WebServer, prepare, run_e2e, serve
from .test_viewer_e2e import _lung_seg, _stow

ROTATION = 30.0


def _pixel_to_world(ds: pydicom.Dataset, column: float, row: float) -> np.ndarray:
    """The LPS position (mm) of an image pixel from the slice's position, orientation, spacing."""
    orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
    row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
    origin = np.asarray(ds.ImagePositionPatient, dtype=float)
    return np.asarray(
        origin + column * column_spacing * orientation[:3] + row * row_spacing * orientation[3:]
    )


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    cos = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory, web_bundle: Path) -> Iterator[WebServer]:
    """A server of this module's own: what it stores stays out of the other browser tests."""
    data_dir = tmp_path_factory.mktemp("viewer-tools") / "data"
    prepare(data_dir, web_bundle)
    with serve(data_dir, web_bundle) as server:
        yield server


@pytest.fixture(scope="module")
def lung_series(shared_data: Path, web_server: WebServer) -> dict[str, Any]:
    files = sorted((shared_data / "lung_ct_tumor_boxes" / "ct_dicom").glob("*.dcm"))
    assert len(files) == 30
    _stow(web_server, files)
    seg, mask = _lung_seg(files)
    seg_file = web_server.data_dir.parent / "tools-lungs-seg.dcm"
    seg_file.write_bytes(seg)
    _stow(web_server, [seg_file])
    datasets = [pydicom.dcmread(path) for path in files]
    normal = np.cross(
        np.asarray(datasets[0].ImageOrientationPatient[:3], dtype=float),
        np.asarray(datasets[0].ImageOrientationPatient[3:], dtype=float),
    )
    datasets.sort(key=lambda ds: float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))))
    middle = datasets[len(datasets) // 2]
    hu = np.asarray(middle.pixel_array, dtype=float) * float(middle.RescaleSlope) + float(
        middle.RescaleIntercept
    )
    return {"middle": middle, "mask": mask[len(mask) // 2], "hu": hu}


def test_viewer_tools(web_server: WebServer, lung_series: dict[str, Any]) -> None:
    middle = lung_series["middle"]
    mask = lung_series["mask"]
    hu = lung_series["hu"]
    # a lung point (inside the lung mask, air) for the overlay, away from the mask's edge
    rows, cols = np.nonzero(mask[:, : mask.shape[1] // 2])
    inner = [
        (c, r)
        for r, c in zip(rows, cols, strict=True)
        if mask[r - 8 : r + 9, c - 8 : c + 9].all() and hu[r, c] < -600
    ]
    assert inner
    lung = [int(v) for v in inner[len(inner) // 2]]
    # long arms: a mouse position is a whole CSS pixel, about 1.3 mm of this image in the 2x2 grid
    angle_points = [[456, 330], [256, 256], [150, 60]]
    bidirectional_points = [[150, 200], [350, 320]]
    jump = [180, 300]  # far from the volume's centre, where the planes start
    result = run_e2e(
        web_server,
        "viewer_tools.mjs",
        {
            "study": str(middle.StudyInstanceUID),
            "angle": angle_points,
            "bidirectional": bidirectional_points,
            "lung": lung,
            "jump": jump,
            "rotation": ROTATION,
        },
        timeout=240,
    )
    assert result["pageErrors"] == []

    # layouts: the right viewports, each drawn and not blank
    expected_kinds = {
        "1x2": ["stack", "mip"],
        "2x2": ["stack", "axial", "sagittal", "coronal"],
        "mpr3d": ["axial", "sagittal", "coronal", "3d"],
    }
    for layout, kinds in expected_kinds.items():
        found = result["layouts"][layout]
        assert [v["kind"] for v in found] == kinds, layout
        for view in found:
            assert view["status"] == "ready", (layout, view)
            assert view["std"] > 10, (layout, view)

    # the angle: its handles where the pixels are, its value that of the pixels' geometry
    world = [_pixel_to_world(middle, *point) for point in angle_points]
    angle = result["angle"]
    for handle, expected in zip(angle["points"], world, strict=True):
        assert np.linalg.norm(np.asarray(handle) - expected) < 2.0  # a screen pixel's reach
    handles = [np.asarray(p) for p in angle["points"]]
    assert angle["values"]["angle"] == pytest.approx(
        _angle(handles[0] - handles[1], handles[2] - handles[1]), abs=0.1
    )
    expected_angle = _angle(world[0] - world[1], world[2] - world[1])
    assert angle["values"]["angle"] == pytest.approx(expected_angle, abs=1.0)
    assert 80 < expected_angle < 170  # an angle that a swapped arm or vertex would not give

    # the bidirectional: the long axis between the dragged pixels, the short axis across it
    b0, b1 = (_pixel_to_world(middle, *point) for point in bidirectional_points)
    bidirectional = result["bidirectional"]
    handles = [np.asarray(p) for p in bidirectional["points"]]
    assert bidirectional["values"]["length"] == pytest.approx(
        float(np.linalg.norm(handles[1] - handles[0])), abs=0.1
    )
    # within a screen pixel (about 1.3 mm) at each end
    assert bidirectional["values"]["length"] == pytest.approx(
        float(np.linalg.norm(b1 - b0)), abs=2.0
    )
    short = handles[3] - handles[2]
    assert bidirectional["values"]["width"] == pytest.approx(float(np.linalg.norm(short)), abs=0.1)
    assert bidirectional["values"]["width"] > 5
    assert _angle(short, b1 - b0) == pytest.approx(90, abs=1.0)

    # zoom changes the parallel scale, pan the focal point (in the image plane, scale kept)
    navigation = result["navigation"]
    before, zoomed, panned = navigation["before"], navigation["zoomed"], navigation["panned"]
    assert abs(zoomed["parallelScale"] / before["parallelScale"] - 1) > 0.05
    moved = np.asarray(panned["focalPoint"]) - np.asarray(zoomed["focalPoint"])
    assert np.linalg.norm(moved) > 5
    assert abs(float(np.dot(moved, panned["viewPlaneNormal"]))) < 0.5
    assert panned["parallelScale"] == pytest.approx(zoomed["parallelScale"], rel=1e-6)

    # crosshairs: the sagittal and coronal planes pass through the point clicked in the axial view
    crosshairs = result["crosshairs"]
    target = np.asarray(crosshairs["target"])
    assert np.linalg.norm(target - _pixel_to_world(middle, *jump)) < 1.0
    for kind in ("sagittal", "coronal"):
        normal = np.asarray(crosshairs[kind]["viewPlaneNormal"])
        offset = float(np.dot(normal, np.asarray(crosshairs[kind]["focalPoint"]) - target))
        earlier = float(
            np.dot(normal, np.asarray(crosshairs["before"][kind]["focalPoint"]) - target)
        )
        assert abs(earlier) > 10, kind
        assert abs(offset) < 1.0, kind

    # oblique MPR: both planes turned by the angle about the axial normal
    oblique = result["oblique"]
    axis = np.asarray(oblique["axial"]["viewPlaneNormal"])
    for kind in ("sagittal", "coronal"):
        turned = np.asarray(oblique[kind]["viewPlaneNormal"])
        assert _angle(turned, np.asarray(oblique["before"][kind])) == pytest.approx(
            ROTATION, abs=1.0
        )
        assert abs(float(np.dot(turned, axis))) < 0.01
    assert _angle(
        np.asarray(oblique["sagittal"]["viewPlaneNormal"]),
        np.asarray(oblique["coronal"]["viewPlaneNormal"]),
    ) == pytest.approx(90, abs=0.5)
    assert oblique["difference"] > 2

    # the overlay's controls, seen at the lung point in the stack viewport's image
    overlay = result["overlay"]
    assert mask[lung[1], lung[0]]

    def rgb(state: str) -> list[float]:
        value: list[float] = overlay[state]["rgb"][0]
        return value

    r, _, b = rgb("before")
    assert abs(r - b) < 10  # grey
    r, _, b = rgb("shown")
    assert b - r > 40  # the label's own colour (0, 200, 255)
    r, g, b = rgb("red")
    assert r - b > 40  # recoloured red
    assert r - g > 40
    r, g, b = rgb("opaque")
    assert r > 200  # full opacity: the colour itself
    assert g < 60
    assert b < 60
    assert r > rgb("red")[0] + 20
    r, _, b = rgb("transparent")
    assert abs(r - b) < 10  # opacity 0: the image again
    # outline only: the lung inside is not coloured, its edge is
    r, g, b = rgb("outlineOnly")
    assert abs(r - b) < 10
    assert abs(r - g) < 10
    assert overlay["outlineOnly"]["coloured"] > overlay["before"]["coloured"] + 300
    assert overlay["outlineOnly"]["coloured"] < overlay["red"]["coloured"] / 2
    assert overlay["neither"]["coloured"] < overlay["before"]["coloured"] + 100

    # the server-rendered planes: images from /render, no browser volume viewports
    server = result["server"]
    assert server["mode"] == "server"
    for kind in ("axial", "sagittal", "coronal"):
        plane = server["planes"][kind]
        assert "/render?" in plane["src"], plane
        assert f"plane={kind}" in plane["src"], plane
        assert plane["width"] > 0
        assert plane["height"] > 0
        assert plane["canvases"] == 0
        assert plane["std"] > 10, kind
