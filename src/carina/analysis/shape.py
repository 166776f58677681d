"""Shape of a labelled region: volumes, surface, principal axes, diameters (patient mm)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.spatial import ConvexHull, QhullError
from skimage import measure

from carina.core.errors import LabelError
from carina.core.volume import LabelMap


@dataclass(frozen=True)
class ShapeStats:
    """Shape descriptors of one region (definitions as in the IBSI and pyradiomics)."""

    voxel_volume_mm3: float
    mesh_volume_mm3: float
    surface_area_mm2: float
    surface_volume_ratio: float
    sphericity: float
    major_axis_length: float
    minor_axis_length: float
    least_axis_length: float
    elongation: float
    flatness: float
    maximum_3d_diameter: float


def surface_mesh(
    mask: npt.NDArray[np.bool_], affine: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Marching-cubes surface of a mask (level 0.5), vertices in patient LPS mm.

    The mask is padded by one voxel so that regions touching the border are closed.
    """
    padded = np.pad(mask.astype(np.float32), 1)
    verts, faces, _, _ = measure.marching_cubes(padded, level=0.5)
    index = verts - 1.0
    world = index @ affine[:3, :3].T + affine[:3, 3]
    return world.astype(np.float64), faces.astype(np.int64)


def _mesh_volume_area(
    verts: npt.NDArray[np.float64], faces: npt.NDArray[np.int64]
) -> tuple[float, float]:
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    cross = np.cross(b - a, c - a)
    area = 0.5 * float(np.linalg.norm(cross, axis=1).sum())
    volume = abs(float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum()) / 6.0)
    return volume, area


def shape_stats(labels: LabelMap, value: int | str) -> ShapeStats:
    """Shape descriptors of one label of ``labels``."""
    mask = labels.mask(value)
    n = int(mask.sum())
    if n == 0:
        raise LabelError(f"label {value!r} is empty")
    g = labels.geometry
    verts, faces = surface_mesh(mask, g.affine)
    mesh_volume, area = _mesh_volume_area(verts, faces)
    coords = g.index_to_world(np.argwhere(mask).astype(np.float64))
    if n > 1:
        eig = np.sort(np.linalg.eigvalsh(np.cov(coords, rowvar=False, bias=True)))[::-1]
        eig = np.clip(eig, 0.0, None)
    else:
        eig = np.zeros(3)
    major, minor, least = (4.0 * float(np.sqrt(e)) for e in eig)
    try:
        hull = verts[ConvexHull(verts).vertices]
    except QhullError:
        hull = verts
    diffs = hull[:, None, :] - hull[None, :, :]
    max_diameter = float(np.sqrt((diffs**2).sum(-1)).max())
    sphericity = (np.pi ** (1 / 3) * (6 * mesh_volume) ** (2 / 3)) / area if area else 0.0
    return ShapeStats(
        voxel_volume_mm3=n * g.voxel_volume_mm3,
        mesh_volume_mm3=mesh_volume,
        surface_area_mm2=area,
        surface_volume_ratio=area / mesh_volume if mesh_volume else float("inf"),
        sphericity=float(sphericity),
        major_axis_length=major,
        minor_axis_length=minor,
        least_axis_length=least,
        elongation=float(np.sqrt(eig[1] / eig[0])) if eig[0] > 0 else 0.0,
        flatness=float(np.sqrt(eig[2] / eig[0])) if eig[0] > 0 else 0.0,
        maximum_3d_diameter=max_diameter,
    )
