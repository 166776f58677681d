"""Routes the web viewer needs beyond DICOMweb, under ``/api/projects/{project}``.

De-identification rules and patient pseudonyms for de-identifying in the browser. The contract
is ``docs/viewer-api.md``; the work is done in :mod:`carina.services.viewer_deid`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from carina.api.security import Access, RequireInProject
from carina.auth import Action
from carina.services import viewer_deid

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
