"""Jobs of a project under ``/api/projects/{project}/jobs``: submit, list, read, cancel.

Jobs are submitted by owners, managers and annotators of the project, read by every member and
cancelled by owners, managers and annotators. A job of another project is not found (404). Only
kinds registered as ``remote`` can be submitted over HTTP. Anyone who submits may lower a job's
priority; raising it above 0 takes an owner or manager. Queued jobs show their place in the queue.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from carina.api.security import Access, RequireInProject, client_ip, get_audit, get_auth
from carina.auth import Action
from carina.auth.audit import ALLOWED
from carina.auth.policy import Resource, can
from carina.core.errors import NotFoundError
from carina.jobs import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    Engine,
    JobError,
    JobRecord,
    JobStatus,
    JobStore,
    UnknownJobKind,
    fair_order,
    get_kind,
)

router = APIRouter()


def _in_project(action: Action) -> Any:
    return Depends(RequireInProject(action))


class JobSubmit(BaseModel):
    kind: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    resources: dict[str, float] = Field(default_factory=dict, max_length=8)
    max_attempts: int = Field(default=1, ge=1, le=10)
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    priority: int = Field(default=0, ge=MIN_PRIORITY, le=MAX_PRIORITY)


class JobOut(BaseModel):
    id: int
    kind: str
    project: str
    owner: str | None
    status: JobStatus
    progress: float
    message: str
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str
    resources: dict[str, float]
    attempts: int
    max_attempts: int
    timeout_s: float | None
    cancel_requested: bool
    worker: str
    priority: int
    queue_position: int | None = Field(
        default=None, description="1-based place among the queued jobs of the server"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobDetail(JobOut):
    log: str


def _store(request: Request) -> JobStore:
    store: JobStore = request.app.state.job_store
    return store


def _engine(request: Request) -> Engine | None:
    engine: Engine | None = request.app.state.jobs
    return engine


def _owners(request: Request) -> dict[int, str]:
    return {u.id: u.name for u in get_auth(request).users()}


def _positions(request: Request) -> dict[int, int]:
    """Queue positions of the queued jobs, as the engine will start them (without an engine,
    in the order a starting one would)."""
    engine = _engine(request)
    if engine is not None:
        return engine.queue_positions()
    ordered = fair_order(_store(request).queued())
    return {record.id: n for n, record in enumerate(ordered, start=1)}


def _out(
    record: JobRecord,
    project: str,
    owners: dict[int, str],
    positions: dict[int, int] | None = None,
) -> dict[str, Any]:
    values = {k: v for k, v in vars(record).items() if k not in ("owner_id", "project_id")}
    values["project"] = project
    values["owner"] = owners.get(record.owner_id) if record.owner_id is not None else None
    values["queue_position"] = (positions or {}).get(record.id)
    return values


def _record_in_project(request: Request, access: Access, job_id: int) -> tuple[int, JobRecord]:
    assert access.project is not None
    store = _store(request)
    project_id = store.project_id(access.project)
    record = store.get(job_id)
    if project_id is None or record is None or record.project_id != project_id:
        raise NotFoundError("job not found")
    return project_id, record


def _audit(request: Request, access: Access, action: str, job_id: int, detail: str = "") -> None:
    get_audit(request).record(
        action=action,
        outcome=ALLOWED,
        user_id=access.principal.user_id,
        user_name=access.principal.name,
        resource=f"job {job_id}",
        project=access.project,
        client_ip=client_ip(request),
        detail=detail,
    )


JobId = Annotated[int, Path(ge=1, description="Job id")]


@router.post("/projects/{project}/jobs", tags=["jobs"], status_code=201)
def submit_job(
    request: Request,
    body: JobSubmit,
    access: Annotated[Access, _in_project(Action.SUBMIT_JOB)],
) -> JobOut:
    """Submit a job of a kind offered over HTTP; it is queued and runs when a worker fits."""
    assert access.project is not None
    try:
        kind = get_kind(body.kind)
    except UnknownJobKind as error:
        raise HTTPException(400, str(error)) from None
    if not kind.remote:
        raise HTTPException(400, f"job kind {body.kind!r} cannot be submitted over HTTP")
    if body.priority > 0 and not can(
        access.principal, Action.PRIORITIZE_JOB, Resource(access.project)
    ):
        raise HTTPException(403, "raising a job's priority takes a project owner or manager")
    store = _store(request)
    project_id = store.project_id(access.project)
    options: dict[str, Any] = {
        "owner_id": access.principal.user_id,
        "project_id": project_id,
        "resources": body.resources,
        "max_attempts": body.max_attempts,
        "timeout_s": body.timeout_s,
        "priority": body.priority,
    }
    engine = _engine(request)
    if engine is not None:
        record = engine.submit(body.kind, body.params, **options)
    else:
        record = store.submit(body.kind, body.params, **options)
    _audit(request, access, "job.submit", record.id, f"kind={record.kind}")
    record = store.get(record.id) or record
    owners = {access.principal.user_id: access.principal.name}
    return JobOut(**_out(record, access.project, owners, _positions(request)))


@router.get("/projects/{project}/jobs", tags=["jobs"])
def list_jobs(
    request: Request,
    access: Annotated[Access, _in_project(Action.READ_JOB)],
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[JobOut]:
    """The jobs of a project, newest first."""
    assert access.project is not None
    store = _store(request)
    project_id = store.project_id(access.project)
    if project_id is None:  # pragma: no cover - the access check found the project
        raise NotFoundError("project not found")
    records = store.list_jobs(project_id=project_id, status=status, limit=limit, offset=offset)
    owners = _owners(request)
    positions = _positions(request)
    return [JobOut(**_out(r, access.project, owners, positions)) for r in records]


@router.get("/projects/{project}/jobs/{job_id}", tags=["jobs"])
def get_job(
    request: Request, job_id: JobId, access: Annotated[Access, _in_project(Action.READ_JOB)]
) -> JobDetail:
    """One job of the project, with its log."""
    assert access.project is not None
    _, record = _record_in_project(request, access, job_id)
    return JobDetail(**_out(record, access.project, _owners(request), _positions(request)))


@router.post("/projects/{project}/jobs/{job_id}/cancel", tags=["jobs"])
def cancel_job(
    request: Request,
    job_id: JobId,
    access: Annotated[Access, _in_project(Action.CANCEL_JOB)],
    force: Annotated[
        bool, Query(description="Also stop a running job that reports no progress")
    ] = False,
) -> JobDetail:
    """Request cancellation: a queued job ends at once, a running one at its next progress
    report; with ``force`` (owners and managers) a running job is stopped by restarting its
    worker process. A finished job is returned as it is."""
    assert access.project is not None
    _record_in_project(request, access, job_id)
    if force and not can(access.principal, Action.FORCE_CANCEL_JOB, Resource(access.project)):
        raise HTTPException(403, "cancelling by force takes a project owner or manager")
    engine = _engine(request)
    if engine is not None:
        try:
            record = engine.cancel(job_id, force=force)
        except JobError as error:
            raise HTTPException(409, str(error)) from None
    else:
        record = _store(request).request_cancel(job_id)
    assert record is not None
    _audit(request, access, "job.cancel", job_id, "forced" if force else "")
    return JobDetail(**_out(record, access.project, _owners(request)))
