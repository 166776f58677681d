"""Resampling onto spacings and geometries; label maps stay nearest-neighbour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carina.core import Geometry, LabelMap, LabelSet, Volume
from carina.core.errors import GeometryError
from carina.imaging import read_image, read_labelmap, resample_to_geometry, resample_to_spacing


def test_ct_resample_keeps_world_positions(shared_data: Path) -> None:
    ct = read_image(shared_data / "totalsegmentator_ref" / "ct_3mm" / "ct.nii.gz")
    fine = resample_to_spacing(ct, (1.5, 1.5, 1.5))
    assert fine.shape == (244, 202, 224)
    assert fine.array.dtype == np.float32
    # voxel centres shared by both grids hold the same value
    for idx in [(10, 20, 30), (60, 50, 56), (100, 80, 100)]:
        world = ct.geometry.index_to_world(idx)
        fine_idx = tuple(round(x) for x in fine.geometry.world_to_index(world))
        assert fine.array[fine_idx] == pytest.approx(float(ct.array[idx]), abs=1e-3)


def test_labelmap_resampling_is_nearest_and_preserves_volumes(shared_data: Path) -> None:
    ref = shared_data / "totalsegmentator_ref" / "ct_3mm"
    labels = LabelSet.from_json(shared_data / "totalsegmentator_ref" / "label_map_total.json")
    seg = read_labelmap(ref / "seg_total_fast.nii.gz", labels)
    fine = resample_to_spacing(seg, (1.5, 1.5, 1.5), interpolator="linear")
    assert isinstance(fine, LabelMap)
    assert fine.array.dtype == seg.array.dtype
    assert fine.present_values() == seg.present_values()
    before, after = seg.volumes_ml(), fine.volumes_ml()
    liver = labels.by_name("liver").value
    assert after[liver] == pytest.approx(before[liver], rel=0.01)


def test_mask_on_larger_grid_resampled_by_affine(shared_data: Path) -> None:
    """The heart mask lies on a larger grid with another origin; resampling aligns it by world."""
    ref = shared_data / "totalsegmentator_ref" / "pulmonary_report"
    ct = read_image(ref / "ct_cropped.nii.gz")
    heart = read_labelmap(ref / "heart.nii.gz")
    assert not heart.geometry.same_grid(ct.geometry)
    on_ct = resample_to_geometry(heart, ct.geometry)
    assert isinstance(on_ct, LabelMap)
    assert on_ct.shape == ct.shape
    mask = on_ct.array > 0
    # same spacing, whole heart inside the crop: every voxel lands on the CT grid
    assert mask.sum() == (heart.array > 0).sum()
    # contrast-enhanced blood pool: well above soft tissue
    assert 250 < float(ct.array[mask].mean()) < 600
    # placing the array without its affine would put the "heart" in the lung (air)
    sx, sy, sz = ct.shape
    naive = heart.array[:sx, :sy, :sz] > 0
    assert float(ct.array[naive].mean()) < -500


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    spacing=st.tuples(*[st.floats(0.3, 4.0)] * 3),
    angle=st.floats(0, np.pi),
)
def test_resampling_a_label_map_never_invents_labels(
    seed: int, spacing: tuple[float, float, float], angle: float
) -> None:
    rng = np.random.default_rng(seed)
    values = rng.choice([0, 3, 7, 12, 200], size=(8, 9, 7)).astype(np.uint8)
    lm = LabelMap(values, Geometry.from_components(shape=(8, 9, 7), spacing=(1.0, 1.2, 2.0)))
    c, s = np.cos(angle), np.sin(angle)
    target = Geometry.from_components(
        shape=(10, 10, 10),
        spacing=spacing,
        origin=(-2.0, -1.0, 0.5),
        direction=[[c, -s, 0], [s, c, 0], [0, 0, 1]],
    )
    out = resample_to_geometry(lm, target, interpolator="bspline")
    assert set(np.unique(out.array)) <= set(np.unique(values)) | {0}


def test_cross_frame_of_reference_is_refused() -> None:
    a = Volume(np.zeros((2, 2, 2)), Geometry(np.eye(4), (2, 2, 2), "1.2.3"))
    with pytest.raises(GeometryError, match="frames of reference"):
        resample_to_geometry(a, Geometry(np.eye(4), (2, 2, 2), "1.2.4"))
