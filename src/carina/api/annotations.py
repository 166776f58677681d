"""Annotation routes under ``/api/projects/{project}``: label sets, segmentations and their
versions (raw label maps, DICOM SEG, NIfTI, 3D Slicer ``.seg.nrrd``), geometric annotations
(DICOM SR), tasks, review, agreement and consensus. The contract is described in
``docs/annotation-api.md``.

Reading needs ``annotation.read`` (every member), saving ``annotation.write`` (owners, managers,
annotators), reviewing ``annotation.review`` (owners, managers, reviewers) and managing label sets,
tasks and consensus ``annotation.manage`` (owners, managers). On top of the policy: only the
assigned annotator saves on a task's segmentation, and nobody reviews their own work.
"""

from __future__ import annotations

import gzip
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from carina.annotation import (
    LabelSetInfo,
    SegmentationInfo,
    ShapeInfo,
    ShapeKind,
    TaskInfo,
    TaskState,
    VersionInfo,
)
from carina.annotation.agreement import to_csv
from carina.annotation.sr import shapes_to_sr
from carina.api.security import Access, RequireInProject, client_ip, get_audit
from carina.auth import Action
from carina.auth.audit import ALLOWED
from carina.core.errors import ConflictError, GeometryError
from carina.core.labels import LabelSet
from carina.services.annotations import (
    DTYPE_HEADER,
    SHAPE_HEADER,
    Annotations,
    dataset_bytes,
    parse_raw,
    stored_series,
    to_raw,
)

router = APIRouter(tags=["annotation"])
UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"


def _in_project(action: Action) -> Any:
    return Depends(RequireInProject(action))


Read = Annotated[Access, _in_project(Action.READ_ANNOTATIONS)]
Write = Annotated[Access, _in_project(Action.ANNOTATE)]
Review = Annotated[Access, _in_project(Action.REVIEW)]
Manage = Annotated[Access, _in_project(Action.MANAGE_TASKS)]
SegId = Annotated[int, Path(ge=1, le=2**31, description="Segmentation id")]
VersionId = Annotated[int, Path(ge=1, le=2**31, description="Version id")]
TaskId = Annotated[int, Path(ge=1, le=2**31, description="Task id")]
Uid = Annotated[str, Field(min_length=1, max_length=64, pattern=UID_PATTERN)]


def _service(request: Request) -> Annotations:
    service: Annotations = request.app.state.annotations
    return service


def _project(access: Access) -> str:
    assert access.project is not None
    return access.project


def _attachment(name: str) -> dict[str, str]:
    """The header that names a download (``name`` is ASCII letters, digits, ``-_.``)."""
    return {"Content-Disposition": f'attachment; filename="{name}"'}


def _audit(request: Request, access: Access, action: str, resource: str, detail: str = "") -> None:
    get_audit(request).record(
        action=action,
        outcome=ALLOWED,
        user_id=access.principal.user_id,
        user_name=access.principal.name,
        resource=resource,
        project=access.project,
        client_ip=client_ip(request),
        detail=detail,
    )


# -- bodies and views ------------------------------------------------------------------------------


class CodeIn(BaseModel):
    value: str = Field(min_length=1, max_length=64)
    scheme: str = Field(min_length=1, max_length=64)
    meaning: str = Field(min_length=1, max_length=64)


class LabelIn(BaseModel):
    value: int = Field(ge=1, le=65535)
    name: str = Field(min_length=1, max_length=64)
    color: tuple[int, int, int] | None = None
    code: CodeIn | None = None


class LabelSetIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    labels: list[LabelIn] = Field(min_length=1, max_length=1000)


class SegmentationIn(BaseModel):
    study: Uid
    series: Uid
    label_set: str = Field(min_length=1, max_length=64)
    name: str = Field(default="", max_length=128)


class TaskIn(BaseModel):
    study: Uid
    series: Uid
    label_set: str = Field(min_length=1, max_length=64)
    assignees: list[str] = Field(min_length=1, max_length=50)
    title: str = Field(default="", max_length=256)
    instructions: str = Field(default="", max_length=20000)
    milestone: str = Field(default="", max_length=64)
    due_at: datetime | None = None


class TransitionIn(BaseModel):
    action: Literal["start", "submit"]


class ReviewIn(BaseModel):
    annotator: str = Field(min_length=1, max_length=64)
    decision: Literal["accept", "return"]
    comment: str = Field(default="", max_length=20000)


class ConsensusIn(BaseModel):
    method: Literal["staple", "majority"]


Point = tuple[float, float, float]


class ShapeIn(BaseModel):
    study: Uid
    series: Uid
    sop: Uid
    frame_of_reference: str = Field(default="", max_length=64)
    kind: ShapeKind
    points: list[Point] = Field(min_length=1, max_length=10000)
    label: str = Field(default="", max_length=64)


def _label_set_view(info: LabelSetInfo) -> dict[str, Any]:
    return {"id": info.id, "name": info.name, "labels": info.labels.to_list()}


def _version_view(v: VersionInfo) -> dict[str, Any]:
    return {
        "id": v.id,
        "number": v.number,
        "parent": v.parent_id,
        "author": v.author,
        "created_at": v.created_at.isoformat(),
        "tool": v.tool,
        "model": v.model,
        "model_version": v.model_version,
        "comment": v.comment,
        "provenance": v.provenance,
        "sha256": v.blob_sha256,
        "dtype": v.dtype,
        "voxel_counts": {str(k): c for k, c in v.voxel_counts.items()},
    }


def _seg_view(s: SegmentationInfo, versions: list[VersionInfo] | None = None) -> dict[str, Any]:
    k, j, i = reversed(s.geometry.shape)
    out: dict[str, Any] = {
        "id": s.id,
        "study": s.study_uid,
        "series": s.series_uid,
        "label_set": _label_set_view(s.label_set),
        "name": s.name,
        "shape": [k, j, i],
        "task": s.task_id,
        "assignee": s.assignee,
        "head": s.head_version_id,
        "created_by": s.created_by,
        "created_at": s.created_at.isoformat(),
    }
    if versions is not None:
        out["versions"] = [_version_view(v) for v in versions]
    return out


def _task_view(t: TaskInfo) -> dict[str, Any]:
    return {
        "id": t.id,
        "study": t.study_uid,
        "series": t.series_uid,
        "label_set": t.label_set.name,
        "title": t.title,
        "instructions": t.instructions,
        "milestone": t.milestone,
        "due_at": t.due_at.isoformat() if t.due_at else None,
        "created_by": t.created_by,
        "created_at": t.created_at.isoformat(),
        "assignments": [
            {
                "annotator": a.user,
                "state": a.state.value,
                "segmentation": a.segmentation_id,
                "reviewer": a.reviewer,
                "review_comment": a.review_comment,
                "updated_at": a.updated_at.isoformat(),
            }
            for a in t.assignments
        ],
    }


def _shape_view(s: ShapeInfo) -> dict[str, Any]:
    return {
        "id": s.id,
        "study": s.study_uid,
        "series": s.series_uid,
        "sop": s.sop_uid,
        "frame_of_reference": s.frame_of_reference_uid,
        "kind": s.kind.value,
        "points": s.points,
        "label": s.label,
        "author": s.author,
        "created_at": s.created_at.isoformat(),
    }


def _conflict(error: ConflictError) -> JSONResponse:
    head = int(error.key) if error.key and error.key.isdigit() else None
    return JSONResponse({"detail": str(error), "head": head}, status_code=409)


# -- label sets ------------------------------------------------------------------------------------


@router.get("/projects/{project}/label-sets")
def list_label_sets(request: Request, access: Read) -> list[dict[str, Any]]:
    """The label sets of the project."""
    return [_label_set_view(i) for i in _service(request).store.label_sets(_project(access))]


@router.post("/projects/{project}/label-sets", status_code=201)
def create_label_set(request: Request, body: LabelSetIn, access: Manage) -> dict[str, Any]:
    """A new label set (values, names, colours, codes); segmentations may use only its values."""
    labels = LabelSet.from_list([item.model_dump(exclude_none=True) for item in body.labels])
    info = _service(request).store.create_label_set(_project(access), body.name, labels)
    _audit(request, access, "annotation.labels", f"label set {info.name}")
    return _label_set_view(info)


# -- segmentations ---------------------------------------------------------------------------------


@router.get("/projects/{project}/segmentations")
def list_segmentations(
    request: Request,
    access: Read,
    study: Annotated[str | None, Query(max_length=64)] = None,
    series: Annotated[str | None, Query(max_length=64)] = None,
    task: Annotated[int | None, Query(ge=1, le=2**31)] = None,
) -> list[dict[str, Any]]:
    """Segmentations of the project, optionally of one study, series or task."""
    segs = _service(request).store.segmentations(
        _project(access), study_uid=study, series_uid=series, task_id=task
    )
    return [_seg_view(s) for s in segs]


@router.post("/projects/{project}/segmentations", status_code=201)
def create_segmentation(request: Request, body: SegmentationIn, access: Write) -> dict[str, Any]:
    """A new, empty segmentation of a stored series of the project."""
    info = _service(request).create_segmentation(
        _project(access),
        study_uid=body.study,
        series_uid=body.series,
        label_set=body.label_set,
        name=body.name,
        user_id=access.principal.user_id,
    )
    _audit(request, access, "annotation.create", f"segmentation {info.id}")
    return _seg_view(info, [])


@router.get("/projects/{project}/segmentations/{seg_id}")
def get_segmentation(request: Request, seg_id: SegId, access: Read) -> dict[str, Any]:
    """A segmentation and its version history (oldest first)."""
    store = _service(request).store
    project = _project(access)
    return _seg_view(store.segmentation(project, seg_id), store.versions(project, seg_id))


@router.post("/projects/{project}/segmentations/{seg_id}/versions", status_code=201)
async def save_version(
    request: Request,
    seg_id: SegId,
    access: Write,
    parent: Annotated[int | None, Query(ge=1, le=2**31)] = None,
    tool: Annotated[str, Query(max_length=128)] = "",
    model: Annotated[str, Query(max_length=128)] = "",
    model_version: Annotated[str, Query(max_length=64)] = "",
    comment: Annotated[str, Query(max_length=4000)] = "",
) -> Any:
    """Save a label map (raw body, see the headers; ``Content-Encoding: gzip`` accepted) as the
    new head. ``parent`` must be the current head (omitted for the first version); otherwise 409
    names the head."""
    body = await request.body()

    def save() -> VersionInfo:  # decoding and hashing a label map: off the event loop
        array = parse_raw(
            body,
            request.headers.get(SHAPE_HEADER),
            request.headers.get(DTYPE_HEADER),
            request.headers.get("content-encoding"),
        )
        return _service(request).store.save_version(
            _project(access),
            seg_id,
            array,
            parent_id=parent,
            author_id=access.principal.user_id,
            tool=tool,
            model=model,
            model_version=model_version,
            comment=comment,
        )

    try:
        version = await run_in_threadpool(save)
    except ConflictError as error:
        return _conflict(error)
    _audit(
        request,
        access,
        "annotation.save",
        f"segmentation {seg_id}",
        f"version {version.id} (#{version.number}) parent {parent}",
    )
    return _version_view(version)


@router.get(
    "/projects/{project}/segmentations/{seg_id}/versions/{version_id}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def get_version_labels(
    request: Request, seg_id: SegId, version_id: VersionId, access: Read
) -> Response:
    """The label map of a version: raw (k, j, i) bytes with shape and dtype headers, gzipped
    when the caller accepts it."""
    store = _service(request).store
    version = store.version(_project(access), seg_id, version_id)
    array = store.voxels(version)
    headers = {
        SHAPE_HEADER: ",".join(str(s) for s in array.shape),
        DTYPE_HEADER: array.dtype.name,
        "ETag": f'"{version.blob_sha256}"',
        "Vary": "Accept-Encoding",
    }
    data = to_raw(array)
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        data = gzip.compress(data, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    return Response(data, media_type="application/octet-stream", headers=headers)


@router.get("/projects/{project}/segmentations/{seg_id}/versions/{version_id}/diff")
def diff_versions(
    request: Request,
    seg_id: SegId,
    version_id: VersionId,
    access: Read,
    against: Annotated[int | None, Query(ge=1, le=2**31)] = None,
) -> dict[str, Any]:
    """Voxels added and removed per label (and mL) from ``against`` (default: the parent) to
    this version."""
    service = _service(request)
    project = _project(access)
    base = against
    if base is None:
        base = service.store.version(project, seg_id, version_id).parent_id
    return service.diff(project, seg_id, base, version_id)


@router.get(
    "/projects/{project}/segmentations/{seg_id}/versions/{version_id}/seg",
    response_class=Response,
    responses={200: {"content": {"application/dicom": {}}}},
)
def export_version_seg(
    request: Request, seg_id: SegId, version_id: VersionId, access: Read
) -> Response:
    """A version as a DICOM SEG referencing the source instances."""
    service = _service(request)
    data = service.export_seg(_project(access), seg_id, version_id)
    name = service.export_filename(_project(access), seg_id, version_id, ".dcm")
    _audit(request, access, "annotation.export", f"segmentation {seg_id}", f"SEG {version_id}")
    return Response(data, media_type="application/dicom", headers=_attachment(name))


@router.get(
    "/projects/{project}/segmentations/{seg_id}/versions/{version_id}/nifti",
    response_class=Response,
    responses={200: {"content": {"application/gzip": {}}}},
)
def export_version_nifti(
    request: Request, seg_id: SegId, version_id: VersionId, access: Read
) -> Response:
    """A version as a gzipped NIfTI label map on the series grid."""
    service = _service(request)
    data = service.export_nifti(_project(access), seg_id, version_id)
    name = service.export_filename(_project(access), seg_id, version_id, ".nii.gz")
    _audit(request, access, "annotation.export", f"segmentation {seg_id}", f"NIfTI {version_id}")
    return Response(data, media_type="application/gzip", headers=_attachment(name))


@router.get(
    "/projects/{project}/segmentations/{seg_id}/versions/{version_id}/slicer",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def export_version_slicer(
    request: Request, seg_id: SegId, version_id: VersionId, access: Read
) -> Response:
    """A version as a 3D Slicer segmentation (``.seg.nrrd``) on the series grid: one segment per
    label of the set, with its name, colour and code."""
    name, data = _service(request).export_slicer(_project(access), seg_id, version_id)
    _audit(request, access, "annotation.export", f"segmentation {seg_id}", f"Slicer {version_id}")
    return Response(data, media_type="application/octet-stream", headers=_attachment(name))


@router.post("/projects/{project}/segmentations/{seg_id}/import", status_code=201)
async def import_version(
    request: Request,
    seg_id: SegId,
    access: Write,
    format: Annotated[Literal["seg", "nifti", "slicer"], Query()] = "seg",
    parent: Annotated[int | None, Query(ge=1, le=2**31)] = None,
    model: Annotated[str, Query(max_length=128)] = "",
    model_version: Annotated[str, Query(max_length=64)] = "",
    comment: Annotated[str, Query(max_length=4000)] = "",
) -> Any:
    """Import a DICOM SEG, a NIfTI label map or a 3D Slicer segmentation (``.seg.nrrd``; the
    body) as a new version, e.g. AI pre-labels. SEG and Slicer segments match labels by name."""
    data = await request.body()
    try:
        version = await run_in_threadpool(
            _service(request).import_version,
            _project(access),
            seg_id,
            data,
            format,
            parent_id=parent,
            author_id=access.principal.user_id,
            model=model,
            model_version=model_version,
            comment=comment,
        )
    except ConflictError as error:
        return _conflict(error)
    _audit(
        request,
        access,
        "annotation.save",
        f"segmentation {seg_id}",
        f"import {format} {version.id}",
    )
    return _version_view(version)


# -- geometric annotations -------------------------------------------------------------------------


@router.get("/projects/{project}/shapes")
def list_shapes(
    request: Request,
    access: Read,
    study: Annotated[str | None, Query(max_length=64)] = None,
    series: Annotated[str | None, Query(max_length=64)] = None,
) -> list[dict[str, Any]]:
    """Points, lines, boxes, ellipses, polygons and angles (LPS mm) of the project."""
    shapes = _service(request).store.shapes(_project(access), study_uid=study, series_uid=series)
    return [_shape_view(s) for s in shapes]


@router.post("/projects/{project}/shapes", status_code=201)
def add_shape(request: Request, body: ShapeIn, access: Write) -> dict[str, Any]:
    """A geometric annotation on an instance of a study of the project; the points must lie on
    that image's plane (within 0.05 mm)."""
    service = _service(request)
    project = _project(access)
    service.check_instance(project, body.study, body.series, body.sop)
    frame = service.check_on_plane(body.sop, body.points)
    if body.frame_of_reference and frame and body.frame_of_reference != frame:
        raise GeometryError(f"image {body.sop} is in frame of reference {frame}")
    info = service.store.add_shape(
        project,
        study_uid=body.study,
        series_uid=body.series,
        sop_uid=body.sop,
        frame_of_reference_uid=body.frame_of_reference or frame,
        kind=body.kind,
        points=body.points,
        label=body.label,
        author_id=access.principal.user_id,
    )
    _audit(request, access, "annotation.shape", f"shape {info.id}", info.kind.value)
    return _shape_view(info)


@router.get(
    "/projects/{project}/studies/{study}/series/{series}/shapes/sr",
    response_class=Response,
    responses={200: {"content": {"application/dicom": {}}}},
)
def export_shapes_sr(request: Request, study: str, series: str, access: Read) -> Response:
    """The geometric annotations of a series as a DICOM SR (TID 1500 measurement report)."""
    service = _service(request)
    shapes = service.store.shapes(_project(access), study_uid=study, series_uid=series)
    with stored_series(service.archive, study, series) as info:
        dataset = shapes_to_sr(shapes, info, author=access.principal.name)
    return Response(dataset_bytes(dataset), media_type="application/dicom")


@router.post("/projects/{project}/shapes/sr", status_code=201)
async def import_shapes_sr(request: Request, access: Write) -> list[dict[str, Any]]:
    """Import the geometric annotations of a DICOM SR (TID 1500, SCOORD3D or SCOORD) in the body;
    they must reference a study of the project."""
    service = _service(request)
    project = _project(access)
    shapes = await run_in_threadpool(service.read_sr, await request.body())
    out = []
    for shape in shapes:
        service.check_instance(project, shape.study_uid, shape.series_uid, shape.sop_uid)
    for shape in shapes:
        info = service.store.add_shape(
            project,
            study_uid=shape.study_uid,
            series_uid=shape.series_uid,
            sop_uid=shape.sop_uid,
            frame_of_reference_uid=shape.frame_of_reference_uid,
            kind=shape.kind,
            points=shape.points,
            label=shape.label,
            author_id=access.principal.user_id,
        )
        out.append(_shape_view(info))
    _audit(request, access, "annotation.shape", "SR import", f"{len(out)} shape(s)")
    return out


# -- tasks and review ------------------------------------------------------------------------------


@router.get("/projects/{project}/tasks")
def list_tasks(
    request: Request,
    access: Read,
    milestone: Annotated[str | None, Query(max_length=64)] = None,
) -> list[dict[str, Any]]:
    """Every annotation task of the project (earliest due first)."""
    tasks = _service(request).store.tasks(_project(access), milestone=milestone)
    return [_task_view(t) for t in tasks]


@router.get("/projects/{project}/queue")
def my_queue(request: Request, access: Read) -> list[dict[str, Any]]:
    """The caller's work: tasks assigned to them that are not yet submitted or accepted."""
    tasks = _service(request).store.tasks(
        _project(access),
        assignee=access.principal.user_id,
        states=[TaskState.OPEN, TaskState.IN_PROGRESS, TaskState.RETURNED],
    )
    return [_task_view(t) for t in tasks]


@router.post("/projects/{project}/tasks", status_code=201)
def create_task(request: Request, body: TaskIn, access: Manage) -> dict[str, Any]:
    """A task on a series with a label set, for one or more annotators."""
    info = _service(request).create_task(
        _project(access),
        study_uid=body.study,
        series_uid=body.series,
        label_set=body.label_set,
        assignees=body.assignees,
        user_id=access.principal.user_id,
        title=body.title,
        instructions=body.instructions,
        milestone=body.milestone,
        due_at=body.due_at,
    )
    _audit(request, access, "annotation.task", f"task {info.id}", ",".join(body.assignees))
    return _task_view(info)


@router.get("/projects/{project}/tasks/{task_id}")
def get_task(request: Request, task_id: TaskId, access: Read) -> dict[str, Any]:
    """A task and the state of each annotator's part."""
    return _task_view(_service(request).store.task(_project(access), task_id))


@router.post("/projects/{project}/tasks/{task_id}/transition")
def transition_task(
    request: Request, task_id: TaskId, body: TransitionIn, access: Write
) -> dict[str, Any]:
    """The caller starts or submits their part of a task."""
    store = _service(request).store
    project = _project(access)
    user = access.principal.user_id
    if body.action == "start":
        info = store.start(project, task_id, user)
    else:
        info = store.submit(project, task_id, user)
    _audit(request, access, f"annotation.{body.action}", f"task {task_id}")
    return _task_view(info)


@router.post("/projects/{project}/tasks/{task_id}/review")
def review_task(request: Request, task_id: TaskId, body: ReviewIn, access: Review) -> Any:
    """Accept an annotator's submitted work, or return it with a comment."""
    info = _service(request).store.review(
        _project(access),
        task_id,
        annotator=body.annotator,
        reviewer_id=access.principal.user_id,
        accept=body.decision == "accept",
        comment=body.comment,
    )
    _audit(
        request,
        access,
        "annotation.review",
        f"task {task_id}",
        f"{body.decision} {body.annotator}: {body.comment}",
    )
    return _task_view(info)


@router.get("/projects/{project}/tasks/{task_id}/agreement")
def task_agreement(
    request: Request,
    task_id: TaskId,
    access: Read,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Any:
    """Inter-rater figures per label and pair of annotators: Dice, HD95 (mm), volumes (mL)."""
    rows = _service(request).agreement(_project(access), task_id)
    if format == "csv":
        return Response(to_csv(rows), media_type="text/csv")
    return [vars(r) for r in rows]


@router.post("/projects/{project}/tasks/{task_id}/consensus", status_code=201)
def task_consensus(
    request: Request, task_id: TaskId, body: ConsensusIn, access: Manage
) -> dict[str, Any]:
    """A consensus label map (STAPLE or majority vote) of the annotators' latest versions,
    stored as a new segmentation whose first version records the inputs."""
    version = _service(request).consensus(
        _project(access), task_id, body.method, access.principal.user_id
    )
    _audit(
        request,
        access,
        "annotation.consensus",
        f"task {task_id}",
        f"{body.method} -> segmentation {version.segmentation_id}",
    )
    return {"segmentation": version.segmentation_id, "version": _version_view(version)}


@router.get("/projects/{project}/annotation-dashboard")
def dashboard(request: Request, access: Read) -> dict[str, Any]:
    """Progress per annotator and per milestone (assignment counts by state, overdue work)."""
    return _service(request).store.dashboard(_project(access))
