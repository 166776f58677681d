"""Job kinds that work on the archive: they run on workers that open the same archive as the
server (``CARINA_DATA_DIR`` / ``CARINA_DATABASE_URL`` in the worker's environment; the embedded
cluster inherits the server's).

``segment-series`` runs a segmentation tool on a stored image series of the job's project and
stores the result in the archive as a DICOM SEG that references its source series, so that the
viewer lists it among the series' segmentations. Its SEG's UIDs derive from the job, so a job that
runs twice (a lost worker, a restart) finds its SEG already stored and stores nothing twice.
"""

from __future__ import annotations

import io
from typing import Any

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlalchemy.orm import Session

from carina import __version__
from carina.core.errors import ModelError, NotFoundError
from carina.db import Project
from carina.dicom.seg import Provenance, build_segmentation
from carina.jobs import JobContext, JobError, register
from carina.models import get_tool, run_tool
from carina.services.archive import open_archive
from carina.services.auth import auth_services
from carina.services.settings import Settings
from carina.services.viewer import stored_series

SEG_SERIES_NUMBER = 900


def _seg_uids(job_id: int, attempt_scope: str) -> tuple[str, str]:
    series = generate_uid(entropy_srcs=["carina-job-seg-series", attempt_scope, str(job_id)])
    sop = generate_uid(entropy_srcs=["carina-job-seg-sop", attempt_scope, str(job_id)])
    return series, sop


@register("segment-series", remote=True)
def segment_series(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Segment the stored series ``series`` of study ``study`` (in the job's project) with the
    tool ``tool`` (``carina segment --list``; optional ``largest_component``, ``fill_holes``,
    ``min_size_ml``) and store the result as a DICOM SEG in the archive."""
    try:
        study, series, tool_id = str(params["study"]), str(params["series"]), str(params["tool"])
    except KeyError as exc:
        raise JobError("segment-series needs 'study', 'series' and 'tool'") from exc
    try:
        runner = get_tool(tool_id)
    except ModelError as exc:
        raise JobError(str(exc)) from exc
    record = ctx.store.get(ctx.job_id)
    assert record is not None
    with Session(ctx.store.engine) as session:
        project = session.scalar(select(Project.name).where(Project.id == record.project_id))
    auth, _ = auth_services(ctx.store.engine, None)
    if project is None or not auth.in_project(project, study):
        raise JobError("no such study in this job's project")
    settings = Settings()
    with open_archive(settings) as archive:
        scope = archive.store.root.resolve().as_posix()
        seg_series, seg_sop = _seg_uids(ctx.job_id, scope)
        try:
            archive.instances(study, seg_series)
        except NotFoundError:
            pass
        else:  # a previous run of this job stored it already
            ctx.progress(1.0, "segmentation already stored")
            return {"study": study, "series": series, "seg_series": seg_series, "stored": False}
        ctx.progress(0.05, "reading the series")
        volume = stored_series(archive, study, series)
        ctx.progress(0.2, f"running {runner.spec.id}")
        run = run_tool(
            tool_id,
            volume,
            params.get("params"),
            largest_component=bool(params.get("largest_component", False)),
            fill_holes=bool(params.get("fill_holes", False)),
            min_size_ml=float(params.get("min_size_ml", 0.0)),
        )
        labels = run.labels
        ctx.check()
        ctx.progress(0.9, "writing the SEG")
        sources = [
            pydicom.dcmread(archive.store.absolute(i.path), stop_before_pixels=True)
            for i in archive.instances(study, series)
        ]
        seg = build_segmentation(
            labels,
            sources,
            provenance=Provenance(
                algorithm=f"carina {runner.spec.id}", algorithm_version=runner.spec.version
            ),
            series_description=f"{runner.spec.id} (job {ctx.job_id})",
            series_number=SEG_SERIES_NUMBER,
            software_version=__version__,
            series_instance_uid=seg_series,
            sop_instance_uid=seg_sop,
        )
        buffer = io.BytesIO()
        seg.save_as(buffer, enforce_file_format=True)
        stored = archive.ingest_one(buffer.getvalue(), source=f"job {ctx.job_id}")
        if not stored.status.ok:
            raise JobError(f"the archive refused the SEG: {stored.reason}")
    return {
        "study": study,
        "series": series,
        "seg_series": seg_series,
        "seg_sop": seg_sop,
        "stored": True,
        "tool": runner.spec.id,
        "version": runner.spec.version,
        "timings_s": dict(run.timings),
        "volumes_ml": run.volumes_ml,
        "findings": dict(run.findings),
    }
