"""DICOMweb (PS3.18): STOW-RS, QIDO-RS and WADO-RS.

The same routes serve ``/dicom-web`` (the whole archive, administrators only) and
``/projects/{project}/dicom-web`` (the studies of one project: QIDO-RS is filtered to them,
WADO-RS answers 404 for other studies, STOW-RS adds what it stores to the project).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from io import BytesIO
from typing import Annotated, Any

import pydicom
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from carina.api.deps import get_archive
from carina.api.multipart import (
    Part,
    media_type_params,
    multipart_stream,
    new_boundary,
    parse_multipart,
)
from carina.api.security import (
    Access,
    Require,
    RequireInProject,
    client_ip,
    get_audit,
    get_auth,
)
from carina.archive import Archive, IngestResult, IngestStatus, StoredInstance
from carina.archive import pixels as px
from carina.archive.dicomjson import resolve_bulk_uris
from carina.archive.query import Level, QueryError, resolve_key, search
from carina.archive.query import Query as CatalogQuery
from carina.auth import Action
from carina.auth.audit import ALLOWED
from carina.core.errors import NotFoundError, StorageError
from carina.services import project_deid

ArchiveDep = Annotated[Archive, Depends(get_archive)]
DICOM_JSON = "application/dicom+json"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
OCTET_PART = f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
STOW_BATCH = 100
QIDO_MAX_RESULTS = 1000  # a larger or missing limit is capped; a Warning header tells so

# failure reasons of STOW-RS (PS3.18 table I.2-1, PS3.7 C.4.2)
REASON_OUT_OF_RESOURCES = 0xA700
REASON_STUDY_MISMATCH = 0xA900
REASON_CANNOT_UNDERSTAND = 0xC000
REASON_DUPLICATE = 0x0111
REASON_NOT_IN_PROJECT = 0xC001  # the instance's study is stored but not part of this project
REASON_MEDIA_TYPE = 0xC122  # a part that is not application/dicom
_RESERVED = {"limit", "offset", "includefield", "fuzzymatching"}


_ROUTES: list[tuple[str, str, Action, Callable[..., Any]]] = []


def _route(method: str, path: str, action: Action = Action.READ_STUDY) -> Callable[[Any], Any]:
    def register(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        _ROUTES.append((method, path, action, endpoint))
        return endpoint

    return register


def dicomweb_router(project_scoped: bool) -> APIRouter:
    """The DICOMweb routes for one project (under ``/projects/{project}/dicom-web``) or for the
    whole archive (under ``/dicom-web``)."""
    router = APIRouter(tags=["dicomweb"])
    for method, path, action, endpoint in _ROUTES:
        dependency = RequireInProject(action) if project_scoped else Require(action)
        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            name=("project_" if project_scoped else "site_") + endpoint.__name__,
            dependencies=[Depends(dependency)],
        )
    return router


def _access(request: Request) -> Access:
    access: Access = request.state.access
    return access


def _root(request: Request) -> str:
    public: str | None = request.app.state.settings.public_url
    base = public or str(request.base_url)
    return base.rstrip("/") + _access(request).dicomweb_path


def _json_response(content: str, status_code: int = 200) -> Response:
    return Response(content, status_code=status_code, media_type=DICOM_JSON)


# -- STOW-RS ------------------------------------------------------------------------------------


def _ref(result: IngestResult) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if result.sop_class_uid:
        item["00081150"] = {"vr": "UI", "Value": [result.sop_class_uid]}
    if result.sop_instance_uid:
        item["00081155"] = {"vr": "UI", "Value": [result.sop_instance_uid]}
    return item


def _failure_reason(result: IngestResult) -> int:
    if result.status is IngestStatus.CONFLICT:
        return REASON_DUPLICATE
    if result.reason and result.reason.startswith("StudyInstanceUID"):
        return REASON_STUDY_MISMATCH
    return REASON_CANNOT_UNDERSTAND


def _identity(content: bytes) -> IngestResult | None:
    """The UIDs of a part, read from its header only (``None`` when unreadable: the ingest
    itself reports those)."""
    try:
        ds = pydicom.dcmread(
            BytesIO(content),
            stop_before_pixels=True,
            specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"],
            force=True,
        )
        study = str(ds.get("StudyInstanceUID", "")) or None
        return IngestResult(
            IngestStatus.REJECTED,
            sop_instance_uid=str(ds.get("SOPInstanceUID", "")) or None,
            sop_class_uid=str(ds.get("SOPClassUID", "")) or None,
            study_instance_uid=study,
            reason="the study belongs to other projects",
        )
    except Exception:
        return None


def _outside_project(
    request: Request, project: str, parts: list[Part]
) -> tuple[list[Part], list[IngestResult]]:
    """The parts whose study may be stored into ``project``, and the refusals of the others
    (their study is stored already and belongs to other projects only)."""
    identities = [_identity(bytes(part.content)) for part in parts]
    studies = {i.study_instance_uid for i in identities if i and i.study_instance_uid}
    outside = get_auth(request).stored_outside(project, studies)
    kept: list[Part] = []
    refused: list[IngestResult] = []
    for part, identity in zip(parts, identities, strict=True):
        if identity is not None and identity.study_instance_uid in outside:
            refused.append(identity)
        else:
            kept.append(part)
    return kept, refused


def _deidentify_parts(
    request: Request, project: str, parts: list[Part]
) -> tuple[list[Part], list[IngestResult]]:
    """The parts de-identified by the project's policy (unchanged when it has none), and
    refusals of those that cannot be: nothing identified is stored into such a project."""
    data_dir = request.app.state.settings.data_dir
    if not project_deid.load_policy(data_dir, project).enabled:
        return parts, []
    items: list[tuple[str | None, bytes]] = [
        (str(number), bytes(part.content)) for number, part in enumerate(parts, 1)
    ]
    clean, failed = project_deid.deidentify_items(data_dir, project, items)
    by_source = dict(clean)
    kept = [
        Part(headers=part.headers, content=bytearray(by_source[str(number)]))
        for number, part in enumerate(parts, 1)
        if str(number) in by_source
    ]
    refused = [IngestResult(IngestStatus.REJECTED, source, reason=why) for source, why in failed]
    return kept, refused


def _add_to_project(request: Request, project: str, studies: list[str]) -> None:
    access = _access(request)
    added = get_auth(request).add_studies(project, studies)
    for uid in added:
        get_audit(request).record(
            action="project.studies.add",
            outcome=ALLOWED,
            user_id=access.principal.user_id,
            user_name=access.principal.name,
            resource=f"study {uid}",
            project=project,
            client_ip=client_ip(request),
            detail="stored by STOW-RS",
        )


async def _stow(request: Request, archive: Archive, study: str | None) -> Response:
    kind, params = media_type_params(request.headers.get("content-type", ""))
    if kind != "multipart/related" or "boundary" not in params:
        raise HTTPException(415, 'expected multipart/related; type="application/dicom"')
    if params.get("type", "application/dicom").lower() != "application/dicom":
        raise HTTPException(415, "only application/dicom parts are accepted")
    parts = await parse_multipart(params["boundary"], request.stream())
    if not parts:
        raise HTTPException(400, "the request has no parts")
    results: list[IngestResult] = []
    failures: list[tuple[IngestResult, int]] = []
    project = _access(request).project
    if project is not None:
        parts, unclean = await run_in_threadpool(_deidentify_parts, request, project, parts)
        failures.extend((result, REASON_CANNOT_UNDERSTAND) for result in unclean)
        parts, refused = await run_in_threadpool(_outside_project, request, project, parts)
        failures.extend((result, REASON_NOT_IN_PROJECT) for result in refused)
    for start in range(0, len(parts), STOW_BATCH):
        batch: list[tuple[str | None, bytes]] = []
        for number, part in enumerate(parts[start : start + STOW_BATCH], start + 1):
            part_type, _ = media_type_params(part.content_type or "application/dicom")
            if part_type != "application/dicom":
                failures.append(
                    (IngestResult(IngestStatus.REJECTED, str(number)), REASON_MEDIA_TYPE)
                )
                continue
            batch.append((str(number), bytes(part.content)))
        try:
            results.extend(await run_in_threadpool(archive.ingest, batch, study_uid=study))
        except StorageError:
            failures.extend(
                (IngestResult(IngestStatus.REJECTED, source), REASON_OUT_OF_RESOURCES)
                for source, _ in batch
            )
    stored = sorted({r.study_instance_uid for r in results if r.status.ok and r.study_instance_uid})
    if project is not None and stored:
        _add_to_project(request, project, stored)
    root = _root(request)
    referenced: list[dict[str, Any]] = []
    for result in results:
        if result.status.ok:
            item = _ref(result)
            url = (
                f"{root}/studies/{result.study_instance_uid}/series/"
                f"{result.series_instance_uid}/instances/{result.sop_instance_uid}"
            )
            item["00081190"] = {"vr": "UR", "Value": [url]}
            referenced.append(item)
        else:
            failures.append((result, _failure_reason(result)))
    body: dict[str, Any] = {}
    studies = {r.study_instance_uid for r in results if r.status.ok}
    if study or len(studies) == 1:
        body["00081190"] = {"vr": "UR", "Value": [f"{root}/studies/{study or studies.pop()}"]}
    if failures:
        failed = []
        for result, reason in failures:
            item = _ref(result)
            item["00081197"] = {"vr": "US", "Value": [reason]}
            failed.append(item)
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    status = 200 if not failures else 202 if referenced else 409
    return _json_response(json.dumps(body), status)


@_route("POST", "/studies", Action.STORE_STUDY)
async def stow(request: Request, archive: ArchiveDep) -> Response:
    """STOW-RS: store instances (multipart/related; type="application/dicom")."""
    return await _stow(request, archive, None)


@_route("POST", "/studies/{study}", Action.STORE_STUDY)
async def stow_study(study: str, request: Request, archive: ArchiveDep) -> Response:
    """STOW-RS into one study: instances of other studies fail."""
    return await _stow(request, archive, study)


# -- QIDO-RS ------------------------------------------------------------------------------------


def _qido(
    request: Request,
    archive: Archive,
    level: Level,
    study: str | None = None,
    series: str | None = None,
) -> Response:
    filters: dict[str, str] = {}
    includefield: list[str] = []
    include_all = False
    limit: int | None = None
    offset = 0
    fuzzy = False
    try:
        for key, value in request.query_params.multi_items():
            if key == "fuzzymatching":
                if value.lower() not in ("true", "false"):
                    raise QueryError(f"fuzzymatching is true or false, got {value!r}")
                fuzzy = value.lower() == "true"
            elif key == "includefield":
                for name in re.split(r"[,\s]+", value):
                    if name == "all":
                        include_all = True
                    elif name:
                        includefield.append(resolve_key(name))
            elif key == "limit":
                limit = int(value)
            elif key == "offset":
                offset = int(value)
            elif key in _RESERVED:
                continue
            else:
                filters[resolve_key(key)] = value
    except ValueError as exc:
        raise QueryError(f"bad query parameter: {exc}") from exc
    if (limit is not None and limit < 0) or offset < 0:
        raise QueryError("limit and offset must not be negative")
    query = CatalogQuery(
        level=level,
        filters=filters,
        study_uid=study,
        series_uid=series,
        includefield=includefield,
        include_all=include_all,
        limit=(min(limit, QIDO_MAX_RESULTS) if limit is not None else QIDO_MAX_RESULTS) + 1,
        offset=offset,
        fuzzy=fuzzy,
        study_scope=get_auth(request).study_scope(project)
        if (project := _access(request).project)
        else None,
    )
    with archive.session() as session:
        matches = search(session, query)
    headers: dict[str, str] = {}
    wanted = min(limit, QIDO_MAX_RESULTS) if limit is not None else QIDO_MAX_RESULTS
    if len(matches) > wanted:
        matches = matches[:wanted]
        if limit is None or limit > QIDO_MAX_RESULTS:
            headers["Warning"] = "299 carina: There are additional results that can be requested"
    body = resolve_bulk_uris(json.dumps(matches), _root(request))
    return Response(body, media_type=DICOM_JSON, headers=headers)


@_route("GET", "/studies")
def search_studies(request: Request, archive: ArchiveDep) -> Response:
    """QIDO-RS: search for studies."""
    return _qido(request, archive, Level.STUDY)


@_route("GET", "/series")
def search_series(request: Request, archive: ArchiveDep) -> Response:
    """QIDO-RS: search for series in all studies."""
    return _qido(request, archive, Level.SERIES)


@_route("GET", "/studies/{study}/series")
def search_study_series(study: str, request: Request, archive: ArchiveDep) -> Response:
    """QIDO-RS: search for series of a study."""
    return _qido(request, archive, Level.SERIES, study)


@_route("GET", "/instances")
def search_instances(request: Request, archive: ArchiveDep) -> Response:
    """QIDO-RS: search for instances in all studies."""
    return _qido(request, archive, Level.IMAGE)


@_route("GET", "/studies/{study}/instances")
def search_study_instances(study: str, request: Request, archive: ArchiveDep) -> Response:
    """QIDO-RS: search for instances of a study."""
    return _qido(request, archive, Level.IMAGE, study)


@_route("GET", "/studies/{study}/series/{series}/instances")
def search_series_instances(
    study: str, series: str, request: Request, archive: ArchiveDep
) -> Response:
    """QIDO-RS: search for instances of a series."""
    return _qido(request, archive, Level.IMAGE, study, series)


# -- WADO-RS ------------------------------------------------------------------------------------


def _check_accept(request: Request, *acceptable: str) -> str:
    """The first acceptable media type the client accepts (406 when none)."""
    header = request.headers.get("accept", "*/*")
    for entry in header.split(","):
        kind, params = media_type_params(entry)
        if kind == "multipart/related":
            kind = params.get("type", acceptable[0]).lower()
        if kind in ("*/*", "*"):
            return acceptable[0]
        if kind in acceptable:
            return kind
    raise HTTPException(406, f"acceptable media types: {', '.join(acceptable)}")


def _dicom_syntaxes(request: Request) -> set[str] | None:
    """Transfer syntaxes the client accepts for application/dicom; ``None``: any (as stored)."""
    wanted: set[str] = set()
    for entry in request.headers.get("accept", "*/*").split(","):
        kind, params = media_type_params(entry)
        if kind == "multipart/related":
            kind = params.get("type", "application/dicom").lower()
        if kind in ("*/*", "*", "application/*"):
            return None
        if kind == "application/dicom":
            syntax = params.get("transfer-syntax")
            if syntax is None or syntax == "*":
                return None
            wanted.add(syntax)
    if not wanted:
        raise HTTPException(406, "acceptable media types: application/dicom")
    return wanted


def _choose_syntax(instance: StoredInstance, wanted: set[str] | None) -> str:
    if wanted is None or instance.transfer_syntax_uid in wanted:
        return instance.transfer_syntax_uid
    if EXPLICIT_LE in wanted and px.can_convert_to_explicit_le(instance.transfer_syntax_uid):
        return EXPLICIT_LE
    raise HTTPException(
        406,
        f"instance {instance.sop_instance_uid} is stored as {instance.transfer_syntax_uid}; "
        f"it can be sent as stored or as {EXPLICIT_LE}",
    )


def _retrieve(request: Request, archive: Archive, instances: list[StoredInstance]) -> Response:
    """Instances as stored, or converted to Explicit VR Little Endian when only that is accepted.

    An ``application/dicom`` Accept without ``transfer-syntax`` gets the stored transfer syntax.
    """
    wanted = _dicom_syntaxes(request)
    plan = [(instance, _choose_syntax(instance, wanted)) for instance in instances]
    boundary = new_boundary()

    def parts() -> Iterator[tuple[str, bytes]]:
        for instance, syntax in plan:
            data = archive.read(instance)
            if syntax != instance.transfer_syntax_uid:
                data = px.to_explicit_le(data)
            yield f"application/dicom; transfer-syntax={syntax}", data

    return StreamingResponse(
        multipart_stream(boundary, parts()),
        media_type=f'multipart/related; type="application/dicom"; boundary={boundary}',
    )


def _metadata(
    request: Request, archive: Archive, study: str, series: str | None, sop: str | None
) -> Response:
    _check_accept(request, DICOM_JSON, "application/json")
    texts = archive.metadata(study, series, sop)
    return _json_response(resolve_bulk_uris("[" + ",".join(texts) + "]", _root(request)))


@_route("GET", "/studies/{study}")
def retrieve_study(study: str, request: Request, archive: ArchiveDep) -> Response:
    """WADO-RS: all instances of a study, as stored."""
    return _retrieve(request, archive, archive.instances(study))


@_route("GET", "/studies/{study}/series/{series}")
def retrieve_series(study: str, series: str, request: Request, archive: ArchiveDep) -> Response:
    """WADO-RS: all instances of a series, as stored."""
    return _retrieve(request, archive, archive.instances(study, series))


@_route("GET", "/studies/{study}/series/{series}/instances/{sop}")
def retrieve_instance(
    study: str, series: str, sop: str, request: Request, archive: ArchiveDep
) -> Response:
    """WADO-RS: one instance, as stored."""
    return _retrieve(request, archive, archive.instances(study, series, sop))


@_route("GET", "/studies/{study}/metadata")
def study_metadata(study: str, request: Request, archive: ArchiveDep) -> Response:
    """WADO-RS: metadata of every instance of a study (cached at ingest)."""
    return _metadata(request, archive, study, None, None)


@_route("GET", "/studies/{study}/series/{series}/metadata")
def series_metadata(study: str, series: str, request: Request, archive: ArchiveDep) -> Response:
    """WADO-RS: metadata of every instance of a series (cached at ingest)."""
    return _metadata(request, archive, study, series, None)


@_route("GET", "/studies/{study}/series/{series}/instances/{sop}/metadata")
def instance_metadata(
    study: str, series: str, sop: str, request: Request, archive: ArchiveDep
) -> Response:
    """WADO-RS: metadata of one instance (cached at ingest)."""
    return _metadata(request, archive, study, series, sop)


def _one(archive: Archive, study: str, series: str, sop: str) -> StoredInstance:
    (instance,) = archive.instances(study, series, sop)
    return instance


def _frame_numbers(frames: str) -> list[int]:
    try:
        numbers = [int(f) for f in frames.split(",") if f.strip()]
    except ValueError as exc:
        raise QueryError(f"bad frame list {frames!r}") from exc
    if not numbers or min(numbers) < 1:
        raise QueryError("frame numbers start at 1")
    return numbers


def _single_part_first(request: Request) -> bool:
    """Whether the client's first acceptable media type is a bare ``application/octet-stream``
    (a single-part response), rather than ``multipart/related`` or anything."""
    for entry in request.headers.get("accept", "*/*").split(","):
        kind, _params = media_type_params(entry)
        if kind == "application/octet-stream":
            return True
        if kind in ("multipart/related", "*/*", "*"):
            return False
    return False


@_route("GET", "/studies/{study}/series/{series}/instances/{sop}/frames/{frames}")
def retrieve_frames(
    study: str, series: str, sop: str, frames: str, request: Request, archive: ArchiveDep
) -> Response:
    """WADO-RS: frames, uncompressed (application/octet-stream, little endian).

    Multipart/related, unless one frame is asked for by a client whose first acceptable type is a
    bare ``application/octet-stream`` (PS3.18 single-part payload): then the frame's bytes alone,
    which a viewer takes without searching the payload for a boundary.
    """
    _check_accept(request, "application/octet-stream")
    numbers = _frame_numbers(frames)
    ds = px.read_dataset(archive.read(_one(archive, study, series, sop)))
    contents = [px.frame_bytes(ds, n) for n in numbers]
    if len(contents) == 1 and _single_part_first(request):
        return Response(contents[0], media_type=OCTET_PART)
    boundary = new_boundary()
    body = b"".join(multipart_stream(boundary, ((OCTET_PART, c) for c in contents)))
    return Response(
        body,
        media_type=f'multipart/related; type="application/octet-stream"; boundary={boundary}',
    )


@_route("GET", "/studies/{study}/series/{series}/instances/{sop}/bulkdata/{tag}")
def retrieve_bulkdata(
    study: str, series: str, sop: str, tag: str, request: Request, archive: ArchiveDep
) -> Response:
    """WADO-RS: a top-level bulk data element; pixel data comes uncompressed."""
    _check_accept(request, "application/octet-stream")
    ds = px.read_dataset(archive.read(_one(archive, study, series, sop)))
    try:
        number = int(tag, 16)
    except ValueError as exc:
        raise NotFoundError(f"no bulk data {tag}") from exc
    if number == 0x7FE00010:
        content = b"".join(px.frame_bytes(ds, n) for n in range(1, px.frame_count(ds) + 1))
    elif number in ds and isinstance(ds[number].value, bytes):
        content = ds[number].value
    else:
        raise NotFoundError(f"no bulk data {tag}")
    boundary = new_boundary()
    body = b"".join(multipart_stream(boundary, [(OCTET_PART, content)]))
    return Response(
        body,
        media_type=f'multipart/related; type="application/octet-stream"; boundary={boundary}',
    )


def _window(window: str | None) -> tuple[float, float] | None:
    if not window:
        return None
    fields = window.split(",")
    try:
        center, width = float(fields[0]), float(fields[1])
    except (ValueError, IndexError) as exc:
        raise QueryError("window is center,width[,function]") from exc
    if len(fields) > 2 and fields[2].strip().lower() not in ("linear", ""):
        raise QueryError("only the linear window function is supported")
    if width < 1:
        raise QueryError("window width must be at least 1")
    return center, width


def _viewport(viewport: str | None) -> tuple[int, int] | None:
    if not viewport:
        return None
    try:
        columns, rows = (int(v) for v in viewport.split(",")[:2])
    except ValueError as exc:
        raise QueryError("viewport is columns,rows") from exc
    if columns < 1 or rows < 1:
        raise QueryError("viewport must be positive")
    return columns, rows


def _rendered(
    request: Request,
    archive: Archive,
    instance: StoredInstance,
    frame: int,
    window: str | None,
    viewport: tuple[int, int] | None,
    quality: int,
) -> Response:
    media = _check_accept(request, "image/png", "image/jpeg")
    ds = px.read_dataset(archive.read(instance))
    content = px.render(
        ds, frame, window=_window(window), viewport=viewport, media_type=media, quality=quality
    )
    return Response(content, media_type=media)


Quality = Annotated[int, Query(ge=1, le=100)]


@_route("GET", "/studies/{study}/series/{series}/instances/{sop}/rendered")
def instance_rendered(
    study: str,
    series: str,
    sop: str,
    request: Request,
    archive: ArchiveDep,
    window: str | None = None,
    viewport: str | None = None,
    quality: Quality = 90,
) -> Response:
    """WADO-RS rendered: the first frame as PNG (default) or JPEG, with window and viewport."""
    instance = _one(archive, study, series, sop)
    return _rendered(request, archive, instance, 1, window, _viewport(viewport), quality)


@_route("GET", "/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/rendered")
def frame_rendered(
    study: str,
    series: str,
    sop: str,
    frame: int,
    request: Request,
    archive: ArchiveDep,
    window: str | None = None,
    viewport: str | None = None,
    quality: Quality = 90,
) -> Response:
    """WADO-RS rendered: one frame as PNG (default) or JPEG."""
    instance = _one(archive, study, series, sop)
    return _rendered(request, archive, instance, frame, window, _viewport(viewport), quality)


def _rendered_many(
    request: Request,
    archive: Archive,
    instances: list[StoredInstance],
    window: str | None,
    viewport: tuple[int, int] | None,
    quality: int,
) -> Response:
    """Every frame of ``instances`` rendered, one part each, in series and instance order."""
    media = _check_accept(request, "image/png", "image/jpeg")
    win = _window(window)
    boundary = new_boundary()

    def parts() -> Iterator[tuple[str, bytes]]:
        for instance in instances:
            ds = px.read_dataset(archive.read(instance))
            for frame in range(1, (instance.number_of_frames or 1) + 1):
                content = px.render(
                    ds, frame, window=win, viewport=viewport, media_type=media, quality=quality
                )
                yield media, content

    return StreamingResponse(
        multipart_stream(boundary, parts()),
        media_type=f'multipart/related; type="{media}"; boundary={boundary}',
    )


@_route("GET", "/studies/{study}/rendered")
def study_rendered(
    study: str,
    request: Request,
    archive: ArchiveDep,
    window: str | None = None,
    viewport: str | None = None,
    quality: Quality = 90,
) -> Response:
    """WADO-RS rendered study: every frame of every instance, one image part each."""
    instances = archive.instances(study)
    return _rendered_many(request, archive, instances, window, _viewport(viewport), quality)


@_route("GET", "/studies/{study}/series/{series}/rendered")
def series_rendered(
    study: str,
    series: str,
    request: Request,
    archive: ArchiveDep,
    window: str | None = None,
    viewport: str | None = None,
    quality: Quality = 90,
) -> Response:
    """WADO-RS rendered series: every frame of every instance, one image part each."""
    instances = archive.instances(study, series)
    return _rendered_many(request, archive, instances, window, _viewport(viewport), quality)


def _thumbnail(
    request: Request, archive: Archive, instances: list[StoredInstance], viewport: str | None
) -> Response:
    instance = instances[len(instances) // 2]
    size = _viewport(viewport) or (128, 128)
    return _rendered(request, archive, instance, 1, None, size, 85)


@_route("GET", "/studies/{study}/thumbnail")
def study_thumbnail(
    study: str, request: Request, archive: ArchiveDep, viewport: str | None = None
) -> Response:
    """Thumbnail of a study: the middle instance of its first series."""
    first = archive.instances(study)[0]
    return _thumbnail(
        request, archive, archive.instances(study, first.series_instance_uid), viewport
    )


@_route("GET", "/studies/{study}/series/{series}/thumbnail")
def series_thumbnail(
    study: str, series: str, request: Request, archive: ArchiveDep, viewport: str | None = None
) -> Response:
    """Thumbnail of a series: its middle instance."""
    return _thumbnail(request, archive, archive.instances(study, series), viewport)


@_route("GET", "/studies/{study}/series/{series}/instances/{sop}/thumbnail")
def instance_thumbnail(
    study: str,
    series: str,
    sop: str,
    request: Request,
    archive: ArchiveDep,
    viewport: str | None = None,
) -> Response:
    """Thumbnail of an instance."""
    return _thumbnail(request, archive, archive.instances(study, series, sop), viewport)
