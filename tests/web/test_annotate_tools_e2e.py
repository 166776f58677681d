"""The editing panel's own tools in a real browser, on the real lung CT (30 slices of 512x512).

A server of its own holds the CT. One annotator, one new segmentation, seven saved versions made
in the browser: click region growing of a lung (the server's grow endpoint), a bucket fill of the
other lung by HU range, a polygon fill of the tumour with the lung label locked, brush dots
removed again by "keep largest", a tumour polygon on another slice and the interpolation of the
slices between. Each version is read back through the API and checked against the CT's
Hounsfield units (carina.dicom) and numpy/scipy/skimage computations of the same operation.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from scipy import ndimage
from skimage.draw import polygon as draw_polygon

from carina.dicom import load_series, scan

from .conftest import CHROMIUM, PROJECT, WebServer, prepare, run_e2e, serve
from .test_viewer_e2e import _stow

LUNG, TUMOUR = 1, 2
RANGE = (-1000, -500)  # lung air
GROW_SEED = (390, 220)  # (column, row) in one lung, on the slice the stack opens on
BUCKET_SEED = (130, 200)  # in the other lung
DOTS = [(256, 40), (256, 470)]  # brush dots outside the body: islands of the lung label
SLICE2 = 20
HIGH = 300  # a label value above 255: 16-bit label maps
ISLAND_SIZE = 5000  # "remove islands" drops components smaller than this (voxels)


@pytest.fixture(scope="module")
def tools_server(tmp_path_factory: pytest.TempPathFactory, web_bundle: Path) -> Iterator[WebServer]:
    if not CHROMIUM.exists():
        pytest.fail(f"chromium not found at {CHROMIUM} (scripts/system-deps.sh installs it)")
    data_dir = tmp_path_factory.mktemp("annotate-tools") / "data"
    prepare(data_dir, web_bundle)
    with serve(data_dir, web_bundle) as server:
        yield server


def _octagon(centre: tuple[float, float], rx: float, ry: float) -> list[list[float]]:
    return [
        [centre[0] + rx * math.cos(a), centre[1] + ry * math.sin(a)]
        for a in np.linspace(0, 2 * math.pi, 8, endpoint=False)
    ]


def _inside(points: list[list[float]], shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centres are inside a polygon given in image coordinates (pixel (c, r) covers
    [c, c+1) x [r, r+1)): skimage's polygon on pixel-centre coordinates."""
    xy = np.asarray(points, dtype=float)
    mask = np.zeros(shape, bool)
    rr, cc = draw_polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape)
    mask[rr, cc] = True
    return mask


def _outline_distance(points: list[list[float]], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Distance (pixels) of pixel centres to the polygon's outline."""
    xy = np.asarray(points, dtype=float)
    px = np.stack([cols + 0.5, rows + 0.5], axis=1)
    best = np.full(len(px), np.inf)
    for a, b in zip(xy, np.roll(xy, -1, axis=0), strict=True):
        ab = b - a
        t = np.clip(((px - a) @ ab) / max(float(ab @ ab), 1e-12), 0, 1)
        best = np.minimum(best, np.linalg.norm(px - (a + t[:, None] * ab), axis=1))
    return best


def _box_centre(box: tuple[int, int, int, int]) -> tuple[int, int]:
    return (box[0] + box[2]) // 2, (box[1] + box[3]) // 2


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def test_panel_tools_on_the_lung_ct(shared_data: Path, tools_server: WebServer) -> None:
    server = tools_server
    folder = shared_data / "lung_ct_tumor_boxes"
    files = sorted((folder / "ct_dicom").glob("*.dcm"))
    stored = _stow(server, files)
    assert len(stored["00081199"]["Value"]) == 30
    first_file = pydicom.dcmread(files[0], stop_before_pixels=True)
    study, series = str(first_file.StudyInstanceUID), str(first_file.SeriesInstanceUID)
    volume = load_series(scan(files[0].parent).series[0]).volume
    hu = np.transpose(np.asarray(volume.array), (2, 1, 0))  # (slice, row, column)
    assert hu.shape == (30, 512, 512)
    affine = np.asarray(volume.geometry.affine)

    # the radiologists' tumour boxes (VOC, pixels) on the two key slices
    index = {
        row.split(",")[0]: row.split(",")
        for row in (folder / "slice_index.csv").read_text().splitlines()[1:]
    }
    z = np.asarray([float(index[f"ct_dicom/{f.name}"][2]) for f in files])
    order = np.argsort(z)  # load_series sorts along the slice normal (+z here)

    def box(k: int) -> tuple[int, int, int, int]:
        found = (
            ET.parse(folder / "annotations_voc" / index[f"ct_dicom/{files[order[k]].name}"][3])
            .getroot()
            .find(".//bndbox")
        )
        assert found is not None
        xmin, ymin, xmax, ymax = (
            int(found.findtext(k) or 0) for k in ("xmin", "ymin", "xmax", "ymax")
        )
        return xmin, ymin, xmax, ymax

    b15, b20 = box(15), box(SLICE2)
    polygon = _octagon(
        ((b15[0] + b15[2]) / 2, (b15[1] + b15[3]) / 2), (b15[2] - b15[0]) / 2, (b15[3] - b15[1]) / 2
    )
    polygon2 = _octagon(
        ((b20[0] + b20[2]) / 2, (b20[1] + b20[3]) / 2), (b20[2] - b20[0]) / 3, (b20[3] - b20[1]) / 3
    )
    assert RANGE[0] <= hu[15, BUCKET_SEED[1], BUCKET_SEED[0]] <= RANGE[1]

    with server.client() as client:
        response = client.post(
            f"/api/projects/{PROJECT}/label-sets",
            json={
                "name": "chest",
                "labels": [
                    {"value": LUNG, "name": "lung", "color": [0, 200, 255]},
                    {"value": TUMOUR, "name": "tumour", "color": [255, 60, 60]},
                ],
            },
        )
        assert response.status_code == 201, response.text
        response = client.post(
            f"/api/projects/{PROJECT}/label-sets",
            json={
                "name": "wide",
                "labels": [
                    {"value": LUNG, "name": "lung", "color": [0, 200, 255]},
                    {"value": HIGH, "name": "nodule", "color": [255, 160, 0]},
                ],
            },
        )
        assert response.status_code == 201, response.text

    centre = lambda p: [p[0] + 0.5, p[1] + 0.5]  # noqa: E731 - a pixel's centre in image coordinates
    result = run_e2e(
        server,
        "annotate_tools.mjs",
        {
            "study": study,
            "series": series,
            "labelSet": "chest",
            "lung": LUNG,
            "tumour": TUMOUR,
            "grow": centre(GROW_SEED),
            "bucket": centre(BUCKET_SEED),
            "range": list(RANGE),
            "polygon": polygon,
            "dots": [centre(d) for d in DOTS],
            "islandSize": ISLAND_SIZE,
            "polygon2": polygon2,
            "slice2": SLICE2,
            "wide": {"labelSet": "wide", "high": HIGH},
            "seeds": {
                "inside": [centre(_box_centre(b15))],
                "outside": [centre(GROW_SEED), centre((b15[2] + 25, (b15[1] + b15[3]) // 2))],
            },
        },
        timeout=240,
    )
    assert result["pageErrors"] == [], result["pageErrors"]
    assert result["slice"] == 15

    seg_id = int(result["seg"])
    with server.client() as client:
        info = client.get(f"/api/projects/{PROJECT}/segmentations/{seg_id}").json()
        versions = info["versions"]
        maps = [np.zeros((30, 512, 512), np.uint8)]
        for v in versions:
            raw = client.get(f"/api/projects/{PROJECT}/segmentations/{seg_id}/versions/{v['id']}")
            assert raw.headers["X-Carina-Shape"] == "30,512,512"
            maps.append(np.frombuffer(raw.content, np.uint8).reshape(30, 512, 512))
        # the grow the browser asked for, asked again for the same point
        grow_points = result["grow"]["points"]
        grown = client.post(
            f"/api/projects/{PROJECT}/studies/{study}/series/{series}/grow",
            json={"method": "click", "points": grow_points},
        )
        assert grown.status_code == 200, grown.text
        # the seeds the browser sent, grown again by the server
        seeded = client.post(
            f"/api/projects/{PROJECT}/studies/{study}/series/{series}/grow",
            json={
                "method": "seeds",
                "points": result["seeds"]["points"],
                "background": result["seeds"]["background"],
            },
        )
        assert seeded.status_code == 200, seeded.text
    assert [v["number"] for v in versions] == list(range(1, 11))
    assert [v["parent"] for v in versions] == [None] + [v["id"] for v in versions[:-1]]
    tools = [v["tool"] for v in versions]
    assert tools == [
        "grow",
        f"BucketFill[{RANGE[0]},{RANGE[1]}]",
        "PolygonFill",
        "Brush",
        f"RemoveIslands[26,<{ISLAND_SIZE}]",
        "KeepLargest[26]",
        "PolygonFill",
        "Interpolate",
        f"BucketFill3D[{RANGE[0]},{RANGE[1]}]",
        "GrowSeeds",
    ]
    figures: dict[str, Any] = {"seconds": result["seconds"], "timings": result["timings"]}

    # 1. grow: exactly the server's region for the clicked point, as the lung label
    seed_ijk = np.linalg.inv(affine) @ np.r_[np.asarray(grow_points[0], float), 1.0]
    assert abs(seed_ijk[0] - GROW_SEED[0]) <= 1
    assert abs(seed_ijk[1] - GROW_SEED[1]) <= 1
    assert round(seed_ijk[2]) == 15
    shape = [int(n) for n in grown.headers["X-Carina-Shape"].split(",")]
    k0, r0, c0 = (int(n) for n in grown.headers["X-Carina-Offset"].split(","))
    block = np.frombuffer(grown.content, np.uint8).reshape(shape)
    region = np.zeros((30, 512, 512), bool)
    region[k0 : k0 + shape[0], r0 : r0 + shape[1], c0 : c0 + shape[2]] = block > 0
    v1 = maps[1]
    assert np.array_equal(v1, np.where(region, LUNG, 0))
    assert result["grow"]["changed"] == int(region.sum()) > 10000
    assert len(set(np.nonzero(region)[0].tolist())) > 5  # a 3D region
    figures["grow"] = int(region.sum())

    # 2. bucket fill: the 4-connected region of the clicked voxel within the HU range, on its slice
    k, r, c = result["bucket"]["seed"]
    assert k == 15
    assert abs(r - BUCKET_SEED[1]) <= 1
    assert abs(c - BUCKET_SEED[0]) <= 1
    in_range = (hu[15] >= RANGE[0]) & (hu[15] <= RANGE[1])
    components, _ = ndimage.label(in_range)
    component = components == components[r, c]
    assert component[r, c]
    v2 = maps[2]
    expected = v1.copy()
    expected[15][component] = LUNG
    assert np.array_equal(v2, expected)
    assert result["bucket"]["region"] == int(component.sum())
    # the region stopped where the HU left the range: its border voxels outside are out of range
    ring = ndimage.binary_dilation(component) & ~component
    assert not in_range[ring].any()
    figures["bucket"] = int(component.sum())

    # 3. polygon fill with the lung locked: the voxels inside the outline, less the lung's
    poly = result["polygon"]
    assert poly["k"] == 15
    v3 = maps[3]
    changed = v3 != v2
    assert set(np.nonzero(changed)[0].tolist()) == {15}
    assert (v3[changed] == TUMOUR).all()
    assert (v2[changed] != LUNG).all()  # the lock held
    inside = _inside(poly["points"], (512, 512))
    locked_inside = inside & (v2[15] == LUNG)
    assert locked_inside.sum() > 100  # the outline crossed the locked lung
    assert (v3[15][locked_inside] == LUNG).all()
    expected_changed = inside & (v2[15] != LUNG) & (v2[15] != TUMOUR)
    mismatch = changed[15] ^ expected_changed
    rows, cols = np.nonzero(mismatch)
    # pixel centres exactly on the outline may fall either way; nothing else differs
    assert (_outline_distance(poly["points"], rows, cols) < 0.01).all(), int(mismatch.sum())
    # the outline the mouse drew is the polygon of the test's vertices
    drawn = _inside(polygon, (512, 512))
    iou = (drawn & inside).sum() / (drawn | inside).sum()
    assert iou > 0.95, iou
    assert poly["before"] == {"1": int((v2 == 1).sum())}
    assert poly["after"] == {"1": int((v3 == 1).sum()), "2": int((v3 == 2).sum())}
    # the viewport shows the labels (coloured overlay pixels in its screenshot)
    assert result["polygonShot"]["coloured"] > 1000, result["polygonShot"]
    assert poly["undone"] == poly["before"]
    assert poly["redone"] == poly["after"]
    figures["polygon"] = {
        "filled": int(changed.sum()),
        "locked_kept": int(locked_inside.sum()),
        "iou": float(iou),
    }

    # 4. remove islands (components under ISLAND_SIZE voxels), then keep largest (3D,
    # 26-connected): one lung component left, the largest of those before
    v4, v5, v6 = maps[4], maps[5], maps[6]
    dots = v4 != v3
    assert (v4[dots] == LUNG).all()
    assert set(np.nonzero(dots)[0].tolist()) == {15}
    full = np.ones((3, 3, 3), bool)
    before, n_before = ndimage.label(v4 == LUNG, structure=full)
    assert n_before >= 4  # the grown lung, the bucket-filled lung, two dots
    sizes = np.bincount(before.ravel())[1:]
    big = np.isin(before, np.nonzero(sizes >= ISLAND_SIZE)[0] + 1)
    assert 1 < int((sizes >= ISLAND_SIZE).sum()) < n_before  # some removed, more than one kept
    assert np.array_equal(v5 == LUNG, big)
    assert result["removeIslands"]["changed"] == int(sizes[sizes < ISLAND_SIZE].sum())
    largest = before == (int(np.argmax(sizes)) + 1)
    _, n_after = ndimage.label(v6 == LUNG, structure=full)
    assert n_after == 1
    assert np.array_equal(v6 == LUNG, largest)
    assert np.array_equal(v6 == TUMOUR, v4 == TUMOUR)
    assert np.array_equal(v5 == TUMOUR, v4 == TUMOUR)
    # "keep largest" was undone (back to version 5) and redone (version 6) before the save
    counts_of = lambda m: {  # noqa: E731
        str(k): int(n) for k, n in zip(*np.unique(m[m > 0], return_counts=True), strict=True)
    }
    assert result["islands"]["undone"] == counts_of(v5)
    assert result["islands"]["redone"] == result["islands"]["counts"] == counts_of(v6)
    figures["islands"] = {
        "components_before": int(n_before),
        "sizes": sorted(sizes.tolist())[::-1][:4],
    }

    # 5. interpolation between the tumour on slices 15 and 20: the slices between filled, within
    # the two key slices' bounding box, only where nothing was labelled
    v7, v8 = maps[7], maps[8]
    assert set(np.nonzero(v7 != v6)[0].tolist()) == {SLICE2}
    key_a, key_b = v7[15] == TUMOUR, v7[SLICE2] == TUMOUR
    (ra0, ra1, ca0, ca1), (rb0, rb1, cb0, cb1) = _bbox(key_a), _bbox(key_b)
    rmin, rmax, cmin, cmax = min(ra0, rb0), max(ra1, rb1), min(ca0, cb0), max(ca1, cb1)
    added = v8 != v7
    assert set(np.nonzero(added)[0].tolist()) == set(range(16, SLICE2))
    assert (v8[added] == TUMOUR).all()
    assert (v7[added] == 0).all()
    between = []
    for k in range(16, SLICE2):
        slice_mask = v8[k] == TUMOUR
        assert slice_mask.sum() > 100
        r0_, r1_, c0_, c1_ = _bbox(slice_mask)
        assert r0_ >= rmin
        assert c0_ >= cmin
        assert r1_ <= rmax
        assert c1_ <= cmax
        between.append(int(slice_mask.sum()))
    # the shapes go from one key slice's to the other's: areas between the two
    low, high = sorted([int(key_a.sum()), int(key_b.sum())])
    assert all(low * 0.8 <= n <= high * 1.2 for n in between), (low, between, high)
    figures["interpolate"] = {"key": [int(key_a.sum()), int(key_b.sum())], "between": between}

    # 6. bucket fill in 3D: the 6-connected region of the clicked voxel within the HU range
    k, r, c = result["bucket3d"]["seed"]
    assert k == 15
    assert abs(r - BUCKET_SEED[1]) <= 1
    assert abs(c - BUCKET_SEED[0]) <= 1
    in_range3d = (hu >= RANGE[0]) & (hu <= RANGE[1])
    components3d, _ = ndimage.label(in_range3d)  # faces only: 6-connected
    component3d = components3d == components3d[k, r, c]
    v9 = maps[9]
    assert np.array_equal(v9, np.where(component3d, LUNG, v8))
    assert result["bucket3d"]["region"] == int(component3d.sum())
    slices3d = sorted(set(np.nonzero(component3d)[0].tolist()))
    assert len(slices3d) > 5
    figures["bucket3d"] = {"region": int(component3d.sum()), "slices": [slices3d[0], slices3d[-1]]}
    assert {
        str(k): int(n) for k, n in zip(*np.unique(v9[v9 > 0], return_counts=True), strict=True)
    } == result["final"]

    # 6b. grow-from-seeds: exactly the server's region for the same seeds, as the tumour label
    assert (result["seedCount"]["inside"], result["seedCount"]["outside"]) == ("1", "2")
    inside_ijk = np.linalg.inv(affine) @ np.r_[np.asarray(result["seeds"]["points"][0], float), 1.0]
    assert round(inside_ijk[2]) == 15
    assert abs(inside_ijk[0] - _box_centre(b15)[0]) <= 1
    shape = [int(n) for n in seeded.headers["X-Carina-Shape"].split(",")]
    k0, r0, c0 = (int(n) for n in seeded.headers["X-Carina-Offset"].split(","))
    seeded_block = np.frombuffer(seeded.content, np.uint8).reshape(shape)
    seeded_region = np.zeros((30, 512, 512), bool)
    seeded_region[k0 : k0 + shape[0], r0 : r0 + shape[1], c0 : c0 + shape[2]] = seeded_block > 0
    assert np.array_equal(maps[10], np.where(seeded_region, TUMOUR, v9))
    assert seeded_region[15, round(inside_ijk[1]), round(inside_ijk[0])]
    assert 0 < result["seeds"]["changed"] <= int(seeded_region.sum())
    # the tumour box holds the grown region's voxels on the seeds' slice, not the whole lung
    on_slice = seeded_region[15]
    assert on_slice.sum() < 0.5 * (v9[15] == LUNG).sum()
    figures["seeds"] = {"region": int(seeded_region.sum()), "slice15": int(on_slice.sum())}

    # 7. a label above 255: saved as uint16 maps, the polygon's voxels hold 300, the bucket fill's 1
    wide = result["wide"]
    with server.client() as client:
        info = client.get(f"/api/projects/{PROJECT}/segmentations/{wide['seg']}").json()
        wide_maps = []
        for v in info["versions"]:
            raw = client.get(
                f"/api/projects/{PROJECT}/segmentations/{wide['seg']}/versions/{v['id']}"
            )
            assert raw.headers["X-Carina-Dtype"] == "uint16"
            wide_maps.append(np.frombuffer(raw.content, "<u2").reshape(30, 512, 512))
    assert [v["tool"] for v in info["versions"]] == [
        "PolygonFill",
        f"BucketFill[{RANGE[0]},{RANGE[1]}]",
    ]
    w1, w2 = wide_maps
    assert set(np.unique(w1).tolist()) == {0, HIGH}
    assert set(np.nonzero(w1)[0].tolist()) == {15}
    inside_w = _inside(wide["polygon"]["points"], (512, 512))
    mismatch_w = (w1[15] == HIGH) ^ inside_w
    rows_w, cols_w = np.nonzero(mismatch_w)
    assert (_outline_distance(wide["polygon"]["points"], rows_w, cols_w) < 0.01).all()
    expected_w2 = w1.copy()
    expected_w2[15][component] = LUNG  # the same 2D component as in step 2
    assert np.array_equal(w2, expected_w2)
    counts_w = {
        str(k): int(n) for k, n in zip(*np.unique(w2[w2 > 0], return_counts=True), strict=True)
    }
    assert wide["counts"] == counts_w
    assert wide["reloaded"] == counts_w
    figures["wide"] = counts_w
    print("annotate tools figures:", json.dumps(figures))
