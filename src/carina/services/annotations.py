"""Annotation use cases: segmentations of stored series (raw label maps, DICOM SEG, NIfTI, 3D
Slicer ``.seg.nrrd``), their versions and diffs, tasks and review, consensus and agreement between
annotators.

Label maps cross the API as raw bytes in (slice k, row j, column i) order on the grid of the
source series as :func:`carina.dicom.load_series` assembles it (k in its sorted order); Carina's
arrays are (i, j, k), so this module transposes at the edge.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from carina.annotation import agreement
from carina.annotation.sr import ImagePlane, SRShape, read_sr
from carina.annotation.store import (
    AnnotationStore,
    SegmentationInfo,
    TaskInfo,
    VersionInfo,
)
from carina.archive import Archive
from carina.auth import AuthStore
from carina.core.errors import (
    ConflictError,
    DicomError,
    GeometryError,
    ImageIOError,
    LabelError,
    NotFoundError,
    SeriesError,
)
from carina.core.geometry import Geometry
from carina.core.labels import label_dtype
from carina.core.volume import LabelMap
from carina.dicom import SeriesInfo, load_series, scan
from carina.dicom.files import open_dataset
from carina.dicom.seg import Provenance, SegType, build_segmentation, read_segmentation
from carina.imaging import (
    SEG_NRRD_SUFFIX,
    check_nifti_bytes,
    check_seg_nrrd_bytes,
    read_labelmap,
    read_seg_nrrd,
    resample_to_geometry,
    write_image,
    write_seg_nrrd,
)

RAW_DTYPES = {"uint8": np.uint8, "uint16": np.uint16}
#: How many voxel values (voxels times layers) an imported NIfTI or Slicer file may hold, as a
#: multiple of the series grid's voxels: room for finer grids and layers, not for a memory bomb.
IMPORT_MAX_VALUES_PER_VOXEL = 16
#: The import formats of :meth:`Annotations.read_import`.
IMPORT_KINDS = ("seg", "nifti", "slicer")
SHAPE_HEADER = "X-Carina-Shape"
DTYPE_HEADER = "X-Carina-Dtype"


def parse_raw(
    body: bytes, shape: str | None, dtype: str | None, encoding: str | None = None
) -> npt.NDArray[Any]:
    """A (k, j, i) label map from a raw body and its ``X-Carina-Shape``/``X-Carina-Dtype``;
    ``encoding`` ``gzip`` (``Content-Encoding``) is decompressed, never past the size the shape
    needs."""
    if not shape or not dtype:
        raise LabelError(f"a raw label map needs the {SHAPE_HEADER} and {DTYPE_HEADER} headers")
    if dtype not in RAW_DTYPES:
        raise LabelError(f"{DTYPE_HEADER} must be uint8 or uint16, not {dtype!r}")
    try:
        dims = tuple(int(s) for s in shape.replace("x", ",").split(","))
    except ValueError:
        raise LabelError(f"{SHAPE_HEADER} must be 'slices,rows,columns', not {shape!r}") from None
    if len(dims) != 3 or any(d < 1 for d in dims):
        raise LabelError(f"{SHAPE_HEADER} must be three positive integers, not {shape!r}")
    item = np.dtype(RAW_DTYPES[dtype]).itemsize
    encoding = (encoding or "identity").strip().lower()
    if encoding == "gzip":
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflate.decompress(body, math.prod(dims) * item + 1)
        except zlib.error as exc:
            raise LabelError(f"the gzip body cannot be decompressed: {exc}") from None
    elif encoding != "identity":
        raise LabelError(f"Content-Encoding {encoding!r} is not accepted (gzip or none)")
    if len(body) != math.prod(dims) * item:
        raise LabelError(
            f"body has {len(body)} bytes; shape {dims} of {dtype} needs {math.prod(dims) * item}"
        )
    arr: npt.NDArray[Any] = np.frombuffer(body, dtype=np.dtype(RAW_DTYPES[dtype]).newbyteorder("<"))
    return arr.astype(RAW_DTYPES[dtype]).reshape(dims)


def to_raw(array: npt.NDArray[Any]) -> bytes:
    """Little-endian bytes of a (k, j, i) label map."""
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


@contextmanager
def stored_series(archive: Archive, study_uid: str, series_uid: str) -> Iterator[SeriesInfo]:
    """The stored series as :func:`carina.dicom.scan` sees it (files linked, never copied)."""
    instances = archive.instances(study_uid, series_uid)
    with tempfile.TemporaryDirectory(prefix="carina-series-") as tmp:
        for n, inst in enumerate(instances):
            os.symlink(archive.store.absolute(inst.path), Path(tmp) / f"{n:06d}.dcm")
        found = [s for s in scan(tmp).series if s.series_instance_uid == series_uid]
        if len(found) != 1 or not found[0].has_pixels:
            raise SeriesError(f"series {series_uid} holds no image volume to annotate")
        yield found[0]


def _dtype_for(values: Sequence[int]) -> type[Any]:
    return label_dtype(max(values, default=0))


@dataclass(frozen=True)
class LabelDiff:
    value: int
    name: str
    added_voxels: int
    removed_voxels: int
    added_ml: float
    removed_ml: float
    volume_from_ml: float
    volume_to_ml: float


class Annotations:
    """Annotation services over the archive, the auth store (project studies) and the
    annotation store."""

    def __init__(self, archive: Archive, auth: AuthStore, store: AnnotationStore) -> None:
        self.archive = archive
        self.auth = auth
        self.store = store
        self._geometries: dict[tuple[str, str], Geometry] = {}

    # -- series ---------------------------------------------------------------------------------

    def _check_study(self, project: str, study_uid: str) -> None:
        if not self.auth.in_project(project, study_uid):
            raise NotFoundError("no such study in this project")

    def series_geometry(self, study_uid: str, series_uid: str) -> Geometry:
        """The grid of a stored series (cached per process)."""
        key = (study_uid, series_uid)
        if key not in self._geometries:
            with stored_series(self.archive, study_uid, series_uid) as info:
                self._geometries[key] = load_series(info).volume.geometry
        return self._geometries[key]

    def check_instance(self, project: str, study_uid: str, series_uid: str, sop_uid: str) -> None:
        """That an instance is stored and its study belongs to ``project`` (404 otherwise)."""
        self._check_study(project, study_uid)
        self.archive.instances(study_uid, series_uid, sop_uid)

    def check_on_plane(
        self, sop_uid: str, points: Sequence[Sequence[float]], tolerance_mm: float = 0.05
    ) -> str:
        """That ``points`` lie on the plane of the image they are drawn on (so that the SR, which
        stores image coordinates, keeps them); returns the image's frame of reference."""
        plane, frame = self.plane_of(sop_uid)
        normal = np.cross(plane.row_direction, plane.column_direction)
        off = np.abs((np.asarray(points, dtype=np.float64) - plane.origin) @ normal)
        if off.size and float(off.max()) > tolerance_mm:
            raise GeometryError(
                f"points lie up to {float(off.max()):.3f} mm off the plane of image {sop_uid}"
            )
        return frame

    def plane_of(self, sop_uid: str) -> tuple[ImagePlane, str]:
        """The image plane and frame of reference of a stored single-frame image."""
        found = self.archive.find_instances({"SOPInstanceUID": sop_uid})
        if len(found) != 1:
            raise NotFoundError(f"the referenced image {sop_uid} is not stored")
        ds = pydicom.dcmread(io.BytesIO(self.archive.read(found[0])), stop_before_pixels=True)
        return ImagePlane.of(ds), str(ds.get("FrameOfReferenceUID", "") or "")

    def read_sr(self, data: bytes) -> list[SRShape]:
        """Shapes of a TID 1500 SR whose referenced images are stored."""
        return read_sr(data, self.plane_of)

    # -- segmentations and versions ---------------------------------------------------------------

    def create_segmentation(
        self,
        project: str,
        *,
        study_uid: str,
        series_uid: str,
        label_set: str,
        name: str,
        user_id: int,
    ) -> SegmentationInfo:
        self._check_study(project, study_uid)
        geometry = self.series_geometry(study_uid, series_uid)
        return self.store.create_segmentation(
            project,
            study_uid=study_uid,
            series_uid=series_uid,
            label_set=label_set,
            geometry=geometry,
            name=name,
            created_by=user_id,
        )

    def label_map(self, project: str, seg_id: int, version_id: int) -> LabelMap:
        """A version as a :class:`LabelMap` (i, j, k) on the series grid, its label set attached."""
        seg = self.store.segmentation(project, seg_id)
        version = self.store.version(project, seg_id, version_id)
        array = self.store.voxels(version).transpose(2, 1, 0)
        return LabelMap(array, seg.geometry, modality="SEG", labels=seg.label_set.labels)

    def diff(self, project: str, seg_id: int, from_id: int | None, to_id: int) -> dict[str, Any]:
        """Voxels added and removed per label from version ``from_id`` (``None``: empty) to
        ``to_id``, with volumes in mL."""
        seg = self.store.segmentation(project, seg_id)
        after = self.store.voxels(self.store.version(project, seg_id, to_id))
        before = (
            self.store.voxels(self.store.version(project, seg_id, from_id))
            if from_id is not None
            else np.zeros_like(after)
        )
        voxel_ml = seg.geometry.voxel_volume_mm3 / 1000.0
        values = sorted((set(np.unique(before)) | set(np.unique(after))) - {0})
        rows = []
        for value in values:
            a, b = before == value, after == value
            added = int(np.count_nonzero(b & ~a))
            removed = int(np.count_nonzero(a & ~b))
            name = (
                seg.label_set.labels[int(value)].name
                if int(value) in seg.label_set.labels
                else f"label_{value}"
            )
            rows.append(
                LabelDiff(
                    int(value),
                    name,
                    added,
                    removed,
                    added * voxel_ml,
                    removed * voxel_ml,
                    int(np.count_nonzero(a)) * voxel_ml,
                    int(np.count_nonzero(b)) * voxel_ml,
                )
            )
        return {
            "segmentation": seg_id,
            "from_version": from_id,
            "to_version": to_id,
            "changed_voxels": int(np.count_nonzero(before != after)),
            "labels": [asdict(r) for r in rows],
        }

    def export_seg(self, project: str, seg_id: int, version_id: int) -> bytes:
        """A DICOM SEG (label-map type) of a version, referencing the source instances."""
        seg = self.store.segmentation(project, seg_id)
        version = self.store.version(project, seg_id, version_id)
        labels = self.label_map(project, seg_id, version_id)
        with stored_series(self.archive, seg.study_uid, seg.series_uid) as info:
            sources = [open_dataset(ref)[0] for ref in info.sources]
        provenance = Provenance(
            algorithm=version.model or None,
            algorithm_version=version.model_version or "1",
            manual=not version.model,
        )
        dataset = build_segmentation(
            labels,
            sources,
            seg_type=SegType.LABELMAP,
            provenance=provenance,
            series_description=f"{seg.name or 'Segmentation'} v{version.number}",
        )
        out = io.BytesIO()
        dataset.save_as(out, enforce_file_format=True)
        return out.getvalue()

    def export_nifti(self, project: str, seg_id: int, version_id: int) -> bytes:
        """A version as a gzipped NIfTI label map (RAS on disk, the series grid)."""
        labels = self.label_map(project, seg_id, version_id)
        with tempfile.TemporaryDirectory(prefix="carina-nifti-") as tmp:
            path = write_image(labels, Path(tmp) / "labels.nii.gz")
            return path.read_bytes()

    def export_filename(self, project: str, seg_id: int, version_id: int, suffix: str) -> str:
        """A file name for an export of a version: the segmentation's name (ASCII letters,
        digits, ``-`` and ``_``), its id and the version's number, then ``suffix``."""
        seg = self.store.segmentation(project, seg_id)
        version = self.store.version(project, seg_id, version_id)
        stem = "".join(
            c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in seg.name
        ).strip("_")
        return f"{stem or 'segmentation'}-{seg_id}-v{version.number}{suffix}"

    def export_slicer(self, project: str, seg_id: int, version_id: int) -> tuple[str, bytes]:
        """A version as a 3D Slicer segmentation (``.seg.nrrd``): one segment per label of the
        set, with its name, colour and code. Returns a file name for it and its bytes."""
        name = self.export_filename(project, seg_id, version_id, SEG_NRRD_SUFFIX)
        labels = self.label_map(project, seg_id, version_id)
        with tempfile.TemporaryDirectory(prefix="carina-slicer-") as tmp:
            path = write_seg_nrrd(labels, Path(tmp) / f"labels{SEG_NRRD_SUFFIX}")
            return name, path.read_bytes()

    def _on_grid(self, labels: LabelMap, seg: SegmentationInfo) -> npt.NDArray[Any]:
        if not labels.geometry.same_grid(seg.geometry, atol=1e-3):
            # the same grid with axes in another order or direction: exact, no resampling
            reoriented = labels.reorient(seg.geometry.orientation)
            if isinstance(reoriented, LabelMap) and reoriented.geometry.same_grid(
                seg.geometry, atol=1e-3
            ):
                labels = reoriented
        if not labels.geometry.same_grid(seg.geometry, atol=1e-3):
            resampled = resample_to_geometry(labels, seg.geometry)
            assert isinstance(resampled, LabelMap)
            labels = resampled
        values = labels.present_values()
        if values and (min(values) < 0 or max(values) > 65535):
            raise LabelError("label values must lie in 0..65535")
        array = np.asarray(labels.array).astype(_dtype_for(values))
        return array.transpose(2, 1, 0)

    def read_import(self, seg: SegmentationInfo, data: bytes, kind: str) -> npt.NDArray[Any]:
        """A (k, j, i) label map on the segmentation's grid from a DICOM SEG (``seg``), a NIfTI
        file (``nifti``) or a 3D Slicer segmentation (``slicer``, a ``.seg.nrrd``).

        SEG and Slicer segments are matched to the label set by name; NIfTI values are taken as
        they are. A Slicer segment whose name is not in the label set, segments that overlap and
        a damaged file are refused (:class:`ImageIOError`). Another grid is resampled (nearest
        neighbour) onto the series grid in patient space.
        """
        if kind == "seg":
            try:
                dataset = pydicom.dcmread(io.BytesIO(data))
            except (InvalidDicomError, OSError, ValueError, AttributeError) as exc:
                raise DicomError(f"not a DICOM SEG: {exc}") from exc
            if str(getattr(dataset, "SeriesInstanceUID", "")) == seg.series_uid:
                raise DicomError("the SEG claims to be the source series itself")
            labels = read_segmentation(dataset, seg.label_set.labels)
        elif kind == "nifti":
            check_nifti_bytes(
                data, max_values=IMPORT_MAX_VALUES_PER_VOXEL * math.prod(seg.geometry.shape)
            )
            suffix = ".nii.gz" if data[:2] == b"\x1f\x8b" else ".nii"
            with tempfile.TemporaryDirectory(prefix="carina-import-") as tmp:
                path = Path(tmp) / f"labels{suffix}"
                path.write_bytes(data)
                try:
                    labels = read_labelmap(path)
                except (ImageIOError, GeometryError):
                    raise
                except Exception as exc:  # nibabel raises assorted errors on damaged files
                    raise ImageIOError(f"not a readable NIfTI label map: {exc}") from exc
        elif kind == "slicer":
            labels = self._read_slicer(data, seg)
        else:
            raise ImageIOError(
                f"import format must be one of {', '.join(IMPORT_KINDS)}, not {kind!r}"
            )
        return self._on_grid(labels, seg)

    @staticmethod
    def _read_slicer(data: bytes, seg: SegmentationInfo) -> LabelMap:
        """A Slicer segmentation's voxels with the values its segments' names have in the label
        set of ``seg``."""
        try:
            check_seg_nrrd_bytes(
                data, max_values=IMPORT_MAX_VALUES_PER_VOXEL * math.prod(seg.geometry.shape)
            )
        except ImageIOError as exc:
            raise ImageIOError(f"not a readable Slicer segmentation: {exc}") from exc
        with tempfile.TemporaryDirectory(prefix="carina-import-") as tmp:
            path = Path(tmp) / f"labels{SEG_NRRD_SUFFIX}"
            path.write_bytes(data)
            try:
                return read_seg_nrrd(path, seg.label_set.labels)
            except ImageIOError as exc:
                raise ImageIOError(f"not a readable Slicer segmentation: {exc}") from exc
            except LabelError as exc:  # unknown segment names, overlapping segments
                raise ImageIOError(
                    f"the Slicer segmentation does not fit label set {seg.label_set.name!r}: {exc}"
                ) from exc
            except Exception as exc:  # SimpleITK raises assorted errors on damaged files
                raise ImageIOError(f"not a readable Slicer segmentation: {exc}") from exc

    def import_version(
        self,
        project: str,
        seg_id: int,
        data: bytes,
        kind: str,
        *,
        parent_id: int | None,
        author_id: int,
        model: str = "",
        model_version: str = "",
        comment: str = "",
    ) -> VersionInfo:
        """Import a SEG, NIfTI or Slicer file (e.g. a model's pre-labels) as a new version."""
        seg = self.store.segmentation(project, seg_id)
        array = self.read_import(seg, data, kind)
        return self.store.save_version(
            project,
            seg_id,
            array,
            parent_id=parent_id,
            author_id=author_id,
            tool=f"import:{kind}",
            model=model,
            model_version=model_version,
            comment=comment,
            provenance={"imported": kind},
        )

    # -- tasks ----------------------------------------------------------------------------------

    def create_task(
        self,
        project: str,
        *,
        study_uid: str,
        series_uid: str,
        label_set: str,
        assignees: Sequence[str],
        user_id: int,
        title: str = "",
        instructions: str = "",
        milestone: str = "",
        due_at: datetime | None = None,
    ) -> TaskInfo:
        self._check_study(project, study_uid)
        geometry = self.series_geometry(study_uid, series_uid)
        return self.store.create_task(
            project,
            study_uid=study_uid,
            series_uid=series_uid,
            label_set=label_set,
            geometry=geometry,
            assignees=assignees,
            created_by=user_id,
            title=title,
            instructions=instructions,
            milestone=milestone,
            due_at=due_at,
        )

    def _task_heads(
        self, project: str, task_id: int
    ) -> tuple[TaskInfo, SegmentationInfo | None, dict[str, tuple[int, npt.NDArray[Any]]]]:
        task = self.store.task(project, task_id)
        heads: dict[str, tuple[int, npt.NDArray[Any]]] = {}
        any_seg: SegmentationInfo | None = None
        for a in task.assignments:
            if a.segmentation_id is None:
                continue
            seg = self.store.segmentation(project, a.segmentation_id)
            any_seg = seg
            if seg.head_version_id is None:
                continue
            version = self.store.version(project, seg.id, seg.head_version_id)
            heads[a.user] = (version.id, self.store.voxels(version))
        return task, any_seg, heads

    def agreement(self, project: str, task_id: int) -> list[agreement.PairStats]:
        """Dice, HD95 (mm) and volume difference (mL) per label for every pair of annotators'
        latest versions on a task."""
        task, seg, heads = self._task_heads(project, task_id)
        if seg is None or len(heads) < 2:
            return []
        spacing = tuple(reversed(seg.geometry.spacing))  # arrays are (k, j, i)
        labels = {lab.value: lab.name for lab in task.label_set.labels}
        return agreement.pairwise({u: arr for u, (_, arr) in heads.items()}, labels, spacing)

    def consensus(self, project: str, task_id: int, method: str, user_id: int) -> VersionInfo:
        """A consensus of the annotators' latest versions (``staple`` or ``majority``), saved as
        the first version of a new segmentation of the task's series with its provenance."""
        task, seg, heads = self._task_heads(project, task_id)
        if method not in ("staple", "majority"):
            raise LabelError(f"consensus method must be 'staple' or 'majority', not {method!r}")
        if seg is None or len(heads) < 2:
            raise ConflictError(f"task {task_id} needs saved work of two or more annotators")
        values = list(task.label_set.labels.values)
        arrays = [arr for _, arr in heads.values()]
        provenance: dict[str, Any] = {
            "method": method,
            "task": task_id,
            "inputs": [{"annotator": u, "version": v} for u, (v, _) in heads.items()],
        }
        if method == "staple":
            result = agreement.staple(arrays, values)
            consensus = result.array
            provenance["sensitivity"] = {str(k): v for k, v in result.sensitivity.items()}
            provenance["specificity"] = {str(k): v for k, v in result.specificity.items()}
        else:
            consensus = agreement.majority_vote(arrays, values)
        target = self.store.create_segmentation(
            project,
            study_uid=task.study_uid,
            series_uid=task.series_uid,
            label_set=task.label_set.name,
            geometry=seg.geometry,
            name=f"consensus ({method}) of task {task_id}",
            created_by=user_id,
        )
        return self.store.save_version(
            project,
            target.id,
            consensus.astype(_dtype_for(values)),
            parent_id=None,
            author_id=user_id,
            tool="consensus",
            model="STAPLE" if method == "staple" else "majority vote",
            model_version="1",
            comment=f"{method} consensus of {len(heads)} annotators",
            provenance=provenance,
        )


def dataset_bytes(dataset: Dataset) -> bytes:
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()
