"""Label editing in the viewer, in real browsers, on the real lung CT (30 slices of 512x512).

A server of its own (its archive holds the CT and one AI pre-label, a DICOM SEG of the lungs
built here from a threshold mask). Two annotators: A creates a segmentation, imports the
pre-label, paints the tumour with the threshold brush and saves; B, who loaded the same version,
saves after A and is refused. The server's versions are then checked voxel by voxel against the
CT's Hounsfield units read here with carina.dicom.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from carina.auth import Role
from carina.dicom import load_series, scan
from carina.services.auth import open_directory
from carina.services.settings import Settings

from .conftest import CHROMIUM, PROJECT, USER, WebServer, prepare, run_e2e, serve
from .test_viewer_e2e import _lung_seg, _stow

ANNOTATORS = [("annotator-a", "a-long-password-for-a"), ("annotator-b", "b-long-password-for-b")]
THRESHOLD = (-150, 400)  # soft tissue: the tumour, not the air of the lung around it
LABEL_SET = "chest"
BRUSH_MM = 8  # the panel's default brush radius


@pytest.fixture(scope="module")
def annotate_server(
    tmp_path_factory: pytest.TempPathFactory, web_bundle: Path
) -> Iterator[WebServer]:
    if not CHROMIUM.exists():
        pytest.fail(f"chromium not found at {CHROMIUM} (scripts/system-deps.sh installs it)")
    data_dir = tmp_path_factory.mktemp("annotate") / "data"
    prepare(data_dir, web_bundle)
    with open_directory(Settings(data_dir=data_dir)) as directory:
        owner = directory.store.principal(USER)
        for name, password in ANNOTATORS:
            directory.store.create_user(name, password)
            directory.store.set_member(owner, PROJECT, name, Role.ANNOTATOR)
    with serve(data_dir, web_bundle) as server:
        yield server


def _hu_volume(files: list[Path]) -> np.ndarray:
    """Hounsfield units as (slice, row, column) in the order the label maps use."""
    volume = load_series(scan(files[0].parent).series[0]).volume
    return np.transpose(np.asarray(volume.array), (2, 1, 0))


def test_two_annotators_edit_the_pre_label(shared_data: Path, annotate_server: WebServer) -> None:
    server = annotate_server
    folder = shared_data / "lung_ct_tumor_boxes"
    files = sorted((folder / "ct_dicom").glob("*.dcm"))
    stored = _stow(server, files)
    assert len(stored["00081199"]["Value"]) == 30
    first_file = pydicom.dcmread(files[0], stop_before_pixels=True)
    study, series = str(first_file.StudyInstanceUID), str(first_file.SeriesInstanceUID)
    seg_bytes, mask = _lung_seg(files)
    seg_file = server.data_dir.parent / "prelabel-seg.dcm"
    seg_file.write_bytes(seg_bytes)
    _stow(server, [seg_file])
    hu = _hu_volume(files)
    assert hu.shape == (30, 512, 512)
    assert mask.shape == hu.shape

    # the stack opens on slice 15; the radiologists' tumour box on that slice (VOC, pixels)
    index = {
        row.split(",")[0]: row.split(",")
        for row in (folder / "slice_index.csv").read_text().splitlines()[1:]
    }
    z = np.asarray([float(index[f"ct_dicom/{f.name}"][2]) for f in files])
    order = np.argsort(z)  # load_series sorts along the slice normal (+z here)
    middle = files[order[15]]
    box = (
        ET.parse(folder / "annotations_voc" / index[f"ct_dicom/{middle.name}"][3])
        .getroot()
        .find(".//bndbox")
    )
    assert box is not None
    xmin, ymin, xmax, ymax = (int(box.findtext(k) or 0) for k in ("xmin", "ymin", "xmax", "ymax"))
    centre = ((xmin + xmax) // 2, (ymin + ymax) // 2)

    with server.client() as client:
        response = client.post(
            f"/api/projects/{PROJECT}/label-sets",
            json={
                "name": LABEL_SET,
                "labels": [
                    {"value": 1, "name": "lung", "color": [0, 200, 255]},
                    {"value": 2, "name": "tumour", "color": [255, 60, 60]},
                ],
            },
        )
        assert response.status_code == 201, response.text

    half = (xmax - xmin) // 3
    start, end = xmin - 25, centre[0] + half
    result = run_e2e(
        server,
        "annotate.mjs",
        {
            "study": study,
            "series": series,
            "labelSet": LABEL_SET,
            "users": [list(u) for u in ANNOTATORS],
            "label": 2,
            "threshold": list(THRESHOLD),
            # from the lung outside the box, across the tumour's edge, into the tumour
            "paint": [[start, centre[1]], [end, centre[1]]],
            # B paints in the lung on the other side of the chest
            "other": [[512 - centre[0] - 10, centre[1]], [512 - centre[0] + 10, centre[1]]],
            # a rectangle over the tumour box's upper half and the lung around it
            "rect": [[xmin - 20, ymin - 20], [xmax, centre[1] - 10]],
            # the 3D brush in the other lung
            "sphere": [512 - centre[0], centre[1] + 30],
        },
        timeout=240,
    )
    assert result["pageErrors"] == [], result["pageErrors"]
    # the browser logs the refused save (HTTP 409) itself; nothing else went wrong in B's page
    b_errors = [e for e in result["b"]["pageErrors"] if "status of 409" not in e]
    assert b_errors == []
    assert len(result["b"]["pageErrors"]) == 1

    # the pre-label is the SEG's mask, voxel for voxel, as version 1 with the model recorded
    seg_id = int(result["created"]["seg"])
    assert result["prelabel"]["counts"] == {"1": int(mask.sum())}
    with server.client() as client:
        info = client.get(f"/api/projects/{PROJECT}/segmentations/{seg_id}").json()
        versions = info["versions"]
        # B's save made nothing: every version is A's
        assert [v["number"] for v in versions] == list(range(1, len(versions) + 1))
        assert {v["author"] for v in versions} == {"annotator-a"}
        v1, v2 = versions[:2]
        assert v1["model"] == "lung-threshold v1"
        assert v1["author"] == "annotator-a"
        assert v2["parent"] == v1["id"]
        assert info["head"] == versions[-1]["id"]
        assert v2["author"] == "annotator-a"
        assert v2["tool"] == f"ThresholdBrush[{THRESHOLD[0]},{THRESHOLD[1]}]"
        assert v2["comment"] == "tumour by threshold brush"
        maps = []
        for v in (v1, v2):
            raw = client.get(f"/api/projects/{PROJECT}/segmentations/{seg_id}/versions/{v['id']}")
            assert raw.headers["X-Carina-Shape"] == "30,512,512"
            maps.append(np.frombuffer(raw.content, np.uint8).reshape(30, 512, 512))
        diff = client.get(
            f"/api/projects/{PROJECT}/segmentations/{seg_id}/versions/{v2['id']}/diff"
        ).json()
    first, second = maps
    assert np.array_equal(first, mask.astype(np.uint8))
    changed = first != second
    added = changed & (second == 2)
    # the edit: tumour voxels, all on the slice painted, all in the threshold's HU range
    assert added.sum() > 50
    assert np.array_equal(changed, added)
    assert set(np.nonzero(added)[0].tolist()) == {15}
    values = hu[added]
    assert values.min() >= THRESHOLD[0], values.min()
    assert values.max() <= THRESHOLD[1], values.max()
    rows, cols = np.nonzero(added[15])
    inside_box = (cols >= xmin) & (cols <= xmax) & (rows >= ymin) & (rows <= ymax)
    assert inside_box.mean() > 0.7, inside_box.mean()  # mostly the tumour
    # the server's diff agrees: tumour added, the lungs untouched
    assert diff["changed_voxels"] == int(added.sum())
    by_label = {item["value"]: item for item in diff["labels"]}
    assert by_label[1]["added_voxels"] == by_label[1]["removed_voxels"] == 0
    assert by_label[2]["added_voxels"] == int(added.sum())
    # inside the stroke (half the brush radius either side of its path) the threshold decided:
    # voxels in the range were painted, voxels outside it (lung air) were left alone
    spacing = float(pydicom.dcmread(middle, stop_before_pixels=True).PixelSpacing[1])
    inner = BRUSH_MM / 2 / spacing
    yy, xx = np.mgrid[0:512, 0:512]
    x0, x1 = start, end
    along = np.clip(xx, x0, x1)
    stroke = (xx - along) ** 2 + (yy - centre[1]) ** 2 <= inner**2
    in_range = (hu[15] >= THRESHOLD[0]) & (hu[15] <= THRESHOLD[1])
    assert (stroke & ~in_range).sum() > 20  # the stroke crossed voxels the range excludes
    assert added[15][stroke & in_range].mean() > 0.95
    figures = {
        "added": int(added.sum()),
        "hu": [float(values.min()), float(values.max())],
        "excluded_in_stroke": int((stroke & ~in_range).sum()),
        "in_box": float(inside_box.mean()),
    }
    print("annotate figures:", json.dumps(figures))
    # what the browser counted is what the server stored
    assert result["painted"] == {"1": int((second == 1).sum()), "2": int(added.sum())}
    assert result["undone"] == result["prelabel"]["counts"]
    assert result["redone"] == result["painted"]
    assert result["saved"]["version"] == str(v2["id"])
    assert result["reloaded"]["counts"] == result["painted"]
    assert result["reloaded"]["version"] == str(v2["id"])
    assert any("#2" in item and "annotator-a" in item for item in result["history"])

    # the other tools, on A's reloaded head: the locked lung label kept every voxel under the
    # rectangle fill, which added tumour voxels; the eraser removed some; the 3D brush reached
    # the slices either side of the one shown (8 mm apart, 20 mm radius)
    tools = result["tools"]
    assert tools["counts0"] == result["painted"]
    assert tools["rect"]["1"] == result["painted"]["1"]
    rect_cols = (xmax - (xmin - 20)) + 1
    rect_rows = (centre[1] - 10 - (ymin - 20)) + 1
    assert 0 < tools["rect"]["2"] - result["painted"]["2"] <= rect_cols * rect_rows
    assert tools["erased"]["2"] < tools["rect"]["2"]
    assert tools["before"][14] == tools["before"][16] == 0
    assert tools["sphere"][14] > 100
    assert tools["sphere"][16] > 100
    # autosave (every 3 s) saved the tools' edits as A's versions on top of version 2, one after
    # the other, each recording the tools it used; the last is the head, as the page held it
    later = versions[2:]
    assert later
    assert all(v["author"] == "annotator-a" for v in later)
    assert [v["parent"] for v in later] == [v["id"] for v in versions[1:-1]]
    used = {name for v in later for name in v["tool"].split(",")}
    assert used == {"RectangleScissors", "Eraser", "SphereBrush"}
    head = versions[-1]
    assert tools["autosaved"]["version"] == str(head["id"])
    assert {k: c for k, c in head["voxel_counts"].items() if c} == tools["final"]

    # B loaded version 1, edited and saved after A: refused, told the head, nothing overwritten
    b = result["b"]
    assert b["loaded"]["version"] == str(v1["id"])
    assert b["edited"] != result["prelabel"]["counts"]
    assert b["afterConflict"]["status"] == "conflict"
    assert b["conflict"]["hidden"] is False
    assert b["conflict"]["head"] == str(head["id"])
    assert b["conflict"]["headNumber"] == str(head["number"])
    assert f"version #{head['number']}" in b["conflict"]["text"]
    assert "annotator-a" in b["conflict"]["text"]
    # loading the head gives B exactly A's version
    assert b["head"]["version"] == str(head["id"])
    assert b["head"]["counts"] == tools["final"]
    print("annotate e2e:", json.dumps({k: result[k] for k in ("timings", "seconds", "painted")}))
    print(
        "annotate tools:",
        json.dumps({k: tools[k] for k in ("rect", "erased")}),
        tools["sphere"][13:18],
        [(v["number"], v["parent"], v["tool"]) for v in versions],
    )
