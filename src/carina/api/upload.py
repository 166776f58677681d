"""Plain HTTP upload of DICOM files (single file, ZIP or browser form), beside STOW-RS."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from carina.api.deps import get_archive
from carina.api.multipart import media_type_params
from carina.api.security import Require
from carina.archive import Archive, IngestResult, IngestStatus
from carina.auth import Action

# Site-wide upload stores outside any project: site administrators only (as ``/dicom-web``).
router = APIRouter(tags=["archive"], dependencies=[Depends(Require(Action.STORE_STUDY))])

MAX_FORM_FILES = 100_000
BATCH = 100


def _expand(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    """The instance candidates in an uploaded file: the members of a ZIP, or the file itself."""
    if data[:4] == b"PK\x03\x04" and zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as bundle:
            for member in bundle.infolist():
                if not member.is_dir():
                    yield f"{name}:{member.filename}", bundle.read(member)
    else:
        yield name, data


def _summary(results: list[IngestResult]) -> dict[str, Any]:
    counts = {status.value: 0 for status in IngestStatus}
    for result in results:
        counts[result.status.value] += 1
    return {
        "counts": counts,
        "results": [
            {
                "source": r.source,
                "status": r.status.value,
                "sop_instance_uid": r.sop_instance_uid,
                "study_instance_uid": r.study_instance_uid,
                "reason": r.reason,
            }
            for r in results
        ],
    }


@router.post("/instances")
async def upload(request: Request, archive: Archive = Depends(get_archive)) -> dict[str, Any]:
    """Store uploaded DICOM files: ``application/dicom``, ``application/zip`` or a
    ``multipart/form-data`` form whose files are DICOM files or ZIPs.

    The answer lists the outcome per instance (stored, already stored, rejected, conflict).
    """
    kind, _ = media_type_params(request.headers.get("content-type", ""))
    files: list[tuple[str, bytes]] = []
    if kind == "multipart/form-data":
        async with request.form(max_files=MAX_FORM_FILES) as form:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    files.append((value.filename or key, await value.read()))
    elif kind in ("application/dicom", "application/zip", "application/octet-stream"):
        files.append(("body", await request.body()))
    else:
        raise HTTPException(415, "send application/dicom, application/zip or a form with files")
    items = [item for name, data in files for item in _expand(name, data)]
    if not items:
        raise HTTPException(400, "no files in the request")
    results: list[IngestResult] = []
    for start in range(0, len(items), BATCH):
        batch: list[tuple[str | None, bytes]] = list(items[start : start + BATCH])
        results.extend(await run_in_threadpool(archive.ingest, batch))
    return _summary(results)
