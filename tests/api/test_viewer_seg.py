"""Segmentation overlays: SEG series of a stored series, as label maps on its grid and meshes."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import trimesh
from scipy import ndimage

from carina.core.labels import Label, LabelSet
from carina.core.volume import LabelMap
from carina.dicom import load_series, scan
from carina.dicom.seg import SegType, build_segmentation

from .conftest import Site, build_site
from .test_viewer_render import LUNG, stow

ORIGIN = "http://viewer.local"


@pytest.fixture(scope="module")
def seg_site(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp("viewer-seg") / "data"
    for site in build_site(data_dir, cors_origins=[ORIGIN]):
        stow(site, [p.read_bytes() for p in sorted((shared_data / LUNG).glob("*.dcm"))])
        yield site


def _lung_labels(shared_data: Path) -> tuple[LabelMap, list[pydicom.Dataset]]:
    """Lungs (air inside the body) as label 1 and bone (> 300 HU) as label 2, on the CT grid."""
    volume = load_series(scan(shared_data / LUNG).series[0]).volume
    hu = np.asarray(volume.array)
    regions, _ = ndimage.label(hu < -400)
    border = np.unique(
        np.r_[
            regions[0].ravel(),
            regions[-1].ravel(),
            regions[:, 0].ravel(),
            regions[:, -1].ravel(),
        ]
    )
    array = np.zeros(hu.shape, dtype=np.uint8)
    array[(regions > 0) & ~np.isin(regions, border)] = 1
    array[hu > 300] = 2
    labels = LabelSet([Label(1, "lung", (0, 200, 255)), Label(2, "bone", (240, 240, 200))])
    sources = [pydicom.dcmread(p) for p in sorted((shared_data / LUNG).glob("*.dcm"))]
    return LabelMap(array, volume.geometry, labels=labels), sources


def _stow_seg(site: Site, labels: LabelMap, sources: list[pydicom.Dataset], **kw: object) -> str:
    seg = build_segmentation(labels, sources, **kw)  # type: ignore[arg-type]
    buffer = io.BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    stow(site, [buffer.getvalue()])
    return str(seg.SeriesInstanceUID)


def _base(sources: list[pydicom.Dataset], project: str = "alpha") -> str:
    ds = sources[0]
    return f"/api/projects/{project}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"


def test_labelmap_is_the_mask_voxel_for_voxel(seg_site: Site, shared_data: Path) -> None:
    site = seg_site
    labels, sources = _lung_labels(shared_data)
    assert (labels.array == 1).sum() > 100_000
    seg_uid = _stow_seg(site, labels, sources, series_description="lungs and bone")
    binary_uid = _stow_seg(
        site, labels, sources, seg_type=SegType.BINARY, series_description="binary"
    )
    base = _base(sources)
    headers = site.headers("viewer")
    listed = site.client.get(base + "/segmentations", headers=headers)
    assert listed.status_code == 200, listed.text
    by_series = {s["series"]: s for s in listed.json()}
    assert set(by_series) == {seg_uid, binary_uid}
    entry = by_series[seg_uid]
    assert entry["description"] == "lungs and bone"
    assert [(x["value"], x["name"]) for x in entry["labels"]] == [(1, "lung"), (2, "bone")]
    # colours go through CIELab in the SEG: back within rounding
    assert np.abs(np.array(entry["labels"][0]["color"]) - [0, 200, 255]).max() <= 2
    volume = site.client.get(base + "/volume", headers=headers).json()
    for uid in (seg_uid, binary_uid):
        response = site.client.get(
            f"{base}/segmentations/{uid}/labelmap", headers={**headers, "Origin": ORIGIN}
        )
        assert response.status_code == 200, response.text
        # a viewer on another origin may read the grid headers
        exposed = response.headers["access-control-expose-headers"].lower()
        assert {"x-carina-shape", "x-carina-dtype", "x-carina-affine"} <= {
            h.strip() for h in exposed.split(",")
        }
        assert response.headers["content-type"] == "application/octet-stream"
        shape = [int(v) for v in response.headers["X-Carina-Shape"].split(",")]
        assert shape == volume["shape"] == [30, 512, 512]
        assert response.headers["X-Carina-Dtype"] == "uint8"
        affine = np.array([float(v) for v in response.headers["X-Carina-Affine"].split(",")])
        assert affine.reshape(4, 4) == pytest.approx(np.array(volume["affine"]))
        got = np.frombuffer(response.content, dtype=np.uint8).reshape(shape)
        expected = np.asarray(labels.array).transpose(2, 1, 0)
        assert np.array_equal(got, expected), uid


def test_mesh_lies_inside_the_volume(seg_site: Site, shared_data: Path) -> None:
    site = seg_site
    labels, sources = _lung_labels(shared_data)
    seg_uid = _stow_seg(site, labels, sources, series_description="mesh")
    base = _base(sources)
    headers = site.headers("viewer")
    url = f"{base}/segmentations/{seg_uid}/meshes/1"
    response = site.client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "model/stl"
    mesh = trimesh.load(io.BytesIO(response.content), file_type="stl")
    assert len(mesh.faces) > 1000
    # the volume's extent in LPS: voxel edges, half a voxel beyond the corner voxel centres
    n = np.array(labels.geometry.shape) - 0.5
    box = np.array([[a, b, c] for a in (-0.5, n[0]) for b in (-0.5, n[1]) for c in (-0.5, n[2])])
    edges = labels.geometry.index_to_world(box)
    lo, hi = edges.min(axis=0), edges.max(axis=0)
    assert (mesh.bounds[0] >= lo - 1e-3).all()
    assert (mesh.bounds[1] <= hi + 1e-3).all()
    # the lungs fill much of the chest: their surface spans a good part of it
    assert (mesh.bounds[1] - mesh.bounds[0])[0] > 200
    # and its volume is the voxel volume of the mask, within partial-voxel effects
    voxels = (np.asarray(labels.array) == 1).sum() * labels.geometry.voxel_volume_mm3
    assert abs(abs(mesh.volume) - voxels) / voxels < 0.15
    # the second request is served from the cache, byte for byte
    again = site.client.get(url, headers=headers)
    assert again.content == response.content
    missing = site.client.get(f"{base}/segmentations/{seg_uid}/meshes/7", headers=headers)
    assert missing.status_code == 404


def test_unknown_or_foreign_segmentations(seg_site: Site, shared_data: Path) -> None:
    site = seg_site
    labels, sources = _lung_labels(shared_data)
    base = _base(sources)
    headers = site.headers("viewer")
    own = site.studies["alpha"]
    # the CT series itself is not a segmentation, nor is an unknown series
    for seg in (str(sources[0].SeriesInstanceUID), "1.2.3.4.5"):
        url = f"{base}/segmentations/{seg}/labelmap"
        assert site.client.get(url, headers=headers).status_code == 404
    # a SEG series is not a volume to render
    segs = site.client.get(base + "/segmentations", headers=headers).json()
    if not segs:  # this test runs alone
        _stow_seg(site, labels, sources)
        segs = site.client.get(base + "/segmentations", headers=headers).json()
    seg_volume = base.rsplit("/", 1)[0] + f"/{segs[0]['series']}/volume"
    not_image = site.client.get(seg_volume, headers=headers)
    assert not_image.status_code == 400, not_image.text
    other = f"/api/projects/alpha/studies/{own.study}/series/{own.series}/segmentations"
    assert site.client.get(other, headers=headers).json() == []
    assert (
        site.client.get(base + "/segmentations", headers=site.headers("outsider")).status_code
        == 404
    )
    beta = _base(sources, "beta") + "/segmentations"
    assert site.client.get(beta, headers=site.headers("outsider")).status_code == 404
