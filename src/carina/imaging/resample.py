"""Resampling of volumes onto new grids with SimpleITK.

Label maps are always resampled nearest-neighbour, whatever interpolator is asked for images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from enum import StrEnum

import numpy as np
import SimpleITK as sitk

from carina.core.errors import GeometryError
from carina.core.geometry import Geometry
from carina.core.volume import LabelMap, Volume
from carina.imaging.sitk import apply_geometry, array_of, to_sitk


class Interpolator(StrEnum):
    """Interpolation for image resampling."""

    NEAREST = "nearest"
    LINEAR = "linear"
    BSPLINE = "bspline"

    @property
    def sitk(self) -> int:
        table = {
            Interpolator.NEAREST: sitk.sitkNearestNeighbor,
            Interpolator.LINEAR: sitk.sitkLinear,
            Interpolator.BSPLINE: sitk.sitkBSpline,
        }
        return int(table[self])


def resample_to_geometry(
    volume: Volume,
    geometry: Geometry,
    *,
    interpolator: Interpolator | str = Interpolator.LINEAR,
    fill: float | None = None,
) -> Volume:
    """Resample ``volume`` onto ``geometry`` (patient coordinates are preserved).

    Voxels of the new grid outside the source take ``fill`` (default: the source minimum for
    images, 0 for label maps). Label maps use nearest-neighbour and keep their label set; the
    output of an image keeps the source dtype for nearest-neighbour, float32 otherwise.
    """
    interp = Interpolator(interpolator)
    is_labels = isinstance(volume, LabelMap)
    if is_labels:
        interp = Interpolator.NEAREST
    if (
        volume.geometry.frame_of_reference_uid
        and geometry.frame_of_reference_uid
        and volume.geometry.frame_of_reference_uid != geometry.frame_of_reference_uid
    ):
        raise GeometryError(
            "cannot resample across frames of reference "
            f"({volume.geometry.frame_of_reference_uid} → {geometry.frame_of_reference_uid}) "
            "without a registration"
        )
    if fill is None:
        fill = 0.0 if is_labels else float(np.min(volume.array))
    source = to_sitk(volume)
    reference = sitk.Image([int(s) for s in geometry.shape], source.GetPixelID())
    apply_geometry(reference, geometry)
    out_type = source.GetPixelID()
    if interp is not Interpolator.NEAREST and volume.channels == 1:
        out_type = sitk.sitkFloat32
    resampled = sitk.Resample(source, reference, sitk.Transform(), interp.sitk, fill, out_type)
    target = replace(geometry, frame_of_reference_uid=volume.geometry.frame_of_reference_uid)
    array = array_of(resampled)
    if volume.array.dtype == np.bool_:
        array = array.astype(np.bool_)
    return replace(volume, array=array, geometry=target)


def resample_to_spacing(
    volume: Volume,
    spacing: Sequence[float],
    *,
    interpolator: Interpolator | str = Interpolator.LINEAR,
) -> Volume:
    """Resample to a new voxel spacing over the same extent (origin and direction kept)."""
    return resample_to_geometry(
        volume, volume.geometry.with_spacing(spacing), interpolator=interpolator
    )
