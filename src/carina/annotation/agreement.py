"""Agreement between raters and consensus label maps.

Arrays here are label maps on one grid (any axis order, as long as ``spacing`` gives the voxel
size along each array axis in mm). Per label: Dice, the 95th percentile Hausdorff distance (the
larger of the two directed 95th percentiles of surface-to-surface distances, in mm) and the volume
difference in mL. Consensus: majority vote (a label wins a voxel when more than half of the raters
chose it) and STAPLE per label (SimpleITK), a voxel going to the label of highest probability
when that probability is at least 0.5.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage

from carina.core.errors import GeometryError, LabelError
from carina.core.labels import label_dtype

Mask = npt.NDArray[np.bool_]


def dice(a: Mask, b: Mask) -> float | None:
    """Dice coefficient of two masks; ``None`` when both are empty."""
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return None
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def _surface(mask: Mask) -> Mask:
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    eroded = ndimage.binary_erosion(mask, structure=structure, border_value=0)
    out: Mask = np.logical_and(mask, np.logical_not(eroded))
    return out


def _directed(from_surface: Mask, to_surface: Mask, spacing: Sequence[float]) -> npt.NDArray[Any]:
    distance = ndimage.distance_transform_edt(np.logical_not(to_surface), sampling=spacing)
    values: npt.NDArray[Any] = np.asarray(distance)[from_surface]
    return values


def _surface_distances(
    a: Mask, b: Mask, spacing: Sequence[float]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Distances in mm from each surface voxel of ``a`` to ``b``'s surface, and back."""
    sa, sb = _surface(a), _surface(b)
    return _directed(sa, sb, spacing), _directed(sb, sa, spacing)


def hausdorff95(a: Mask, b: Mask, spacing: Sequence[float]) -> float | None:
    """95th percentile Hausdorff distance in mm; ``None`` when either mask is empty."""
    if not a.any() or not b.any():
        return None
    ab, ba = _surface_distances(a, b, spacing)
    return float(max(np.percentile(ab, 95), np.percentile(ba, 95)))


def surface_dice(a: Mask, b: Mask, spacing: Sequence[float], tolerance_mm: float) -> float | None:
    """Normalised surface Dice: the share of both surfaces within ``tolerance_mm`` of the other.

    Surfaces are the voxels of each mask with a 6-neighbour outside it, as for
    :func:`hausdorff95`; distances are Euclidean in mm between voxel centres. A boundary
    disagreement smaller than the tolerance (a reference made on a coarser grid, one voxel of
    partial volume) does not count, a missed or extra structure does. ``None`` when both masks
    are empty, 0 when only one is.
    """
    if tolerance_mm < 0:
        raise ValueError(f"tolerance must be >= 0 mm, got {tolerance_mm}")
    if not a.any() and not b.any():
        return None
    if not a.any() or not b.any():
        return 0.0
    ab, ba = _surface_distances(a, b, spacing)
    close = int((ab <= tolerance_mm).sum()) + int((ba <= tolerance_mm).sum())
    return close / (ab.size + ba.size)


@dataclass(frozen=True)
class PairStats:
    """Agreement of two raters on one label."""

    label: int
    name: str
    rater_a: str
    rater_b: str
    dice: float | None
    hd95_mm: float | None
    volume_a_ml: float
    volume_b_ml: float
    volume_diff_ml: float


def _check_grid(maps: Mapping[str, npt.NDArray[Any]]) -> tuple[int, ...]:
    shapes = {tuple(m.shape) for m in maps.values()}
    if len(shapes) != 1:
        raise GeometryError(f"label maps on different grids: shapes {sorted(shapes)}")
    return shapes.pop()


def pairwise(
    maps: Mapping[str, npt.NDArray[Any]],
    labels: Mapping[int, str],
    spacing: Sequence[float],
) -> list[PairStats]:
    """Agreement of every pair of raters (in the order given) on every label."""
    _check_grid(maps)
    voxel_ml = math.prod(float(s) for s in spacing) / 1000.0
    rows = []
    for (name_a, a), (name_b, b) in itertools.combinations(maps.items(), 2):
        for value, label in sorted(labels.items()):
            ma, mb = a == value, b == value
            va, vb = int(ma.sum()) * voxel_ml, int(mb.sum()) * voxel_ml
            rows.append(
                PairStats(
                    value,
                    label,
                    name_a,
                    name_b,
                    dice(ma, mb),
                    hausdorff95(ma, mb, spacing),
                    va,
                    vb,
                    vb - va,
                )
            )
    return rows


def to_csv(rows: Sequence[PairStats]) -> str:
    """The rows as CSV with a header (empty cells where a figure is undefined)."""
    out = io.StringIO()
    fields = list(PairStats.__dataclass_fields__)
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in asdict(row).items()})
    return out.getvalue()


def majority_vote(maps: Sequence[npt.NDArray[Any]], values: Sequence[int]) -> npt.NDArray[Any]:
    """Each voxel gets the label chosen by more than half of the raters, else background."""
    if not maps:
        raise LabelError("majority vote needs at least one label map")
    _check_grid({str(i): m for i, m in enumerate(maps)})
    dtype = label_dtype(max(values, default=0))
    out = np.zeros(maps[0].shape, dtype=dtype)
    need = len(maps) / 2.0
    for value in values:
        votes = np.zeros(maps[0].shape, dtype=np.int32)
        for m in maps:
            votes += m == value
        out[votes > need] = value
    return out


@dataclass(frozen=True)
class StapleResult:
    """A STAPLE consensus and, per label, each rater's estimated sensitivity and specificity."""

    array: npt.NDArray[Any]
    sensitivity: dict[int, list[float]]
    specificity: dict[int, list[float]]


def staple(
    maps: Sequence[npt.NDArray[Any]], values: Sequence[int], threshold: float = 0.5
) -> StapleResult:
    """STAPLE per label; a voxel takes the label of highest probability (>= ``threshold``)."""
    if len(maps) < 2:
        raise LabelError("STAPLE needs at least two label maps")
    _check_grid({str(i): m for i, m in enumerate(maps)})
    dtype = label_dtype(max(values, default=0))
    best = np.zeros(maps[0].shape, dtype=np.float64)
    out = np.zeros(maps[0].shape, dtype=dtype)
    sensitivity: dict[int, list[float]] = {}
    specificity: dict[int, list[float]] = {}
    for value in values:
        masks = [(m == value).astype(np.uint8) for m in maps]
        if not any(mask.any() for mask in masks):
            continue
        images = [sitk.GetImageFromArray(mask) for mask in masks]
        flt = sitk.STAPLEImageFilter()
        flt.SetForegroundValue(1.0)
        probability = sitk.GetArrayFromImage(flt.Execute(images)).astype(np.float64)
        sensitivity[value] = [float(v) for v in flt.GetSensitivity()]
        specificity[value] = [float(v) for v in flt.GetSpecificity()]
        wins = (probability >= threshold) & (probability > best)
        out[wins] = value
        best[wins] = probability[wins]
    return StapleResult(out, sensitivity, specificity)
