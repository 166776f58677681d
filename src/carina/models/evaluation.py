"""Scoring a tool against a reference label map: Dice per structure, by label names.

Reference structures are unions of named classes (for example TotalSegmentator's lung lobes), so a
tool's ``lung_right`` compares with ``lung_upper_lobe_right | lung_middle_lobe_right |
lung_lower_lobe_right``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from carina.core.errors import GeometryError
from carina.core.volume import LabelMap
from carina.models.morphology import BoolArray, dice

_TS_BONE_PREFIXES = (
    "vertebrae_",
    "rib_",
    "hip_",
    "femur_",
    "humerus_",
    "scapula_",
    "clavicula_",
)

#: TotalSegmentator ``total`` classes making up each tool structure. Costal cartilage is not bone
#: (and is rarely above bone thresholds), so it is left out of ``bone``.
TOTALSEG_GROUPS: dict[str, tuple[str, ...]] = {
    "lung_right": (
        "lung_upper_lobe_right",
        "lung_middle_lobe_right",
        "lung_lower_lobe_right",
    ),
    "lung_left": ("lung_upper_lobe_left", "lung_lower_lobe_left"),
    "airways": ("trachea",),
}


def totalseg_bone_names(names: Iterable[str]) -> tuple[str, ...]:
    """The bone classes among ``names`` (vertebrae, ribs, hips, femurs, sacrum, skull, ...)."""
    return tuple(
        n for n in names if n.startswith(_TS_BONE_PREFIXES) or n in ("sacrum", "skull", "sternum")
    )


def union_mask(reference: LabelMap, names: Iterable[str]) -> BoolArray:
    """Voxels of ``reference`` whose label name is one of ``names`` (absent names are skipped)."""
    wanted = set(names)
    values = [lab.value for lab in reference.labels if lab.name in wanted]
    out: BoolArray = np.isin(reference.array, values)
    return out


def structure_dice(prediction: LabelMap, structure: str, reference: BoolArray) -> float:
    """Dice of the ``structure`` label of ``prediction`` with a reference mask on its grid."""
    if reference.shape != prediction.shape:
        raise GeometryError(
            f"reference shape {reference.shape} differs from prediction {prediction.shape}"
        )
    return dice(prediction.mask(structure), reference)
