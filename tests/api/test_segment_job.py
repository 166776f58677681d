"""A segmentation job on a stored series: submitted over HTTP, run on a worker process, stored
as a DICOM SEG in the archive next to its source and listed for the viewer; run again, it stores
nothing twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from carina.db import Job
from carina.dicom import scan
from carina.dicom.seg import read_segmentation, referenced_series
from carina.dicom.series import load_series
from carina.jobs import JobContext
from carina.models import get_tool
from carina.services.job_kinds import segment_series
from tests.jobs.conftest import poll

from .conftest import Site, build_site


@pytest.fixture(scope="module")
def lung_site(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Site]:
    """A site running jobs on one worker process, with the real lung CT in project alpha."""
    for site in build_site(tmp_path_factory.mktemp("segjob") / "data", jobs_workers=1):
        files = sorted((shared_data / "lung_ct_tumor_boxes" / "ct_dicom").glob("*.dcm"))
        results = site.app.state.archive.ingest([(str(p), p.read_bytes()) for p in files])
        assert all(r.status.ok for r in results)
        site.store.add_studies("alpha", [results[0].study_instance_uid])
        yield site


def _ct(shared_data: Path) -> tuple[str, str, Any]:
    files = sorted((shared_data / "lung_ct_tumor_boxes" / "ct_dicom").glob("*.dcm"))
    header = pydicom.dcmread(files[0], stop_before_pixels=True)
    (series,) = scan(files[0].parent).series
    return str(header.StudyInstanceUID), str(header.SeriesInstanceUID), load_series(series).volume


def _job(site: Site, job_id: int) -> dict[str, Any]:
    response = site.client.get(f"/api/projects/alpha/jobs/{job_id}", headers=site.headers("viewer"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_lungs_job_stores_a_seg_linked_to_its_series(
    lung_site: Site, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = lung_site
    study, series, volume = _ct(shared_data)
    submitted = site.client.post(
        "/api/projects/alpha/jobs",
        json={
            "kind": "segment-series",
            "params": {"study": study, "series": series, "tool": "lungs"},
        },
        headers=site.headers("annotator"),
    )
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    done = poll(lambda: (j := _job(site, job_id))["status"] in ("succeeded", "failed") and j, 240)
    assert done["status"] == "succeeded", done["error"] + done["log"]
    result = done["result"]
    assert result["stored"] is True
    assert set(result["volumes_ml"]) == {"lung_left", "lung_right"}
    assert all(1000 < ml < 4000 for ml in result["volumes_ml"].values())

    # in the archive, next to its source; the same voxels as the tool run here
    archive = site.app.state.archive
    (stored,) = archive.instances(study, result["seg_series"])
    seg = pydicom.dcmread(archive.store.absolute(stored.path))
    assert seg.Modality == "SEG"
    assert referenced_series(seg) == {series}
    expected = get_tool("lungs").run(volume).labels
    labels = read_segmentation(seg).reorient("LPS")  # the SEG lists its frames superior first
    assert np.allclose(labels.geometry.affine, expected.geometry.affine, atol=1e-3)
    assert {label.name for label in labels.labels} == {"lung_left", "lung_right"}
    for label in labels.labels:
        want = expected.labels.by_name(label.name).value
        got = np.asarray(labels.array) == label.value
        assert np.array_equal(got, np.asarray(expected.array) == want)
        assert got.sum() > 10_000

    # the viewer lists it among the series' segmentations
    listed = site.client.get(
        f"/api/projects/alpha/studies/{study}/series/{series}/segmentations",
        headers=site.headers("viewer"),
    ).json()
    assert result["seg_series"] in [s["series"] for s in listed]

    # a second run of the same job (its worker was lost after storing) stores nothing twice
    store = site.app.state.job_store
    with Session(store.engine) as session, session.begin():
        session.execute(update(Job).where(Job.id == job_id).values(status="queued"))
    attempt = store.claim(job_id, "test-rerun")
    assert attempt == 2
    ctx = JobContext(store, job_id, attempt=attempt)
    for name, value in site.app.state.settings.to_env().items():  # as a worker sees them
        monkeypatch.setenv(name, value)
    again = segment_series({"study": study, "series": series, "tool": "lungs"}, ctx)
    assert again["stored"] is False
    assert again["seg_series"] == result["seg_series"]
    assert len(archive.instances(study, result["seg_series"])) == 1


def test_a_study_outside_the_project_is_refused(lung_site: Site, shared_data: Path) -> None:
    site = lung_site
    beta = site.studies["beta"]
    job = site.client.post(
        "/api/projects/alpha/jobs",
        json={
            "kind": "segment-series",
            "params": {"study": beta.study, "series": beta.series, "tool": "body"},
        },
        headers=site.headers("annotator"),
    ).json()
    done = poll(
        lambda: (j := _job(site, job["id"]))["status"] in ("succeeded", "failed") and j, 120
    )
    assert done["status"] == "failed"
    assert "no such study in this job's project" in done["error"]
