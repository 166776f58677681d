"""Post-processing of label maps, per label: largest component, hole filling, minimum size."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from carina.core.errors import ModelError
from carina.core.volume import LabelMap
from carina.models.morphology import keep_largest, remove_small

_FULL = np.ones((3, 3, 3), dtype=bool)


def postprocess(
    labels: LabelMap,
    *,
    largest_component: bool = False,
    fill_holes: bool = False,
    min_size_ml: float = 0.0,
) -> LabelMap:
    """Apply, per label value: drop 26-connected components under ``min_size_ml`` mL, keep only
    the largest component, fill enclosed holes (3-D). Voxels already holding another label are
    never overwritten by hole filling."""
    if min_size_ml < 0:
        raise ModelError(f"--min-size must not be negative, got {min_size_ml}")
    if not (largest_component or fill_holes or min_size_ml > 0):
        return labels
    src = np.asarray(labels.array)
    out = src.copy()
    min_vox = int(np.ceil(min_size_ml * 1000.0 / labels.geometry.voxel_volume_mm3))
    for value in labels.present_values():
        mask = src == value
        if min_vox > 1:
            mask = remove_small(mask, min_vox)
        if largest_component and mask.any():
            mask = keep_largest(mask)
        if fill_holes:
            filled = ndi.binary_fill_holes(mask, structure=_FULL)
            mask = mask | (filled & (out == 0))
        out[(src == value) & ~mask] = 0
        out[mask] = value
    return LabelMap(
        out,
        labels.geometry,
        modality=labels.modality,
        description=labels.description,
        labels=labels.labels,
    )
