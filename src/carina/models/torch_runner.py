"""PyTorch and ONNX Runtime runners: MONAI sliding-window inference over the template runner.

Weights are a TorchScript file (``format="torchscript"``), a state dict with a MONAI network
declaration (``format="torch"``: ``network = {"name": "UNet", "args": {...}}``, the class taken
from :mod:`monai.networks.nets` only), or an ONNX file (``format="onnx"``, run by ONNX Runtime).
All use :func:`monai.inferers.sliding_window_inference` with the spec's patch and overlap, so
the three give the same labels for the same network. On CUDA the PyTorch runners use automatic
mixed precision. torch, monai and onnxruntime are imported only when a model is loaded (the
``ai`` extra).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from carina.core.errors import ModelError
from carina.models.spec import ModelSpec
from carina.models.template import FloatArray, ModelRunner


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ModelError("PyTorch models need the 'ai' extra (torch, monai)") from exc
    return torch


def build_network(declaration: dict[str, Any]) -> Any:
    """A MONAI network from ``{"name": "UNet", "args": {...}}`` (``monai.networks.nets`` only)."""
    from monai.networks import nets

    name = str(declaration.get("name", ""))
    cls = getattr(nets, name, None)
    if not name.isidentifier() or cls is None or not isinstance(cls, type):
        raise ModelError(f"unknown MONAI network {name!r} (monai.networks.nets)")
    args = declaration.get("args") or {}
    if not isinstance(args, dict):
        raise ModelError("network args must be a JSON object")
    try:
        return cls(**args)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"cannot build {name}: {exc}") from exc


def sliding_window_labels(
    image: FloatArray,
    predictor: Callable[[Any], Any],
    spec: ModelSpec,
    *,
    device: str = "cpu",
    amp: bool = False,
) -> npt.NDArray[np.uint8]:
    """Argmax labels of ``predictor`` over ``image`` by MONAI sliding-window inference."""
    torch = _torch()
    from monai.inferers.utils import sliding_window_inference

    x = torch.from_numpy(np.ascontiguousarray(image))[None, None].to(device)
    with torch.inference_mode():
        if amp:
            with torch.autocast(device_type="cuda", dtype=torch.float16):
                logits = sliding_window_inference(
                    x, spec.roi_size, 1, predictor, overlap=spec.overlap, mode="gaussian"
                )
        else:
            logits = sliding_window_inference(
                x, spec.roi_size, 1, predictor, overlap=spec.overlap, mode="gaussian"
            )
        labels = torch.argmax(torch.as_tensor(logits).float(), dim=1)[0]
    return np.asarray(labels.to("cpu").numpy(), dtype=np.uint8)


class TorchRunner(ModelRunner):
    """A TorchScript file or a state dict + MONAI network declaration, on CPU or CUDA."""

    def __init__(self, spec: ModelSpec, folder: str | Path, *, device: str | None = None) -> None:
        super().__init__(spec, device=device)
        self.folder = Path(folder)
        self.net: Any = None
        self._device = "cpu"

    def load(self, device: str | None = None) -> None:
        torch = _torch()
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        path = self.folder / self.spec.weights
        if not path.is_file():
            raise ModelError(f"model {self.spec.id!r}: weights {path} not found")
        try:
            if self.spec.format == "torchscript":
                with warnings.catch_warnings():
                    # deprecated in favour of torch.export, but still what models ship as
                    warnings.simplefilter("ignore", DeprecationWarning)
                    net = torch.jit.load(str(path), map_location=dev)
            else:
                if self.spec.network is None:
                    raise ModelError(f"model {self.spec.id!r}: a state dict needs a network")
                net = build_network(self.spec.network)
                state = torch.load(str(path), map_location="cpu", weights_only=True)
                net.load_state_dict(state)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"model {self.spec.id!r}: cannot load {path.name}: {exc}") from exc
        self.net = net.to(dev).eval()
        self._device = dev

    def infer(self, image: FloatArray) -> npt.NDArray[np.uint8]:
        return sliding_window_labels(
            image, self.net, self.spec, device=self._device, amp=self._device.startswith("cuda")
        )


class OnnxRunner(ModelRunner):
    """An ONNX file run by ONNX Runtime (CUDA provider when present, else CPU)."""

    def __init__(self, spec: ModelSpec, folder: str | Path, *, device: str | None = None) -> None:
        super().__init__(spec, device=device)
        self.folder = Path(folder)
        self.session: Any = None

    def load(self, device: str | None = None) -> None:
        try:
            import onnxruntime as ort  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ModelError("ONNX models need onnxruntime (the 'ai' extra)") from exc
        path = self.folder / self.spec.weights
        if not path.is_file():
            raise ModelError(f"model {self.spec.id!r}: weights {path} not found")
        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:
            raise ModelError(f"model {self.spec.id!r}: cannot load {path.name}: {exc}") from exc

    def infer(self, image: FloatArray) -> npt.NDArray[np.uint8]:
        torch = _torch()
        session = self.session
        name = session.get_inputs()[0].name

        def predictor(x: Any) -> Any:
            out = session.run(None, {name: x.numpy().astype(np.float32)})[0]
            return torch.from_numpy(out)

        return sliding_window_labels(image, predictor, self.spec)
