"""PET lesion measures on SUV volumes: SUVmax, SUVpeak, SUVmean, metabolic volume, TLG."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from carina.core.errors import GeometryError
from carina.core.volume import Volume

#: Volume of the SUVpeak sphere (1 cm^3, as in PERCIST).
PEAK_SPHERE_ML = 1.0


@dataclass(frozen=True)
class PetStats:
    suv_max: float
    suv_peak: float
    suv_mean: float
    metabolic_volume_ml: float
    total_lesion_glycolysis: float  # SUVmean x metabolic volume (g)
    threshold: float


def _sphere_kernel(spacing: tuple[float, float, float], volume_ml: float) -> npt.NDArray[np.bool_]:
    radius = (3 * volume_ml * 1000 / (4 * np.pi)) ** (1 / 3)  # mm
    half = [int(np.ceil(radius / s)) for s in spacing]
    grids = np.meshgrid(
        *[np.arange(-h, h + 1) * s for h, s in zip(half, spacing, strict=True)], indexing="ij"
    )
    kernel: npt.NDArray[np.bool_] = sum(g**2 for g in grids) <= radius**2
    return kernel


def peak_means(suv: Volume) -> npt.NDArray[np.float64]:
    """Mean SUV of the 1 cm^3 sphere centred on every voxel (zero outside the image)."""
    values = np.asarray(suv.array, dtype=np.float64)
    kernel = _sphere_kernel(suv.geometry.spacing, PEAK_SPHERE_ML)
    local: npt.NDArray[np.float64] = ndimage.convolve(
        values, kernel / kernel.sum(), mode="constant", cval=0.0
    )
    return local


def pet_stats(
    suv: Volume,
    region: npt.NDArray[np.bool_],
    *,
    threshold: float | None = None,
    relative_threshold: float | None = 0.41,
) -> PetStats:
    """Measures of the lesion inside ``region`` of an SUV volume.

    The metabolic volume is the part of ``region`` at or above ``threshold`` (an absolute SUV)
    or, when that is None, ``relative_threshold`` x SUVmax (41 % by default). SUVpeak is the
    highest mean SUV of a 1 cm^3 sphere centred on a voxel of the region. Axis-aligned spacing
    is assumed for the sphere (true for PET reconstructions).
    """
    mask = np.asarray(region, dtype=bool)
    if mask.shape != suv.shape:
        raise GeometryError(f"region shape {mask.shape} differs from the image {suv.shape}")
    if not mask.any():
        raise GeometryError("the region is empty")
    values = np.asarray(suv.array, dtype=np.float64)
    suv_max = float(values[mask].max())
    cut = threshold if threshold is not None else (relative_threshold or 0.0) * suv_max
    metabolic = mask & (values >= cut)
    local_mean = peak_means(suv)
    suv_peak = float(local_mean[mask].max())
    volume_ml = float(metabolic.sum()) * suv.geometry.voxel_volume_mm3 / 1000.0
    suv_mean = float(values[metabolic].mean()) if metabolic.any() else 0.0
    return PetStats(
        suv_max=suv_max,
        suv_peak=suv_peak,
        suv_mean=suv_mean,
        metabolic_volume_ml=volume_ml,
        total_lesion_glycolysis=suv_mean * volume_ml,
        threshold=float(cut),
    )
