"""Routes the web viewer needs beyond DICOMweb, under ``/api/projects/{project}``.

De-identification rules and patient pseudonyms for de-identifying in the browser; stored series
as volumes and server-rendered planes for series too large for the browser. The contract is
``docs/viewer-api.md``; the work is done in :mod:`carina.services.viewer_deid` and
:mod:`carina.services.viewer`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from carina.api.security import Access, RequireInProject
from carina.archive import Archive
from carina.auth import Action
from carina.core.errors import (
    ConfigurationError,
    DicomDecodeError,
    DicomError,
    GeometryError,
    ModelError,
    NotDicomError,
)
from carina.core.volume import Volume
from carina.jobs import JobStore
from carina.services import viewer, viewer_deid
from carina.services.jobs import JobWatcher

router = APIRouter()


def _in_project(action: Action) -> Any:
    return Depends(RequireInProject(action))


class PseudonymIn(BaseModel):
    key: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="lowercase hex SHA-256 of salt + PatientID"
    )


class PseudonymOut(BaseModel):
    patient_id: str
    patient_name: str
    date_shift_days: int


@router.get("/projects/{project}/deid/rules", tags=["viewer"])
def deid_rules(
    request: Request, access: Annotated[Access, _in_project(Action.READ_STUDY)]
) -> dict[str, Any]:
    """The project's de-identification profile resolved to one action per tag, for browsers."""
    assert access.project is not None
    return viewer_deid.browser_rules(request.app.state.settings.data_dir, access.project)


@router.post("/projects/{project}/deid/pseudonym", tags=["viewer"])
def deid_pseudonym(
    request: Request,
    body: PseudonymIn,
    access: Annotated[Access, _in_project(Action.STORE_STUDY)],
) -> PseudonymOut:
    """The stable pseudonym (and date shift) of a patient key in this project."""
    assert access.project is not None
    found = viewer_deid.browser_pseudonym(
        request.app.state.archive.engine,
        request.app.state.settings.data_dir,
        access.project,
        body.key,
    )
    return PseudonymOut(
        patient_id=found.patient_id,
        patient_name=found.patient_id,
        date_shift_days=found.date_shift_days,
    )


# -- volumes and rendered planes ------------------------------------------------------------------

SERIES = "/projects/{project}/studies/{study}/series/{series}"


def _volume(request: Request, study: str, series: str) -> Volume:
    archive: Archive = request.app.state.archive
    cache: viewer.ByteLRU = request.app.state.viewer_cache
    try:
        return viewer.cached_series(cache, archive, study, series)
    except (DicomDecodeError, NotDicomError):  # a damaged file: 422 as elsewhere
        raise
    except (DicomError, ConfigurationError) as exc:
        raise HTTPException(400, f"not an image series: {exc}") from exc


@router.get(SERIES + "/volume", tags=["viewer"])
async def series_volume(
    request: Request,
    study: str,
    series: str,
    access: Annotated[Access, _in_project(Action.READ_STUDY)],
) -> dict[str, Any]:
    """Shape, spacing and affine (index (k, j, i) to LPS mm) of a stored series."""
    volume = await run_in_threadpool(_volume, request, study, series)
    return viewer.volume_info(volume)


@router.get(
    SERIES + "/frames",
    tags=["viewer"],
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def series_frames(
    request: Request,
    study: str,
    series: str,
    access: Annotated[Access, _in_project(Action.READ_STUDY)],
) -> StreamingResponse:
    """Every frame of a stored series in one response, for a viewer that loads the whole volume:
    per frame a 4-byte little-endian header length, a JSON header ``{"sop", "frame",
    "length"}`` and the frame's uncompressed little-endian values (as WADO-RS frames)."""
    archive: Archive = request.app.state.archive
    records = await run_in_threadpool(viewer.series_frames, archive, study, series)
    return StreamingResponse(
        records, media_type="application/octet-stream", headers={"Cache-Control": "private"}
    )


@router.get(
    SERIES + "/render",
    tags=["viewer"],
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
)
async def series_render(
    request: Request,
    study: str,
    series: str,
    access: Annotated[Access, _in_project(Action.READ_STUDY)],
    plane: Annotated[str | None, Query(description="axial, coronal or sagittal")] = None,
    index: Annotated[str | None, Query(description="plane number (default: middle)")] = None,
    slab: Annotated[str | None, Query(description="slab thickness in mm, 0: one plane")] = None,
    mode: Annotated[str | None, Query(description="mip, minip or avg")] = None,
    window: Annotated[str | None, Query(description="center,width")] = None,
    format: Annotated[str | None, Query(description="png or jpeg")] = None,
    size: Annotated[str | None, Query(description="longest edge in pixels")] = None,
) -> Response:
    """One plane or slab of a stored series, rendered on the server (square pixels in mm,
    radiological orientation)."""
    try:
        wanted = viewer.RenderRequest.parse(plane, index, slab, mode, window, format, size)
    except ConfigurationError as exc:
        raise HTTPException(400, str(exc)) from exc

    def work() -> bytes:
        volume = _volume(request, study, series)
        try:
            return viewer.render(volume, wanted)
        except GeometryError as exc:
            raise HTTPException(400, str(exc)) from exc

    data = await run_in_threadpool(work)
    return Response(data, media_type=f"image/{wanted.fmt}", headers={"Cache-Control": "private"})


# -- interactive segmentation ----------------------------------------------------------------------


class GrowRequest(BaseModel):
    method: str = Field(
        default="click",
        description="click (region growing), seeds (grow from seeds) or model (an installed "
        "interactive model)",
    )
    model: str | None = Field(
        default=None, max_length=64, description="id of the interactive model (method model)"
    )
    points: list[list[float]] = Field(
        min_length=1, max_length=64, description="clicks in LPS mm (foreground seeds)"
    )
    background: list[list[float]] = Field(
        default_factory=list,
        max_length=64,
        description="background clicks (methods seeds and model)",
    )
    tolerance_hu: float | None = Field(
        default=None, gt=0, le=2000, description="fixed interval around the clicks' value"
    )


@router.post(
    SERIES + "/grow",
    tags=["viewer"],
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def series_grow(
    request: Request,
    study: str,
    series: str,
    body: GrowRequest,
    access: Annotated[Access, _in_project(Action.ANNOTATE)],
) -> Response:
    """A region grown from clicks: the block of the series grid (C order (k, j, i), uint8, 1
    inside) that holds it, placed by ``X-Carina-Offset``. Weight-free (``click``, ``seeds``) or
    by an installed interactive model (``model``, named by ``model``; 400 when no interactive
    model of that id is installed)."""
    if any(len(p) != 3 for p in [*body.points, *body.background]):
        raise HTTPException(422, "points are [x, y, z] in LPS mm")
    if body.method == "model" and not body.model:
        raise HTTPException(422, "method model needs the id of an interactive model in 'model'")

    def work() -> Response:
        runner = None
        if body.method == "model":
            assert body.model is not None
            models: viewer.InteractiveModels = request.app.state.interactive_models
            try:
                runner = models.get(body.model)
            except ModelError as exc:
                raise HTTPException(400, str(exc)) from exc
        volume = _volume(request, study, series)
        try:
            grown = viewer.grow_region(
                volume, body.method, body.points, body.background, body.tolerance_hu, runner
            )
        except (ConfigurationError, ModelError) as exc:
            raise HTTPException(422, str(exc)) from exc
        headers = {
            "X-Carina-Shape": ",".join(str(n) for n in grown.block.shape),
            "X-Carina-Dtype": "uint8",
            "X-Carina-Offset": ",".join(str(n) for n in grown.offset),
            "X-Carina-Voxels": str(grown.voxels),
            "X-Carina-Volume-Ml": f"{grown.volume_ml:.3f}",
            "X-Carina-Method": body.method
            if runner is None
            else f"model {runner.spec.id} {runner.spec.version}",
            "Server-Timing": ", ".join(
                f"{stage};dur={seconds * 1000:.0f}" for stage, seconds in grown.seconds.items()
            ),
        }
        return Response(
            grown.block.tobytes(), media_type="application/octet-stream", headers=headers
        )

    response: Response = await run_in_threadpool(work)
    return response


# -- segmentation overlays ------------------------------------------------------------------------


@router.get(SERIES + "/segmentations", tags=["viewer"])
async def series_segmentations(
    request: Request,
    study: str,
    series: str,
    access: Annotated[Access, _in_project(Action.READ_STUDY)],
) -> list[dict[str, Any]]:
    """The DICOM SEG series of the study that segment this series, with their labels."""
    archive: Archive = request.app.state.archive
    result: list[dict[str, Any]] = await run_in_threadpool(
        viewer.segmentations, archive, study, series
    )
    return result


@router.get(
    SERIES + "/segmentations/{seg_series}/labelmap",
    tags=["viewer"],
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def segmentation_labelmap(
    request: Request,
    study: str,
    series: str,
    seg_series: str,
    access: Annotated[Access, _in_project(Action.READ_STUDY)],
) -> Response:
    """The label map of a segmentation on the image series' grid, C order (k, j, i)."""

    def work() -> Response:
        labels = viewer.labelmap(
            request.app.state.viewer_cache, request.app.state.archive, study, series, seg_series
        )
        data, dtype = viewer.labelmap_bytes(labels)
        k_j_i = reversed(labels.geometry.shape)
        headers = {
            "X-Carina-Shape": ",".join(str(n) for n in k_j_i),
            "X-Carina-Dtype": dtype,
            "X-Carina-Affine": ",".join(repr(v) for v in viewer.kji_affine(labels)),
            "Cache-Control": "private",
        }
        return Response(data, media_type="application/octet-stream", headers=headers)

    response: Response = await run_in_threadpool(work)
    return response


@router.get(
    SERIES + "/segmentations/{seg_series}/meshes/{value}",
    tags=["viewer"],
    response_class=Response,
    responses={200: {"content": {"model/stl": {}}}},
)
async def segmentation_mesh(
    request: Request,
    study: str,
    series: str,
    seg_series: str,
    value: Annotated[int, Path(ge=1, le=65535)],
    access: Annotated[Access, _in_project(Action.READ_STUDY)],
) -> Response:
    """A binary STL surface of one label, vertices in LPS millimetres."""
    data = await run_in_threadpool(
        viewer.mesh_stl,
        request.app.state.viewer_cache,
        request.app.state.archive,
        study,
        series,
        seg_series,
        value,
    )
    return Response(data, media_type="model/stl", headers={"Cache-Control": "private"})


# -- live job progress ----------------------------------------------------------------------------

EVENT_POLL_S = 0.5
KEEPALIVE_S = 15.0


@router.get(
    "/projects/{project}/jobs/events",
    tags=["jobs"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def job_events(
    request: Request,
    access: Annotated[Access, _in_project(Action.READ_JOB)],
    timeout: Annotated[
        float, Query(ge=0, le=3600, description="close the stream after this many seconds")
    ] = 300.0,
) -> StreamingResponse:
    """Server-sent events: one ``job`` event whenever a job of the project changes state,
    progress or message (first the queued and running ones), a keep-alive comment every 15 s.
    The stream ends after ``timeout`` seconds; browsers' EventSource reconnects by itself."""
    assert access.project is not None
    store: JobStore = request.app.state.job_store
    project_id = store.project_id(access.project)
    if project_id is None:  # pragma: no cover - the access check found the project
        raise HTTPException(404, "not found")
    watcher = JobWatcher(store, project_id)

    async def stream() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        last = loop.time()
        yield "retry: 2000\n: connected\n\n"
        while not await request.is_disconnected():
            for event in await run_in_threadpool(watcher.changes):
                last = loop.time()
                yield f"event: job\ndata: {json.dumps(event)}\n\n"
            if loop.time() >= end:
                break
            await asyncio.sleep(min(EVENT_POLL_S, max(0.0, end - loop.time())))
            if loop.time() - last >= KEEPALIVE_S:
                last = loop.time()
                yield ": keep-alive\n\n"

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
