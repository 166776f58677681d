"""Geometric annotations and DICOM SR (TID 1500): a round trip through the API on the real lung
CT, and the real TID 1500 SR documents of highdicom read onto their CT image."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from carina.annotation.sr import ImagePlane, read_sr
from tests.api.conftest import Site, build_site

VARIANTS = Path("dicom_variants")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Site]:
    files = sorted((shared_data / "lung_ct_tumor_boxes" / "ct_dicom").glob("*.dcm"))
    files.append(shared_data / VARIANTS / "pydicom" / "CT_small.dcm")
    for site in build_site(tmp_path_factory.mktemp("sr") / "data"):
        results = site.app.state.archive.ingest([(str(f), f.read_bytes()) for f in files])
        assert all(r.status.ok for r in results), [r.reason for r in results]
        site.store.add_studies("alpha", sorted({r.study_instance_uid for r in results}))
        yield site


def _in_plane(ds: pydicom.Dataset, pixels: list[tuple[float, float]]) -> list[list[float]]:
    """LPS points at (column, row) pixel-centre indices of an image."""
    origin = np.array(ds.ImagePositionPatient, dtype=float)
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    dr, dc = (float(v) for v in ds.PixelSpacing)
    return [(origin + c * dc * iop[:3] + r * dr * iop[3:]).tolist() for c, r in pixels]


def test_shapes_round_trip_through_sr(site: Site, shared_data: Path) -> None:
    path = shared_data / "lung_ct_tumor_boxes" / "ct_dicom" / "013.dcm"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    shapes = {
        "point": [(300.0, 260.0)],
        "line": [(280.0, 250.0), (330.5, 275.25)],
        "box": [(280.0, 250.0), (340.0, 250.0), (340.0, 280.0), (280.0, 280.0)],
        "ellipse": [(290.0, 265.0), (330.0, 265.0), (310.0, 255.0), (310.0, 275.0)],
        "polygon": [(100.0, 200.0), (150.0, 180.0), (170.0, 240.0), (120.0, 260.0), (90.0, 230.0)],
        "angle": [(200.0, 300.0), (250.0, 300.0), (250.0, 350.0)],
    }
    headers = {**site.headers("annotator")}
    made = []
    for kind, pixels in shapes.items():
        response = site.client.post(
            "/api/projects/alpha/shapes",
            json={
                "study": ds.StudyInstanceUID,
                "series": ds.SeriesInstanceUID,
                "sop": ds.SOPInstanceUID,
                "frame_of_reference": ds.FrameOfReferenceUID,
                "kind": kind,
                "points": _in_plane(ds, pixels),
                "label": f"nodule {kind}",
            },
            headers=headers,
        )
        assert response.status_code == 201, response.text
        made.append(response.json())
    # a viewer may not draw; a line with three points is refused
    body = {
        "study": ds.StudyInstanceUID,
        "series": ds.SeriesInstanceUID,
        "sop": ds.SOPInstanceUID,
        "kind": "line",
        "points": _in_plane(ds, shapes["angle"]),
    }
    assert (
        site.client.post(
            "/api/projects/alpha/shapes", json=body, headers=site.headers("viewer")
        ).status_code
        == 403
    )
    assert (
        site.client.post("/api/projects/alpha/shapes", json=body, headers=headers).status_code
        == 422
    )
    # points off the image's plane (1 mm above it) are refused
    lifted = [[x, y, z + 1.0] for x, y, z in _in_plane(ds, shapes["angle"])]
    off = site.client.post(
        "/api/projects/alpha/shapes",
        json={**body, "kind": "angle", "points": lifted},
        headers=headers,
    )
    assert off.status_code == 422
    assert "off the plane" in off.json()["detail"]

    response = site.client.get(
        f"/api/projects/alpha/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/shapes/sr",
        headers=site.headers("viewer"),
    )
    assert response.status_code == 200
    sr = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(io.BytesIO(response.content)))
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    groups = sr.content.get_planar_roi_measurement_groups()
    assert len(groups) == len(shapes)
    # the SR's image coordinates are the pixel-centre indices + 0.5 (PS3.3 SCOORD origin)
    by_kind = {str(g.tracking_identifier).split(":")[1]: g for g in groups}
    np.testing.assert_allclose(
        np.asarray(by_kind["line"].roi.value), np.array(shapes["line"]) + 0.5, atol=1e-3
    )
    assert str(by_kind["box"].roi.GraphicType) == "POLYLINE"
    assert len(by_kind["box"].roi.value) == 5  # closed

    imported = site.client.post(
        "/api/projects/alpha/shapes/sr",
        content=response.content,
        headers={"Content-Type": "application/dicom", **headers},
    )
    assert imported.status_code == 201, imported.text
    back = imported.json()
    assert len(back) == len(made)
    for before, after in zip(made, back, strict=True):
        assert after["id"] != before["id"]
        for key in ("kind", "label", "sop", "series", "study", "frame_of_reference"):
            assert after[key] == before[key], key
        # Graphic Data is float32: equal to that precision
        np.testing.assert_allclose(after["points"], before["points"], atol=2e-3)


def test_real_tid1500_documents(site: Site, shared_data: Path) -> None:
    ct = pydicom.dcmread(shared_data / VARIANTS / "pydicom" / "CT_small.dcm")
    plane = ImagePlane.of(ct)
    for name, kinds in (
        ("sr_document.dcm", ["ellipse"]),
        ("sr_document_with_multiple_groups.dcm", ["ellipse", "polygon"]),
    ):
        data = (shared_data / VARIANTS / "highdicom" / name).read_bytes()
        ds = pydicom.dcmread(io.BytesIO(data))
        shapes = read_sr(data, lambda sop: (plane, str(ct.FrameOfReferenceUID)))
        assert [s.kind.value for s in shapes] == kinds
        for shape in shapes:
            assert shape.sop_uid == ct.SOPInstanceUID
            assert shape.study_uid == ct.StudyInstanceUID
            points = np.array(shape.points)
            normal = np.cross(plane.row_direction, plane.column_direction)
            # every point lies on the CT image's plane
            np.testing.assert_allclose((points - plane.origin) @ normal, 0, atol=1e-6)
        regions = [
            item
            for group in ds.ContentSequence
            for sub in getattr(group, "ContentSequence", [])
            for roi in getattr(sub, "ContentSequence", [])
            for item in [roi]
            if getattr(item, "ValueType", "") == "SCOORD"
        ]
        assert len(regions) == len(shapes)
        for region, shape in zip(regions, shapes, strict=True):
            stored = np.array(region.GraphicData, dtype=float).reshape(-1, 2)
            image = plane.to_image(shape.points)
            if region.GraphicType == "CIRCLE":  # centre and a point on the circle
                centre, edge = stored
                radius = np.hypot(*(edge - centre))
                np.testing.assert_allclose(image.mean(axis=0), centre, atol=1e-6)
                np.testing.assert_allclose(np.hypot(*(image - centre).T), [radius] * 4, atol=1e-6)
            elif np.allclose(stored[0], stored[-1]):  # closed: the first point repeated
                np.testing.assert_allclose(np.vstack([image, image[:1]]), stored, atol=1e-6)
            else:  # four open polyline points (this file's rectangle), read as a polygon
                np.testing.assert_allclose(image, stored, atol=1e-6)

    # and through the API, onto the stored CT_small
    data = (
        shared_data / VARIANTS / "highdicom" / "sr_document_with_multiple_groups.dcm"
    ).read_bytes()
    response = site.client.post(
        "/api/projects/alpha/shapes/sr",
        content=data,
        headers={"Content-Type": "application/dicom", **site.headers("annotator")},
    )
    assert response.status_code == 201, response.text
    assert [s["kind"] for s in response.json()] == ["ellipse", "polygon"]
    assert {s["sop"] for s in response.json()} == {ct.SOPInstanceUID}
    # not a measurement report: refused
    bad = site.client.post(
        "/api/projects/alpha/shapes/sr",
        content=(shared_data / VARIANTS / "pydicom" / "CT_small.dcm").read_bytes(),
        headers={"Content-Type": "application/dicom", **site.headers("annotator")},
    )
    assert bad.status_code == 400
