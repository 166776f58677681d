"""Surface meshes: closed, in patient coordinates, volumes consistent with the voxels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from carina.core import Geometry, LabelMap, LabelSet
from carina.imaging import read_labelmap
from carina.render import label_meshes, write_mesh


@pytest.fixture(scope="module")
def seg(shared_data: Path) -> LabelMap:
    ref = shared_data / "totalsegmentator_ref"
    labels = LabelSet.from_json(ref / "label_map_total.json")
    return read_labelmap(ref / "ct_3mm" / "seg_total_fast.nii.gz", labels)


def test_liver_mesh_is_closed_and_in_patient_space(seg: LabelMap, tmp_path: Path) -> None:
    (liver,) = label_meshes(seg, ["liver"])
    assert liver.is_watertight
    mask = seg.mask("liver")
    world = seg.geometry.index_to_world(np.argwhere(mask).astype(float))
    lo, hi = world.min(axis=0), world.max(axis=0)
    half = np.array(seg.geometry.spacing) / 2 + 1e-6
    assert np.all(liver.vertices.min(axis=0) >= lo - half)
    assert np.all(liver.vertices.max(axis=0) <= hi + half)
    np.testing.assert_allclose(liver.vertices.min(axis=0), lo - half, atol=1.6)
    voxel_ml = mask.sum() * seg.geometry.voxel_volume_mm3
    assert liver.volume_mm3 == pytest.approx(voxel_ml, rel=0.05)
    # written and read back
    for suffix in (".stl", ".obj", ".ply"):
        out = write_mesh(liver, tmp_path / f"liver{suffix}")
        back = trimesh.load(str(out), force="mesh")
        assert len(back.faces) == len(liver.faces)
        np.testing.assert_allclose(
            back.bounds, [liver.vertices.min(0), liver.vertices.max(0)], atol=1e-3
        )


def test_scene_smoothing_and_decimation(seg: LabelMap, tmp_path: Path) -> None:
    raw = label_meshes(seg, ["spleen", "kidney_left"])
    smooth = label_meshes(seg, ["spleen", "kidney_left"], smoothing=10, max_faces=2000)
    for r, s in zip(raw, smooth, strict=True):
        assert len(s.faces) <= 2000
        assert s.volume_mm3 == pytest.approx(r.volume_mm3, rel=0.1)
    out = write_mesh(smooth, tmp_path / "organs.glb")
    scene = trimesh.load(str(out))
    assert isinstance(scene, trimesh.Scene)
    assert set(scene.geometry) == {"spleen", "kidney_left"}


def test_left_handed_grid_keeps_outward_normals() -> None:
    arr = np.zeros((6, 6, 6), np.uint8)
    arr[1:5, 1:5, 1:5] = 1
    g = Geometry(np.diag([-2.0, 2.0, 2.0, 1.0]), (6, 6, 6))  # one axis flipped
    (cube,) = label_meshes(LabelMap(arr, g))
    assert cube.is_watertight
    assert cube.as_trimesh().volume > 0
    assert cube.volume_mm3 == pytest.approx(64 * 8, rel=0.2)
