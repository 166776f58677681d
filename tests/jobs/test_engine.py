"""The jobs engine on a real Dask cluster: results, progress, cancellation, failures, retries,
time limits."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from carina.core import Geometry, LabelMap, Volume
from carina.imaging import read_image, read_labelmap, write_image
from carina.jobs import Engine, JobStatus, JobStore, UnknownJobKind, kinds
from tests.jobs.conftest import poll


def test_submitted_job_succeeds_with_its_result(engine: Engine, store: JobStore) -> None:
    submitted = engine.submit("echo", {"x": [1, 2]}, max_attempts=2)
    assert submitted.status is JobStatus.QUEUED
    done = engine.wait(submitted.id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == {"x": [1, 2]}
    assert done.attempts == 1
    assert done.progress == 1.0
    assert done.worker.startswith(("inproc://", "tcp://"))
    assert done.started_at is not None
    assert done.finished_at is not None
    assert done.created_at <= done.started_at <= done.finished_at
    assert store.get(submitted.id) == done


def test_progress_is_written_while_running(engine: Engine, store: JobStore) -> None:
    job = engine.submit("sleep", {"seconds": 1.5, "steps": 15})
    seen = poll(
        lambda: (
            (r := store.get(job.id)) and r.status is JobStatus.RUNNING and 0 < r.progress < 1 and r
        )
    )
    assert seen.message.startswith("step ")
    done = engine.wait(job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.message == "step 15 of 15"
    assert done.result == {"slept": 1.5, "worker": done.worker}


def test_running_job_is_cancelled_through_its_progress(engine: Engine) -> None:
    job = engine.submit("sleep", {"seconds": 60, "steps": 600})
    poll(lambda: (r := engine.get(job.id)) and r.progress > 0)
    asked = time.monotonic()
    requested = engine.cancel(job.id)
    assert requested is not None
    assert requested.cancel_requested
    done = engine.wait(job.id, timeout=10)
    assert done.status is JobStatus.CANCELLED
    assert time.monotonic() - asked < 5
    assert "cancellation requested" in done.log
    assert done.result is None


def test_queued_job_is_cancelled_at_once(engine: Engine) -> None:
    # no worker offers a GPU, so the job waits in the queue
    job = engine.submit("echo", {}, resources={"GPU": 1})
    time.sleep(0.3)
    assert engine.get(job.id).status is JobStatus.QUEUED  # type: ignore[union-attr]
    cancelled = engine.cancel(job.id)
    assert cancelled is not None
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.attempts == 0
    # a finished job stays as it is
    assert engine.cancel(job.id) == engine.get(job.id)


def test_failure_records_the_error_and_traceback(engine: Engine) -> None:
    done = engine.wait(engine.submit("test.fail", {"message": "no such series"}).id)
    assert done.status is JobStatus.FAILED
    assert done.error == "ValueError: no such series"
    assert "Traceback" in done.log
    assert "failed: ValueError: no such series" in done.log
    assert done.progress == 0.5
    assert done.result is None


def test_transient_failures_are_retried_with_backoff(engine: Engine) -> None:
    started = time.monotonic()
    done = engine.wait(engine.submit("test.flaky", {"succeed_on": 3}, max_attempts=3).id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == {"attempt": 3}
    assert done.attempts == 3
    assert done.log.count("retrying") == 2
    # backoff 0.05 s then 0.1 s
    assert time.monotonic() - started >= 0.15


def test_transient_failures_stop_at_max_attempts(engine: Engine) -> None:
    done = engine.wait(engine.submit("test.flaky", {"succeed_on": 5}, max_attempts=2).id)
    assert done.status is JobStatus.FAILED
    assert done.attempts == 2
    assert "busy on attempt 2" in done.error
    assert "(attempt 2 of 2)" in done.error


def test_cooperative_job_past_its_time_limit_fails(engine: Engine) -> None:
    done = engine.wait(engine.submit("sleep", {"seconds": 60}, timeout_s=0.5).id, timeout=10)
    assert done.status is JobStatus.FAILED
    assert done.error.startswith("timed out after 0.5 s")


def test_blocking_job_past_its_time_limit_is_failed_by_the_watchdog(
    engine: Engine, store: JobStore
) -> None:
    job = engine.submit("test.busy", {"seconds": 1.5}, timeout_s=0.3)
    done = engine.wait(job.id, timeout=1.2)
    assert done.status is JobStatus.FAILED
    assert done.error == "timed out after 0.3 s"
    # when the blocked run returns, it no longer owns the row
    time.sleep(1.5)
    assert store.get(job.id) == done


def test_unknown_kind_is_refused_before_it_is_recorded(engine: Engine, store: JobStore) -> None:
    with pytest.raises(UnknownJobKind):
        engine.submit("no.such.kind")
    assert store.list_jobs() == []


def test_quantify_kind_measures_files(engine: Engine, tmp_path: Path) -> None:
    geometry = Geometry.from_components(shape=(4, 4, 4), spacing=(2, 2, 2))
    image = np.arange(64, dtype=np.float32).reshape(4, 4, 4)
    labels = np.zeros((4, 4, 4), dtype=np.uint8)
    labels[:2] = 1
    labels[3, 3, 3] = 2
    write_image(Volume(image, geometry, modality="CT"), tmp_path / "ct.nii.gz")
    write_image(LabelMap(labels, geometry), tmp_path / "seg.nii.gz")
    job = engine.submit(
        "quantify", {"image": str(tmp_path / "ct.nii.gz"), "labels": str(tmp_path / "seg.nii.gz")}
    )
    done = engine.wait(job.id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result is not None
    regions = {r["label"]: r for r in done.result["regions"]}
    assert regions[1]["voxel_count"] == 32
    assert regions[1]["mean"] == pytest.approx(image[:2].mean())
    assert regions[1]["volume_ml"] == pytest.approx(32 * 8 / 1000)
    assert regions[2]["maximum"] == 63.0


def test_built_in_kinds_and_which_are_offered_over_http() -> None:
    import carina.services.job_kinds  # the server's engine loads these kinds too
    import carina.services.pacs_sync  # noqa: F401

    remote = {k.name: k.remote for k in kinds() if not k.name.startswith("test.")}
    assert remote == {
        "echo": True,
        "pacs-sync": False,
        "quantify": False,
        "segment": False,
        "segment-series": True,
        "sleep": True,
    }


def test_segment_kind_writes_the_tools_labels(
    engine: Engine, tmp_path: Path, shared_data: Path
) -> None:
    from carina.models import get_tool

    ct = shared_data / "totalsegmentator_ref/ct_3mm_30sl/ct.nii.gz"
    out = tmp_path / "lungs.nii.gz"
    job = engine.submit("segment", {"image": str(ct), "tool": "lungs", "output": str(out)})
    done = engine.wait(job.id, timeout=120)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result is not None
    assert done.result["tool"] == "lungs"
    assert set(done.result["volumes_ml"]) == {"lung_right", "lung_left"}
    written = read_labelmap(out)
    expected = get_tool("lungs").run(read_image(ct)).labels
    assert written.geometry.same_grid(expected.geometry)
    assert np.array_equal(np.asarray(written.array), np.asarray(expected.array))
    bad = engine.wait(engine.submit("segment", {"image": str(ct), "tool": "nope"}).id, timeout=60)
    assert bad.status is JobStatus.FAILED
    assert "unknown tool 'nope'" in (bad.error or "")
