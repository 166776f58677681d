"""Segmentation tools and models behind one contract.

:class:`ToolSpec` describes a tool, a :class:`Runner` runs it on a :class:`~carina.core.Volume` and
returns a :class:`SegmentationResult` (a label map on the input geometry plus per-stage timings).
The built-in tools need no weights (:mod:`carina.models.tools`); interactive region growing is in
:mod:`carina.models.interactive`. Trained models are a :class:`ModelSpec` run by a
:class:`ModelRunner` (PyTorch, TorchScript, ONNX Runtime: :mod:`carina.models.torch_runner`;
MONAI bundles: :mod:`carina.models.bundle`; the installed-models folder:
:mod:`carina.models.installed`); interactive models, which also take the user's clicks, are run
by :mod:`carina.models.click_guided`. Depends on core, imaging and dicom only (torch, monai and
onnxruntime are imported when a model loads).
"""

from carina.models.base import STAGES, Runner, SegmentationResult, Timings, ToolSpec
from carina.models.registry import Registry, default_registry, get_tool
from carina.models.run import ToolRun, run_tool
from carina.models.spec import Intensity, ModelSpec
from carina.models.template import ModelRunner

__all__ = [
    "STAGES",
    "Intensity",
    "ModelRunner",
    "ModelSpec",
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
