"""Label sets, versioned segmentations, tasks and geometric annotations in the database.

Every save of a segmentation is a new immutable version whose voxels are a content-addressed blob
(:mod:`carina.annotation.blobs`), written before the version row: a crash leaves at most an
unreferenced blob, never a version without its voxels. Saving names the parent version; the head
of the segmentation moves by a conditional update, so of two saves on the same parent one wins and
the other gets :class:`ConflictError` naming the new head.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from carina.annotation.blobs import BlobStore
from carina.core.errors import (
    ConflictError,
    GeometryError,
    LabelError,
    NotFoundError,
    PermissionDeniedError,
)
from carina.core.geometry import Geometry
from carina.core.labels import LabelSet
from carina.db.models import (
    AnnotationLabelSet,
    AnnotationTask,
    GeometricAnnotation,
    Project,
    ProjectMember,
    Segmentation,
    SegmentationVersion,
    TaskAssignment,
    User,
)

#: project roles whose members may be assigned annotation work
ANNOTATING_ROLES = frozenset({"owner", "manager", "annotator"})


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class TaskState(enum.StrEnum):
    """State of one annotator's part of a task."""

    OPEN = "open"
    IN_PROGRESS = "in_progress"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    RETURNED = "returned"


#: states in which the assigned annotator may still save versions
EDITABLE = frozenset({TaskState.OPEN, TaskState.IN_PROGRESS, TaskState.RETURNED})


class ShapeKind(enum.StrEnum):
    """Kinds of geometric annotation and the number of points each takes (0: three or more)."""

    POINT = "point"
    LINE = "line"
    BOX = "box"
    ELLIPSE = "ellipse"
    POLYGON = "polygon"
    ANGLE = "angle"


POINTS_NEEDED = {
    ShapeKind.POINT: 1,
    ShapeKind.LINE: 2,
    ShapeKind.BOX: 4,
    ShapeKind.ELLIPSE: 4,
    ShapeKind.POLYGON: 0,
    ShapeKind.ANGLE: 3,
}


def geometry_to_json(geometry: Geometry) -> str:
    return json.dumps(
        {
            "affine": geometry.affine.tolist(),
            "shape": list(geometry.shape),
            "frame_of_reference_uid": geometry.frame_of_reference_uid,
        }
    )


def geometry_from_json(text: str) -> Geometry:
    data = json.loads(text)
    return Geometry(np.array(data["affine"]), tuple(data["shape"]), data["frame_of_reference_uid"])


@dataclass(frozen=True)
class LabelSetInfo:
    id: int
    name: str
    labels: LabelSet
    created_at: datetime


@dataclass(frozen=True)
class SegmentationInfo:
    id: int
    project: str
    study_uid: str
    series_uid: str
    label_set: LabelSetInfo
    name: str
    geometry: Geometry
    task_id: int | None
    assignee: str | None
    head_version_id: int | None
    created_by: str | None
    created_at: datetime


@dataclass(frozen=True)
class VersionInfo:
    id: int
    segmentation_id: int
    number: int
    parent_id: int | None
    author: str | None
    created_at: datetime
    tool: str
    model: str
    model_version: str
    comment: str
    provenance: dict[str, Any]
    blob_sha256: str
    dtype: str
    voxel_counts: dict[int, int]


@dataclass(frozen=True)
class AssignmentInfo:
    user: str
    state: TaskState
    segmentation_id: int | None
    reviewer: str | None
    review_comment: str
    updated_at: datetime


@dataclass(frozen=True)
class TaskInfo:
    id: int
    project: str
    study_uid: str
    series_uid: str
    label_set: LabelSetInfo
    title: str
    instructions: str
    milestone: str
    due_at: datetime | None
    created_by: str | None
    created_at: datetime
    assignments: list[AssignmentInfo] = field(default_factory=list)


@dataclass(frozen=True)
class ShapeInfo:
    id: int
    study_uid: str
    series_uid: str
    sop_uid: str
    frame_of_reference_uid: str
    kind: ShapeKind
    points: list[list[float]]
    label: str
    author: str | None
    created_at: datetime


def check_points(kind: ShapeKind, points: Sequence[Sequence[float]]) -> list[list[float]]:
    """``points`` as [x, y, z] lists if they fit ``kind`` (finite coordinates, right count)."""
    out = []
    for p in points:
        if len(p) != 3 or not all(np.isfinite(float(c)) for c in p):
            raise GeometryError("each point is three finite coordinates (LPS mm)")
        out.append([float(c) for c in p])
    need = POINTS_NEEDED[kind]
    if (need and len(out) != need) or (not need and len(out) < 3):
        wanted = need or "at least 3"
        raise GeometryError(f"a {kind.value} takes {wanted} points, got {len(out)}")
    return out


class AnnotationStore:
    """Annotation data over the database of ``engine``; voxels under ``data_dir/annotations``."""

    def __init__(self, engine: Engine, data_dir: Path) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.blobs = BlobStore(data_dir / "annotations" / "blobs")

    def session(self) -> Session:
        return self._sessions()

    # -- helpers --------------------------------------------------------------------------------

    def _project(self, session: Session, name: str) -> Project:
        project = session.scalar(select(Project).where(Project.name == name))
        if project is None:
            raise NotFoundError(f"no project {name!r}")
        return project

    def _names(self, session: Session, ids: Iterable[int | None]) -> dict[int, str]:
        wanted = {i for i in ids if i is not None}
        if not wanted:
            return {}
        rows = session.execute(select(User.id, User.name).where(User.id.in_(wanted)))
        return {int(i): str(n) for i, n in rows}

    def user_id(self, name: str) -> int:
        with self.session() as session:
            uid = session.scalar(select(User.id).where(User.name == name))
        if uid is None:
            raise NotFoundError(f"no user {name!r}")
        return uid

    @staticmethod
    def _label_set_info(row: AnnotationLabelSet) -> LabelSetInfo:
        labels = LabelSet.from_list(json.loads(row.labels))
        return LabelSetInfo(row.id, row.name, labels, _utc(row.created_at))

    # -- label sets -----------------------------------------------------------------------------

    def create_label_set(self, project: str, name: str, labels: LabelSet) -> LabelSetInfo:
        """A new label set of the project; names are unique per project."""
        if not name.strip() or len(name) > 64:
            raise LabelError("a label set needs a name of 1 to 64 characters")
        if not len(labels):
            raise LabelError("a label set needs at least one label")
        if max(labels.values) > 65535:
            raise LabelError("label values are at most 65535")
        with self.session() as session:
            row = AnnotationLabelSet(
                project_id=self._project(session, project).id,
                name=name,
                labels=json.dumps(labels.to_list()),
                created_at=_now(),
            )
            session.add(row)
            try:
                session.commit()
            except IntegrityError as exc:
                raise ConflictError(f"label set {name!r} exists in {project}", name) from exc
            return self._label_set_info(row)

    def label_sets(self, project: str) -> list[LabelSetInfo]:
        with self.session() as session:
            pid = self._project(session, project).id
            rows = session.scalars(
                select(AnnotationLabelSet)
                .where(AnnotationLabelSet.project_id == pid)
                .order_by(AnnotationLabelSet.id)
            )
            return [self._label_set_info(r) for r in rows]

    def label_set(self, project: str, name: str) -> LabelSetInfo:
        for info in self.label_sets(project):
            if info.name == name:
                return info
        raise NotFoundError(f"no label set {name!r} in project {project}")

    # -- segmentations --------------------------------------------------------------------------

    def _seg_info(self, session: Session, row: Segmentation, project: str) -> SegmentationInfo:
        label_set = session.get(AnnotationLabelSet, row.label_set_id)
        assert label_set is not None
        names = self._names(session, (row.assignee_id, row.created_by))
        return SegmentationInfo(
            row.id,
            project,
            row.study_uid,
            row.series_uid,
            self._label_set_info(label_set),
            row.name,
            geometry_from_json(row.geometry),
            row.task_id,
            names.get(row.assignee_id) if row.assignee_id else None,
            row.head_version_id,
            names.get(row.created_by) if row.created_by else None,
            _utc(row.created_at),
        )

    def create_segmentation(
        self,
        project: str,
        *,
        study_uid: str,
        series_uid: str,
        label_set: str,
        geometry: Geometry,
        name: str = "",
        created_by: int | None = None,
        task_id: int | None = None,
        assignee_id: int | None = None,
    ) -> SegmentationInfo:
        """A new, empty segmentation of a series (``geometry`` is the series grid)."""
        labels = self.label_set(project, label_set)
        with self.session() as session:
            row = Segmentation(
                project_id=self._project(session, project).id,
                study_uid=study_uid,
                series_uid=series_uid,
                label_set_id=labels.id,
                name=name[:128],
                geometry=geometry_to_json(geometry),
                task_id=task_id,
                assignee_id=assignee_id,
                created_by=created_by,
                created_at=_now(),
            )
            session.add(row)
            session.commit()
            return self._seg_info(session, row, project)

    def _seg_row(self, session: Session, project: str, seg_id: int) -> Segmentation:
        row = session.get(Segmentation, seg_id)
        if row is None or row.project_id != self._project(session, project).id:
            raise NotFoundError("segmentation not found")
        return row

    def segmentation(self, project: str, seg_id: int) -> SegmentationInfo:
        with self.session() as session:
            return self._seg_info(session, self._seg_row(session, project, seg_id), project)

    def segmentations(
        self,
        project: str,
        *,
        study_uid: str | None = None,
        series_uid: str | None = None,
        task_id: int | None = None,
    ) -> list[SegmentationInfo]:
        with self.session() as session:
            stmt = select(Segmentation).where(
                Segmentation.project_id == self._project(session, project).id
            )
            if study_uid is not None:
                stmt = stmt.where(Segmentation.study_uid == study_uid)
            if series_uid is not None:
                stmt = stmt.where(Segmentation.series_uid == series_uid)
            if task_id is not None:
                stmt = stmt.where(Segmentation.task_id == task_id)
            rows = list(session.scalars(stmt.order_by(Segmentation.id)))
            return [self._seg_info(session, r, project) for r in rows]

    # -- versions -------------------------------------------------------------------------------

    def _version_info(self, row: SegmentationVersion, names: dict[int, str]) -> VersionInfo:
        return VersionInfo(
            row.id,
            row.segmentation_id,
            row.number,
            row.parent_id,
            names.get(row.author_id) if row.author_id else None,
            _utc(row.created_at),
            row.tool,
            row.model,
            row.model_version,
            row.comment,
            json.loads(row.provenance),
            row.blob_sha256,
            row.dtype,
            {int(k): int(v) for k, v in json.loads(row.voxel_counts).items()},
        )

    def versions(self, project: str, seg_id: int) -> list[VersionInfo]:
        """The versions of a segmentation, oldest first."""
        with self.session() as session:
            self._seg_row(session, project, seg_id)
            rows = list(
                session.scalars(
                    select(SegmentationVersion)
                    .where(SegmentationVersion.segmentation_id == seg_id)
                    .order_by(SegmentationVersion.number)
                )
            )
            names = self._names(session, (r.author_id for r in rows))
            return [self._version_info(r, names) for r in rows]

    def version(self, project: str, seg_id: int, version_id: int) -> VersionInfo:
        with self.session() as session:
            self._seg_row(session, project, seg_id)
            row = session.get(SegmentationVersion, version_id)
            if row is None or row.segmentation_id != seg_id:
                raise NotFoundError("version not found")
            return self._version_info(row, self._names(session, [row.author_id]))

    def voxels(self, version: VersionInfo) -> npt.NDArray[Any]:
        """The label map of a version in (k, j, i) order (read-only)."""
        return self.blobs.get(version.blob_sha256)

    def sweep_blobs(self, older_than_s: float = 3600.0) -> list[str]:
        """Remove blob files no version references (a save interrupted between its blob and its
        row) and temporary files, when older than ``older_than_s`` (so that saves in flight
        keep theirs); returns the names removed."""
        with self.session() as session:
            referenced = set(session.scalars(select(SegmentationVersion.blob_sha256).distinct()))
        cutoff = time.time() - older_than_s
        removed = []
        for path in sorted(self.blobs.root.rglob("*")):
            if not path.is_file():
                continue
            orphan = path.suffix == ".part" or (
                path.suffix == ".lm" and path.stem not in referenced
            )
            if orphan and path.stat().st_mtime <= cutoff:
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed

    def save_version(
        self,
        project: str,
        seg_id: int,
        array: npt.NDArray[Any],
        *,
        parent_id: int | None,
        author_id: int | None,
        tool: str = "",
        model: str = "",
        model_version: str = "",
        comment: str = "",
        provenance: dict[str, Any] | None = None,
    ) -> VersionInfo:
        """Save ``array`` ((k, j, i) on the series grid) as the new head of a segmentation.

        Raises :class:`LabelError` for values outside the label set, :class:`GeometryError` for
        another shape, :class:`PermissionDeniedError` when the segmentation belongs to another
        annotator's task, and :class:`ConflictError` (``key`` = current head id) when the head is
        no longer ``parent_id``.
        """
        seg = self.segmentation(project, seg_id)
        k, j, i = (int(s) for s in array.shape) if array.ndim == 3 else (0, 0, 0)
        expected = tuple(reversed(seg.geometry.shape))
        if array.ndim != 3 or (k, j, i) != expected:
            raise GeometryError(
                f"label map shape {tuple(array.shape)} is not the series grid "
                f"(slices, rows, columns) = {expected}"
            )
        if array.dtype not in (np.uint8, np.uint16):
            raise LabelError(f"label maps are uint8 or uint16, not {array.dtype}")
        values, counts = np.unique(array, return_counts=True)
        voxel_counts = {int(v): int(c) for v, c in zip(values, counts, strict=True) if v != 0}
        unknown = sorted(set(voxel_counts) - set(seg.label_set.labels.values))
        if unknown:
            shown = ", ".join(str(v) for v in unknown[:10])
            raise LabelError(
                f"label value(s) {shown} are not in label set {seg.label_set.name!r} "
                f"(values {', '.join(str(v) for v in seg.label_set.labels.values)})"
            )
        if seg.task_id is not None:
            self._check_task_save(seg, author_id)
        digest = self.blobs.put(array)  # before the row: a version never lacks its voxels
        with self.session() as session:
            row = session.get(Segmentation, seg_id)
            assert row is not None
            head = row.head_version_id
            if head != parent_id:
                raise self._conflict(session, seg_id, head, parent_id)
            number = (
                session.scalar(
                    select(func.max(SegmentationVersion.number)).where(
                        SegmentationVersion.segmentation_id == seg_id
                    )
                )
                or 0
            ) + 1
            version = SegmentationVersion(
                segmentation_id=seg_id,
                number=number,
                parent_id=parent_id,
                author_id=author_id,
                created_at=_now(),
                tool=tool[:128],
                model=model[:128],
                model_version=model_version[:64],
                comment=comment,
                provenance=json.dumps(provenance or {}),
                labels=json.dumps(seg.label_set.labels.to_list()),
                blob_sha256=digest,
                dtype=array.dtype.name,
                voxel_counts=json.dumps(voxel_counts),
            )
            session.add(version)
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                current = session.get(Segmentation, seg_id)
                assert current is not None
                raise self._conflict(session, seg_id, current.head_version_id, parent_id) from None
            moved = session.execute(
                update(Segmentation)
                .where(
                    Segmentation.id == seg_id,
                    Segmentation.head_version_id.is_(None)
                    if parent_id is None
                    else Segmentation.head_version_id == parent_id,
                )
                .values(head_version_id=version.id)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                current = session.get(Segmentation, seg_id)
                assert current is not None
                raise self._conflict(session, seg_id, current.head_version_id, parent_id)
            if seg.task_id is not None and seg.assignee is not None:
                session.execute(
                    update(TaskAssignment)
                    .where(
                        TaskAssignment.task_id == seg.task_id,
                        TaskAssignment.user_id == author_id,
                        TaskAssignment.state.in_([TaskState.OPEN, TaskState.RETURNED]),
                    )
                    .values(state=TaskState.IN_PROGRESS, updated_at=_now())
                )
            session.commit()
            return self._version_info(version, self._names(session, [author_id]))

    def _conflict(
        self, session: Session, seg_id: int, head: int | None, parent: int | None
    ) -> ConflictError:
        if head is None:
            return ConflictError(
                f"segmentation {seg_id} has no version yet; save without a parent", ""
            )
        row = session.get(SegmentationVersion, head)
        number = row.number if row else "?"
        return ConflictError(
            f"segmentation {seg_id} has moved on: its head is version {head} "
            f"(number {number}), not {parent if parent is not None else 'none'}; "
            "load the head and save on it",
            str(head),
        )

    # -- tasks ----------------------------------------------------------------------------------

    def _check_task_save(self, seg: SegmentationInfo, author_id: int | None) -> None:
        with self.session() as session:
            assignment = session.get(TaskAssignment, (seg.task_id, author_id))
            if assignment is None or author_id is None:
                raise PermissionDeniedError(
                    f"segmentation {seg.id} belongs to task {seg.task_id}: only its assigned "
                    "annotator saves versions"
                )
            owner = session.scalar(
                select(Segmentation.assignee_id).where(Segmentation.id == seg.id)
            )
            if owner != author_id:
                raise PermissionDeniedError(
                    f"segmentation {seg.id} is another annotator's part of task {seg.task_id}"
                )
            if assignment.state not in EDITABLE:
                raise ConflictError(
                    f"task {seg.task_id} is {assignment.state} for you: no more saves until it "
                    "is returned"
                )

    def _task_info(self, session: Session, row: AnnotationTask, project: str) -> TaskInfo:
        assignments = list(
            session.scalars(
                select(TaskAssignment)
                .where(TaskAssignment.task_id == row.id)
                .order_by(TaskAssignment.user_id)
            )
        )
        names = self._names(
            session,
            [
                row.created_by,
                *(a.user_id for a in assignments),
                *(a.reviewer_id for a in assignments),
            ],
        )
        label_set = session.get(AnnotationLabelSet, row.label_set_id)
        assert label_set is not None
        return TaskInfo(
            row.id,
            project,
            row.study_uid,
            row.series_uid,
            self._label_set_info(label_set),
            row.title,
            row.instructions,
            row.milestone,
            _utc(row.due_at) if row.due_at else None,
            names.get(row.created_by) if row.created_by else None,
            _utc(row.created_at),
            [
                AssignmentInfo(
                    names[a.user_id],
                    TaskState(a.state),
                    a.segmentation_id,
                    names.get(a.reviewer_id) if a.reviewer_id else None,
                    a.review_comment,
                    _utc(a.updated_at),
                )
                for a in assignments
            ],
        )

    def create_task(
        self,
        project: str,
        *,
        study_uid: str,
        series_uid: str,
        label_set: str,
        geometry: Geometry,
        assignees: Sequence[str],
        created_by: int | None,
        title: str = "",
        instructions: str = "",
        milestone: str = "",
        due_at: datetime | None = None,
    ) -> TaskInfo:
        """A task with one assignment (and one empty segmentation) per annotator."""
        if not assignees or len(set(assignees)) != len(assignees):
            raise LabelError("a task needs one or more distinct annotators")
        labels = self.label_set(project, label_set)
        with self.session() as session:
            pid = self._project(session, project).id
            members = dict(
                session.execute(
                    select(User.name, ProjectMember.role)
                    .join(ProjectMember, ProjectMember.user_id == User.id)
                    .where(ProjectMember.project_id == pid, User.name.in_(assignees))
                ).all()
            )
            for name in assignees:
                if members.get(name) not in ANNOTATING_ROLES:
                    raise PermissionDeniedError(
                        f"{name} cannot annotate in {project} (owners, managers and annotators can)"
                    )
            task = AnnotationTask(
                project_id=pid,
                study_uid=study_uid,
                series_uid=series_uid,
                label_set_id=labels.id,
                title=title[:256],
                instructions=instructions,
                milestone=milestone[:64],
                due_at=due_at,
                created_by=created_by,
                created_at=_now(),
            )
            session.add(task)
            session.flush()
            ids: dict[str, int] = {
                str(n): int(i)
                for n, i in session.execute(
                    select(User.name, User.id).where(User.name.in_(assignees))
                ).all()
            }
            for name in assignees:
                seg = Segmentation(
                    project_id=pid,
                    study_uid=study_uid,
                    series_uid=series_uid,
                    label_set_id=labels.id,
                    name=f"{title or 'task ' + str(task.id)} ({name})"[:128],
                    geometry=geometry_to_json(geometry),
                    task_id=task.id,
                    assignee_id=ids[name],
                    created_by=created_by,
                    created_at=_now(),
                )
                session.add(seg)
                session.flush()
                session.add(
                    TaskAssignment(
                        task_id=task.id,
                        user_id=ids[name],
                        state=TaskState.OPEN,
                        segmentation_id=seg.id,
                        review_comment="",
                        updated_at=_now(),
                    )
                )
            session.commit()
            return self._task_info(session, task, project)

    def _task_row(self, session: Session, project: str, task_id: int) -> AnnotationTask:
        row = session.get(AnnotationTask, task_id)
        if row is None or row.project_id != self._project(session, project).id:
            raise NotFoundError("task not found")
        return row

    def task(self, project: str, task_id: int) -> TaskInfo:
        with self.session() as session:
            return self._task_info(session, self._task_row(session, project, task_id), project)

    def tasks(
        self,
        project: str,
        *,
        assignee: int | None = None,
        states: Iterable[TaskState] | None = None,
        milestone: str | None = None,
    ) -> list[TaskInfo]:
        """Tasks of a project; with ``assignee``, those with an assignment of that user (in
        ``states`` if given)."""
        with self.session() as session:
            stmt = select(AnnotationTask).where(
                AnnotationTask.project_id == self._project(session, project).id
            )
            if milestone is not None:
                stmt = stmt.where(AnnotationTask.milestone == milestone)
            if assignee is not None:
                sub = select(TaskAssignment.task_id).where(TaskAssignment.user_id == assignee)
                if states is not None:
                    sub = sub.where(TaskAssignment.state.in_([str(s) for s in states]))
                stmt = stmt.where(AnnotationTask.id.in_(sub))
            order = (AnnotationTask.due_at.is_(None), AnnotationTask.due_at, AnnotationTask.id)
            rows = list(session.scalars(stmt.order_by(*order)))
            return [self._task_info(session, r, project) for r in rows]

    def _move(
        self,
        project: str,
        task_id: int,
        user_id: int,
        allowed: Iterable[TaskState],
        to: TaskState,
        **values: Any,
    ) -> TaskInfo:
        with self.session() as session:
            self._task_row(session, project, task_id)
            assignment = session.get(TaskAssignment, (task_id, user_id))
            if assignment is None:
                raise PermissionDeniedError(f"not assigned to task {task_id}")
            names = [str(s) for s in allowed]
            moved = session.execute(
                update(TaskAssignment)
                .where(
                    TaskAssignment.task_id == task_id,
                    TaskAssignment.user_id == user_id,
                    TaskAssignment.state.in_(names),
                )
                .values(state=str(to), updated_at=_now(), **values)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                raise ConflictError(
                    f"task {task_id} is {assignment.state} for this annotator; "
                    f"cannot become {to} (only from {', '.join(names)})"
                )
            session.commit()
            return self._task_info(session, self._task_row(session, project, task_id), project)

    def start(self, project: str, task_id: int, user_id: int) -> TaskInfo:
        return self._move(
            project, task_id, user_id, [TaskState.OPEN, TaskState.RETURNED], TaskState.IN_PROGRESS
        )

    def submit(self, project: str, task_id: int, user_id: int) -> TaskInfo:
        with self.session() as session:
            assignment = session.get(TaskAssignment, (task_id, user_id))
            seg = (
                session.get(Segmentation, assignment.segmentation_id)
                if assignment is not None and assignment.segmentation_id is not None
                else None
            )
            if assignment is not None and (seg is None or seg.head_version_id is None):
                raise ConflictError(f"task {task_id}: save a segmentation before submitting")
        return self._move(project, task_id, user_id, EDITABLE, TaskState.SUBMITTED)

    def review(
        self,
        project: str,
        task_id: int,
        *,
        annotator: str,
        reviewer_id: int,
        accept: bool,
        comment: str = "",
    ) -> TaskInfo:
        """Accept or return an annotator's submitted work. Nobody reviews a task they are
        assigned to: neither their own part nor a co-annotator's of the same case."""
        annotator_id = self.user_id(annotator)
        if annotator_id == reviewer_id:
            raise PermissionDeniedError("an annotator cannot review their own task")
        with self.session() as session:
            self._task_row(session, project, task_id)
            if session.get(TaskAssignment, (task_id, reviewer_id)) is not None:
                raise PermissionDeniedError(
                    f"you annotate task {task_id} yourself and cannot review it"
                )
        if not accept and not comment.strip():
            raise LabelError("returning a task needs a comment saying what to change")
        return self._move(
            project,
            task_id,
            annotator_id,
            [TaskState.SUBMITTED],
            TaskState.ACCEPTED if accept else TaskState.RETURNED,
            reviewer_id=reviewer_id,
            review_comment=comment,
        )

    def dashboard(self, project: str) -> dict[str, Any]:
        """Assignment counts per state, per person and per milestone, and overdue work."""
        tasks = self.tasks(project)
        now = _now()
        people: dict[str, dict[str, int]] = {}
        milestones: dict[str, dict[str, int]] = {}
        for task in tasks:
            overdue = task.due_at is not None and task.due_at < now
            for a in task.assignments:
                for table, key in ((people, a.user), (milestones, task.milestone)):
                    row = table.setdefault(key, {s.value: 0 for s in TaskState} | {"total": 0})
                    row[a.state.value] += 1
                    row["total"] += 1
                    row.setdefault("overdue", 0)
                    if overdue and a.state is not TaskState.ACCEPTED:
                        row["overdue"] += 1
        for table in (people, milestones):
            for row in table.values():
                row["done_fraction"] = row[TaskState.ACCEPTED.value] / row["total"]  # type: ignore[assignment]
        return {"tasks": len(tasks), "people": people, "milestones": milestones}

    # -- geometric annotations ------------------------------------------------------------------

    def add_shape(
        self,
        project: str,
        *,
        study_uid: str,
        series_uid: str,
        sop_uid: str,
        frame_of_reference_uid: str,
        kind: ShapeKind,
        points: Sequence[Sequence[float]],
        label: str,
        author_id: int | None,
    ) -> ShapeInfo:
        checked = check_points(kind, points)
        with self.session() as session:
            row = GeometricAnnotation(
                project_id=self._project(session, project).id,
                study_uid=study_uid,
                series_uid=series_uid,
                sop_uid=sop_uid,
                frame_of_reference_uid=frame_of_reference_uid,
                kind=kind.value,
                points=json.dumps(checked),
                label=label[:64],
                author_id=author_id,
                created_at=_now(),
            )
            session.add(row)
            session.commit()
            return self._shape_info(row, self._names(session, [author_id]))

    @staticmethod
    def _shape_info(row: GeometricAnnotation, names: dict[int, str]) -> ShapeInfo:
        return ShapeInfo(
            row.id,
            row.study_uid,
            row.series_uid,
            row.sop_uid,
            row.frame_of_reference_uid,
            ShapeKind(row.kind),
            json.loads(row.points),
            row.label,
            names.get(row.author_id) if row.author_id else None,
            _utc(row.created_at),
        )

    def shapes(
        self, project: str, *, study_uid: str | None = None, series_uid: str | None = None
    ) -> list[ShapeInfo]:
        with self.session() as session:
            stmt = select(GeometricAnnotation).where(
                GeometricAnnotation.project_id == self._project(session, project).id
            )
            if study_uid is not None:
                stmt = stmt.where(GeometricAnnotation.study_uid == study_uid)
            if series_uid is not None:
                stmt = stmt.where(GeometricAnnotation.series_uid == series_uid)
            rows = list(session.scalars(stmt.order_by(GeometricAnnotation.id)))
            names = self._names(session, (r.author_id for r in rows))
            return [self._shape_info(r, names) for r in rows]
