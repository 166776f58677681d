"""Stored series as volumes and server-rendered planes, on the real lung CT and synthetic series."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from scipy import ndimage

from carina.dicom import load_series, scan
from carina.services.viewer import ByteLRU
from tests.archive.helpers import multipart_body
from tests.dicom_factory import ct_series

from .conftest import Site, build_site

LUNG = "lung_ct_tumor_boxes/ct_dicom"


def stow(site: Site, parts: list[bytes], project: str = "alpha", user: str = "owner") -> None:
    body, content_type = multipart_body(parts)
    response = site.client.post(
        f"/projects/{project}/dicom-web/studies",
        content=body,
        headers={**site.headers(user), "Content-Type": content_type},
    )
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def lung_site(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Site]:
    for site in build_site(tmp_path_factory.mktemp("viewer") / "data"):
        stow(site, [p.read_bytes() for p in sorted((shared_data / LUNG).glob("*.dcm"))])
        yield site


def _lung_uids(shared_data: Path) -> tuple[str, str]:
    ds = pydicom.dcmread(shared_data / LUNG / "001.dcm", stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


def _url(study: str, series: str, what: str, project: str = "alpha") -> str:
    return f"/api/projects/{project}/studies/{study}/series/{series}/{what}"


def _image(site: Site, url: str, user: str = "viewer", **params: object) -> np.ndarray:
    response = site.client.get(url, params=params, headers=site.headers(user))
    assert response.status_code == 200, response.text
    fmt = str(params.get("format", "png"))
    assert response.headers["content-type"] == f"image/{fmt}"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_volume_describes_the_series_in_k_j_i_order(lung_site: Site, shared_data: Path) -> None:
    study, series = _lung_uids(shared_data)
    response = lung_site.client.get(
        _url(study, series, "volume"), headers=lung_site.headers("viewer")
    )
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["shape"] == [30, 512, 512]
    assert info["spacing"] == pytest.approx([8.0, 0.646484375, 0.646484375])
    assert info["modality"] == "CT"
    assert info["bytes"] > 30 * 512 * 512
    affine = np.array(info["affine"])
    # (k, j, i) = (0, 0, 0) is the first pixel of the lowest slice, k runs superior by 8 mm
    assert affine @ [0, 0, 0, 1] == pytest.approx([-173.1767578125, -294.1767578125, 80, 1])
    assert affine @ [29, 0, 0, 1] == pytest.approx([-173.1767578125, -294.1767578125, 312, 1])
    assert affine @ [0, 1, 2, 1] == pytest.approx(
        [-173.1767578125 + 2 * 0.646484375, -294.1767578125 + 0.646484375, 80, 1]
    )
    assert info["planes"] == {"axial": 30, "coronal": 512, "sagittal": 512}
    assert info["window"] == [40, 400]


def test_axial_plane_is_the_slice_and_lungs_are_dark(lung_site: Site, shared_data: Path) -> None:
    study, series = _lung_uids(shared_data)
    url = _url(study, series, "render")
    lung_window = "-600,1500"
    image = _image(lung_site, url, plane="axial", index=15, window=lung_window)
    assert image.shape == (512, 512)
    # the same slice, windowed here from the loaded series
    volume = load_series(scan(shared_data / LUNG).series[0]).volume
    hu = np.asarray(volume.array)[:, :, 15].T  # [row, column]
    lo, hi = -600 - 750, -600 + 750
    expected = np.clip((hu - lo) / (hi - lo) * 255, 0, 255)
    assert np.abs(image.astype(float) - expected).max() <= 1.5
    # lungs: air inside the body (not connected to the border), dark grey in a lung window,
    # black in a soft-tissue window; the body wall bright; lung tissue denser than outside air
    regions, _ = ndimage.label(hu < -400)
    outside = np.isin(regions, np.unique(np.r_[regions[0], regions[-1], regions[:, 0]]))
    lungs = (regions > 0) & ~outside
    body = (hu > -100) & (hu < 200)
    assert lungs.sum() > 5000
    assert image[lungs].mean() < 100
    assert image[lungs].mean() > image[outside & (regions > 0)].mean() + 5
    assert image[body].mean() > 190
    soft = _image(lung_site, url, plane="axial", index=15, window="40,400")
    assert soft[lungs].mean() < 5
    # JPEG is accepted and decodes to the same picture, near enough
    jpeg = _image(lung_site, url, plane="axial", index=15, window=lung_window, format="jpeg")
    assert np.abs(jpeg.astype(float) - image).mean() < 4


def test_coronal_and_sagittal_have_square_pixels(lung_site: Site, shared_data: Path) -> None:
    study, series = _lung_uids(shared_data)
    url = _url(study, series, "render")
    coronal = _image(lung_site, url, plane="coronal", index=256)
    # 30 slices of 8 mm shown at 0.646 mm per pixel: 240 mm / 0.646 mm = 371 rows
    assert coronal.shape == (round(30 * 8 / 0.646484375), 512)
    sagittal = _image(lung_site, url, plane="sagittal", index=256, size=256)
    assert max(sagittal.shape) == 256
    assert sagittal.shape == (round(256 * 371 / 512), 256)


def test_slab_projections_bound_the_plane(lung_site: Site, shared_data: Path) -> None:
    study, series = _lung_uids(shared_data)
    url = _url(study, series, "render")
    common = {"plane": "axial", "index": 15, "window": "-600,1500"}
    plane = _image(lung_site, url, **common).astype(int)
    mip = _image(lung_site, url, slab=40, mode="mip", **common).astype(int)
    minip = _image(lung_site, url, slab=40, mode="minip", **common).astype(int)
    avg = _image(lung_site, url, slab=40, mode="avg", **common).astype(int)
    assert (mip >= plane).all()
    assert (minip <= plane).all()
    assert (minip <= avg).all()
    assert (avg <= mip).all()
    assert (mip > plane).mean() > 0.05  # vessels of neighbouring slices show up
    assert (minip < plane).mean() > 0.05


def test_patient_left_is_on_the_image_right(fresh_site: Site) -> None:
    site = fresh_site
    volume = np.full((20, 40, 30), -1000, dtype=np.int16)  # [slice, row, column]
    volume[8:12, 5:10, 24:28] = 1000  # high column index: patient left, low row: anterior
    volume[17:19, 20:30, 2:6] = 500  # superior, on the patient's right
    parts = ct_series(volume, spacing=(1.0, 1.0, 2.0), study_uid="1.2.826.0.1.3680043.10.9.1")
    stow(site, parts)
    series = str(pydicom.dcmread(io.BytesIO(parts[0])).SeriesInstanceUID)
    url = _url("1.2.826.0.1.3680043.10.9.1", series, "render")
    axial = _image(site, url, plane="axial", index=10, window="0,2000")
    assert axial.shape == (40, 30)
    ys, xs = np.nonzero(axial > 200)
    assert xs.min() >= 24  # patient left on the image right
    assert ys.max() < 10  # anterior up
    coronal = _image(site, url, plane="coronal", index=7, window="0,2000")
    assert coronal.shape == (40, 30)  # 20 slices x 2 mm = 40 rows of 1 mm
    rows_bright, cols_bright = np.nonzero(coronal > 100)
    assert cols_bright.min() >= 24  # patient left on the image right
    assert rows_bright.min() >= 40 - 2 * 12 - 1  # marker at slices 8..11: rows from the top
    assert rows_bright.max() <= 40 - 2 * 8 + 1
    sagittal = _image(site, url, plane="sagittal", index=25, window="0,2000")
    rows_s, cols_s = np.nonzero(sagittal > 100)
    assert cols_s.max() < 10  # anterior on the image left
    assert rows_s.min() >= 40 - 2 * 12 - 1  # superior up
    # the superior marker on the right: top of the image, seen in the right-most sagittal planes
    right = _image(site, url, plane="sagittal", index=3, window="0,2000")
    rows_r, _ = np.nonzero(right > 100)
    assert rows_r.max() < 6


def test_bad_parameters_unknown_series_and_foreign_projects(
    lung_site: Site, shared_data: Path
) -> None:
    site = lung_site
    study, series = _lung_uids(shared_data)
    url = _url(study, series, "render")
    headers = site.headers("viewer")
    for params in (
        {"plane": "oblique"},
        {"index": "30"},
        {"index": "-1"},
        {"index": "x"},
        {"slab": "-5"},
        {"mode": "sum"},
        {"window": "40"},
        {"window": "40,0"},
        {"format": "gif"},
        {"size": "4"},
    ):
        response = site.client.get(url, params=params, headers=headers)
        assert response.status_code == 400, (params, response.text)
    unknown = _url(study, "1.2.3.4.5", "render")
    assert site.client.get(unknown, headers=headers).status_code == 404
    assert site.client.get(_url(study, "1.2.3.4.5", "volume"), headers=headers).status_code == 404
    # a member of beta only: the study is not in beta, and alpha is not visible
    outsider = site.headers("outsider")
    assert site.client.get(url, headers=outsider).status_code == 404
    beta = _url(study, series, "render", project="beta")
    assert site.client.get(beta, headers=outsider).status_code == 404
    assert site.client.get(url).status_code == 401


def test_second_plane_comes_from_the_cache(lung_site: Site, shared_data: Path) -> None:
    site = lung_site
    study, series = _lung_uids(shared_data)
    cache = site.app.state.viewer_cache
    misses = cache.misses
    url = _url(study, series, "render")
    for plane in ("axial", "coronal", "sagittal"):
        _image(site, url, plane=plane)
    assert cache.misses <= misses + 1
    assert cache.size >= 30 * 512 * 512 * 2


def test_cache_is_bounded_by_bytes_and_loads_once() -> None:
    cache = ByteLRU(100)
    loads: list[str] = []

    def loader(name: str, size: int) -> Callable[[], tuple[str, int]]:
        def load() -> tuple[str, int]:
            loads.append(name)
            time.sleep(0.05)
            return name, size

        return load

    assert cache.get("a", loader("a", 40)) == "a"
    assert cache.get("b", loader("b", 40)) == "b"
    assert cache.get("a", loader("a", 40)) == "a"  # a is now the most recently used
    cache.get("c", loader("c", 40))  # over 100 bytes: b, the least recently used, goes
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
    assert cache.size == 80
    assert cache.get("huge", loader("huge", 500)) == "huge"  # served, not kept
    assert "huge" not in cache
    assert cache.size == 80
    # concurrent requests for one key load it once
    loads.clear()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: cache.get("d", loader("d", 10)), range(8)))
    assert results == ["d"] * 8
    assert loads == ["d"]
