"""Spacing-aware morphology helpers shared by the tools (arrays in LPS order ``[i, j, k]``).

Footprints are given in millimetres and converted to voxels per axis, so the same tool behaves the
same on 0.7 mm and 3 mm grids. "Per slice" means in the axial plane (``k`` fixed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

BoolArray = npt.NDArray[np.bool_]

#: 2-D (in-plane) 4-connectivity embedded in 3-D: operations with it treat slices independently.
SLICE_CROSS: BoolArray = np.zeros((3, 3, 3), dtype=bool)
SLICE_CROSS[:, :, 1] = ndi.generate_binary_structure(2, 1)


def ellipsoid(radius_mm: float, spacing: Sequence[float], in_plane: bool = False) -> BoolArray:
    """A ball of ``radius_mm`` on a grid of ``spacing`` (an axial disk if ``in_plane``)."""
    radii = [max(radius_mm / float(s), 0.0) for s in spacing]
    if in_plane:
        radii[2] = 0.0
    half = [int(np.floor(r)) for r in radii]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    dist = np.zeros([2 * h + 1 for h in half])
    for g, r in zip(grids, radii, strict=True):
        if r > 0:
            dist = dist + (g / r) ** 2
    out: BoolArray = dist <= 1.0
    return out


def fill_holes_per_slice(mask: BoolArray) -> BoolArray:
    """Fill holes in every axial slice independently (lungs and bowel inside the body outline)."""
    out: BoolArray = ndi.binary_fill_holes(mask, structure=SLICE_CROSS)
    return out


def plane_holes(
    mask: BoolArray,
    axis: int,
    spacing: Sequence[float] | None = None,
    max_area_mm2: float | None = None,
) -> BoolArray:
    """Voxels outside ``mask`` enclosed by it in their slice normal to ``axis`` (2: axial).

    With ``spacing`` and ``max_area_mm2``, holes whose area in their slice exceeds it are left
    out (a ring of bone around a body cavity is no marrow).
    """
    plane = np.zeros((3, 3, 3), dtype=bool)
    index: list[int | slice] = [slice(None)] * 3
    index[axis] = 1
    plane[tuple(index)] = ndi.generate_binary_structure(2, 1)
    filled: BoolArray = ndi.binary_fill_holes(mask, structure=plane)
    holes: BoolArray = filled & ~mask
    if spacing is not None and max_area_mm2 is not None and holes.any():
        pixel = float(np.prod([s for a, s in enumerate(spacing) if a != axis]))
        lab, _count = ndi.label(holes, structure=plane)
        sizes = np.bincount(lab.ravel())
        small = sizes * pixel <= max_area_mm2
        small[0] = False
        holes = small[lab]
    return holes


def holes_per_plane(
    mask: BoolArray,
    spacing: Sequence[float] | None = None,
    max_area_mm2: float | None = None,
) -> tuple[BoolArray, BoolArray, BoolArray]:
    """:func:`plane_holes` in the (axial, sagittal, coronal) slices."""
    return (
        plane_holes(mask, 2, spacing, max_area_mm2),
        plane_holes(mask, 0, spacing, max_area_mm2),
        plane_holes(mask, 1, spacing, max_area_mm2),
    )


def keep_largest(mask: BoolArray, n: int = 1) -> BoolArray:
    """The ``n`` largest 26-connected components of ``mask``."""
    lab, count = ndi.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if count <= n:
        return mask.copy()
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    keep = np.argsort(sizes)[::-1][:n]
    out: BoolArray = np.isin(lab, keep)
    return out


def remove_small(mask: BoolArray, min_voxels: int) -> BoolArray:
    """Drop 26-connected components smaller than ``min_voxels``."""
    if min_voxels <= 1:
        return mask.copy()
    lab, _count = ndi.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    out: BoolArray = (sizes >= min_voxels)[lab]
    return out


def bounding_box(mask: BoolArray, margin: Sequence[int] = (0, 0, 0)) -> tuple[slice, ...] | None:
    """Index slices of the smallest box holding ``mask`` grown by ``margin`` voxels, or ``None``."""
    if not mask.any():
        return None
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.nonzero(mask.any(axis=other))[0]
        lo = max(int(idx[0]) - margin[axis], 0)
        hi = min(int(idx[-1]) + margin[axis] + 1, mask.shape[axis])
        out.append(slice(lo, hi))
    return tuple(out)


def dice(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    x = np.asarray(a, dtype=bool)
    y = np.asarray(b, dtype=bool)
    denom = int(x.sum()) + int(y.sum())
    if denom == 0:
        return 1.0
    return 2.0 * float(np.logical_and(x, y).sum()) / denom
