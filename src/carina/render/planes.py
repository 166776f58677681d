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
