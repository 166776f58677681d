"""What a segmentation tool is and what it returns.

A tool is described by a :class:`ToolSpec` (identity, task, labels, method, citation) and run by a
:class:`Runner`: ``runner.run(volume, **params)`` returns a :class:`SegmentationResult`, a
:class:`~carina.core.LabelMap` on the input geometry plus the time spent in each stage. Weight-free
tools (this package) and model runners (PyTorch, ONNX, MONAI bundles, nnU-Net: loaded from entry
points or an installed-models folder) share this contract, so callers never know which they hold.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from carina.core.labels import LabelSet
from carina.core.volume import LabelMap, Volume

#: The stages every runner reports, in order (a runner may leave one at zero).
STAGES = ("preprocess", "infer", "postprocess")


@dataclass(frozen=True)
class ToolSpec:
    """Identity and documentation of a segmentation tool or model.

    ``labels`` are the structures the tool writes (names, colours and codes travel into DICOM SEG).
    ``modalities`` lists the DICOM modalities accepted (``CT``, ``MR``...). ``method`` says in plain
    words how the result is computed; ``citation`` names the method's reference.
    ``requires_weights`` is ``False`` for classical tools and ``True`` for trained models.
    """

    id: str
    version: str
    task: str
    modalities: tuple[str, ...]
    labels: LabelSet
    method: str
    citation: str = ""
    requires_weights: bool = False
    framework: str = "numpy/scipy/scikit-image/SimpleITK"


@dataclass
class Timings:
    """Seconds spent per stage; use :meth:`stage` as a context manager."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


@dataclass(frozen=True)
class SegmentationResult:
    """A label map on the input's geometry, the stage timings and optional extra findings.

    ``findings`` holds tool-specific structured output (for example the scored points of
    ``nodule-candidates``), JSON-serialisable.
    """

    labels: LabelMap
    timings: Mapping[str, float]
    tool: str
    version: str
    findings: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Runner(Protocol):
    """Anything that can segment a volume: a classical tool or a loaded model.

    ``run`` must return labels on ``volume.geometry`` (same shape and affine) whatever it does
    internally (resampling to a model's spacing, patching, test-time augmentation).
    """

    @property
    def spec(self) -> ToolSpec: ...

    def run(self, volume: Volume, **params: Any) -> SegmentationResult: ...
