"""Planes through a volume in patient space: MPR (axial, coronal, sagittal, oblique) and slabs
(maximum, minimum and average intensity projections).

Every plane is resampled in patient coordinates, so any volume orientation (oblique acquisitions
included) displays in radiological convention: axial seen from the feet, coronal from the front,
sagittal from the patient's left, the patient's right on the image's left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from carina.core.errors import GeometryError
from carina.core.geometry import Geometry
from carina.core.volume import LabelMap, Volume
from carina.imaging.resample import resample_to_geometry


class Plane(StrEnum):
    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"


class Projection(StrEnum):
    MEAN = "mean"
    MAX = "max"  # MIP
    MIN = "min"  # MinIP


#: (column direction, row direction) in LPS for each standard plane.
_PLANE_AXES: dict[Plane, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    Plane.AXIAL: ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    Plane.CORONAL: ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    Plane.SAGITTAL: ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}


@dataclass(frozen=True, eq=False)
class Slice2D:
    """A rendered plane: ``array[row, column]`` with its position in patient space."""

    array: npt.NDArray[Any]
    pixel_spacing: float
    origin: tuple[float, float, float]  # centre of pixel (0, 0), LPS mm
    column_direction: tuple[float, float, float]
    row_direction: tuple[float, float, float]
    thickness_mm: float

    def pixel_to_world(self, row: float, column: float) -> npt.NDArray[np.float64]:
        o = np.array(self.origin)
        c, r = np.array(self.column_direction), np.array(self.row_direction)
        out: npt.NDArray[np.float64] = o + self.pixel_spacing * (column * c + row * r)
        return out


def _unit(v: Sequence[float]) -> npt.NDArray[np.float64]:
    a = np.asarray(v, dtype=np.float64)
    n = float(np.linalg.norm(a))
    if a.shape != (3,) or n < 1e-9:
        raise GeometryError(f"direction must be a non-zero 3-vector, got {list(v)}")
    return a / n


def volume_center(geometry: Geometry) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = geometry.corners().mean(axis=0)
    return out


def reformat(
    volume: Volume,
    plane: Plane | str | tuple[Sequence[float], Sequence[float]] = Plane.AXIAL,
    *,
    center: Sequence[float] | None = None,
    offset_mm: float = 0.0,
    slab_mm: float = 0.0,
    projection: Projection | str = Projection.MEAN,
    spacing: float | None = None,
) -> Slice2D:
    """Resample one plane (or a slab projected along its normal) of ``volume``.

    ``plane`` is a standard plane or a pair (column direction, row direction) for an oblique
    plane. The plane passes through ``center`` (default: the volume's centre) moved by
    ``offset_mm`` along its normal and covers the whole volume. ``slab_mm`` > 0 projects that
    thickness with ``projection`` (mean, max = MIP, min = MinIP). Label maps are sampled
    nearest-neighbour and only ``max`` projections are meaningful for them.
    """
    if isinstance(plane, tuple):
        col, row = _unit(plane[0]), _unit(plane[1])
        row = _unit(row - np.dot(row, col) * col)  # make it orthogonal to the columns
    else:
        axes = _PLANE_AXES[Plane(plane)]
        col, row = _unit(axes[0]), _unit(axes[1])
    normal = np.cross(col, row)
    g = volume.geometry
    step = spacing or min(g.spacing)
    if step <= 0:
        raise GeometryError("spacing must be positive")
    c = volume_center(g) if center is None else np.asarray(center, dtype=np.float64)
    c = c + offset_mm * normal
    corners = g.corners() - c
    half_cols = float(np.abs(corners @ col).max()) + step / 2
    half_rows = float(np.abs(corners @ row).max()) + step / 2
    n_cols = max(1, round(2 * half_cols / step))
    n_rows = max(1, round(2 * half_rows / step))
    # Along the normal, sample once per voxel step of the volume (2 mm slices: every 2 mm).
    index_step = np.abs(np.linalg.inv(g.affine[:3, :3]) @ normal)
    slice_step = 1.0 / float(index_step.max())
    n_slab = max(1, round(slab_mm / slice_step)) if slab_mm > 0 else 1
    origin = (
        c
        - (n_cols - 1) / 2 * step * col
        - (n_rows - 1) / 2 * step * row
        - (n_slab - 1) / 2 * slice_step * normal
    )
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = col * step, row * step, normal * slice_step
    affine[:3, 3] = origin
    target = Geometry(affine, (n_cols, n_rows, n_slab), g.frame_of_reference_uid)
    sampled = np.asarray(resample_to_geometry(volume, target).array)
    mode = Projection(projection)
    if n_slab == 1:
        plane_ij = sampled[:, :, 0]
    elif mode is Projection.MAX:
        plane_ij = sampled.max(axis=2)
    elif mode is Projection.MIN:
        plane_ij = sampled.min(axis=2)
    else:
        if isinstance(volume, LabelMap):
            raise GeometryError("average projections of a label map are not labels; use max")
        plane_ij = sampled.mean(axis=2)
    centre_origin = c - (n_cols - 1) / 2 * step * col - (n_rows - 1) / 2 * step * row
    return Slice2D(
        array=np.ascontiguousarray(np.swapaxes(plane_ij, 0, 1)),
        pixel_spacing=float(step),
        origin=(float(centre_origin[0]), float(centre_origin[1]), float(centre_origin[2])),
        column_direction=(float(col[0]), float(col[1]), float(col[2])),
        row_direction=(float(row[0]), float(row[1]), float(row[2])),
        thickness_mm=float(n_slab * slice_step) if n_slab > 1 else 0.0,
    )


#: The LPS axis (0 x, 1 y, 2 z) along which ``index`` counts the planes of each standard view:
#: axial from inferior to superior, coronal from anterior to posterior, sagittal from the
#: patient's right to left.
_POSITION_AXIS: dict[Plane, int] = {Plane.AXIAL: 2, Plane.CORONAL: 1, Plane.SAGITTAL: 0}


@dataclass(frozen=True, eq=False)
class View:
    """A standard plane (or slab) as displayed: ``array[row, column]`` with its pixel size."""

    array: npt.NDArray[Any]
    row_spacing: float  # mm between rows
    column_spacing: float  # mm between columns
    index: int
    count: int


def _world_step(geometry: Geometry, axis: int) -> float:
    """The distance between voxel planes of ``geometry`` along an LPS axis, in mm."""
    along = np.abs(np.linalg.inv(geometry.affine[:3, :3])[:, axis])
    return 1.0 / float(along.max())


def plane_count(geometry: Geometry, plane: Plane | str) -> int:
    """How many planes of a standard view ``index`` may select (one per voxel step)."""
    axis = _POSITION_AXIS[Plane(plane)]
    coords = geometry.corners()[:, axis]
    extent = float(coords.max() - coords.min())
    return int(np.floor(extent / _world_step(geometry, axis) + 1e-3)) + 1


def _aligned_axis(geometry: Geometry, world: npt.NDArray[np.float64]) -> tuple[int, int] | None:
    """The array axis (and its sign) running along a world direction, if one does."""
    direction = geometry.affine[:3, :3] / np.linalg.norm(geometry.affine[:3, :3], axis=0)
    dots = direction.T @ world
    axis = int(np.argmax(np.abs(dots)))
    if abs(dots[axis]) < 1 - 1e-4:
        return None
    return axis, 1 if dots[axis] > 0 else -1


def _project(block: npt.NDArray[Any], axis: int, mode: Projection) -> npt.NDArray[Any]:
    out: npt.NDArray[Any]
    if block.shape[axis] == 1:
        out = np.take(block, 0, axis=axis)
    elif mode is Projection.MAX:
        out = block.max(axis=axis)
    elif mode is Projection.MIN:
        out = block.min(axis=axis)
    else:
        out = block.mean(axis=axis, dtype=np.float32)
    return out


def view(
    volume: Volume,
    plane: Plane | str = Plane.AXIAL,
    index: int | None = None,
    *,
    slab_mm: float = 0.0,
    projection: Projection | str = Projection.MEAN,
) -> View:
    """Plane ``index`` of a standard view (the middle one by default), or a slab of ``slab_mm``
    centred on it projected with ``projection``, in radiological display orientation.

    Volumes whose axes run along the patient axes are sliced directly (fast, no interpolation);
    others are resampled in patient space through :func:`reformat`. Rows and columns may have
    different spacings: see :func:`carina.render.window.resize_to_spacing`.
    """
    plane = Plane(plane)
    mode = Projection(projection)
    g = volume.geometry
    count = plane_count(g, plane)
    index = count // 2 if index is None else index
    if not 0 <= index < count:
        raise GeometryError(f"{plane.value} index must be in [0, {count - 1}], got {index}")
    if slab_mm < 0:
        raise GeometryError(f"slab thickness must not be negative, got {slab_mm}")
    col_dir, row_dir = (np.asarray(v, dtype=np.float64) for v in _PLANE_AXES[plane])
    position = np.zeros(3)
    position[_POSITION_AXIS[plane]] = 1.0
    found = [_aligned_axis(g, v) for v in (col_dir, row_dir, position)]
    if any(f is None for f in found) or len({f[0] for f in found if f}) != 3:
        return _resampled_view(volume, plane, index, count, slab_mm, mode)
    (ca, cs), (ra, rs), (pa, ps) = (f for f in found if f is not None)
    spacing = g.spacing
    n_slab = max(1, round(slab_mm / spacing[pa])) if slab_mm > 0 else 1
    # the planes of the slab, counted like ``index`` (an even count reaches one further along
    # the positive patient axis), then as array indices
    first = max(0, index - (n_slab - 1) // 2)
    last = min(count, index - (n_slab - 1) // 2 + n_slab)
    lo, hi = (first, last) if ps > 0 else (g.shape[pa] - last, g.shape[pa] - first)
    block = np.take(np.asarray(volume.array), np.arange(lo, hi), axis=pa)
    flat = _project(block, pa, mode)
    # the two remaining axes, in array order, become (row, column)
    remaining = [a for a in range(3) if a != pa]
    image = flat if remaining.index(ra) == 0 else flat.T
    if rs < 0:
        image = image[::-1, :]
    if cs < 0:
        image = image[:, ::-1]
    return View(np.ascontiguousarray(image), spacing[ra], spacing[ca], index, count)


def _resampled_view(
    volume: Volume, plane: Plane, index: int, count: int, slab_mm: float, mode: Projection
) -> View:
    g = volume.geometry
    axis = _POSITION_AXIS[plane]
    center = volume_center(g)
    center[axis] = g.corners()[:, axis].min() + index * _world_step(g, axis)
    section = reformat(
        volume, plane, center=[float(c) for c in center], slab_mm=slab_mm, projection=mode
    )
    step = section.pixel_spacing
    return View(section.array, step, step, index, count)
