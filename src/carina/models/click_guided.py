"""Click-guided (interactive) models: a network that sees the image and the user's clicks.

The contract follows DeepEdit (Diaz-Pinto et al., MONAI Label, 2022): the network input has three
channels on the model's grid, the intensity-scaled image and one guidance map per click type
(foreground, background), each a Gaussian around the clicks (:func:`guidance_map`); the output
has two channels (background, the clicked structure). A model declares itself interactive with
``kind="interactive"`` in its :class:`~carina.models.spec.ModelSpec`, whose
:class:`~carina.models.spec.Guidance` gives the Gaussian's width and the margin of the region of
interest.

:class:`ClickGuidedRunner` takes clicks in patient coordinates (LPS mm, as the weight-free
methods of :mod:`carina.models.interactive`) and runs the network on a region of interest only:

- **preprocess** — the clicks' bounding box grown by the margin is cropped from the input grid,
  reoriented and resampled to the model's spacing, its intensities scaled; the guidance maps
  are drawn around the clicks on that grid;
- **infer** — one pass of the network over the whole region (padded to a size its strides
  divide), so that every voxel of the region sees the clicks;
- **postprocess** — the structure's probability goes back onto the input's grid (linear in
  patient space, then > 0.5) and the components holding a foreground click are kept.

The result is a :class:`~carina.models.base.SegmentationResult` on the input geometry, as every
runner returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from carina.core.errors import ModelError
from carina.core.geometry import Geometry
from carina.core.volume import LabelMap, Volume
from carina.imaging.resample import resample_to_geometry
from carina.models.base import SegmentationResult, Timings
from carina.models.spec import Guidance, ModelSpec
from carina.models.template import FloatArray, model_grid, scale_intensity
from carina.models.torch_runner import TorchRunner, _torch

Point = Sequence[float]
IntArray = npt.NDArray[np.intp]


def guidance_map(
    shape: Sequence[int],
    spacing: Sequence[float],
    points: npt.ArrayLike,
    sigma_mm: float,
) -> FloatArray:
    """A map of ``shape`` that is ``exp(-d² / (2 sigma²))`` with ``d`` the distance in mm to the
    nearest of ``points`` (voxel indices, rounded and clipped to the grid); all zeros without
    points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    out = np.zeros(tuple(int(s) for s in shape), dtype=np.float32)
    if len(pts) == 0:
        return out
    idx = np.clip(np.rint(pts).astype(np.intp), 0, np.asarray(out.shape) - 1)
    seeds = np.ones(out.shape, dtype=bool)
    seeds[idx[:, 0], idx[:, 1], idx[:, 2]] = False
    dist = ndi.distance_transform_edt(seeds, sampling=[float(s) for s in spacing])
    out[...] = np.exp(-np.square(dist) / (2.0 * float(sigma_mm) ** 2))
    return out


def network_input(
    image: FloatArray,
    spacing: Sequence[float],
    foreground: npt.ArrayLike,
    background: npt.ArrayLike,
    guidance: Guidance,
) -> FloatArray:
    """The three input channels (image, foreground map, background map), shape ``(3, *image)``;
    clicks as voxel indices of ``image``'s grid. Training and inference both build it here."""
    fg = guidance_map(image.shape, spacing, foreground, guidance.sigma_mm)
    bg = guidance_map(image.shape, spacing, background, guidance.sigma_mm)
    return np.stack([np.asarray(image, dtype=np.float32), fg, bg])


def click_indices(geometry: Geometry, points: Sequence[Point]) -> npt.NDArray[np.float64]:
    """Continuous voxel indices of ``points`` (LPS mm); an error names the points outside."""
    if not points:
        return np.zeros((0, 3))
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ModelError("clicks are [x, y, z] points in LPS mm")
    idx = geometry.world_to_index(pts)
    rounded = np.rint(idx)
    outside = np.any((rounded < 0) | (rounded >= np.asarray(geometry.shape)), axis=1)
    if outside.any():
        bad = [list(map(float, pts[int(i)])) for i in np.nonzero(outside)[0]]
        raise ModelError(f"click(s) outside the image: {bad}")
    return idx


def roi_around(
    geometry: Geometry, points: Sequence[Point], margin_mm: float
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """``(start, stop)`` voxel bounds of the clicks' bounding box grown by ``margin_mm`` on every
    side, clipped to the grid."""
    idx = click_indices(geometry, points)
    if len(idx) == 0:
        raise ModelError("at least one click is needed")
    spacing = np.asarray(geometry.spacing)
    grow = np.ceil(float(margin_mm) / spacing)
    lo = np.maximum(np.floor(idx.min(axis=0) - grow), 0).astype(int)
    hi = np.minimum(np.ceil(idx.max(axis=0) + grow) + 1, np.asarray(geometry.shape)).astype(int)
    return (int(lo[0]), int(lo[1]), int(lo[2])), (int(hi[0]), int(hi[1]), int(hi[2]))


def antialias(volume: Volume, spacing: Sequence[float] | None) -> Volume:
    """``volume`` (in the model's orientation) smoothed before it is resampled to the coarser
    ``spacing``: a Gaussian of
    ``sqrt(f² - 1) / 2`` voxels along each axis coarsened by a factor ``f`` > 1 (none along the
    others), so that a fine grid and a coarse one give the network alike images."""
    if spacing is None:
        return volume
    factors = np.asarray(spacing, dtype=np.float64) / np.asarray(volume.geometry.spacing)
    sigma = np.sqrt(np.maximum(factors**2 - 1.0, 0.0)) / 2.0
    if not np.any(sigma > 0.1):
        return volume
    smooth = ndi.gaussian_filter(np.asarray(volume.array, dtype=np.float32), sigma)
    return volume.with_array(smooth)


def _points(value: Any) -> list[list[float]]:
    """Clicks given as any sequence of [x, y, z] (lists, tuples, an (n, 3) array)."""
    if value is None:
        return []
    out = [[float(c) for c in p] for p in value]
    if any(len(p) != 3 for p in out):
        raise ModelError("clicks are [x, y, z] points in LPS mm")
    return out


def _divisor(spec: ModelSpec) -> int:
    """The factor the network's strides need the input size to be a multiple of."""
    args = (spec.network or {}).get("args") or {}
    strides = args.get("strides") or []
    out = 1
    for s in strides:
        out *= int(s if isinstance(s, int) else max(s))
    return max(out, 1)


def keep_clicked(mask: npt.NDArray[np.bool_], clicks: IntArray) -> npt.NDArray[np.bool_]:
    """The 26-connected components of ``mask`` that hold a click (all of ``mask`` when no click
    falls inside it)."""
    if not mask.any() or len(clicks) == 0:
        return mask
    lab, _n = ndi.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    keep = {int(lab[tuple(c)]) for c in clicks} - {0}
    return np.isin(lab, sorted(keep)) if keep else mask


class ClickGuidedRunner(TorchRunner):
    """Runs an interactive model (``kind="interactive"``) on the region around the clicks."""

    def __init__(self, spec: ModelSpec, folder: str | Path, *, device: str | None = None) -> None:
        if not spec.interactive:
            raise ModelError(f"model {spec.id!r} is not an interactive model")
        super().__init__(spec, folder, device=device)

    def ensure_loaded(self) -> None:
        """Load the weights now (once) rather than at the first click."""
        if not self._loaded:
            self.load(self.device)
            self._loaded = True

    @property
    def guidance(self) -> Guidance:
        assert self.spec.guidance is not None  # set for every interactive spec
        return self.spec.guidance

    def run(self, volume: Volume, **params: Any) -> SegmentationResult:
        """Segment the structure under ``foreground`` clicks (LPS mm, at least one), not under
        ``background`` clicks; ``margin_mm`` overrides the spec's region margin."""
        unknown = set(params) - {"foreground", "background", "margin_mm"}
        if unknown:
            raise ModelError(f"model {self.spec.id!r}: unknown parameters {sorted(unknown)}")
        foreground = _points(params.get("foreground"))
        background = _points(params.get("background"))
        if not foreground:
            raise ModelError(
                f"model {self.spec.id!r} is interactive: it needs at least one foreground click"
            )
        margin = params.get("margin_mm")
        start, stop = roi_around(
            volume.geometry,
            [*foreground, *background],
            self.guidance.margin_mm if margin is None else float(margin),
        )
        return self.segment_roi(volume, start, stop, foreground, background)

    def segment_roi(
        self,
        volume: Volume,
        start: Sequence[int],
        stop: Sequence[int],
        foreground: Sequence[Point],
        background: Sequence[Point] = (),
    ) -> SegmentationResult:
        """The network's answer on the voxels ``start <= index < stop`` of ``volume`` for these
        clicks (either list may be empty here), as labels on ``volume``'s geometry."""
        torch = _torch()
        if volume.channels != 1:
            raise ModelError(f"model {self.spec.id!r} needs a single-channel image")
        self.ensure_loaded()
        t = Timings()
        with t.stage("preprocess"):
            fg_in = click_indices(volume.geometry, foreground)
            click_indices(volume.geometry, background)  # refuses clicks outside the image
            crop = volume.crop(start, stop)
            grid = model_grid(
                antialias(crop.reorient(self.spec.orientation), self.spec.spacing), self.spec
            )
            image = scale_intensity(np.asarray(grid.array), self.spec.intensity)
            fg = grid.geometry.world_to_index(np.asarray(foreground, float).reshape(-1, 3))
            bg = grid.geometry.world_to_index(np.asarray(background, float).reshape(-1, 3))
            x = network_input(image, grid.geometry.spacing, fg, bg, self.guidance)
            d = _divisor(self.spec)
            pad = [(0, (-n) % d) for n in image.shape]
            x = np.concatenate(
                [np.pad(x[:1], [(0, 0), *pad], mode="edge"), np.pad(x[1:], [(0, 0), *pad])]
            )
        with t.stage("infer"):
            tensor = torch.from_numpy(np.ascontiguousarray(x))[None].to(self._device)
            with torch.inference_mode():
                logits = self.net(tensor)
                prob = torch.softmax(torch.as_tensor(logits).float(), dim=1)[0, 1]
            p = np.asarray(prob.to("cpu").numpy(), dtype=np.float32)
            p = p[: image.shape[0], : image.shape[1], : image.shape[2]]
        with t.stage("postprocess"):
            on_model = Volume(p, grid.geometry)
            back = resample_to_geometry(on_model, crop.geometry, interpolator="linear", fill=0.0)
            mask = np.asarray(back.array) > 0.5
            local = np.rint(fg_in).astype(np.intp) - np.asarray(start, dtype=np.intp)
            inside = np.all((local >= 0) & (local < np.asarray(mask.shape)), axis=1)
            mask = keep_clicked(mask, local[inside])
            full = np.zeros(volume.shape, dtype=np.uint8)
            box = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
            full[box] = mask
            labels = LabelMap(
                full,
                volume.geometry,
                labels=self.spec.labels,
                description=f"{self.spec.id} {self.spec.version}",
            )
        findings = {"roi": {"start": [int(v) for v in start], "stop": [int(v) for v in stop]}}
        return SegmentationResult(labels, t.seconds, self.spec.id, self.spec.version, findings)
