"""Working grids: run a method on a coarser copy of a volume and bring the result back.

Classical methods need neither 0.7 mm pixels nor their cost: a tool computes on a grid of about
``target_mm`` (integer block averaging, so the coarse voxels tile the fine grid exactly), then
upsamples its label map by repetition and re-decides the voxels of a one-coarse-voxel band along
each boundary with a full-resolution criterion (for example ``HU > -500`` for the body outline).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from carina.models.morphology import BoolArray, ellipsoid

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class WorkingGrid:
    """Integer block factors from a fine grid of ``shape`` to a coarse one."""

    shape: tuple[int, int, int]
    factors: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @classmethod
    def choose(
        cls, shape: Sequence[int], spacing: Sequence[float], target_mm: float
    ) -> WorkingGrid:
        factors = tuple(max(1, int(np.floor(target_mm / float(s) + 1e-6))) for s in spacing)
        return cls(
            (int(shape[0]), int(shape[1]), int(shape[2])),
            (factors[0], factors[1], factors[2]),
            (float(spacing[0]), float(spacing[1]), float(spacing[2])),
        )

    @property
    def identity(self) -> bool:
        return self.factors == (1, 1, 1)

    @property
    def coarse_shape(self) -> tuple[int, int, int]:
        s, f = self.shape, self.factors
        return (-(-s[0] // f[0]), -(-s[1] // f[1]), -(-s[2] // f[2]))

    @property
    def coarse_spacing(self) -> tuple[float, float, float]:
        return (
            self.spacing[0] * self.factors[0],
            self.spacing[1] * self.factors[1],
            self.spacing[2] * self.factors[2],
        )

    def downsample(self, array: npt.NDArray[np.generic]) -> FloatArray:
        """Block means (a partial last block averages the voxels it has)."""
        if self.identity:
            return np.asarray(array, dtype=np.float32)
        f = self.factors
        out = np.zeros(self.coarse_shape, dtype=np.float32)
        counts = [np.zeros(n, dtype=np.float32) for n in self.coarse_shape]
        for axis in range(3):
            for off in range(f[axis]):
                counts[axis][: len(range(off, self.shape[axis], f[axis]))] += 1
        src = np.asarray(array)
        for a in range(f[0]):
            for b in range(f[1]):
                for c in range(f[2]):
                    view = src[a :: f[0], b :: f[1], c :: f[2]]
                    out[: view.shape[0], : view.shape[1], : view.shape[2]] += view
        out /= counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :]
        return out

    def upsample(self, array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        """Nearest-neighbour (block repetition) back to the fine shape."""
        if self.identity:
            return array
        out = array
        for axis, f in enumerate(self.factors):
            if f > 1:
                out = np.repeat(out, f, axis=axis)
        return out[: self.shape[0], : self.shape[1], : self.shape[2]]

    def fine_box(self, box: Sequence[slice]) -> tuple[slice, ...]:
        """The fine-grid voxels covered by a box of coarse voxels."""
        return tuple(
            slice(b.start * f, min((b.stop) * f, n))
            for b, f, n in zip(box, self.factors, self.shape, strict=True)
        )

    def density_probe(self, fine: FloatArray) -> Callable[[tuple[slice, ...], BoolArray], float]:
        """``probe(box, component)``: median of ``fine`` over a coarse component's interior."""

        def probe(box: tuple[slice, ...], comp: BoolArray) -> float:
            fbox = self.fine_box(box)
            up = comp
            for axis, f in enumerate(self.factors):
                if f > 1:
                    up = np.repeat(up, f, axis=axis)
            sub = fine[fbox]
            up = up[: sub.shape[0], : sub.shape[1], : sub.shape[2]]
            inner = ndi.binary_erosion(up, structure=ellipsoid(2.0, self.spacing, in_plane=True))
            sel = inner if int(inner.sum()) >= 20 else up
            return float(np.median(sub[sel]))

        return probe

    def refine(
        self,
        coarse: BoolArray,
        fine_criterion: Callable[[tuple[slice, ...]], BoolArray],
    ) -> BoolArray:
        """Upsample ``coarse`` and re-decide its boundary band at full resolution.

        ``fine_criterion(box)`` returns the fine-grid decision for the voxels of ``box``; it is
        only evaluated on the bounding box of the band.
        """
        if self.identity:
            return coarse
        inner = self.upsample(ndi.binary_erosion(coarse))
        outer = self.upsample(ndi.binary_dilation(coarse))
        band = np.asarray(outer) & ~np.asarray(inner)
        out: BoolArray = np.asarray(inner).copy()
        idx = np.nonzero(band.any(axis=(1, 2)))[0]
        if idx.size == 0:
            return out
        box = tuple(
            slice(int(ix[0]), int(ix[-1]) + 1)
            for ix in (
                idx,
                np.nonzero(band.any(axis=(0, 2)))[0],
                np.nonzero(band.any(axis=(0, 1)))[0],
            )
        )
        out[box] |= band[box] & fine_criterion(box)
        return out
