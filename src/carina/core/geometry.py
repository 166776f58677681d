"""Typed image geometry: the mapping from voxel indices to patient coordinates.

A :class:`Geometry` is a validated 4x4 affine that maps a voxel index ``(i, j, k)`` (array axes in
order) to a point in the patient coordinate system of DICOM, LPS, in millimetres: ``+x`` points to
the patient's left, ``+y`` posterior, ``+z`` superior. Conversions from other conventions (NIfTI's
RAS) happen only at the edges, in the readers and writers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from carina.core.errors import GeometryError

FloatArray = npt.NDArray[np.float64]

#: Tolerance for orthonormality of the direction cosines.
DIRECTION_TOLERANCE = 1e-4

# LPS axis letters: positive direction first, negative second.
_AXIS_LETTERS: tuple[tuple[str, str], ...] = (("L", "R"), ("P", "A"), ("S", "I"))
_LETTER_TO_AXIS: dict[str, tuple[int, int]] = {
    "L": (0, 1),
    "R": (0, -1),
    "P": (1, 1),
    "A": (1, -1),
    "S": (2, 1),
    "I": (2, -1),
}

#: Converts an LPS affine to RAS and back (it is its own inverse).
LPS_TO_RAS: FloatArray = np.diag([-1.0, -1.0, 1.0, 1.0])


def _as_affine(affine: npt.ArrayLike) -> FloatArray:
    a = np.array(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise GeometryError(f"affine must be 4x4, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise GeometryError("affine contains NaN or infinite values")
    if not np.allclose(a[3], [0.0, 0.0, 0.0, 1.0]):
        raise GeometryError(f"the last row of an affine must be [0, 0, 0, 1], got {a[3].tolist()}")
    a.flags.writeable = False
    return a


def parse_orientation(code: str) -> tuple[tuple[int, int], ...]:
    """Parse an orientation code such as ``"LPS"`` or ``"RAS"`` into (world axis, sign) pairs."""
    code = code.upper()
    if len(code) != 3 or any(c not in _LETTER_TO_AXIS for c in code):
        raise GeometryError(f"orientation code must be three of L/R, P/A, S/I, got {code!r}")
    pairs = tuple(_LETTER_TO_AXIS[c] for c in code)
    if sorted(p[0] for p in pairs) != [0, 1, 2]:
        raise GeometryError(f"orientation code {code!r} names one anatomical axis twice")
    return pairs


@dataclass(frozen=True, eq=False)
class Geometry:
    """Voxel grid in patient space: shape, 4x4 affine (index → LPS mm), frame of reference."""

    affine: FloatArray
    shape: tuple[int, int, int]
    frame_of_reference_uid: str | None = field(default=None)

    def __post_init__(self) -> None:
        affine = _as_affine(self.affine)
        object.__setattr__(self, "affine", affine)
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or any(s < 1 for s in shape):
            raise GeometryError(f"shape must be three positive integers, got {self.shape!r}")
        object.__setattr__(self, "shape", shape)
        linear = affine[:3, :3]
        spacing = np.linalg.norm(linear, axis=0)
        if np.any(spacing <= 1e-9):
            raise GeometryError(f"voxel spacing must be positive, got {spacing.tolist()}")
        direction = linear / spacing
        gram = direction.T @ direction
        if not np.allclose(gram, np.eye(3), atol=DIRECTION_TOLERANCE):
            raise GeometryError(
                "direction cosines are not orthonormal (sheared grid, e.g. gantry tilt): "
                f"{np.round(direction, 6).tolist()}"
            )

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_components(
        cls,
        *,
        shape: Sequence[int],
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        origin: Sequence[float] = (0.0, 0.0, 0.0),
        direction: npt.ArrayLike | None = None,
        frame_of_reference_uid: str | None = None,
    ) -> Geometry:
        """Build from origin (centre of voxel 0), spacing and direction cosines (one per column)."""
        d = np.eye(3) if direction is None else np.array(direction, dtype=np.float64)
        if d.shape != (3, 3):
            raise GeometryError(f"direction must be 3x3, got shape {d.shape}")
        sp = np.array(spacing, dtype=np.float64)
        if sp.shape != (3,) or np.any(~np.isfinite(sp)) or np.any(sp <= 0):
            raise GeometryError(f"spacing must be three positive numbers, got {list(spacing)}")
        affine = np.eye(4)
        affine[:3, :3] = d * sp
        affine[:3, 3] = np.array(origin, dtype=np.float64)
        s = tuple(int(x) for x in shape)
        if len(s) != 3:
            raise GeometryError(f"shape must have three axes, got {list(shape)}")
        return cls(affine, (s[0], s[1], s[2]), frame_of_reference_uid)

    @classmethod
    def from_ras_affine(
        cls, affine: npt.ArrayLike, shape: Sequence[int], frame_of_reference_uid: str | None = None
    ) -> Geometry:
        """Build from a RAS affine (NIfTI convention)."""
        ras = np.array(affine, dtype=np.float64)
        s = tuple(int(x) for x in shape)
        if len(s) != 3:
            raise GeometryError(f"shape must have three axes, got {list(shape)}")
        return cls(LPS_TO_RAS @ ras, (s[0], s[1], s[2]), frame_of_reference_uid)

    # -- properties ---------------------------------------------------------------------------
    @property
    def spacing(self) -> tuple[float, float, float]:
        s = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(s[0]), float(s[1]), float(s[2]))

    @property
    def origin(self) -> tuple[float, float, float]:
        o = self.affine[:3, 3]
        return (float(o[0]), float(o[1]), float(o[2]))

    @property
    def direction(self) -> FloatArray:
        """Unit direction cosines, one column per array axis."""
        d: FloatArray = self.affine[:3, :3] / np.linalg.norm(self.affine[:3, :3], axis=0)
        return d

    @property
    def ras_affine(self) -> FloatArray:
        """The affine in the RAS convention (for NIfTI writers)."""
        return LPS_TO_RAS @ self.affine

    @property
    def orientation(self) -> str:
        """Closest anatomical orientation code, e.g. ``"LPS"`` (axis i points left, ...)."""
        letters = []
        for col in self.direction.T:
            axis = int(np.argmax(np.abs(col)))
            letters.append(_AXIS_LETTERS[axis][0 if col[axis] > 0 else 1])
        return "".join(letters)

    @property
    def is_oblique(self) -> bool:
        """True when an axis is not aligned with a patient axis (beyond 1e-3 of cosine)."""
        return not bool(np.allclose(np.abs(self.direction).max(axis=0), 1.0, atol=1e-3))

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape))

    # -- coordinate transforms ----------------------------------------------------------------
    def index_to_world(self, index: npt.ArrayLike) -> FloatArray:
        """Map voxel indices (..., 3) to LPS points (..., 3) in mm."""
        idx = np.asarray(index, dtype=np.float64)
        if idx.shape[-1] != 3:
            raise GeometryError(f"indices must have a last axis of length 3, got {idx.shape}")
        out: FloatArray = idx @ self.affine[:3, :3].T + self.affine[:3, 3]
        return out

    def world_to_index(self, points: npt.ArrayLike) -> FloatArray:
        """Map LPS points (..., 3) in mm to continuous voxel indices (..., 3)."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.shape[-1] != 3:
            raise GeometryError(f"points must have a last axis of length 3, got {pts.shape}")
        inv = np.linalg.inv(self.affine)
        out: FloatArray = pts @ inv[:3, :3].T + inv[:3, 3]
        return out

    def corners(self) -> FloatArray:
        """LPS positions of the centres of the eight corner voxels, shape (8, 3)."""
        n = np.array(self.shape) - 1
        idx = np.array([[a, b, c] for a in (0, n[0]) for b in (0, n[1]) for c in (0, n[2])])
        return self.index_to_world(idx)

    # -- derived geometries -------------------------------------------------------------------
    def same_grid(self, other: Geometry, atol: float = 1e-4) -> bool:
        """True when both describe the same voxel grid (shape and affine within ``atol`` mm)."""
        return self.shape == other.shape and bool(
            np.allclose(self.affine, other.affine, atol=atol, rtol=0)
        )

    def with_spacing(self, spacing: Sequence[float]) -> Geometry:
        """Grid covering the same extent with a new spacing (origin and direction kept)."""
        new = np.array(spacing, dtype=np.float64)
        if new.shape != (3,) or np.any(new <= 0) or np.any(~np.isfinite(new)):
            raise GeometryError(f"spacing must be three positive numbers, got {list(spacing)}")
        old = np.array(self.spacing)
        extent = old * np.array(self.shape)
        shape = np.maximum(1, np.round(extent / new)).astype(int)
        return Geometry.from_components(
            shape=shape.tolist(),
            spacing=new.tolist(),
            origin=self.origin,
            direction=self.direction,
            frame_of_reference_uid=self.frame_of_reference_uid,
        )

    def cropped(self, start: Sequence[int], stop: Sequence[int]) -> Geometry:
        """Sub-grid with voxels ``start[a] <= i < stop[a]`` on each axis."""
        st = [int(x) for x in start]
        sp = [int(x) for x in stop]
        if len(st) != 3 or len(sp) != 3:
            raise GeometryError("crop bounds need three axes")
        for a in range(3):
            if not 0 <= st[a] < sp[a] <= self.shape[a]:
                raise GeometryError(
                    f"crop bounds [{st[a]}, {sp[a]}) on axis {a} are outside 0..{self.shape[a]}"
                )
        affine = self.affine.copy()
        affine[:3, 3] = self.index_to_world(np.array(st, dtype=np.float64))
        return Geometry(
            affine, (sp[0] - st[0], sp[1] - st[1], sp[2] - st[2]), self.frame_of_reference_uid
        )

    def reorientation(self, code: str) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
        """Axis permutation and flips that bring this grid to orientation ``code``.

        New axis ``t`` takes old axis ``perm[t]``, reversed when ``flips[t]``.
        """
        target = parse_orientation(code)
        current = parse_orientation(self.orientation)
        perm: list[int] = []
        flips: list[bool] = []
        for world_axis, sign in target:
            src = next(a for a, (w, _) in enumerate(current) if w == world_axis)
            perm.append(src)
            flips.append(current[src][1] != sign)
        return (perm[0], perm[1], perm[2]), (flips[0], flips[1], flips[2])

    def reoriented(self, code: str) -> Geometry:
        """The same grid with axes permuted and flipped to orientation ``code``."""
        perm, flips = self.reorientation(code)
        t = np.zeros((4, 4))
        t[3, 3] = 1.0
        for new_axis, (src, flip) in enumerate(zip(perm, flips, strict=True)):
            if flip:
                t[src, new_axis] = -1.0
                t[src, 3] = self.shape[src] - 1
            else:
                t[src, new_axis] = 1.0
        shape = tuple(self.shape[p] for p in perm)
        return Geometry(self.affine @ t, (shape[0], shape[1], shape[2]), self.frame_of_reference_uid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "affine": self.affine.tolist(),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "orientation": self.orientation,
            "frame_of_reference_uid": self.frame_of_reference_uid,
        }

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.4g}" for s in self.spacing)
        org = ", ".join(f"{o:.4g}" for o in self.origin)
        return f"Geometry(shape={self.shape}, spacing=({sp}), origin=({org}), {self.orientation})"
