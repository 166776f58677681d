"""Authentication and the access dependency every non-public route declares.

Callers authenticate with a bearer token (``Authorization: Bearer``: access tokens from
``/api/auth/token`` or personal tokens) or with the session cookie set by ``/api/auth/login``.
Requests that change state with the cookie must echo the CSRF cookie in ``X-CSRF-Token``.
Routes declare what they need with ``Depends(Require(Action.X))`` or, under
``/projects/{project}``, ``Depends(RequireInProject(Action.X))``; both decide with
:func:`carina.auth.can` and write an audit row for the decision.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request, Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from carina.auth import Action, AuditLog, AuthStore, Principal, Resource, can
from carina.auth.audit import ALLOWED, DENIED
from carina.auth.store import NAME_PATTERN
from carina.auth.tokens import csrf_token

SESSION_COOKIE = "carina_session"
CSRF_COOKIE = "carina_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BEARER_KINDS = ("access", "personal")

# routes that need no authentication: (method, path)
PUBLIC_ROUTES = frozenset(
    {
        ("GET", "/api/health"),
        ("POST", "/api/auth/token"),
        ("POST", "/api/auth/login"),
        ("GET", "/api/openapi.json"),
        ("GET", "/api/docs"),
        ("GET", "/api/docs/oauth2-redirect"),
    }
)

_bearer = HTTPBearer(auto_error=False, description="Access token or personal token")
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="Browser session")


def get_auth(request: Request) -> AuthStore:
    """The auth store of the application."""
    store: AuthStore = request.app.state.auth
    return store


def get_audit(request: Request) -> AuditLog:
    """The audit log of the application."""
    log: AuditLog = request.app.state.audit
    return log


def client_ip(request: Request) -> str:
    """The client address as seen by the server (the proxy's, unless uvicorn trusts it)."""
    return request.client.host if request.client else ""


def _unauthorized(detail: str = "not authenticated") -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def current_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    session: Annotated[str | None, Security(_cookie)],
) -> Principal | None:
    """The authenticated caller, ``None`` when anonymous; a bad credential is a 401, a cookie
    request that changes state without a matching CSRF header a 403."""
    store = get_auth(request)

    def refuse(status: int, detail: str, principal: Principal | None = None) -> HTTPException:
        get_audit(request).record(
            action="auth.credentials",
            outcome=DENIED,
            user_id=principal.user_id if principal else None,
            user_name=principal.name if principal else "",
            resource=f"{request.method} {request.url.path}",
            client_ip=client_ip(request),
            detail=detail,
        )
        return _unauthorized(detail) if status == 401 else HTTPException(status, detail)

    if request.headers.get("authorization"):
        if bearer is None:
            raise refuse(401, "malformed Authorization header")
        principal = store.principal_for_token(bearer.credentials, BEARER_KINDS)
        if principal is None:
            raise refuse(401, "invalid or expired token")
        return principal
    if session is None:
        return None
    principal = store.principal_for_token(session, ("session",))
    if principal is None:
        raise refuse(401, "invalid or expired session")
    if request.method not in SAFE_METHODS:
        header = request.headers.get(CSRF_HEADER, "").encode()
        cookie = request.cookies.get(CSRF_COOKIE, "").encode()
        expected = csrf_token(request.app.state.secret, session).encode()
        if not (hmac.compare_digest(header, cookie) and hmac.compare_digest(header, expected)):
            raise refuse(403, "missing or wrong CSRF token", principal)
    return principal


PrincipalDep = Annotated[Principal | None, Depends(current_principal)]


@dataclass(frozen=True)
class Access:
    """A granted access: who, what, and in which project (``None``: site-wide)."""

    principal: Principal
    action: Action
    project: str | None

    @property
    def dicomweb_path(self) -> str:
        """The DICOMweb root path of this access."""
        return f"/projects/{self.project}/dicom-web" if self.project else "/dicom-web"


def _decide(
    request: Request, principal: Principal | None, action: Action, project: str | None
) -> Access:
    audit = get_audit(request)
    store = get_auth(request)

    def deny(status: int, detail: str, reason: str) -> HTTPException:
        audit.record(
            action=action.value,
            outcome=DENIED,
            user_id=principal.user_id if principal else None,
            user_name=principal.name if principal else "",
            resource=f"{request.method} {request.url.path}",
            project=project,
            client_ip=client_ip(request),
            detail=reason,
        )
        if status == 401:
            return _unauthorized(detail)
        return HTTPException(status, detail)

    if principal is None:
        raise deny(401, "not authenticated", "anonymous")
    if project is not None:
        visible = project in principal.roles or principal.is_admin
        if not visible or not store.project_exists(project):
            raise deny(404, "not found", "project not visible")
    if not can(principal, action, Resource(project)):
        raise deny(403, "not allowed", "policy")
    study = request.path_params.get("study")
    # a study of another project is not visible; storing into a study not yet stored is fine
    foreign = (
        project is not None
        and study is not None
        and not store.in_project(project, study)
        and (action is not Action.STORE_STUDY or store.stored_outside(project, [study]))
    )
    if foreign:
        raise deny(404, "not found", "study not in project")
    audit.record(
        action=action.value,
        outcome=ALLOWED,
        user_id=principal.user_id,
        user_name=principal.name,
        resource=f"{request.method} {request.url.path}",
        project=project,
        client_ip=client_ip(request),
    )
    access = Access(principal, action, project)
    request.state.access = access
    return access


class Require:
    """Dependency of a route that needs ``action`` on the site (no project)."""

    def __init__(self, action: Action) -> None:
        self.action = action

    def __call__(self, request: Request, principal: PrincipalDep) -> Access:
        return _decide(request, principal, self.action, None)


ProjectName = Annotated[str, Path(pattern=NAME_PATTERN, description="Project name")]


class RequireInProject:
    """Dependency of a route under ``/projects/{project}`` that needs ``action`` in it.

    Callers who are not members see 404 (the project's existence is not revealed); a
    ``{study}`` path parameter must name a study of the project (404 otherwise).
    """

    def __init__(self, action: Action) -> None:
        self.action = action

    def __call__(self, request: Request, principal: PrincipalDep, project: ProjectName) -> Access:
        return _decide(request, principal, self.action, project)


def declared_action(dependency: Any) -> Action | None:
    """The action a dependency callable requires, if it is an access dependency."""
    if isinstance(dependency, Require | RequireInProject):
        return dependency.action
    return None
