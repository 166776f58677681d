"""Task queue, review and dashboard screens, in a real browser, on the real lung CT.

A server of its own with a manager, two annotators and a reviewer. In the browser the manager
creates a task for annotator A; A opens it from "My tasks", paints with the label editor's brush,
saves and submits, and is offered no review of their own work; the reviewer returns it with a
comment, A submits again, the reviewer accepts; the manager's dashboard counts it. A second task
with both annotators (label maps saved through the API) puts agreement figures on the dashboard,
checked against Dice computed here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest

from carina.auth import Role
from carina.services.auth import open_directory
from carina.services.settings import Settings

from .conftest import CHROMIUM, PROJECT, USER, WebServer, prepare, run_e2e, serve
from .test_viewer_e2e import _stow

PEOPLE = {
    "manager": ("manager-m", "m-long-password-for-m", Role.MANAGER),
    "a": ("annotator-a", "a-long-password-for-a", Role.ANNOTATOR),
    "b": ("annotator-b", "b-long-password-for-b", Role.ANNOTATOR),
    "reviewer": ("reviewer-r", "r-long-password-for-r", Role.REVIEWER),
}
LABEL_SET = "chest"
COMMENT = "The tumour's upper edge is missing: extend the mask up to the pleura."


@pytest.fixture(scope="module")
def tasks_server(tmp_path_factory: pytest.TempPathFactory, web_bundle: Path) -> Iterator[WebServer]:
    if not CHROMIUM.exists():
        pytest.fail(f"chromium not found at {CHROMIUM} (scripts/system-deps.sh installs it)")
    data_dir = tmp_path_factory.mktemp("tasks") / "data"
    prepare(data_dir, web_bundle)
    with open_directory(Settings(data_dir=data_dir)) as directory:
        owner = directory.store.principal(USER)
        for name, password, role in PEOPLE.values():
            directory.store.create_user(name, password)
            directory.store.set_member(owner, PROJECT, name, role)
    with serve(data_dir, web_bundle) as server:
        yield server


def _client(server: WebServer, who: str) -> httpx.Client:
    name, password, _ = PEOPLE[who]
    response = httpx.post(
        f"{server.url}/api/auth/token", data={"username": name, "password": password}, timeout=10
    )
    response.raise_for_status()
    token = response.json()["access_token"]
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def _save(client: httpx.Client, seg: int, labels: np.ndarray) -> dict[str, object]:
    response = client.post(
        f"/api/projects/{PROJECT}/segmentations/{seg}/versions",
        content=labels.astype(np.uint8).tobytes(),
        headers={
            "Content-Type": "application/octet-stream",
            "X-Carina-Shape": ",".join(str(s) for s in labels.shape),
            "X-Carina-Dtype": "uint8",
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_task_review_cycle_in_the_browser(shared_data: Path, tasks_server: WebServer) -> None:
    server = tasks_server
    files = sorted((shared_data / "lung_ct_tumor_boxes" / "ct_dicom").glob("*.dcm"))
    stored = _stow(server, files)
    assert len(stored["00081199"]["Value"]) == 30
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    base = f"/api/projects/{PROJECT}"
    with server.client() as client:
        response = client.post(
            f"{base}/label-sets",
            json={
                "name": LABEL_SET,
                "labels": [
                    {"value": 1, "name": "lung", "color": [0, 200, 255]},
                    {"value": 2, "name": "tumour", "color": [255, 60, 60]},
                ],
            },
        )
        assert response.status_code == 201, response.text

    # a task with both annotators, their label maps saved through the API: two boxes on the
    # middle slice that overlap by half
    shape = (30, 512, 512)
    map_a = np.zeros(shape, np.uint8)
    map_b = np.zeros(shape, np.uint8)
    map_a[15, 200:240, 150:190] = 2
    map_b[15, 200:240, 170:210] = 2
    dice = (
        2 * np.logical_and(map_a, map_b).sum() / (np.count_nonzero(map_a) + np.count_nonzero(map_b))
    )
    with _client(server, "manager") as manager:
        response = manager.post(
            f"{base}/tasks",
            json={
                "study": study,
                "series": series,
                "label_set": LABEL_SET,
                "assignees": [PEOPLE["a"][0], PEOPLE["b"][0]],
                "title": "double reading",
                "milestone": "pilot",
            },
        )
        assert response.status_code == 201, response.text
        double = response.json()
    segs = {a["annotator"]: a["segmentation"] for a in double["assignments"]}
    for who, labels in (("a", map_a), ("b", map_b)):
        with _client(server, who) as client:
            _save(client, segs[PEOPLE[who][0]], labels)

    result = run_e2e(
        server,
        "tasks.mjs",
        {
            "study": study,
            "series": series,
            "labelSet": LABEL_SET,
            **{who: list(PEOPLE[who][:2]) for who in ("manager", "a", "b", "reviewer")},
            "title": "tumour outline",
            "instructions": "Outline the tumour on the middle slice with the brush (label 1).",
            "milestone": "batch 1",
            "due": "2031-05-17",
            "comment": COMMENT,
            # across the right lung on the middle slice
            "paint": [[150, 256], [200, 256]],
        },
        timeout=240,
    )
    # the browser logs the refused early submission (HTTP 409) itself; nothing else went wrong
    assert len(result["pageErrors"]) == 1, result["pageErrors"]
    assert "status of 409" in result["pageErrors"][0]
    annotator = PEOPLE["a"][0]
    task = int(result["task"])
    states = result["states"]

    # creation: every member who may annotate was offered, the task is A's alone, open
    assert sorted(result["assignees"]) == sorted(
        [USER, PEOPLE["manager"][0], annotator, PEOPLE["b"][0]]
    )
    assert states["created"] == {"status": 200, "state": "open", "comment": "", "reviewer": None}
    # Submit before any save: refused by the server (409), said so, the part still open
    assert result["early"] == (
        f"Not possible now: task {task}: save a segmentation before submitting"
    )
    assert states["early"]["state"] == "open"
    queued = result["queued"]
    assert queued["state"] == "open"
    assert queued["instructions"].startswith("Outline the tumour on the middle slice")
    assert queued["due"].startswith("2031-05-17")
    assert "tumour outline" in queued["text"]
    assert LABEL_SET in queued["text"]

    # A's part opened on A's own segmentation of the series; the brush painted label 1
    assert f"task={task}" in result["opened"]["url"]
    assert f"series={series}" in result["opened"]["url"]
    assert result["painted"]["1"] > 100
    assert states["saved"]["state"] == "in_progress"
    assert states["savedBar"] == "In progress"  # the task bar followed the save
    assert states["submitted"]["state"] == "submitted"
    # no review of one's own work: no buttons, the reason shown, and the server says 403
    own = result["ownReview"]
    assert own["state"] == "submitted"
    assert "review-accept" not in own["buttons"]
    assert "review-return" not in own["buttons"]
    assert own["reason"] == "own"
    with _client(server, "a") as client:
        response = client.post(
            f"{base}/tasks/{task}/review",
            json={"annotator": annotator, "decision": "accept", "comment": ""},
        )
        assert response.status_code == 403, response.text

    # the reviewer: Accept and Return offered; a return without a comment is not sent
    assert {"review-accept", "review-return"} <= set(result["reviewerRow"]["buttons"])
    assert result["noComment"]["kind"] == "error"
    assert states["afterEmptyReturn"]["state"] == "submitted"
    assert states["returned"] == {
        "status": 200,
        "state": "returned",
        "comment": COMMENT,
        "reviewer": PEOPLE["reviewer"][0],
    }
    assert COMMENT in result["comment"]
    assert states["resubmitted"]["state"] == "submitted"
    assert states["accepted"]["state"] == "accepted"
    assert states["accepted"]["reviewer"] == PEOPLE["reviewer"][0]
    # the reviewer saw A's saved version in the viewer
    assert int(result["reviewView"]["voxels"]) == result["painted"]["1"]

    # the server: A's version is what the browser painted, on the middle slice only
    with server.client() as client:
        info = client.get(f"{base}/tasks/{task}").json()
        (part,) = info["assignments"]
        assert part["annotator"] == annotator
        assert part["state"] == "accepted"
        assert result["opened"]["seg"] == str(part["segmentation"])
        assert part["segmentation"] != segs[annotator]
        assert info["instructions"].startswith("Outline the tumour")
        assert info["milestone"] == "batch 1"
        assert info["due_at"].startswith("2031-05-17")
        seg = client.get(f"{base}/segmentations/{part['segmentation']}").json()
        assert [v["author"] for v in seg["versions"]] == [annotator]
        assert seg["versions"][0]["comment"] == "first pass"
        raw = client.get(f"{base}/segmentations/{seg['id']}/versions/{seg['head']}")
        labels = np.frombuffer(raw.content, np.uint8).reshape(shape)
        assert int((labels == 1).sum()) == result["painted"]["1"]
        assert set(np.nonzero(labels)[0].tolist()) == {15}
        dashboard = client.get(f"{base}/annotation-dashboard").json()
        agreement = client.get(f"{base}/tasks/{double['id']}/agreement").json()
        csv = client.get(f"{base}/tasks/{double['id']}/agreement?format=csv")

    # the dashboard as the manager saw it is the server's: A has one accepted part (and the
    # double reading in progress), the milestone one accepted of one
    person = result["person"]
    assert person["accepted"] == "1"
    assert person["inProgress"] == "1"
    assert person["total"] == "2"
    assert dashboard["people"][annotator]["accepted"] == 1
    milestone = result["milestone"]
    assert milestone["accepted"] == milestone["total"] == "1"
    # agreement of the double reading: the tumour label's Dice is the boxes' overlap
    (block,) = result["agreement"]
    assert block["task"] == str(double["id"])
    assert block["csv"].endswith(f"/tasks/{double['id']}/agreement?format=csv")
    assert csv.status_code == 200
    assert csv.text.startswith("label,")
    tumour = next(r for r in agreement if r["label"] == 2)
    assert tumour["dice"] == pytest.approx(dice, abs=1e-6)
    shown = next(r for r in block["rows"] if r["label"] == "2")
    assert float(shown["dice"]) == pytest.approx(dice, abs=1e-6)
    assert shown["cells"][2] == f"{dice:.3f}"
    assert float(shown["cells"][3]) == pytest.approx(tumour["hd95_mm"], abs=0.05)
    print(
        "tasks e2e:",
        json.dumps(
            {
                "timings": result["timings"],
                "seconds": result["seconds"],
                "painted": result["painted"],
                "dice": dice,
                "hd95_mm": tumour["hd95_mm"],
            }
        ),
    )
