"""The Python SDK against a live server on loopback: a model's pre-labels enter as an imported
SEG, two annotators edit on versions (a stale parent is refused), review and consensus."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import uvicorn
from fastapi import FastAPI

from carina.api import create_app
from carina.auth import Role
from carina.client import CarinaAPIError, CarinaClient
from carina.dicom import load_series, scan
from carina.services.settings import Settings
from tests.archive.helpers import free_port

PASSWORD = "a-long-sdk-test-password"


@pytest.fixture
def server(tmp_path: Path, shared_data: Path) -> Iterator[tuple[str, FastAPI]]:
    port = free_port()
    app = create_app(
        Settings(data_dir=tmp_path / "data", port=port, dicom_port=None, jobs_workers=0)
    )
    served = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not served.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    auth = app.state.auth
    for name in ("lead", "ann", "bea", "rev"):
        auth.create_user(name, PASSWORD)
    lead = auth.principal("lead")
    auth.create_project(lead, "lungs")
    for name, role in (("ann", Role.ANNOTATOR), ("bea", Role.ANNOTATOR), ("rev", Role.REVIEWER)):
        auth.set_member(lead, "lungs", name, role)
    files = sorted((shared_data / "lung_ct_tumor_boxes" / "ct_dicom").glob("*.dcm"))
    results = app.state.archive.ingest([(str(f), f.read_bytes()) for f in files])
    auth.add_studies("lungs", [results[0].study_instance_uid])
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        served.should_exit = True
        thread.join(10)


def test_sdk_annotation_round(server: tuple[str, FastAPI], shared_data: Path) -> None:
    url, _ = server
    (info,) = scan(shared_data / "lung_ct_tumor_boxes" / "ct_dicom").series
    hu = np.asarray(load_series(info).volume.array).transpose(2, 1, 0)
    study, series = info.study_instance_uid, info.series_instance_uid
    with CarinaClient.login(url, "lead", PASSWORD) as lead:
        lead.create_label_set(
            "lungs", "chest", [{"value": 1, "name": "lesion"}, {"value": 2, "name": "lung"}]
        )
        # a model's output enters as a SEG import on a scratch segmentation
        scratch = lead.create_segmentation("lungs", study, series, "chest", name="model")
        prelabels = np.zeros(hu.shape, dtype=np.uint8)
        prelabels[(hu < -600)] = 2
        prelabels[:, :100, :] = 0
        v = lead.save_labels(
            "lungs", scratch["id"], prelabels, model="thresholder", model_version="0.1"
        )
        seg_file = lead.export_labels("lungs", scratch["id"], v["id"], "seg")
        assert pydicom.dcmread(io.BytesIO(seg_file)).Modality == "SEG"
        task = lead.create_task(
            "lungs",
            study=study,
            series=series,
            label_set="chest",
            assignees=["ann", "bea"],
            milestone="pilot",
        )
    parts = {a["annotator"]: a["segmentation"] for a in task["assignments"]}
    heads = {}
    for name in ("ann", "bea"):
        with CarinaClient.login(url, name, PASSWORD) as client:
            assert [t["id"] for t in client.queue("lungs")] == [task["id"]]
            pre = client.import_labels(
                "lungs", parts[name], seg_file, "seg", model="thresholder", model_version="0.1"
            )
            labels = client.labels("lungs", parts[name], pre["id"])
            assert np.array_equal(labels, prelabels)
            edited = labels.copy()
            edited[12:14, 250:270, 300 : 330 if name == "ann" else 320] = 1
            head = client.save_labels("lungs", parts[name], edited, parent=pre["id"], tool="brush")
            with pytest.raises(CarinaAPIError) as stale:
                client.save_labels("lungs", parts[name], labels, parent=pre["id"])
            assert stale.value.status_code == 409
            assert f"head is version {head['id']}" in stale.value.detail
            client.submit_task("lungs", task["id"])
            heads[name] = edited
    with CarinaClient.login(url, "rev", PASSWORD) as rev:
        for name in ("ann", "bea"):
            rev.review_task("lungs", task["id"], name, accept=True)
        stats = {row["name"]: row for row in rev.agreement("lungs", task["id"])}
        for value, name in ((1, "lesion"), (2, "lung")):
            a, b = heads["ann"] == value, heads["bea"] == value
            expected = 2 * (a & b).sum() / (a.sum() + b.sum())
            assert stats[name]["dice"] == pytest.approx(expected)
        assert 0.99 < stats["lung"]["dice"] < 1.0  # the lesions cut different lung voxels
        a, b = heads["ann"] == 1, heads["bea"] == 1
        with pytest.raises(CarinaAPIError) as denied:
            rev.consensus("lungs", task["id"])
        assert denied.value.status_code == 403
    with CarinaClient.login(url, "lead", PASSWORD) as lead:
        made = lead.consensus("lungs", task["id"], "majority")
        consensus = lead.labels("lungs", made["segmentation"], made["version"]["id"])
        assert np.array_equal(consensus == 1, a & b)
