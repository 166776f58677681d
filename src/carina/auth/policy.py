"""The access policy: roles, actions and the one function :func:`can` that decides every access.

``GRANTS`` is the table the policy reads: for each action, the project roles allowed to do it.
Site administrators may do everything. Actions in ``SITE_ACTIONS`` are not bound to a project and
are open to every signed-in user; every other action on no project (``Resource(None)``) is for
administrators only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Role(enum.StrEnum):
    """A role in a project, strongest first."""

    OWNER = "owner"
    MANAGER = "manager"
    ANNOTATOR = "annotator"
    REVIEWER = "reviewer"
    VIEWER = "viewer"


class Action(enum.StrEnum):
    """Something a route or service does that the policy decides on."""

    READ_SELF = "self.read"
    MANAGE_SELF = "self.manage"
    CREATE_PROJECT = "project.create"
    LIST_PROJECTS = "project.list"
    READ_PROJECT = "project.read"
    MANAGE_MEMBERS = "project.members.manage"
    ASSIGN_OWNER = "project.owner.assign"
    MANAGE_STUDIES = "project.studies.manage"
    READ_STUDY = "study.read"
    STORE_STUDY = "study.store"
    MANAGE_DEID = "project.deid.manage"
    REIDENTIFY = "project.reidentify"
    MANAGE_USERS = "users.manage"
    READ_AUDIT = "audit.read"
    SUBMIT_JOB = "job.submit"
    READ_JOB = "job.read"
    CANCEL_JOB = "job.cancel"
    PRIORITIZE_JOB = "job.prioritize"
    FORCE_CANCEL_JOB = "job.cancel.force"
    READ_ANNOTATIONS = "annotation.read"
    ANNOTATE = "annotation.write"
    REVIEW = "annotation.review"
    MANAGE_TASKS = "annotation.manage"


ALL_ROLES = frozenset(Role)

GRANTS: dict[Action, frozenset[Role]] = {
    Action.READ_PROJECT: ALL_ROLES,
    Action.READ_STUDY: ALL_ROLES,
    Action.STORE_STUDY: frozenset({Role.OWNER, Role.MANAGER, Role.ANNOTATOR}),
    Action.MANAGE_STUDIES: frozenset({Role.OWNER, Role.MANAGER}),
    Action.MANAGE_MEMBERS: frozenset({Role.OWNER, Role.MANAGER}),
    Action.ASSIGN_OWNER: frozenset({Role.OWNER}),
    Action.MANAGE_DEID: frozenset({Role.OWNER, Role.MANAGER}),
    Action.REIDENTIFY: frozenset({Role.OWNER}),
    Action.SUBMIT_JOB: frozenset({Role.OWNER, Role.MANAGER, Role.ANNOTATOR}),
    Action.READ_JOB: ALL_ROLES,
    Action.CANCEL_JOB: frozenset({Role.OWNER, Role.MANAGER, Role.ANNOTATOR}),
    # submitting above normal priority (0); anyone who submits may lower their own
    Action.PRIORITIZE_JOB: frozenset({Role.OWNER, Role.MANAGER}),
    # restarting a worker process (its other jobs run again elsewhere)
    Action.FORCE_CANCEL_JOB: frozenset({Role.OWNER, Role.MANAGER}),
    Action.READ_ANNOTATIONS: ALL_ROLES,
    Action.ANNOTATE: frozenset({Role.OWNER, Role.MANAGER, Role.ANNOTATOR}),
    Action.REVIEW: frozenset({Role.OWNER, Role.MANAGER, Role.REVIEWER}),
    Action.MANAGE_TASKS: frozenset({Role.OWNER, Role.MANAGER}),
}

SITE_ACTIONS = frozenset(
    {Action.READ_SELF, Action.MANAGE_SELF, Action.CREATE_PROJECT, Action.LIST_PROJECTS}
)


@dataclass(frozen=True)
class Principal:
    """A signed-in user and the roles they hold, by project name."""

    user_id: int
    name: str
    is_admin: bool = False
    roles: dict[str, Role] = field(default_factory=dict)


@dataclass(frozen=True)
class Resource:
    """What an action applies to: a project (by name) or the site (``None``)."""

    project: str | None = None


SITE = Resource()


def can(principal: Principal | None, action: Action, resource: Resource = SITE) -> bool:
    """Whether ``principal`` may do ``action`` on ``resource`` (anonymous callers may not)."""
    if principal is None:
        return False
    if principal.is_admin:
        return True
    if action in SITE_ACTIONS:
        return True
    if resource.project is None:
        return False
    role = principal.roles.get(resource.project)
    return role is not None and role in GRANTS.get(action, frozenset())
