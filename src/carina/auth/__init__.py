"""Identity and access: users, tokens, projects and roles, the access policy, the audit trail."""

from carina.auth.audit import AuditLog, AuditRecord
from carina.auth.policy import Action, Principal, Resource, Role, can
from carina.auth.ratelimit import LoginLimiter
from carina.auth.secret_key import check_secret, load_or_create_secret
from carina.auth.store import AuthStore, IssuedToken, MemberInfo, ProjectInfo, TokenInfo, UserInfo

__all__ = [
    "Action",
    "AuditLog",
    "AuditRecord",
    "AuthStore",
    "IssuedToken",
    "LoginLimiter",
    "MemberInfo",
    "Principal",
    "ProjectInfo",
    "Resource",
    "Role",
    "TokenInfo",
    "UserInfo",
    "can",
    "check_secret",
    "load_or_create_secret",
]
