"""Interactive region growing through the API: clicks in patient coordinates on the real lung
CT give the block of the grid that holds the region, equal to the tool run here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from carina.dicom import scan
from carina.dicom.series import load_series
from carina.models.interactive import click_grow

from .conftest import Site, build_site


@pytest.fixture(scope="module")
def ct_site(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Site]:
    for site in build_site(tmp_path_factory.mktemp("grow") / "data"):
        files = sorted((shared_data / "lung_ct_tumor_boxes" / "ct_dicom").glob("*.dcm"))
        results = site.app.state.archive.ingest([(str(p), p.read_bytes()) for p in files])
        assert all(r.status.ok for r in results)
        site.store.add_studies("alpha", [results[0].study_instance_uid])
        yield site


@pytest.fixture(scope="module")
def ct(shared_data: Path) -> tuple[str, str, object]:
    files = sorted((shared_data / "lung_ct_tumor_boxes" / "ct_dicom").glob("*.dcm"))
    header = pydicom.dcmread(files[0], stop_before_pixels=True)
    (series,) = scan(files[0].parent).series
    return str(header.StudyInstanceUID), str(header.SeriesInstanceUID), load_series(series).volume


def _lung_click(volume: object) -> list[float]:
    """A point in the right lung: the darkest voxel of a patch left of the image centre."""
    array = np.asarray(volume.array)  # type: ignore[attr-defined]
    k = array.shape[2] // 2
    patch = array[100:200, 200:300, k]
    i, j = np.unravel_index(int(np.argmin(patch)), patch.shape)
    index = np.array([100 + i, 200 + j, k, 1.0])
    assert array[int(index[0]), int(index[1]), k] < -800
    point = volume.geometry.affine @ index  # type: ignore[attr-defined]
    return [float(v) for v in point[:3]]


def test_a_click_in_a_lung_grows_that_lung(ct_site: Site, ct: tuple[str, str, object]) -> None:
    study, series, volume = ct
    click = _lung_click(volume)
    url = f"/api/projects/alpha/studies/{study}/series/{series}/grow"
    started = time.perf_counter()
    response = ct_site.client.post(
        url,
        json={"method": "click", "points": [click], "tolerance_hu": 300},
        headers=ct_site.headers("annotator"),
    )
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    shape = [int(n) for n in response.headers["X-Carina-Shape"].split(",")]
    k0, j0, i0 = (int(n) for n in response.headers["X-Carina-Offset"].split(","))
    block = np.frombuffer(response.content, np.uint8).reshape(shape)
    full = np.zeros(tuple(reversed(volume.array.shape)), np.uint8)  # type: ignore[attr-defined]
    full[k0 : k0 + shape[0], j0 : j0 + shape[1], i0 : i0 + shape[2]] = block
    expected = click_grow(volume, [click], tolerance_hu=300).labels  # type: ignore[arg-type]
    assert np.array_equal(full.transpose(2, 1, 0), np.asarray(expected.array))
    voxels = int(response.headers["X-Carina-Voxels"])
    assert voxels == int(block.sum()) > 50_000
    hu = np.asarray(volume.array)[full.transpose(2, 1, 0) > 0]  # type: ignore[attr-defined]
    assert hu.max() < -300  # air-filled lung only
    ml = float(response.headers["X-Carina-Volume-Ml"])
    assert 500 < ml < 4000
    assert "Server-Timing" in response.headers
    assert elapsed < 30  # the ROI keeps it interactive (seconds on a loaded 2-core machine)


def test_grow_refuses_bad_points_and_viewers(ct_site: Site, ct: tuple[str, str, object]) -> None:
    study, series, volume = ct
    url = f"/api/projects/alpha/studies/{study}/series/{series}/grow"
    outside = ct_site.client.post(
        url, json={"points": [[0.0, 0.0, 5000.0]]}, headers=ct_site.headers("annotator")
    )
    assert outside.status_code == 422
    assert "outside the image" in outside.json()["detail"]
    flat = ct_site.client.post(
        url, json={"points": [[0.0, 0.0]]}, headers=ct_site.headers("annotator")
    )
    assert flat.status_code == 422
    seeds = ct_site.client.post(
        url,
        json={"method": "seeds", "points": [_lung_click(volume)]},
        headers=ct_site.headers("annotator"),
    )
    assert seeds.status_code == 422
    assert "background" in seeds.json()["detail"]
    viewer = ct_site.client.post(
        url, json={"points": [_lung_click(volume)]}, headers=ct_site.headers("viewer")
    )
    assert viewer.status_code == 403
