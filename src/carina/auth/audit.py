"""The audit trail: append-only rows of who did what to which resource, from where, with what
outcome."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carina.auth.store import now, utc
from carina.db.models import AuditEvent

ALLOWED = "allowed"
DENIED = "denied"
FAILED = "failed"
COLUMNS = (
    "id",
    "at",
    "user_id",
    "user_name",
    "action",
    "resource",
    "project",
    "client_ip",
    "outcome",
    "detail",
)


@dataclass(frozen=True)
class AuditRecord:
    """One audit row as read back."""

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


class AuditLog:
    """Writes and reads audit rows; there is no update or delete."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def record(
        self,
        *,
        action: str,
        outcome: str,
        user_id: int | None = None,
        user_name: str = "",
        resource: str = "",
        project: str | None = None,
        client_ip: str | None = None,
        detail: str = "",
    ) -> None:
        """Append one row."""
        with self._sessions() as session:
            session.add(
                AuditEvent(
                    at=now(),
                    user_id=user_id,
                    user_name=user_name[:64],
                    action=action[:64],
                    resource=resource[:512],
                    project=(project or "")[:64],
                    client_ip=(client_ip or "")[:64],
                    outcome=outcome,
                    detail=detail[:512],
                )
            )
            session.commit()

    def events(
        self,
        *,
        since: datetime | None = None,
        user: str | None = None,
        action: str | None = None,
        project: str | None = None,
        outcome: str | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Rows matching the filters, oldest first (``action`` matches a prefix; a ``since``
        without a time zone is UTC)."""
        stmt = select(AuditEvent).order_by(AuditEvent.id)
        if since is not None:
            stmt = stmt.where(AuditEvent.at >= utc(since).astimezone(UTC))
        if user is not None:
            stmt = stmt.where(AuditEvent.user_name == user)
        if action is not None:
            stmt = stmt.where(AuditEvent.action.startswith(action, autoescape=True))
        if project is not None:
            stmt = stmt.where(AuditEvent.project == project)
        if outcome is not None:
            stmt = stmt.where(AuditEvent.outcome == outcome)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._sessions() as session:
            return [
                AuditRecord(
                    e.id,
                    utc(e.at),
                    e.user_id,
                    e.user_name,
                    e.action,
                    e.resource,
                    e.project,
                    e.client_ip,
                    e.outcome,
                    e.detail,
                )
                for e in session.scalars(stmt)
            ]


def to_csv(records: Iterable[AuditRecord]) -> str:
    """``records`` as CSV with a header row (times in ISO 8601, UTC)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for r in records:
        writer.writerow(
            [
                r.id,
                r.at.isoformat(),
                "" if r.user_id is None else r.user_id,
                r.user_name,
                r.action,
                r.resource,
                r.project,
                r.client_ip,
                r.outcome,
                r.detail,
            ]
        )
    return out.getvalue()
