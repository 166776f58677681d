"""Click region growing and grow-from-seeds on real CT, against the reference organs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from carina.core.errors import ModelError
from carina.models.evaluation import TOTALSEG_GROUPS, union_mask
from carina.models.interactive import click_grow, grow_from_seeds
from carina.models.morphology import dice

from .conftest import Case


def _deepest_point(case: Case, mask: np.ndarray) -> np.ndarray:
    """The reference voxel farthest from the organ's border, in LPS mm (where a user clicks)."""
    depth = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1, 1:-1]
    idx = np.unravel_index(int(np.argmax(depth)), mask.shape)
    return case.volume.geometry.index_to_world(np.array(idx, dtype=float))


def test_click_in_liver(ct_30sl: Case) -> None:
    assert ct_30sl.reference is not None
    liver = ct_30sl.reference.mask("liver")
    click = _deepest_point(ct_30sl, liver)
    res = click_grow(ct_30sl.volume, [click], smooth_mm=6.0, name="liver")
    assert res.labels.geometry.same_grid(ct_30sl.volume.geometry)
    assert dice(res.labels.mask("liver"), liver) >= 0.84
    assert sum(res.timings.values()) < 3.0  # 0.4 s measured


def test_click_in_liver_with_fixed_tolerance(ct_30sl: Case) -> None:
    assert ct_30sl.reference is not None
    liver = ct_30sl.reference.mask("liver")
    res = click_grow(
        ct_30sl.volume, [_deepest_point(ct_30sl, liver)], tolerance_hu=60, smooth_mm=6.0
    )
    assert dice(res.labels.mask(1), liver) >= 0.82


def test_click_in_lung_gives_that_lung(ct_3mm: Case) -> None:
    assert ct_3mm.reference is not None
    right = union_mask(ct_3mm.reference, TOTALSEG_GROUPS["lung_right"])
    left = union_mask(ct_3mm.reference, TOTALSEG_GROUPS["lung_left"])
    # a click in the parenchyma of the right lower lobe, at its deepest point in the slice where the
    # right lung is largest
    k = int(np.argmax(right.sum(axis=(0, 1))))
    depth = ndi.distance_transform_edt(right[:, :, k])
    i, j = np.unravel_index(int(np.argmax(depth)), depth.shape)
    click = ct_3mm.volume.geometry.index_to_world(np.array([i, j, k], dtype=float))
    res = click_grow(ct_3mm.volume, [click], tolerance_hu=250, smooth_mm=0.0, name="lung")
    grown = res.labels.mask("lung")
    assert dice(grown, right) >= 0.90
    assert (grown & left).sum() == 0


def test_grow_from_seeds_spleen(ct_30sl: Case) -> None:
    assert ct_30sl.reference is not None
    spleen = ct_30sl.reference.mask("spleen")
    fg = [_deepest_point(ct_30sl, spleen)]
    # background clicks in the neighbouring organs
    bg = [
        _deepest_point(ct_30sl, ct_30sl.reference.mask(name))
        for name in ("stomach", "kidney_left", "colon", "liver")
        if ct_30sl.reference.mask(name).any()
    ]
    res = grow_from_seeds(ct_30sl.volume, fg, bg, name="spleen")
    # about 0.6-1 s measured on the shared 2-core build machine; the bound leaves room for load
    assert sum(res.timings.values()) < 3.0
    assert dice(res.labels.mask("spleen"), spleen) >= 0.65
    assert not res.labels.mask("spleen")[
        tuple(np.rint(ct_30sl.volume.geometry.world_to_index(np.array(bg[0]))).astype(int))
    ]


def test_seed_outside_image_is_an_error(ct_30sl: Case) -> None:
    with pytest.raises(ModelError, match="outside the image"):
        click_grow(ct_30sl.volume, [(1e5, 0.0, 0.0)])
    with pytest.raises(ModelError, match="background"):
        grow_from_seeds(ct_30sl.volume, [(0.0, 0.0, 0.0)], [])
