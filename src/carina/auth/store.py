"""Users, tokens, projects, members and project studies in the database.

Route-level checks go through :func:`carina.auth.policy.can` before these methods run; the methods
that change roles ask :func:`can` again for the owner role, which depends on the request body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from carina.auth.passwords import (
    MIN_PASSWORD_LENGTH,
    hash_password,
    needs_rehash,
    verify_password,
)
from carina.auth.policy import Action, Principal, Resource, Role, can
from carina.auth.tokens import new_token as _new_token
from carina.auth.tokens import token_digest
from carina.core.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)
from carina.db.models import AuthToken, Project, ProjectMember, ProjectStudy, Study, User

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (SQLite returns naive ones)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def now() -> datetime:
    """The current time, UTC."""
    return datetime.now(UTC)


def check_name(name: str, what: str = "name") -> str:
    """``name`` if it is a valid user or project name (letters, digits, ``._-``, up to 64)."""
    if not _NAME.match(name):
        raise ConfigurationError(f"invalid {what} {name!r}: letters, digits, '._-', at most 64")
    return name


@dataclass(frozen=True)
class UserInfo:
    """A user as shown by the API."""

    id: int
    name: str
    is_admin: bool
    is_active: bool


@dataclass(frozen=True)
class IssuedToken:
    """A token as handed out once: the value is not stored anywhere."""

    id: int
    token: str
    kind: str
    name: str
    expires_at: datetime | None


@dataclass(frozen=True)
class TokenInfo:
    """A personal token as listed (never its value)."""

    id: int
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool


@dataclass(frozen=True)
class ProjectInfo:
    """A project and, where known, the caller's role in it."""

    name: str
    title: str
    role: Role | None = None


@dataclass(frozen=True)
class MemberInfo:
    """A member of a project."""

    user: str
    role: Role


def _user_info(user: User) -> UserInfo:
    return UserInfo(user.id, user.name, user.is_admin, user.is_active)


class AuthStore:
    """Identity and project data over a session factory; ``secret`` keys the token digests."""

    def __init__(self, sessions: sessionmaker[Session], secret: str | None = None) -> None:
        self._sessions = sessions
        self._secret = secret

    def session(self) -> Session:
        """A new session (the caller closes it)."""
        return self._sessions()

    def _digest(self, token: str) -> str:
        if self._secret is None:
            raise ConfigurationError("tokens need the server secret")
        return token_digest(self._secret, token)

    # -- users ----------------------------------------------------------------------------------

    def create_user(self, name: str, password: str | None, *, is_admin: bool = False) -> UserInfo:
        """A new user; ``password`` ``None`` makes an account that can only use tokens."""
        check_name(name, "user name")
        if password is not None and len(password) < MIN_PASSWORD_LENGTH:
            raise ConfigurationError(f"passwords have at least {MIN_PASSWORD_LENGTH} characters")
        user = User(
            name=name,
            password_hash=hash_password(password) if password is not None else None,
            is_admin=is_admin,
            is_active=True,
        )
        with self.session() as session:
            session.add(user)
            try:
                session.commit()
            except IntegrityError as exc:
                raise ConflictError(f"user {name!r} exists", name) from exc
            return _user_info(user)

    def users(self) -> list[UserInfo]:
        """Every user, by name."""
        with self.session() as session:
            return [_user_info(u) for u in session.scalars(select(User).order_by(User.name))]

    def user(self, name: str) -> UserInfo:
        """The user called ``name``."""
        with self.session() as session:
            user = session.scalar(select(User).where(User.name == name))
            if user is None:
                raise NotFoundError(f"no user {name!r}")
            return _user_info(user)

    def set_password(self, name: str, password: str, *, revoke_tokens: bool = True) -> None:
        """Set the password of ``name``; by default every token and session of the user is
        revoked, so a stolen credential does not outlive the change."""
        if len(password) < MIN_PASSWORD_LENGTH:
            raise ConfigurationError(f"passwords have at least {MIN_PASSWORD_LENGTH} characters")
        with self.session() as session:
            user = session.scalar(select(User).where(User.name == name))
            if user is None:
                raise NotFoundError(f"no user {name!r}")
            user.password_hash = hash_password(password)
            if revoke_tokens:
                for token in session.scalars(
                    select(AuthToken).where(
                        AuthToken.user_id == user.id, AuthToken.revoked_at.is_(None)
                    )
                ):
                    token.revoked_at = now()
            session.commit()

    def update_user(
        self, name: str, *, is_active: bool | None = None, is_admin: bool | None = None
    ) -> UserInfo:
        """Activate or deactivate a user, grant or take administrator rights.

        Deactivating revokes nothing but makes every token of the user useless at once; the last
        active administrator stays one.
        """
        with self.session() as session:
            user = session.scalar(select(User).where(User.name == name))
            if user is None:
                raise NotFoundError(f"no user {name!r}")
            if is_active is not None:
                user.is_active = is_active
            if is_admin is not None:
                user.is_admin = is_admin
            session.flush()
            admins = session.scalars(
                select(User.id).where(User.is_admin.is_(True), User.is_active.is_(True))
            ).all()
            if not admins:
                session.rollback()
                raise ConflictError("the last active administrator stays one")
            session.commit()
            return _user_info(user)

    def authenticate(self, name: str, password: str) -> Principal | None:
        """The principal of an active user whose password matches, else ``None``."""
        with self.session() as session:
            user = session.scalar(select(User).where(User.name == name))
            stored = user.password_hash if user is not None else None
            if not verify_password(stored, password) or user is None or not user.is_active:
                return None
            if stored is not None and needs_rehash(stored):
                user.password_hash = hash_password(password)
                session.commit()
            return self._principal(session, user)

    def principal(self, name: str) -> Principal:
        """The principal of the user called ``name`` with their current roles."""
        with self.session() as session:
            user = session.scalar(select(User).where(User.name == name))
            if user is None:
                raise NotFoundError(f"no user {name!r}")
            return self._principal(session, user)

    def _principal(self, session: Session, user: User) -> Principal:
        rows = session.execute(
            select(Project.name, ProjectMember.role)
            .join(ProjectMember, ProjectMember.project_id == Project.id)
            .where(ProjectMember.user_id == user.id)
        )
        roles = {name: Role(role) for name, role in rows}
        return Principal(user.id, user.name, user.is_admin, roles)

    # -- tokens ---------------------------------------------------------------------------------

    def issue_token(
        self, user_id: int, kind: str, ttl: timedelta | None, name: str = ""
    ) -> IssuedToken:
        """A new token of ``kind`` (access, session, personal) valid for ``ttl`` (``None``: no
        expiry)."""
        token = _new_token(kind)
        created = now()
        expires = created + ttl if ttl is not None else None
        row = AuthToken(
            user_id=user_id,
            kind=kind,
            digest=self._digest(token),
            name=name,
            created_at=created,
            expires_at=expires,
        )
        with self.session() as session:
            session.add(row)
            session.commit()
            return IssuedToken(row.id, token, kind, name, expires)

    def principal_for_token(self, token: str, kinds: Iterable[str]) -> Principal | None:
        """The principal a valid (known, unexpired, unrevoked) token of one of ``kinds`` stands
        for."""
        with self.session() as session:
            row = session.scalar(select(AuthToken).where(AuthToken.digest == self._digest(token)))
            if row is None or row.kind not in set(kinds) or row.revoked_at is not None:
                return None
            if row.expires_at is not None and utc(row.expires_at) <= now():
                return None
            user = session.get(User, row.user_id)
            if user is None or not user.is_active:
                return None
            return self._principal(session, user)

    def revoke_value(self, token: str) -> None:
        """Revoke a token given by value (logout)."""
        with self.session() as session:
            row = session.scalar(select(AuthToken).where(AuthToken.digest == self._digest(token)))
            if row is not None and row.revoked_at is None:
                row.revoked_at = now()
                session.commit()

    def revoke_token(self, user_id: int, token_id: int) -> None:
        """Revoke a personal token of ``user_id`` (another user's token is not found)."""
        with self.session() as session:
            row = session.get(AuthToken, token_id)
            if row is None or row.user_id != user_id or row.kind != "personal":
                raise NotFoundError(f"no token {token_id}")
            if row.revoked_at is None:
                row.revoked_at = now()
                session.commit()

    def tokens(self, user_id: int) -> list[TokenInfo]:
        """The personal tokens of ``user_id``."""
        with self.session() as session:
            rows = session.scalars(
                select(AuthToken)
                .where(AuthToken.user_id == user_id, AuthToken.kind == "personal")
                .order_by(AuthToken.id)
            )
            return [
                TokenInfo(
                    r.id,
                    r.name,
                    utc(r.created_at),
                    utc(r.expires_at) if r.expires_at else None,
                    r.revoked_at is not None,
                )
                for r in rows
            ]

    # -- projects -------------------------------------------------------------------------------

    def _project(self, session: Session, name: str) -> Project:
        project = session.scalar(select(Project).where(Project.name == name))
        if project is None:
            raise NotFoundError(f"no project {name!r}")
        return project

    def project_exists(self, name: str) -> bool:
        """Whether a project called ``name`` exists."""
        with self.session() as session:
            return session.scalar(select(Project.id).where(Project.name == name)) is not None

    def create_project(self, owner: Principal, name: str, title: str = "") -> ProjectInfo:
        """A new project with ``owner`` as its owner."""
        check_name(name, "project name")
        with self.session() as session:
            project = Project(name=name, title=title)
            session.add(project)
            try:
                session.flush()
            except IntegrityError as exc:
                raise ConflictError(f"project {name!r} exists", name) from exc
            session.add(ProjectMember(project_id=project.id, user_id=owner.user_id, role="owner"))
            session.commit()
            return ProjectInfo(name, title, Role.OWNER)

    def projects(self, principal: Principal) -> list[ProjectInfo]:
        """The projects ``principal`` is a member of (administrators: all)."""
        with self.session() as session:
            stmt = select(Project).order_by(Project.name)
            if not principal.is_admin:
                stmt = stmt.where(Project.name.in_(list(principal.roles)))
            return [
                ProjectInfo(p.name, p.title, principal.roles.get(p.name))
                for p in session.scalars(stmt)
            ]

    def members(self, project: str) -> list[MemberInfo]:
        """The members of ``project`` and their roles."""
        with self.session() as session:
            rows = session.execute(
                select(User.name, ProjectMember.role)
                .join(ProjectMember, ProjectMember.user_id == User.id)
                .where(ProjectMember.project_id == self._project(session, project).id)
                .order_by(User.name)
            )
            return [MemberInfo(name, Role(role)) for name, role in rows]

    def _owners(self, session: Session, project_id: int) -> int:
        return len(
            session.scalars(
                select(ProjectMember.user_id).where(
                    ProjectMember.project_id == project_id, ProjectMember.role == "owner"
                )
            ).all()
        )

    def set_member(self, actor: Principal, project: str, user: str, role: Role) -> MemberInfo:
        """Add ``user`` to ``project`` with ``role``, or change their role.

        Granting or taking the owner role needs :attr:`Action.ASSIGN_OWNER`; the last owner stays.
        """
        with self.session() as session:
            target = self._project(session, project)
            account = session.scalar(select(User).where(User.name == user))
            if account is None:
                raise NotFoundError(f"no user {user!r}")
            member = session.get(ProjectMember, (target.id, account.id))
            touches_owner = role is Role.OWNER or (member is not None and member.role == "owner")
            if touches_owner and not can(actor, Action.ASSIGN_OWNER, Resource(project)):
                raise PermissionDeniedError("only owners grant or take the owner role")
            if member is None:
                session.add(ProjectMember(project_id=target.id, user_id=account.id, role=role))
            else:
                demoted = member.role == "owner" and role is not Role.OWNER
                if demoted and self._owners(session, target.id) <= 1:
                    raise ConflictError("a project keeps at least one owner")
                member.role = role.value
            session.commit()
            return MemberInfo(user, role)

    def remove_member(self, actor: Principal, project: str, user: str) -> None:
        """Remove ``user`` from ``project`` (owners only by owners; the last owner stays)."""
        with self.session() as session:
            target = self._project(session, project)
            account = session.scalar(select(User).where(User.name == user))
            member = session.get(ProjectMember, (target.id, account.id)) if account else None
            if member is None:
                raise NotFoundError(f"{user!r} is not a member of {project!r}")
            if member.role == "owner":
                if not can(actor, Action.ASSIGN_OWNER, Resource(project)):
                    raise PermissionDeniedError("only owners remove owners")
                if self._owners(session, target.id) <= 1:
                    raise ConflictError("a project keeps at least one owner")
            session.delete(member)
            session.commit()

    # -- project studies ------------------------------------------------------------------------

    def study_scope(self, project: str) -> Select[Any]:
        """A selectable of the StudyInstanceUIDs of ``project`` (for catalog queries)."""
        return (
            select(ProjectStudy.study_instance_uid)
            .join(Project, Project.id == ProjectStudy.project_id)
            .where(Project.name == project)
        )

    def studies(self, project: str) -> list[str]:
        """The StudyInstanceUIDs of ``project``."""
        with self.session() as session:
            self._project(session, project)
            return list(session.scalars(self.study_scope(project).order_by("study_instance_uid")))

    def in_project(self, project: str, study_uid: str) -> bool:
        """Whether ``study_uid`` belongs to ``project``."""
        with self.session() as session:
            stmt = self.study_scope(project).where(ProjectStudy.study_instance_uid == study_uid)
            return session.scalar(stmt) is not None

    def shareable(self, principal: Principal, study_uids: Iterable[str]) -> set[str]:
        """The studies ``principal`` may add to a project: stored ones for administrators, else
        those in a project where they manage studies."""
        uids = set(study_uids)
        with self.session() as session:
            if principal.is_admin:
                stmt = select(Study.study_instance_uid).where(Study.study_instance_uid.in_(uids))
                return set(session.scalars(stmt))
            managed = [
                p for p in principal.roles if can(principal, Action.MANAGE_STUDIES, Resource(p))
            ]
            stmt = (
                select(ProjectStudy.study_instance_uid)
                .join(Project, Project.id == ProjectStudy.project_id)
                .where(Project.name.in_(managed), ProjectStudy.study_instance_uid.in_(uids))
            )
            return set(session.scalars(stmt))

    def stored_outside(self, project: str, study_uids: Iterable[str]) -> set[str]:
        """The studies among ``study_uids`` already stored but not part of ``project``."""
        uids = set(study_uids)
        with self.session() as session:
            stmt = select(Study.study_instance_uid).where(
                Study.study_instance_uid.in_(uids),
                Study.study_instance_uid.not_in(self.study_scope(project)),
            )
            return set(session.scalars(stmt))

    def add_studies(self, project: str, study_uids: Iterable[str]) -> list[str]:
        """Add studies to ``project``; the ones newly added are returned."""
        with self.session() as session:
            target = self._project(session, project)
            present = set(session.scalars(self.study_scope(project)))
            added = sorted(set(study_uids) - present)
            session.add_all(ProjectStudy(project_id=target.id, study_instance_uid=u) for u in added)
            session.commit()
            return added

    def remove_study(self, project: str, study_uid: str) -> None:
        """Take ``study_uid`` out of ``project`` (the stored instances stay in the archive)."""
        with self.session() as session:
            target = self._project(session, project)
            result = session.execute(
                delete(ProjectStudy).where(
                    ProjectStudy.project_id == target.id,
                    ProjectStudy.study_instance_uid == study_uid,
                )
            )
            if not getattr(result, "rowcount", 0):
                raise NotFoundError(f"study {study_uid} is not in {project!r}")
            session.commit()
