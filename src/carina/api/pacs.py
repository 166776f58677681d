"""PACS sync rules of a project under ``/api/projects/{project}/pacs-rules``: create, list,
delete, run now.

Rules are for project owners and managers (the studies they pull join the project). A rule made
over HTTP names a peer the server is configured with (``CARINA_DICOM_PEERS``,
``CARINA_DICOMWEB_PEERS``), never an address: project managers cannot point the server at
arbitrary hosts. A rule of another project is not found (404).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field

from carina.api.security import Access, RequireInProject, client_ip, get_audit
from carina.auth import Action
from carina.auth.audit import ALLOWED
from carina.jobs import Engine, JobStore
from carina.services.pacs_sync import (
    MIN_INTERVAL_S,
    SyncRule,
    SyncRules,
    rule_peer_allowed,
    submit_rule,
)
from carina.services.settings import Settings

router = APIRouter()


def _in_project(action: Action) -> Any:
    return Depends(RequireInProject(action))


class RuleCreate(BaseModel):
    peer: str = Field(min_length=1, max_length=256, description="A configured peer name")
    name: str = Field(default="", max_length=64)
    method: Literal["get", "move"] = Field(
        default="get", description="DIMSE retrieve: C-GET or C-MOVE to the server's AE title"
    )
    modality: str = Field(default="", max_length=16, description="ModalitiesInStudy, e.g. CT")
    study_age_days: int | None = Field(
        default=None, ge=0, le=36500, description="Only studies of the last N days"
    )
    patient_ids: list[str] = Field(default_factory=list, max_length=1000)
    project_patients: bool = Field(
        default=False, description="Also the patients already in the project (follow-ups)"
    )
    interval_s: int | None = Field(
        default=None, ge=MIN_INTERVAL_S, description="Run every N seconds; none: on request"
    )
    enabled: bool = True


class RuleOut(BaseModel):
    id: int
    project: str
    name: str
    peer: str
    method: str
    modality: str
    study_age_days: int | None
    patient_ids: list[str]
    project_patients: bool
    interval_s: int | None
    enabled: bool
    created_at: datetime
    last_submitted_at: datetime | None
    last_job_id: int | None


class RuleRun(BaseModel):
    rule: int
    job_id: int


def _rules(request: Request) -> SyncRules:
    return SyncRules(request.app.state.archive.engine)


def _out(rule: SyncRule) -> RuleOut:
    values = {k: v for k, v in vars(rule).items() if k not in ("project_id", "created_by")}
    return RuleOut(**values)


def _audit(request: Request, access: Access, action: str, rule_id: int, detail: str = "") -> None:
    get_audit(request).record(
        action=action,
        outcome=ALLOWED,
        user_id=access.principal.user_id,
        user_name=access.principal.name,
        resource=f"pacs rule {rule_id}",
        project=access.project,
        client_ip=client_ip(request),
        detail=detail,
    )


RuleId = Annotated[int, Path(ge=1, description="Rule id")]


@router.get("/projects/{project}/pacs-rules", tags=["pacs"])
def list_pacs_rules(
    request: Request, access: Annotated[Access, _in_project(Action.MANAGE_STUDIES)]
) -> list[RuleOut]:
    """The PACS sync rules of a project."""
    assert access.project is not None
    return [_out(r) for r in _rules(request).all(access.project)]


@router.post("/projects/{project}/pacs-rules", tags=["pacs"], status_code=201)
def create_pacs_rule(
    request: Request,
    body: RuleCreate,
    access: Annotated[Access, _in_project(Action.MANAGE_STUDIES)],
) -> RuleOut:
    """Record a rule pulling matching studies from a configured peer into the project."""
    assert access.project is not None
    settings: Settings = request.app.state.settings
    if not rule_peer_allowed(body.peer, settings):
        raise HTTPException(400, f"{body.peer!r} is not a configured peer of this server")
    rule = _rules(request).create(
        access.project, created_by=access.principal.user_id, **body.model_dump()
    )
    _audit(request, access, "pacs.rule.create", rule.id, f"peer={rule.peer}")
    return _out(rule)


@router.delete("/projects/{project}/pacs-rules/{rule_id}", tags=["pacs"], status_code=204)
def delete_pacs_rule(
    request: Request,
    rule_id: RuleId,
    access: Annotated[Access, _in_project(Action.MANAGE_STUDIES)],
) -> Response:
    """Delete a rule (the jobs it ran and the studies it pulled stay)."""
    assert access.project is not None
    _rules(request).remove(rule_id, access.project)
    _audit(request, access, "pacs.rule.delete", rule_id)
    return Response(status_code=204)


@router.post("/projects/{project}/pacs-rules/{rule_id}/run", tags=["pacs"], status_code=202)
def run_pacs_rule(
    request: Request,
    rule_id: RuleId,
    access: Annotated[Access, _in_project(Action.MANAGE_STUDIES)],
) -> RuleRun:
    """Submit a ``pacs-sync`` job for the rule now; follow it under ``/jobs``."""
    assert access.project is not None
    rules = _rules(request)
    rule = rules.get(rule_id, access.project)
    engine: Engine | None = request.app.state.jobs
    store: JobStore = request.app.state.job_store
    submit = engine.submit if engine is not None else store.submit
    record = submit_rule(rules, rule, submit, owner_id=access.principal.user_id)
    _audit(request, access, "pacs.rule.run", rule_id, f"job={record.id}")
    return RuleRun(rule=rule.id, job_id=record.id)
