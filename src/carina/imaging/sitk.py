"""Conversion between :class:`~carina.core.Volume` and ``SimpleITK.Image``.

SimpleITK works in LPS like Carina; its arrays are ordered (k, j, i), Carina's (i, j, k).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from carina.core.geometry import Geometry
from carina.core.volume import Volume


def geometry_of(image: sitk.Image, frame_of_reference_uid: str | None = None) -> Geometry:
    """The :class:`Geometry` of a 3-D SimpleITK image."""
    if image.GetDimension() != 3:
        raise ValueError(f"expected a 3-D image, got {image.GetDimension()}-D")
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    return Geometry.from_components(
        shape=image.GetSize(),
        spacing=image.GetSpacing(),
        origin=image.GetOrigin(),
        direction=direction,
        frame_of_reference_uid=frame_of_reference_uid,
    )


def apply_geometry(image: sitk.Image, geometry: Geometry) -> None:
    """Set origin, spacing and direction of ``image`` from ``geometry`` (in place)."""
    image.SetOrigin(geometry.origin)
    image.SetSpacing(geometry.spacing)
    image.SetDirection(tuple(float(x) for x in geometry.direction.ravel()))


def to_sitk(volume: Volume) -> sitk.Image:
    """A SimpleITK image holding a copy of the volume's voxels and its geometry."""
    arr: npt.NDArray[Any] = volume.array
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.ndim == 4:
        image = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0, 3)), True)
    else:
        image = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    apply_geometry(image, volume.geometry)
    return image


def array_of(image: sitk.Image) -> npt.NDArray[Any]:
    """Voxels of a SimpleITK image in Carina's (i, j, k[, c]) order."""
    arr = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        return np.ascontiguousarray(arr.transpose(2, 1, 0, 3))
    return np.ascontiguousarray(arr.transpose(2, 1, 0))


def from_sitk(
    image: sitk.Image, *, modality: str | None = None, frame_of_reference_uid: str | None = None
) -> Volume:
    """A :class:`Volume` from a 3-D SimpleITK image."""
    return Volume(array_of(image), geometry_of(image, frame_of_reference_uid), modality=modality)
