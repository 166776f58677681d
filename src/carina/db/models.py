"""Typed SQLAlchemy models of the DICOM catalog: patients, studies, series, instances.

Columns hold the attributes QIDO-RS and C-FIND match on, as DICOM strings (dates ``YYYYMMDD``, times
``HHMMSS.FFFFFF``), so range matching is a string comparison on every database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from carina.db.names import search_form

UID = String(64)


def _words(context: Any, column: str) -> str:
    """Default of a ``*_words`` column: the search form of the name inserted beside it."""
    return search_form(str(context.get_current_parameters().get(column) or ""))


class Base(DeclarativeBase):
    """Declarative base of every Carina table."""


class Patient(Base):
    """A patient, identified by PatientID, PatientName and PatientBirthDate together.

    Instances without a PatientID are common in research data; the name and birth date keep
    such patients apart.
    """

    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("patient_id", "patient_name", "birth_date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    patient_name: Mapped[str] = mapped_column(String(324), default="", index=True)
    # folded words of the name (see carina.db.names), for fuzzy matching
    patient_name_words: Mapped[str] = mapped_column(
        String(400), default=lambda context: _words(context, "patient_name"), server_default=""
    )
    birth_date: Mapped[str] = mapped_column(String(8), default="")
    sex: Mapped[str] = mapped_column(String(16), default="")

    studies: Mapped[list[Study]] = relationship(back_populates="patient")


class Study(Base):
    """A study; ``modalities_in_study`` is the backslash-joined sorted set of series modalities."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    study_date: Mapped[str] = mapped_column(String(8), default="", index=True)
    study_time: Mapped[str] = mapped_column(String(32), default="")
    accession_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    study_id: Mapped[str] = mapped_column(String(64), default="")
    study_description: Mapped[str] = mapped_column(String(256), default="")
    referring_physician_name: Mapped[str] = mapped_column(String(324), default="")
    referring_physician_words: Mapped[str] = mapped_column(
        String(400),
        default=lambda context: _words(context, "referring_physician_name"),
        server_default="",
    )
    modalities_in_study: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(back_populates="study")


class Series(Base):
    """A series of a study."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    modality: Mapped[str] = mapped_column(String(16), default="", index=True)
    series_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    series_description: Mapped[str] = mapped_column(String(256), default="")

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    """A stored SOP instance: where its file is, what it holds, and its cached DICOM JSON.

    ``sha256`` covers the file; ``dataset_sha256`` the dataset without the file meta group, which
    records the sending application rather than the instance (used to recognise duplicates).
    """

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(UID, index=True)
    instance_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    columns: Mapped[int | None] = mapped_column(Integer, nullable=True)
    number_of_frames: Mapped[int | None] = mapped_column(Integer, nullable=True)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    dataset_sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(512))
    metadata_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    series: Mapped[Series] = relationship(back_populates="instances")


# -- identity, projects and audit ---------------------------------------------------------------


class User(Base):
    """A person or service account; ``password_hash`` is an argon2 hash (``None``: no password)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AuthToken(Base):
    """A bearer, session or personal token; only an HMAC digest of the token is stored."""

    __tablename__ = "auth_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Project(Base):
    """A research project: members with roles and the studies they may see."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ProjectMember(Base):
    """The role of a user in a project."""

    __tablename__ = "project_members"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))


class ProjectStudy(Base):
    """A study (by StudyInstanceUID) that belongs to a project; a study may be in several."""

    __tablename__ = "project_studies"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    study_instance_uid: Mapped[str] = mapped_column(UID, primary_key=True, index=True)


class AuditEvent(Base):
    """One access decision or change: who, when, what, from where, and the outcome.

    The table is append-only: the migration installs triggers that refuse UPDATE and DELETE.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    user_name: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(64), index=True)
    resource: Mapped[str] = mapped_column(String(512), default="")
    project: Mapped[str] = mapped_column(String(64), default="")
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(512), default="")


class Job(Base):
    """A unit of work run by the jobs engine; this row, not the executor, is the source of truth.

    ``status`` is one of queued, running, succeeded, failed, cancelled. ``attempts`` counts the
    runs started; a worker writes only while the row is running under its own attempt number.
    ``params``, ``resources`` and ``result`` are JSON text. Queued jobs are handed to the
    cluster highest ``priority`` first, shared fairly between owners (see ``carina.jobs.queue``).
    """

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_priority", "status", "priority"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[str] = mapped_column(Text, default="{}")
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=True, index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(String(512), default="")
    log: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    resources: Mapped[str] = mapped_column(Text, default="{}")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)
    timeout_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str] = mapped_column(String(256), default="")
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# -- annotation ------------------------------------------------------------------------------------


class AnnotationLabelSet(Base):
    """A named label set of a project (``labels`` is the JSON list of value/name/colour/code)."""

    __tablename__ = "annotation_label_sets"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    labels: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AnnotationTask(Base):
    """An annotation task: a series to segment with a label set, by its assigned annotators."""

    __tablename__ = "annotation_tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    study_uid: Mapped[str] = mapped_column(UID)
    series_uid: Mapped[str] = mapped_column(UID)
    label_set_id: Mapped[int] = mapped_column(ForeignKey("annotation_label_sets.id"))
    title: Mapped[str] = mapped_column(String(256), default="")
    instructions: Mapped[str] = mapped_column(Text, default="")
    milestone: Mapped[str] = mapped_column(String(64), default="", index=True)
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Segmentation(Base):
    """A segmentation of a source series; ``head_version_id`` is its latest version.

    A segmentation made for a task assignment (``task_id`` and ``assignee_id``) is saved by that
    annotator only.
    """

    __tablename__ = "segmentations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    study_uid: Mapped[str] = mapped_column(UID, index=True)
    series_uid: Mapped[str] = mapped_column(UID, index=True)
    label_set_id: Mapped[int] = mapped_column(ForeignKey("annotation_label_sets.id"))
    name: Mapped[str] = mapped_column(String(128), default="")
    geometry: Mapped[str] = mapped_column(Text)
    task_id: Mapped[int | None] = mapped_column(
        ForeignKey("annotation_tasks.id", ondelete="CASCADE"), nullable=True, index=True
    )
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    head_version_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SegmentationVersion(Base):
    """One immutable saved state of a segmentation; the voxels are a content-addressed blob."""

    __tablename__ = "segmentation_versions"
    __table_args__ = (UniqueConstraint("segmentation_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    segmentation_id: Mapped[int] = mapped_column(
        ForeignKey("segmentations.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("segmentation_versions.id"), nullable=True
    )
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    tool: Mapped[str] = mapped_column(String(128), default="")
    model: Mapped[str] = mapped_column(String(128), default="")
    model_version: Mapped[str] = mapped_column(String(64), default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    provenance: Mapped[str] = mapped_column(Text, default="{}")
    labels: Mapped[str] = mapped_column(Text)
    blob_sha256: Mapped[str] = mapped_column(String(64), index=True)
    dtype: Mapped[str] = mapped_column(String(8))
    voxel_counts: Mapped[str] = mapped_column(Text, default="{}")


class TaskAssignment(Base):
    """An annotator's part of a task and its review state.

    ``state`` is one of open, in_progress, submitted, accepted, returned.
    """

    __tablename__ = "annotation_assignments"

    task_id: Mapped[int] = mapped_column(
        ForeignKey("annotation_tasks.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    state: Mapped[str] = mapped_column(String(16), default="open", index=True)
    segmentation_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reviewer_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    review_comment: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class GeometricAnnotation(Base):
    """A point, line, box, ellipse, polygon or angle in patient coordinates (LPS mm).

    ``points`` is a JSON list of [x, y, z]; ``sop_uid`` is the instance it was drawn on.
    """

    __tablename__ = "geometric_annotations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    study_uid: Mapped[str] = mapped_column(UID, index=True)
    series_uid: Mapped[str] = mapped_column(UID)
    sop_uid: Mapped[str] = mapped_column(UID)
    frame_of_reference_uid: Mapped[str] = mapped_column(UID, default="")
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(String(64), default="")
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BrowserPseudonym(Base):
    """The pseudonym given in a project to a patient key a browser derived (SHA-256 of the
    project's browser salt and the PatientID; the PatientID itself never reaches the server)."""

    __tablename__ = "browser_pseudonyms"
    __table_args__ = (UniqueConstraint("project_id", "patient_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    patient_key: Mapped[str] = mapped_column(String(64))
    pseudonym: Mapped[str] = mapped_column(String(64))
    date_shift_days: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# -- PACS sync -------------------------------------------------------------------------------------


class PacsSyncRule(Base):
    """A standing order to pull studies from a remote PACS into a project.

    The studies searched are those on ``peer`` (a configured peer name or address) matching
    ``modality`` (ModalitiesInStudy), dated within the last ``study_age_days`` days, and belonging
    to ``patient_ids`` (JSON list) or, with ``project_patients``, to the patients already in the
    project. ``interval_s`` (``None``: on request only) says how often the server runs the rule as a
    ``pacs-sync`` job; ``last_job_id`` is the job it last submitted.
    """

    __tablename__ = "pacs_sync_rules"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    peer: Mapped[str] = mapped_column(String(256))
    method: Mapped[str] = mapped_column(String(8), default="get")
    modality: Mapped[str] = mapped_column(String(16), default="")
    study_age_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    patient_ids: Mapped[str] = mapped_column(Text, default="[]")
    project_patients: Mapped[bool] = mapped_column(Boolean, default=False)
    interval_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_submitted_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    last_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True
    )
