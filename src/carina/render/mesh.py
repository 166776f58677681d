"""Surface meshes of label maps in patient coordinates, for 3-D views and 3-D printing.

Marching cubes (scikit-image) on each label, optional Taubin smoothing (volume-preserving) and
quadric decimation, written as STL, OBJ, PLY or glTF binary (trimesh).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import trimesh
from skimage import measure

from carina.core.errors import ImageIOError, LabelError, UnsupportedFormatError
from carina.core.labels import RGB
from carina.core.volume import LabelMap

MESH_SUFFIXES = (".stl", ".obj", ".ply", ".glb")


@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle surface of one label; vertices in patient LPS millimetres."""

    label: int
    name: str
    color: RGB
    vertices: npt.NDArray[np.float64]
    faces: npt.NDArray[np.int64]

    def as_trimesh(self) -> trimesh.Trimesh:
        rgba = np.array([*self.color, 255], dtype=np.uint8)
        return trimesh.Trimesh(
            vertices=self.vertices, faces=self.faces, face_colors=rgba, process=False
        )

    @property
    def is_watertight(self) -> bool:
        return bool(self.as_trimesh().is_watertight)

    @property
    def volume_mm3(self) -> float:
        return float(abs(self.as_trimesh().volume))


def _mesh_of(
    mask: npt.NDArray[np.bool_], affine: npt.NDArray[np.float64], smoothing: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    # Crop to the bounding box (plus a one-voxel pad so the surface is closed at borders).
    idx = np.argwhere(mask)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    sub = np.pad(mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].astype(np.float32), 1)
    verts, faces, _, _ = measure.marching_cubes(sub, level=0.5)
    index = verts - 1.0 + lo
    world = index @ affine[:3, :3].T + affine[:3, 3]
    # Patient LPS affines may be left-handed; keep outward-facing normals.
    if np.linalg.det(affine[:3, :3]) < 0:
        faces = faces[:, ::-1]
    tm = trimesh.Trimesh(vertices=world, faces=faces, process=True)
    if smoothing > 0:
        trimesh.smoothing.filter_taubin(tm, iterations=smoothing)
    if tm.volume < 0:
        tm.invert()
    return np.asarray(tm.vertices, dtype=np.float64), np.asarray(tm.faces, dtype=np.int64)


def label_meshes(
    labels: LabelMap,
    values: Iterable[int | str] | None = None,
    *,
    smoothing: int = 0,
    max_faces: int | None = None,
) -> list[Mesh]:
    """One mesh per present label (or per value/name in ``values``).

    ``smoothing`` is the number of Taubin iterations (0 keeps the marching-cubes surface, whose
    volume equals the voxel volume to within partial-voxel effects); ``max_faces`` decimates.
    """
    wanted = (
        labels.present_values()
        if values is None
        else [labels.labels.by_name(v).value if isinstance(v, str) else int(v) for v in values]
    )
    meshes: list[Mesh] = []
    for value in wanted:
        mask = labels.array == value
        if not mask.any():
            raise LabelError(f"label {value} is empty; no surface to build")
        verts, faces = _mesh_of(mask, labels.geometry.affine, smoothing)
        if max_faces is not None and len(faces) > max_faces:
            tm = trimesh.Trimesh(verts, faces, process=False).simplify_quadric_decimation(
                face_count=max_faces
            )
            verts = np.asarray(tm.vertices, dtype=np.float64)
            faces = np.asarray(tm.faces, dtype=np.int64)
        label = labels.labels[value]
        meshes.append(Mesh(value, label.name, label.color, verts, faces))
    return meshes


def write_mesh(meshes: Mesh | list[Mesh], path: str | Path) -> Path:
    """Write one mesh or a scene of several (STL merges them; OBJ/PLY/GLB keep colours)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise UnsupportedFormatError(
            f"{p.name}: unsupported mesh format; use one of {', '.join(MESH_SUFFIXES)}"
        )
    items = [meshes] if isinstance(meshes, Mesh) else meshes
    if not items:
        raise LabelError("no mesh to write")
    if len(items) == 1 or suffix in (".stl", ".ply"):
        geometry: trimesh.Trimesh | trimesh.Scene = trimesh.util.concatenate(
            [m.as_trimesh() for m in items]
        )
    else:
        geometry = trimesh.Scene()
        for m in items:
            geometry.add_geometry(m.as_trimesh(), node_name=m.name, geom_name=m.name)
    tmp = p.with_name(f".{p.name}.partial{suffix}")
    try:
        geometry.export(str(tmp), file_type=suffix[1:])
        tmp.replace(p)
    except (OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise ImageIOError(f"cannot write mesh {p}: {exc}") from exc
    return p
