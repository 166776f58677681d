"""Geometric annotations drawn in the viewer, in a real browser, on the real lung CT.

A line and a box are drawn on the middle slice; the points the server stored (LPS mm) are mapped
back through the series' geometry (read here with carina.dicom) to the image pixels aimed at; the
length the viewer displayed is the distance between the stored end points; after a reload the
shapes are in Cornerstone's annotation state again; the SR downloaded through the panel's link
imports back to the same points.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from carina.dicom import load_series, scan

from .conftest import CHROMIUM, PROJECT, WebServer, prepare, run_e2e, serve
from .test_viewer_e2e import _stow


@pytest.fixture(scope="module")
def shapes_server(
    tmp_path_factory: pytest.TempPathFactory, web_bundle: Path
) -> Iterator[WebServer]:
    if not CHROMIUM.exists():
        pytest.fail(f"chromium not found at {CHROMIUM} (scripts/system-deps.sh installs it)")
    data_dir = tmp_path_factory.mktemp("shapes") / "data"
    prepare(data_dir, web_bundle)
    with serve(data_dir, web_bundle) as server:
        yield server


def test_shapes_drawn_stored_reloaded_and_exported(
    shared_data: Path, shapes_server: WebServer
) -> None:
    server = shapes_server
    folder = shared_data / "lung_ct_tumor_boxes" / "ct_dicom"
    files = sorted(folder.glob("*.dcm"))
    stored = _stow(server, files)
    assert len(stored["00081199"]["Value"]) == 30
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    geometry = load_series(scan(folder).series[0]).volume.geometry
    assert geometry.shape == (512, 512, 30)

    line = [[150, 300], [230, 260]]  # (column, row) on the middle slice
    box = [[300, 200], [360, 250]]
    point = [256, 330]
    angle = [[100, 150], [140, 200], [200, 170]]  # arm, vertex, arm
    ellipse = [[400, 320], [430, 340]]  # centre, then a corner of its bounding box
    polygon = [[180, 390], [230, 390], [230, 430], [180, 430], [181, 392]]
    result = run_e2e(
        server,
        "shapes.mjs",
        {
            "study": study,
            "series": series,
            "line": line,
            "box": box,
            "point": point,
            "angle": angle,
            "ellipse": ellipse,
            "polygon": polygon,
        },
        timeout=180,
    )
    assert result["pageErrors"] == [], result["pageErrors"]
    slice_index = result["slice"]
    assert slice_index == 15

    with server.client() as client:
        shapes = client.get(
            f"/api/projects/{PROJECT}/shapes", params={"study": study, "series": series}
        ).json()
    kinds = ["line", "box", "point", "angle", "ellipse", "polygon"]
    assert [s["kind"] for s in shapes] == kinds
    assert [s["label"] for s in shapes] == [
        "nodule axis",
        "nodule box",
        "spinal canal",
        "lung angle",
        "chest wall",
        "lesion outline",
    ]
    stored_line, stored_box, stored_point, stored_angle, stored_ellipse, stored_polygon = shapes
    # the instance is the middle slice's
    middle = next(
        f
        for f in files
        if pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID == stored_line["sop"]
    )
    position = np.asarray(pydicom.dcmread(middle, stop_before_pixels=True).ImagePositionPatient)
    assert np.allclose(geometry.index_to_world([0, 0, slice_index]), position, atol=1e-3)
    assert {s["sop"] for s in shapes} == {stored_line["sop"]}

    # the stored points, through the series' geometry, are the pixels aimed at (within a voxel)
    def index(points: list[list[float]]) -> np.ndarray:
        return np.asarray(geometry.world_to_index(np.asarray(points)))

    line_ijk = index(stored_line["points"])
    assert np.allclose(line_ijk[:, 2], slice_index, atol=0.01)
    assert np.abs(line_ijk[:, :2] - np.asarray(line)).max() <= 1.0, line_ijk
    (c0, r0), (c1, r1) = box
    corners = [[c0, r0], [c1, r0], [c1, r1], [c0, r1]]  # an outline, clockwise on the screen
    box_ijk = index(stored_box["points"])
    assert np.allclose(box_ijk[:, 2], slice_index, atol=0.01)
    assert np.abs(box_ijk[:, :2] - np.asarray(corners)).max() <= 1.0, box_ijk

    # the point, the angle's arms and vertex, the ellipse's axes, the polygon's outline
    assert np.abs(index(stored_point["points"])[0, :2] - point).max() <= 1.0
    angle_ijk = index(stored_angle["points"])
    assert np.allclose(angle_ijk[:, 2], slice_index, atol=0.01)
    assert np.abs(angle_ijk[:, :2] - np.asarray(angle)).max() <= 1.0, angle_ijk
    ellipse_ijk = index(stored_ellipse["points"])
    (ec, er), (kc, kr) = ellipse
    major = sorted(ellipse_ijk[:2, :2].tolist())  # along the rows: 30 pixels either side
    minor = sorted(ellipse_ijk[2:, :2].tolist(), key=lambda p: p[1])  # along the columns: 20
    expected_major = [[ec - (kc - ec), er], [kc, er]]
    expected_minor = [[ec, er - (kr - er)], [ec, kr]]
    assert np.abs(np.asarray(major) - expected_major).max() <= 1.0, ellipse_ijk
    assert np.abs(np.asarray(minor) - expected_minor).max() <= 1.0, ellipse_ijk
    polygon_ijk = index(stored_polygon["points"])
    assert len(polygon_ijk) >= 4
    assert np.allclose(polygon_ijk[:, 2], slice_index, atol=0.01)
    assert polygon_ijk[:, 0].min() == pytest.approx(180, abs=1.0)
    assert polygon_ijk[:, 0].max() == pytest.approx(230, abs=1.0)
    assert polygon_ijk[:, 1].min() == pytest.approx(390, abs=1.0)
    assert polygon_ijk[:, 1].max() == pytest.approx(430, abs=1.0)

    # the length the viewer displayed is the distance between the stored end points
    length_mm = float(np.linalg.norm(np.subtract(*np.asarray(stored_line["points"]))))
    drawn = {e["kind"]: e for e in result["drawn"]["entries"]}
    listed = {e["kind"]: e for e in result["drawn"]["listed"]}
    shown = float(re.findall(r"[\d.]+", listed["line"]["value"])[0])
    assert abs(shown - length_mm) <= 0.5, (shown, length_mm)
    assert abs(drawn["line"]["values"]["length"] - length_mm) <= 0.5
    overlay_mm = [
        float(m) for t in result["drawn"]["overlay"] for m in re.findall(r"([\d.]+) mm$", t)
    ]
    assert any(abs(v - length_mm) <= 0.5 for v in overlay_mm), result["drawn"]["overlay"]
    # the box's area is its two sides' product
    side_a = np.linalg.norm(np.subtract(stored_box["points"][1], stored_box["points"][0]))
    side_b = np.linalg.norm(np.subtract(stored_box["points"][2], stored_box["points"][1]))
    assert drawn["box"]["values"]["area"] == pytest.approx(side_a * side_b, rel=0.02)
    # the angle the viewer displayed is the stored arms' angle at the vertex
    arm_a, vertex, arm_b = np.asarray(stored_angle["points"])
    u, v = arm_a - vertex, arm_b - vertex
    degrees = float(np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v))))
    assert drawn["angle"]["values"]["angle"] == pytest.approx(degrees, abs=0.5)
    assert {e["shape"] for e in result["drawn"]["listed"]} == {str(s["id"]) for s in shapes}

    # reloaded: both shapes are in Cornerstone's annotation state again, at the stored points
    reloaded = result["reloaded"]
    assert reloaded["annotations"] == len(kinds)
    again = {e["kind"]: e for e in reloaded["entries"]}
    assert sorted(again) == sorted(kinds)
    for shape in shapes:
        entry = again[shape["kind"]]
        assert entry["n"] == len(shape["points"])
        assert np.allclose(entry["sum"], np.sum(shape["points"], axis=0), atol=1e-6)
        back = entry["points"]
        if shape["kind"] == "polygon":  # summed up: its first points
            assert np.allclose(back, shape["points"][: len(back)], atol=1e-6)
            continue
        # the same points (an ellipse's axis end points may come back in the other order)
        assert sorted(map(tuple, np.round(back, 6))) == sorted(
            map(tuple, np.round(shape["points"], 6))
        ), shape["kind"]
    assert abs(again["line"]["values"]["length"] - length_mm) <= 0.01
    assert any(
        abs(v - length_mm) <= 0.5
        for t in reloaded["overlay"]
        for v in map(float, re.findall(r"([\d.]+) mm$", t))
    )

    # the SR downloaded through the link imports back to the same points (float32 in the SR)
    sr_path = Path(result["srPath"])
    if not sr_path.is_absolute():
        sr_path = Path(__file__).resolve().parents[2] / sr_path
    sr = pydicom.dcmread(sr_path)
    assert sr.Modality == "SR"
    with server.client() as client:
        response = client.post(
            f"/api/projects/{PROJECT}/shapes/sr",
            content=sr_path.read_bytes(),
            headers={"Content-Type": "application/dicom"},
        )
    assert response.status_code == 201, response.text
    imported = response.json()
    assert [(s["kind"], s["label"], s["sop"]) for s in imported] == [
        (s["kind"], s["label"], s["sop"]) for s in shapes
    ]
    for back, original in zip(imported, shapes, strict=True):
        assert np.allclose(back["points"], original["points"], atol=1e-3), (back, original)
    print(
        "shapes e2e:",
        json.dumps(
            {
                "seconds": result["seconds"],
                "length_mm": length_mm,
                "shown": shown,
                "line_ijk": line_ijk.round(3).tolist(),
                "box_ijk": box_ijk.round(3).tolist(),
            }
        ),
    )
