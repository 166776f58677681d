"""Segmentation tools and models behind one contract.

:class:`ToolSpec` describes a tool, a :class:`Runner` runs it on a :class:`~carina.core.Volume` and
returns a :class:`SegmentationResult` (a label map on the input geometry plus per-stage timings).
The built-in tools need no weights (:mod:`carina.models.tools`); interactive region growing is in
:mod:`carina.models.interactive`. Depends on core, imaging and dicom only.
"""

from carina.models.base import STAGES, Runner, SegmentationResult, Timings, ToolSpec
from carina.models.registry import Registry, default_registry, get_tool
from carina.models.run import ToolRun, run_tool

__all__ = [
    "STAGES",
    "Registry",
    "Runner",
    "SegmentationResult",
    "Timings",
    "ToolRun",
    "ToolSpec",
    "default_registry",
    "get_tool",
    "run_tool",
]
