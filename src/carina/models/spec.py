"""A trained model described by data: :class:`ModelSpec` and its ``model.json`` form.

A :class:`ModelSpec` is a :class:`~carina.models.base.ToolSpec` (identity, task, modalities, labels
with names/colours/codes, citation) plus what a runner needs to feed the network: the input
spacing in mm (the volume is resampled to it in patient space), the intensity handling, the
sliding-window size, the weights format and file, and the licence. It is read from and written to
a ``model.json`` beside the weights (see :mod:`carina.models.installed`).

``kind`` says how a model is called: ``segmentation`` models take an image and return labels;
``interactive`` models take an image plus foreground and background clicks (the network input
is the image and one guidance map per click type, :class:`Guidance`), see
:mod:`carina.models.click_guided`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carina.core.errors import ModelError
from carina.core.labels import LabelSet
from carina.models.base import ToolSpec

#: Weight formats a runner exists for.
FORMATS = ("torch", "torchscript", "onnx", "monai-bundle", "nnunet", "totalsegmentator")
#: How a model is called: image only, or image plus clicks.
KINDS = ("segmentation", "interactive")
#: The formats an interactive model may have (its runner feeds three input channels itself).
INTERACTIVE_FORMATS = ("torch", "torchscript")
SPEC_FILE = "model.json"


@dataclass(frozen=True)
class Intensity:
    """How image values become network input.

    ``window``: values are clipped to ``[lo, hi]`` then scaled to ``[0, 1]`` (CT in HU).
    ``zscore``: mean 0, standard deviation 1 over the volume (MR). ``none``: values as they are.
    """

    mode: str = "window"
    lo: float = -1000.0
    hi: float = 1000.0

    def __post_init__(self) -> None:
        if self.mode not in ("window", "zscore", "none"):
            raise ModelError(f"unknown intensity mode {self.mode!r} (window, zscore, none)")
        if self.mode == "window" and not self.hi > self.lo:
            raise ModelError(f"intensity window needs hi > lo, got [{self.lo}, {self.hi}]")


@dataclass(frozen=True)
class Guidance:
    """How the clicks of an interactive model become network input (DeepEdit-style).

    The network sees three channels on its grid: the image, a foreground map and a background
    map; each map is a Gaussian of ``sigma_mm`` around each click of its kind (maximum over the
    clicks, 1 at a click, 0 far away, an empty map when there is no click of that kind). The
    network runs on a region of interest: the clicks' bounding box grown by ``margin_mm`` on
    every side, clipped to the image.
    """

    sigma_mm: float = 9.0
    margin_mm: float = 90.0

    def __post_init__(self) -> None:
        if not self.sigma_mm > 0 or not self.margin_mm > 0:
            raise ModelError("guidance sigma_mm and margin_mm must be positive")


@dataclass(frozen=True)
class ModelSpec(ToolSpec):
    """A trained model: a :class:`ToolSpec` plus its input handling and weights.

    ``spacing`` (mm, along the axes of the volume reoriented to ``orientation``) is the grid the
    network sees; ``None`` keeps the input grid. ``roi_size`` is the sliding-window patch (voxels).
    Output channel ``i`` of the network is label value ``i`` (channel 0 is background).
    ``network`` names a MONAI network and its arguments when the weights are a state dict
    (``format="torch"``). ``weights`` is the weights file (or the bundle or nnU-Net folder)
    relative to the spec's folder. ``options`` holds format-specific settings (for ``nnunet``:
    configuration, trainer, plans, folds, checkpoint, input channels, nnU-Net's reader; for
    ``totalsegmentator``: task, fast, weights folder).
    ``kind`` is ``segmentation`` (image in, labels out) or ``interactive`` (image and clicks in,
    :attr:`guidance` saying how clicks become input channels).
    """

    format: str = "torch"
    weights: str = ""
    spacing: tuple[float, float, float] | None = None
    orientation: str = "LPS"
    intensity: Intensity = field(default_factory=Intensity)
    roi_size: tuple[int, int, int] = (96, 96, 96)
    overlap: float = 0.25
    network: dict[str, Any] | None = None
    licence: str = ""
    kind: str = "segmentation"
    guidance: Guidance | None = None
    options: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ModelError(f"model {self.id!r}: unknown format {self.format!r} ({FORMATS})")
        if self.kind not in KINDS:
            raise ModelError(f"model {self.id!r}: unknown kind {self.kind!r} ({KINDS})")
        if self.kind == "interactive":
            if self.format not in INTERACTIVE_FORMATS:
                raise ModelError(
                    f"model {self.id!r}: an interactive model is {' or '.join(INTERACTIVE_FORMATS)}"
                    f", not {self.format!r}"
                )
            if self.guidance is None:
                object.__setattr__(self, "guidance", Guidance())
        elif self.guidance is not None:
            raise ModelError(f"model {self.id!r}: guidance is for interactive models only")
        if self.spacing is not None and (
            len(self.spacing) != 3 or any(float(s) <= 0 for s in self.spacing)
        ):
            raise ModelError(f"model {self.id!r}: spacing must be three positive numbers")
        if len(self.roi_size) != 3 or any(int(s) < 1 for s in self.roi_size):
            raise ModelError(f"model {self.id!r}: roi_size must be three positive integers")
        if not 0.0 <= self.overlap < 1.0:
            raise ModelError(f"model {self.id!r}: overlap must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "task": self.task,
            "modalities": list(self.modalities),
            "labels": self.labels.to_list(),
            "method": self.method,
            "citation": self.citation,
            "licence": self.licence,
            "framework": self.framework,
            "format": self.format,
            "weights": self.weights,
            "spacing": list(self.spacing) if self.spacing is not None else None,
            "orientation": self.orientation,
            "intensity": {
                "mode": self.intensity.mode,
                "lo": self.intensity.lo,
                "hi": self.intensity.hi,
            },
            "roi_size": list(self.roi_size),
            "overlap": self.overlap,
            "network": self.network,
            "kind": self.kind,
            "guidance": (
                {"sigma_mm": self.guidance.sigma_mm, "margin_mm": self.guidance.margin_mm}
                if self.guidance is not None
                else None
            ),
            "options": self.options,
        }

    @property
    def interactive(self) -> bool:
        return self.kind == "interactive"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        try:
            spacing = data.get("spacing")
            inten = data.get("intensity") or {}
            guide = data.get("guidance")
            return cls(
                id=str(data["id"]),
                version=str(data["version"]),
                task=str(data.get("task", "segmentation")),
                modalities=tuple(str(m) for m in data.get("modalities", ())),
                labels=LabelSet.from_list(data["labels"]),
                method=str(data.get("method", "")),
                citation=str(data.get("citation", "")),
                licence=str(data.get("licence", "")),
                requires_weights=True,
                framework=str(data.get("framework", data.get("format", "torch"))),
                format=str(data.get("format", "torch")),
                weights=str(data.get("weights", "")),
                spacing=(
                    (float(spacing[0]), float(spacing[1]), float(spacing[2]))
                    if spacing is not None
                    else None
                ),
                orientation=str(data.get("orientation", "LPS")),
                intensity=Intensity(
                    str(inten.get("mode", "window")),
                    float(inten.get("lo", -1000.0)),
                    float(inten.get("hi", 1000.0)),
                ),
                roi_size=tuple(int(s) for s in data.get("roi_size", (96, 96, 96))),  # type: ignore[arg-type]
                overlap=float(data.get("overlap", 0.25)),
                network=data.get("network"),
                kind=str(data.get("kind", "segmentation")),
                guidance=(
                    Guidance(float(guide.get("sigma_mm", 9.0)), float(guide.get("margin_mm", 90.0)))
                    if guide is not None
                    else None
                ),
                options=data.get("options"),
            )
        except ModelError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise ModelError(f"invalid model spec: {exc!r}") from exc

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / SPEC_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> ModelSpec:
        path = Path(folder) / SPEC_FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelError(f"{path}: a model spec is a JSON object")
        return cls.from_dict(data)
