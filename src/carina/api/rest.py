"""The REST API under ``/api``: authentication, users, personal tokens, projects, audit."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field

from carina import __version__
from carina.api.security import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Access,
    Require,
    RequireInProject,
    client_ip,
    get_audit,
    get_auth,
)
from carina.auth import Action, AuditLog, AuthStore, LoginLimiter, Principal, Role
from carina.auth.audit import ALLOWED, DENIED, FAILED, to_csv
from carina.auth.store import NAME_PATTERN
from carina.auth.tokens import csrf_token
from carina.core.errors import CarinaError, ConfigurationError, NotFoundError
from carina.services import project_deid

router = APIRouter()

AuthDep = Annotated[AuthStore, Depends(get_auth)]
AuditDep = Annotated[AuditLog, Depends(get_audit)]
UserName = Annotated[str, Path(pattern=NAME_PATTERN, description="User name")]


def _access(action: Action) -> object:
    return Depends(Require(action))


def _in_project(action: Action) -> object:
    return Depends(RequireInProject(action))


# -- models ---------------------------------------------------------------------------------------


class Health(BaseModel):
    status: str
    version: str


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class LoginRequest(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class UserOut(BaseModel):
    id: int
    name: str
    is_admin: bool
    is_active: bool


class SessionOut(BaseModel):
    user: UserOut
    csrf_token: str
    expires_in: int


class Me(UserOut):
    projects: dict[str, Role]


class UserCreate(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)
    password: str = Field(min_length=12, max_length=1024)
    is_admin: bool = False


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(min_length=12, max_length=1024)


class UserUpdate(BaseModel):
    is_active: bool | None = None
    is_admin: bool | None = None


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    expires_in_days: int | None = Field(default=90, ge=1, le=3650)


class PersonalTokenOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool


class PersonalTokenCreated(BaseModel):
    id: int
    name: str
    token: str
    expires_at: datetime | None


class ProjectCreate(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)
    title: str = Field(default="", max_length=256)


class ProjectOut(BaseModel):
    name: str
    title: str
    role: Role | None


class MemberOut(BaseModel):
    user: str
    role: Role


class MemberSet(BaseModel):
    role: Role


class StudiesAdd(BaseModel):
    study_uids: list[str] = Field(min_length=1, max_length=10000)


class StudiesOut(BaseModel):
    project: str
    study_uids: list[str]


class AuditOut(BaseModel):
    id: int
    at: datetime
    user_id: int | None
    user_name: str
    action: str
    resource: str
    project: str
    client_ip: str
    outcome: str
    detail: str


def _user_out(principal: Principal, store: AuthStore) -> UserOut:
    user = store.user(principal.name)
    return UserOut(id=user.id, name=user.name, is_admin=user.is_admin, is_active=user.is_active)


def _record(request: Request, access: Access, action: str, resource: str, detail: str = "") -> None:
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


# -- authentication -------------------------------------------------------------------------------


@router.get("/health", tags=["server"])
def health() -> Health:
    """Liveness check (public)."""
    return Health(status="ok", version=__version__)


def _login(request: Request, username: str, password: str) -> Principal:
    limiter: LoginLimiter = request.app.state.limiter
    audit = get_audit(request)
    ip = client_ip(request)
    if limiter.blocked(username, ip):
        audit.record(
            action="auth.login",
            outcome=DENIED,
            user_name=username,
            client_ip=ip,
            detail="rate limited",
        )
        raise HTTPException(429, "too many failed logins; try again later")
    principal = get_auth(request).authenticate(username, password)
    if principal is None:
        limiter.failed(username, ip)
        audit.record(
            action="auth.login",
            outcome=FAILED,
            user_name=username,
            client_ip=ip,
            detail="bad credentials",
        )
        raise HTTPException(401, "wrong user name or password", {"WWW-Authenticate": "Bearer"})
    limiter.succeeded(username, ip)
    audit.record(
        action="auth.login",
        outcome=ALLOWED,
        user_id=principal.user_id,
        user_name=principal.name,
        client_ip=ip,
    )
    return principal


@router.post("/auth/token", tags=["auth"])
def issue_token(
    request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], store: AuthDep
) -> TokenResponse:
    """OAuth2 password flow: a bearer access token that expires (public)."""
    principal = _login(request, form.username, form.password)
    ttl = request.app.state.settings.access_token_ttl_s
    issued = store.issue_token(principal.user_id, "access", timedelta(seconds=ttl))
    return TokenResponse(access_token=issued.token, expires_in=ttl)


@router.post("/auth/login", tags=["auth"])
def login(request: Request, body: LoginRequest, response: Response, store: AuthDep) -> SessionOut:
    """Browser sign-in: an HTTP-only session cookie and a CSRF cookie to echo in
    ``X-CSRF-Token`` (public)."""
    principal = _login(request, body.username, body.password)
    settings = request.app.state.settings
    ttl = settings.session_ttl_s
    issued = store.issue_token(principal.user_id, "session", timedelta(seconds=ttl))
    csrf = csrf_token(request.app.state.secret, issued.token)
    secure = settings.tls
    response.set_cookie(
        SESSION_COOKIE,
        issued.token,
        max_age=ttl,
        httponly=True,
        secure=secure,
        samesite="strict",
        path="/",
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=ttl, httponly=False, secure=secure, samesite="strict", path="/"
    )
    return SessionOut(user=_user_out(principal, store), csrf_token=csrf, expires_in=ttl)


@router.post("/auth/logout", tags=["auth"], status_code=204)
def logout(
    request: Request,
    response: Response,
    store: AuthDep,
    access: Annotated[Access, _access(Action.MANAGE_SELF)],
) -> None:
    """End the session (cookie) or revoke the bearer token used for this request."""
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        store.revoke_value(authorization[7:].strip())
    elif session := request.cookies.get(SESSION_COOKIE):
        store.revoke_value(session)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


# -- users and personal tokens ------------------------------------------------------------------


@router.get("/users/me", tags=["users"])
def me(store: AuthDep, access: Annotated[Access, _access(Action.READ_SELF)]) -> Me:
    """The signed-in user and their project roles."""
    user = _user_out(access.principal, store)
    return Me(**user.model_dump(), projects=access.principal.roles)


@router.post("/users/me/password", tags=["users"], status_code=204)
def change_password(
    request: Request,
    body: PasswordChange,
    response: Response,
    store: AuthDep,
    access: Annotated[Access, _access(Action.MANAGE_SELF)],
) -> None:
    """Change one's own password; every token and session of the user is revoked."""
    if store.authenticate(access.principal.name, body.current_password) is None:
        raise HTTPException(403, "wrong current password")
    store.set_password(access.principal.name, body.new_password)
    _record(request, access, "users.password", f"user {access.principal.name}")
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


@router.get("/users", tags=["users"])
def list_users(
    store: AuthDep, access: Annotated[Access, _access(Action.MANAGE_USERS)]
) -> list[UserOut]:
    """Every user (administrators)."""
    return [UserOut(**vars(u)) for u in store.users()]


@router.post("/users", tags=["users"], status_code=201)
def create_user(
    request: Request,
    body: UserCreate,
    store: AuthDep,
    access: Annotated[Access, _access(Action.MANAGE_USERS)],
) -> UserOut:
    """Create a user (administrators)."""
    user = store.create_user(body.name, body.password, is_admin=body.is_admin)
    _record(request, access, "users.create", f"user {user.name}", f"admin={user.is_admin}")
    return UserOut(**vars(user))


@router.patch("/users/{user}", tags=["users"])
def update_user(
    request: Request,
    user: UserName,
    body: UserUpdate,
    store: AuthDep,
    access: Annotated[Access, _access(Action.MANAGE_USERS)],
) -> UserOut:
    """Deactivate or reactivate a user, grant or take administrator rights (administrators)."""
    updated = store.update_user(user, is_active=body.is_active, is_admin=body.is_admin)
    change = f"active={updated.is_active} admin={updated.is_admin}"
    _record(request, access, "users.update", f"user {user}", change)
    return UserOut(**vars(updated))


@router.get("/tokens", tags=["tokens"])
def list_tokens(
    store: AuthDep, access: Annotated[Access, _access(Action.READ_SELF)]
) -> list[PersonalTokenOut]:
    """The caller's personal tokens (never their values)."""
    return [PersonalTokenOut(**vars(t)) for t in store.tokens(access.principal.user_id)]


@router.post("/tokens", tags=["tokens"], status_code=201)
def create_token(
    request: Request,
    body: TokenCreate,
    store: AuthDep,
    access: Annotated[Access, _access(Action.MANAGE_SELF)],
) -> PersonalTokenCreated:
    """A personal API token; its value is shown in this response only."""
    ttl = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    issued = store.issue_token(access.principal.user_id, "personal", ttl, body.name)
    _record(request, access, "tokens.create", f"token {issued.id}", body.name)
    return PersonalTokenCreated(
        id=issued.id, name=issued.name, token=issued.token, expires_at=issued.expires_at
    )


@router.delete("/tokens/{token_id}", tags=["tokens"], status_code=204)
def revoke_token(
    request: Request,
    token_id: int,
    store: AuthDep,
    access: Annotated[Access, _access(Action.MANAGE_SELF)],
) -> None:
    """Revoke one of the caller's personal tokens."""
    store.revoke_token(access.principal.user_id, token_id)
    _record(request, access, "tokens.revoke", f"token {token_id}")


# -- projects -------------------------------------------------------------------------------------


@router.get("/projects", tags=["projects"])
def list_projects(
    store: AuthDep, access: Annotated[Access, _access(Action.LIST_PROJECTS)]
) -> list[ProjectOut]:
    """The caller's projects (administrators: all)."""
    return [ProjectOut(**vars(p)) for p in store.projects(access.principal)]


@router.post("/projects", tags=["projects"], status_code=201)
def create_project(
    request: Request,
    body: ProjectCreate,
    store: AuthDep,
    access: Annotated[Access, _access(Action.CREATE_PROJECT)],
) -> ProjectOut:
    """Create a project; the caller becomes its owner."""
    project = store.create_project(access.principal, body.name, body.title)
    _record(request, access, "project.create", f"project {body.name}", "owner")
    return ProjectOut(**vars(project))


@router.get("/projects/{project}", tags=["projects"])
def get_project(
    store: AuthDep, access: Annotated[Access, _in_project(Action.READ_PROJECT)]
) -> ProjectOut:
    """One project."""
    for project in store.projects(access.principal):
        if project.name == access.project:
            return ProjectOut(**vars(project))
    raise NotFoundError(f"no project {access.project!r}")  # pragma: no cover - checked above


@router.get("/projects/{project}/members", tags=["projects"])
def list_members(
    store: AuthDep, access: Annotated[Access, _in_project(Action.READ_PROJECT)]
) -> list[MemberOut]:
    """The members of a project and their roles."""
    assert access.project is not None
    return [MemberOut(**vars(m)) for m in store.members(access.project)]


@router.put("/projects/{project}/members/{user}", tags=["projects"])
def set_member(
    request: Request,
    user: UserName,
    body: MemberSet,
    store: AuthDep,
    access: Annotated[Access, _in_project(Action.MANAGE_MEMBERS)],
) -> MemberOut:
    """Add a member or change their role (owners and managers; the owner role: owners)."""
    assert access.project is not None
    member = store.set_member(access.principal, access.project, user, body.role)
    _record(request, access, "project.members.set", f"user {user}", f"role={body.role.value}")
    return MemberOut(**vars(member))


@router.delete("/projects/{project}/members/{user}", tags=["projects"], status_code=204)
def remove_member(
    request: Request,
    user: UserName,
    store: AuthDep,
    access: Annotated[Access, _in_project(Action.MANAGE_MEMBERS)],
) -> None:
    """Remove a member (owners and managers; owners only by owners)."""
    assert access.project is not None
    store.remove_member(access.principal, access.project, user)
    _record(request, access, "project.members.remove", f"user {user}")


@router.get("/projects/{project}/studies", tags=["projects"])
def list_studies(
    store: AuthDep, access: Annotated[Access, _in_project(Action.READ_STUDY)]
) -> StudiesOut:
    """The StudyInstanceUIDs of a project."""
    assert access.project is not None
    return StudiesOut(project=access.project, study_uids=store.studies(access.project))


@router.post("/projects/{project}/studies", tags=["projects"])
def add_studies(
    request: Request,
    body: StudiesAdd,
    store: AuthDep,
    access: Annotated[Access, _in_project(Action.MANAGE_STUDIES)],
) -> StudiesOut:
    """Add stored studies to a project: administrators any, others those of projects where
    they manage studies (unknown or invisible studies: 404). A project that de-identifies at
    ingest gets de-identified copies; the answer lists the UIDs it then holds."""
    assert access.project is not None
    if store.shareable(access.principal, body.study_uids) != set(body.study_uids):
        raise NotFoundError("study not found")
    data_dir = request.app.state.settings.data_dir
    uids = list(body.study_uids)
    if project_deid.load_policy(data_dir, access.project).enabled:
        uids, _results = project_deid.copy_studies(
            request.app.state.archive, data_dir, access.project, uids
        )
    added = store.add_studies(access.project, uids)
    for uid in added:
        _record(request, access, "project.studies.add", f"study {uid}")
    return StudiesOut(project=access.project, study_uids=added)


@router.delete("/projects/{project}/studies/{study}", tags=["projects"], status_code=204)
def remove_study(
    request: Request,
    study: str,
    store: AuthDep,
    access: Annotated[Access, _in_project(Action.MANAGE_STUDIES)],
) -> None:
    """Take a study out of a project (the archive keeps it)."""
    assert access.project is not None
    store.remove_study(access.project, study)
    _record(request, access, "project.studies.remove", f"study {study}")


class DeidPolicyIn(BaseModel):
    enabled: bool
    profile: str = Field(default="basic", max_length=32)
    options: list[str] = Field(default_factory=list, max_length=32)


class DeidPolicyOut(BaseModel):
    project: str
    enabled: bool
    profile: str
    options: list[str]
    edition: str


class ReidentifyIn(BaseModel):
    pseudonym: str | None = Field(default=None, max_length=64)
    study_uid: str | None = Field(default=None, max_length=64)


class ReidentifyOut(BaseModel):
    pseudonym: str | None = None
    patient_id: str | None = None
    patient_name: str | None = None
    issuer: str | None = None
    study_uid: str | None = None
    original_study_uid: str | None = None


def _policy_out(project: str, policy: project_deid.DeidPolicy) -> DeidPolicyOut:
    return DeidPolicyOut(
        project=project,
        enabled=policy.enabled,
        profile=policy.profile,
        options=list(policy.options),
        edition=policy.edition,
    )


@router.get("/projects/{project}/deid", tags=["projects"])
def get_deid_policy(
    request: Request, access: Annotated[Access, _in_project(Action.READ_PROJECT)]
) -> DeidPolicyOut:
    """The project's de-identification policy, applied to everything stored into it."""
    assert access.project is not None
    policy = project_deid.load_policy(request.app.state.settings.data_dir, access.project)
    return _policy_out(access.project, policy)


@router.put("/projects/{project}/deid", tags=["projects"])
def set_deid_policy(
    request: Request,
    body: DeidPolicyIn,
    access: Annotated[Access, _in_project(Action.MANAGE_DEID)],
) -> DeidPolicyOut:
    """Set the policy (owners and managers). It applies to what is stored from now on; studies
    already in the project are not changed."""
    assert access.project is not None
    try:
        policy = project_deid.save_policy(
            request.app.state.settings.data_dir,
            access.project,
            project_deid.DeidPolicy(body.enabled, body.profile, tuple(body.options)),
        )
    except ConfigurationError as exc:
        raise HTTPException(422, str(exc)) from exc
    detail = f"enabled={policy.enabled} profile={policy.profile} options={','.join(policy.options)}"
    _record(request, access, "project.deid.set", f"project {access.project}", detail)
    return _policy_out(access.project, policy)


@router.post("/projects/{project}/reidentify", tags=["projects"])
def reidentify(
    request: Request,
    body: ReidentifyIn,
    access: Annotated[Access, _in_project(Action.REIDENTIFY)],
) -> ReidentifyOut:
    """The identity behind a patient pseudonym or a pseudonymous study UID (project owners;
    every answer is audited)."""
    assert access.project is not None
    if body.pseudonym is None and body.study_uid is None:
        raise HTTPException(422, "give a pseudonym or a study_uid")
    resource = f"pseudonym {body.pseudonym}" if body.pseudonym else f"study {body.study_uid}"
    try:
        identity, original = project_deid.reidentify(
            request.app.state.settings.data_dir,
            access.project,
            pseudonym=body.pseudonym,
            study_uid=body.study_uid,
        )
    except CarinaError as exc:
        _record(request, access, "project.reidentify", resource, f"not found: {exc}")
        raise NotFoundError("no such pseudonym or study in this project") from exc
    _record(request, access, "project.reidentify", resource, "identity disclosed")
    return ReidentifyOut(
        pseudonym=identity.pseudonym if identity else None,
        patient_id=identity.patient_id if identity else None,
        patient_name=identity.patient_name if identity else None,
        issuer=identity.issuer if identity else None,
        study_uid=body.study_uid,
        original_study_uid=original,
    )


# -- audit ----------------------------------------------------------------------------------------


@router.get("/audit", tags=["audit"], response_model=list[AuditOut])
def audit_events(
    audit: AuditDep,
    access: Annotated[Access, _access(Action.READ_AUDIT)],
    since: datetime | None = None,
    user: str | None = None,
    action: str | None = None,
    project: str | None = None,
    outcome: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100000)] = 1000,
    format: Literal["json", "csv"] = "json",
) -> Response | list[AuditOut]:
    """Audit rows, oldest first (administrators); ``format=csv`` for a CSV export."""
    records = audit.events(
        since=since, user=user, action=action, project=project, outcome=outcome, limit=limit
    )
    if format == "csv":
        return Response(
            to_csv(records),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
        )
    return [AuditOut(**vars(r)) for r in records]
