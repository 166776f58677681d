"""Scheduled PACS sync: rules kept in the catalog, run as ``pacs-sync`` jobs.

A rule pulls into its project the studies on a peer that match its filters: modality
(ModalitiesInStudy), study date within the last N days, and patients (a list of PatientIDs and/or
the patients already in the project, for their follow-up studies). Each run searches the peer,
pulls the studies missing or incomplete here (complete ones are skipped) and adds every study
found to the project. The server's :class:`SyncScheduler` submits a rule's job when its interval
has passed and its previous job is finished; a run can also be asked for at any time.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine as DatabaseEngine
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from carina.archive import Archive
from carina.archive.pacs import PacsClient, PullMethod, WebPeer, parse_peer
from carina.archive.peers import PacsError
from carina.core.errors import CarinaError, ConfigurationError, ConflictError, NotFoundError
from carina.db import Instance, PacsSyncRule, Patient, Project, ProjectStudy, Study
from carina.jobs import FINISHED, JobContext, JobError, JobRecord, JobStore, register
from carina.services.archive import open_archive
from carina.services.auth import auth_services
from carina.services.settings import Settings

log = logging.getLogger(__name__)

KIND = "pacs-sync"
METHODS: tuple[PullMethod, ...] = ("get", "move")
MIN_INTERVAL_S = 60
MAX_PATIENT_IDS = 1000
_WILD = frozenset("*?\\")


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True)
class SyncRule:
    """A stored rule (see :class:`carina.db.PacsSyncRule`)."""

    id: int
    project: str
    project_id: int
    name: str
    peer: str
    method: str
    modality: str
    study_age_days: int | None
    patient_ids: list[str]
    project_patients: bool
    interval_s: int | None
    enabled: bool
    created_by: int | None
    created_at: datetime
    last_submitted_at: datetime | None
    last_job_id: int | None

    @classmethod
    def of(cls, row: PacsSyncRule, project: str) -> SyncRule:
        return cls(
            id=row.id,
            project=project,
            project_id=row.project_id,
            name=row.name,
            peer=row.peer,
            method=row.method,
            modality=row.modality,
            study_age_days=row.study_age_days,
            patient_ids=list(json.loads(row.patient_ids)),
            project_patients=row.project_patients,
            interval_s=row.interval_s,
            enabled=row.enabled,
            created_by=row.created_by,
            created_at=_aware(row.created_at) or row.created_at,
            last_submitted_at=_aware(row.last_submitted_at),
            last_job_id=row.last_job_id,
        )

    def queries(
        self, project_patient_ids: Sequence[str] = (), today: date | None = None
    ) -> list[dict[str, str]]:
        """The study-level searches this rule makes on its peer: one per patient when the rule
        names patients (none when it names patients and there are none), else one."""
        base: dict[str, str] = {}
        if self.modality:
            base["ModalitiesInStudy"] = self.modality
        if self.study_age_days is not None:
            since = (today or _now().date()) - timedelta(days=self.study_age_days)
            base["StudyDate"] = f"{since:%Y%m%d}-"
        if not self.patient_ids and not self.project_patients:
            return [base]
        patients = dict.fromkeys(self.patient_ids)
        if self.project_patients:
            patients.update(dict.fromkeys(project_patient_ids))
        # an empty PatientID, or one with wildcard or multi-value characters, would match other
        # patients too: never searched for
        return [{**base, "PatientID": p} for p in patients if p.strip() and not _WILD & set(p)]


class SyncRules:
    """The PACS sync rules of the catalog."""

    def __init__(self, engine: DatabaseEngine) -> None:
        self.engine = engine

    def _project_id(self, session: Session, project: str) -> int:
        project_id = session.scalar(select(Project.id).where(Project.name == project))
        if project_id is None:
            raise NotFoundError(f"no project {project!r}")
        return project_id

    def create(
        self,
        project: str,
        *,
        peer: str,
        name: str = "",
        method: str = "get",
        modality: str = "",
        study_age_days: int | None = None,
        patient_ids: Sequence[str] = (),
        project_patients: bool = False,
        interval_s: int | None = None,
        enabled: bool = True,
        created_by: int | None = None,
    ) -> SyncRule:
        """Record a rule. It needs at least one filter: a rule matching everything on a PACS
        would copy the PACS."""
        if method not in METHODS:
            raise ConfigurationError(f"method must be one of {', '.join(METHODS)}")
        if not peer.strip():
            raise ConfigurationError("a rule needs a peer")
        if study_age_days is not None and study_age_days < 0:
            raise ConfigurationError("study_age_days must not be negative")
        if interval_s is not None and interval_s < MIN_INTERVAL_S:
            raise ConfigurationError(f"interval_s must be at least {MIN_INTERVAL_S}")
        ids = [p.strip() for p in patient_ids]
        if any(not p or len(p) > 64 or _WILD & set(p) for p in ids):
            raise ConfigurationError("patient IDs must be 1-64 characters without wildcards")
        if len(ids) > MAX_PATIENT_IDS:
            raise ConfigurationError(f"at most {MAX_PATIENT_IDS} patient IDs")
        if not (modality or study_age_days is not None or ids or project_patients):
            raise ConfigurationError(
                "a rule needs a filter: modality, study age, patient IDs or project patients"
            )
        with Session(self.engine) as session:
            project_id = self._project_id(session, project)
            row = PacsSyncRule(
                project_id=project_id,
                name=name or f"{peer} {_now():%Y%m%d%H%M%S%f}",
                peer=peer,
                method=method,
                modality=modality.strip().upper(),
                study_age_days=study_age_days,
                patient_ids=json.dumps(ids),
                project_patients=project_patients,
                interval_s=interval_s,
                enabled=enabled,
                created_by=created_by,
                created_at=_now(),
            )
            session.add(row)
            try:
                session.commit()
            except IntegrityError as exc:
                raise ConflictError(f"project {project!r} has a rule named {name!r}") from exc
            return SyncRule.of(row, project)

    def all(self, project: str | None = None) -> list[SyncRule]:
        """The rules of ``project`` (of every project when ``None``), oldest first."""
        with Session(self.engine) as session:
            stmt = select(PacsSyncRule, Project.name).join(
                Project, Project.id == PacsSyncRule.project_id
            )
            if project is not None:
                stmt = stmt.where(PacsSyncRule.project_id == self._project_id(session, project))
            rows = session.execute(stmt.order_by(PacsSyncRule.id)).all()
            return [SyncRule.of(row, name) for row, name in rows]

    def get(self, rule_id: int, project: str | None = None) -> SyncRule:
        """One rule; a rule of another project than ``project`` is not found."""
        with Session(self.engine) as session:
            found = session.execute(
                select(PacsSyncRule, Project.name)
                .join(Project, Project.id == PacsSyncRule.project_id)
                .where(PacsSyncRule.id == rule_id)
            ).first()
            if found is None or (project is not None and found[1] != project):
                raise NotFoundError("no such PACS sync rule")
            return SyncRule.of(found[0], found[1])

    def remove(self, rule_id: int, project: str | None = None) -> None:
        """Delete a rule (the jobs it ran stay)."""
        rule = self.get(rule_id, project)
        with Session(self.engine) as session:
            session.execute(delete(PacsSyncRule).where(PacsSyncRule.id == rule.id))
            session.commit()

    def submitted(self, rule_id: int, job_id: int, at: datetime) -> None:
        with Session(self.engine) as session:
            row = session.get(PacsSyncRule, rule_id)
            if row is not None:
                row.last_job_id = job_id
                row.last_submitted_at = at
                session.commit()

    def project_patients(self, project_id: int) -> list[str]:
        """The PatientIDs (non-empty) of the studies in a project."""
        with Session(self.engine) as session:
            stmt = (
                select(Patient.patient_id)
                .join(Study, Study.patient_pk == Patient.id)
                .join(ProjectStudy, ProjectStudy.study_instance_uid == Study.study_instance_uid)
                .where(ProjectStudy.project_id == project_id, Patient.patient_id != "")
                .distinct()
                .order_by(Patient.patient_id)
            )
            return list(session.scalars(stmt))


Submit = Callable[..., JobRecord]


def submit_rule(
    rules: SyncRules, rule: SyncRule, submit: Submit, owner_id: int | None = None
) -> JobRecord:
    """Submit a ``pacs-sync`` job for ``rule`` with ``submit`` (an engine's or a job store's)."""
    record = submit(
        KIND,
        {"rule": rule.id},
        owner_id=owner_id if owner_id is not None else rule.created_by,
        project_id=rule.project_id,
    )
    rules.submitted(rule.id, record.id, _now())
    return record


class SyncScheduler:
    """Submits the jobs of due rules: enabled, with an interval, whose last submission is at
    least that interval ago and whose last job is finished. :meth:`tick` checks once; started,
    a daemon thread checks every ``check_s`` seconds."""

    def __init__(self, rules: SyncRules, jobs: JobStore, submit: Submit, check_s: float) -> None:
        self.rules = rules
        self.jobs = jobs
        self.submit = submit
        self.check_s = check_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def due(self, now: datetime | None = None) -> list[SyncRule]:
        now = now or _now()
        due = []
        for rule in self.rules.all():
            if not rule.enabled or rule.interval_s is None:
                continue
            last = rule.last_submitted_at
            if last is not None and last + timedelta(seconds=rule.interval_s) > now:
                continue
            if rule.last_job_id is not None:
                record = self.jobs.get(rule.last_job_id)
                if record is not None and record.status not in FINISHED:
                    continue  # still queued or running: one run of a rule at a time
            due.append(rule)
        return due

    def tick(self, now: datetime | None = None) -> list[JobRecord]:
        """Submit the jobs of the rules due at ``now``; the jobs submitted."""
        submitted = []
        for rule in self.due(now):
            try:
                submitted.append(submit_rule(self.rules, rule, self.submit))
            except CarinaError:
                log.exception("submitting the job of PACS sync rule %d failed", rule.id)
        return submitted

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="carina-pacs-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.check_s):
            try:
                self.tick()
            except Exception:
                log.exception("checking PACS sync rules failed")


@register(KIND)
def pacs_sync(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Run the PACS sync rule ``rule`` of the job's project: search its peer, pull the studies
    missing or incomplete here, add every study found to the project. The result counts studies
    found, pulled and skipped (already complete) and instances stored."""
    try:
        rule_id = int(params["rule"])
    except (KeyError, TypeError, ValueError) as exc:
        raise JobError("pacs-sync needs 'rule' (a rule id)") from exc
    record = ctx.store.get(ctx.job_id)
    assert record is not None
    rules = SyncRules(ctx.store.engine)
    try:
        rule = rules.get(rule_id)
    except NotFoundError as exc:
        raise JobError(f"no PACS sync rule {rule_id}") from exc
    if rule.project_id != record.project_id:
        raise JobError("the rule belongs to another project than the job")
    settings = Settings()
    try:
        peer = parse_peer(rule.peer, settings.dicom_peers, settings.dicomweb_peers)
    except PacsError as exc:
        raise JobError(str(exc)) from exc
    queries = rule.queries(rules.project_patients(rule.project_id) if rule.project_patients else ())
    method: PullMethod = "move" if rule.method == "move" else "get"
    if method == "move" and settings.dicom_port is None and not isinstance(peer, WebPeer):
        raise JobError("a C-MOVE rule needs the server's DIMSE listener (CARINA_DICOM_PORT)")
    auth, _ = auth_services(ctx.store.engine, None)
    result: dict[str, Any] = {
        "rule": rule.id,
        "peer": str(peer),
        "queries": len(queries),
        "found": 0,
        "pulled": 0,
        "skipped": 0,
        "incomplete": 0,
        "instances_received": 0,
        "instances_stored": 0,
        "added_to_project": 0,
        "studies": {},
    }
    with open_archive(settings) as archive:
        client = PacsClient(archive, settings.ae_title)
        found: dict[str, Any] = {}
        for n, query in enumerate(queries):
            ctx.progress(0.2 * n / max(1, len(queries)), f"searching {peer}")
            keys = ("StudyInstanceUID", "NumberOfStudyRelatedInstances")
            try:
                studies = client.find(peer, "STUDY", query, keys)
            except PacsError as exc:
                raise JobError(str(exc)) from exc
            for study in studies:
                found.setdefault(str(study.StudyInstanceUID), study)
        result["found"] = len(found)
        complete: list[str] = []
        stored_before = _instance_count(archive)
        for n, (uid, study) in enumerate(sorted(found.items())):
            ctx.progress(0.2 + 0.8 * n / len(found), f"study {n + 1} of {len(found)}")
            if not client.missing(study):
                result["skipped"] += 1
                result["studies"][uid] = "complete here"
                complete.append(uid)
                continue
            try:
                report = client.pull(peer, uid, method=method)
            except (PacsError, NotFoundError) as exc:
                ctx.log(f"{uid}: {exc}")
                result["studies"][uid] = f"failed: {exc}"
                continue
            result["pulled"] += 1
            result["instances_received"] += report.completed or len(report.results)
            if client.missing(study):
                result["incomplete"] += 1
                result["studies"][uid] = "pulled, still incomplete"
            else:
                result["studies"][uid] = "pulled"
            ctx.log(f"{uid}: received {report.completed or len(report.results)} instance(s)")
            complete.append(uid)
        result["instances_stored"] = _instance_count(archive) - stored_before
        added = auth.add_studies(rule.project, complete)
        result["added_to_project"] = len(added)
    ctx.progress(1.0, f"{result['pulled']} pulled, {result['skipped']} already here")
    return result


def rule_peer_allowed(peer: str, settings: Settings) -> bool:
    """Whether ``peer`` names a peer the server is configured with (rules made over HTTP may
    only use those, so that a project manager cannot point the server at any address)."""
    return peer in settings.dicom_peers or peer in settings.dicomweb_peers


def rule_dict(rule: SyncRule) -> Mapping[str, Any]:
    return {k: v for k, v in vars(rule).items() if k != "project_id"}


def _instance_count(archive: Archive) -> int:
    with archive.session() as session:
        return int(session.scalar(select(func.count()).select_from(Instance)) or 0)
