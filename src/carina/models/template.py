"""The template every trained-model runner follows: preprocess, infer, postprocess.

:class:`ModelRunner` does the parts common to all formats, in patient space:

- **preprocess** — reorient to the spec's orientation, resample (linear) to the spec's spacing
  over the same extent, and map intensities (window to [0, 1], z-score or none);
- **infer** — the format's own code (PyTorch, ONNX Runtime...): float32 array in, label array on
  the same grid out;
- **postprocess** — the labels go back onto the input's grid (nearest neighbour in patient
  space), with the spec's label set.

Each stage is timed. A subclass implements :meth:`load` (lazy, once) and :meth:`infer`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from carina.core.errors import ModelError
from carina.core.labels import label_dtype
from carina.core.volume import LabelMap, Volume
from carina.imaging.resample import resample_to_geometry
from carina.models.base import SegmentationResult, Timings
from carina.models.spec import Intensity, ModelSpec

FloatArray = npt.NDArray[np.float32]


def scale_intensity(array: npt.NDArray[Any], intensity: Intensity) -> FloatArray:
    """Network input values from image values (see :class:`~carina.models.spec.Intensity`)."""
    a = np.asarray(array, dtype=np.float32)
    if intensity.mode == "window":
        out = (np.clip(a, intensity.lo, intensity.hi) - intensity.lo) / (
            intensity.hi - intensity.lo
        )
        return out.astype(np.float32)
    if intensity.mode == "zscore":
        std = float(a.std())
        return ((a - float(a.mean())) / (std if std > 0 else 1.0)).astype(np.float32)
    return a


def model_grid(volume: Volume, spec: ModelSpec) -> Volume:
    """``volume`` reoriented to the spec's orientation and resampled to its spacing."""
    vol = volume.reorient(spec.orientation)
    if spec.spacing is None:
        return vol
    target = vol.geometry.with_spacing(spec.spacing)
    if target.same_grid(vol.geometry, atol=1e-6):
        return vol
    return resample_to_geometry(vol, target, interpolator="linear")


class ModelRunner:
    """Template runner over a :class:`ModelSpec`; subclasses implement ``load`` and ``infer``."""

    def __init__(self, spec: ModelSpec, *, device: str | None = None) -> None:
        self._spec = spec
        self.device = device
        self._loaded = False

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    def load(self, device: str | None = None) -> None:
        """Load the weights (once); ``device`` is ``cpu``, ``cuda`` or ``None`` (best available)."""
        raise NotImplementedError

    def infer(self, image: FloatArray) -> npt.NDArray[np.integer[Any]]:
        """Labels (channel index per voxel) for a preprocessed ``image`` on the model grid."""
        raise NotImplementedError

    def preprocess(self, volume: Volume) -> tuple[Volume, FloatArray]:
        if volume.channels != 1:
            raise ModelError(f"model {self.spec.id!r} needs a single-channel image")
        grid = model_grid(volume, self.spec)
        return grid, scale_intensity(np.asarray(grid.array), self.spec.intensity)

    def postprocess(self, labels: npt.NDArray[Any], grid: Volume, volume: Volume) -> LabelMap:
        out = np.asarray(labels).astype(label_dtype(max(self.spec.labels.values, default=0)))
        known = np.isin(out, (0, *self.spec.labels.values))
        out[~known] = 0
        on_model = LabelMap(out, grid.geometry, labels=self.spec.labels)
        back = resample_to_geometry(on_model, volume.geometry, interpolator="nearest")
        return LabelMap(
            back.array,
            volume.geometry,
            labels=self.spec.labels,
            description=f"{self.spec.id} {self.spec.version}",
        )

    def run(self, volume: Volume, **params: Any) -> SegmentationResult:
        if params:
            raise ModelError(f"model {self.spec.id!r} takes no parameters, got {sorted(params)}")
        if not self._loaded:
            self.load(self.device)
            self._loaded = True
        t = Timings()
        with t.stage("preprocess"):
            grid, image = self.preprocess(volume)
        with t.stage("infer"):
            labels = self.infer(image)
        if labels.shape != image.shape:
            raise ModelError(
                f"model {self.spec.id!r} returned shape {labels.shape}, expected {image.shape}"
            )
        with t.stage("postprocess"):
            result = self.postprocess(labels, grid, volume)
        return SegmentationResult(result, t.seconds, self.spec.id, self.spec.version)
