"""Volumes and label maps: immutable arrays with their geometry.

Arrays are indexed ``[i, j, k]`` (optionally with a trailing channel axis), the axes of the
geometry's affine. Operations return new objects; the arrays held are read-only views.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from carina.core.errors import GeometryError, LabelError
from carina.core.geometry import Geometry
from carina.core.labels import LabelSet


def _readonly(array: npt.ArrayLike) -> npt.NDArray[Any]:
    arr = np.asarray(array).view()
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class Volume:
    """A scalar (or multi-channel) image on a :class:`Geometry`.

    ``array`` has shape ``geometry.shape`` or ``geometry.shape + (channels,)``. Values are in
    physical units where the modality has them (HU for CT after rescale).
    """

    array: npt.NDArray[Any]
    geometry: Geometry
    modality: str | None = None
    description: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arr = _readonly(self.array)
        if arr.ndim not in (3, 4) or tuple(arr.shape[:3]) != self.geometry.shape:
            raise GeometryError(
                f"array shape {arr.shape} does not match geometry shape {self.geometry.shape}"
            )
        object.__setattr__(self, "array", arr)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.geometry.shape

    @property
    def channels(self) -> int:
        return 1 if self.array.ndim == 3 else int(self.array.shape[3])

    def value_range(self) -> tuple[float, float]:
        return float(np.min(self.array)), float(np.max(self.array))

    def with_array(self, array: npt.ArrayLike) -> Volume:
        """Same geometry and metadata, new voxel values."""
        return replace(self, array=np.asarray(array))

    def crop(self, start: Sequence[int], stop: Sequence[int]) -> Volume:
        """Sub-volume with voxels ``start <= index < stop`` (geometry follows)."""
        geometry = self.geometry.cropped(start, stop)
        sl = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
        return replace(self, array=self.array[sl], geometry=geometry)

    def reorient(self, code: str) -> Volume:
        """The same voxels with axes permuted/flipped so that the grid has orientation ``code``."""
        perm, flips = self.geometry.reorientation(code)
        axes = list(perm) + ([3] if self.array.ndim == 4 else [])
        arr = np.transpose(self.array, axes)
        for axis, flip in enumerate(flips):
            if flip:
                arr = np.flip(arr, axis=axis)
        return replace(self, array=arr, geometry=self.geometry.reoriented(code))


@dataclass(frozen=True, eq=False)
class LabelMap(Volume):
    """An integer volume whose values are labels of :attr:`labels` (0 is background).

    Label maps are only ever resampled with nearest-neighbour interpolation.
    """

    labels: LabelSet = field(default_factory=LabelSet)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.array.ndim != 3:
            raise LabelError("a label map has exactly three axes")
        if not np.issubdtype(self.array.dtype, np.integer) and self.array.dtype != np.bool_:
            raise LabelError(f"label map values must be integers, got dtype {self.array.dtype}")
        unknown = sorted(set(self.present_values()) - set(self.labels.values))
        if unknown and len(self.labels):
            shown = ", ".join(str(v) for v in unknown[:10])
            raise LabelError(f"label map holds values not in its label set: {shown}")
        if unknown:  # no label set given: name the values found
            object.__setattr__(
                self, "labels", LabelSet.from_names({v: f"label_{v}" for v in unknown})
            )

    def present_values(self) -> list[int]:
        """Label values that occur in the map (background excluded)."""
        values = np.unique(self.array)
        return [int(v) for v in values if v != 0]

    def mask(self, value: int | str) -> npt.NDArray[np.bool_]:
        """Boolean mask of one label, by value or name."""
        v = self.labels.by_name(value).value if isinstance(value, str) else int(value)
        if v not in self.labels:
            raise LabelError(f"no label with value {v}")
        out: npt.NDArray[np.bool_] = self.array == v
        return out

    def voxel_counts(self) -> dict[int, int]:
        values, counts = np.unique(self.array, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True) if v != 0}

    def volumes_ml(self) -> dict[int, float]:
        """Volume of each present label in millilitres."""
        vv = self.geometry.voxel_volume_mm3 / 1000.0
        return {v: c * vv for v, c in self.voxel_counts().items()}
