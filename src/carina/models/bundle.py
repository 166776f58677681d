"""MONAI bundles run by Carina: the bundle's own network, transforms and inferer.

A bundle folder holds ``configs/inference.json`` (and ``configs/metadata.json``) and
``models/model.pt``. Carina reads the config as data and builds only the four parts it needs:
``network_def``, ``preprocessing``, ``inferer`` and ``postprocessing``. Within them:

- ``"@id"`` (``::`` or ``#`` for nested keys) refers to another part of the config, resolved
  recursively (cycles are an error);
- ``{"_target_": Name, ...}`` instantiates a class found in MONAI only: a bare name is looked up in
  ``monai.transforms``, ``monai.inferers`` and ``monai.networks.nets``; a dotted name must start
  with ``monai.`` and name a class; ``"_disabled_": true`` drops the item;
- ``"$..."`` Python expressions and ``"%..."`` macros are **refused** in those parts: a config is
  data from somewhere else and is never evaluated. The rest of the config (``device``, ``run``,
  ``evaluator``, handlers...) is what MONAI's own ``monai.bundle run`` uses; Carina ignores it.

The input volume is written to a temporary NIfTI and fed to the bundle's preprocessing (so its
``LoadImaged`` sees what ``monai.bundle run`` would), the weights are loaded with
``torch.load(weights_only=True)``, the inferer runs the network, and the postprocessing runs
without its ``Save*`` transforms. Its ``Invertd`` brings the labels back to the input grid.
"""

from __future__ import annotations

import importlib
import json
import logging
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from carina.core.errors import ModelError
from carina.core.geometry import Geometry
from carina.core.labels import Label, LabelSet
from carina.core.volume import LabelMap, Volume
from carina.imaging.formats import write_image
from carina.imaging.resample import resample_to_geometry
from carina.models.base import SegmentationResult, Timings
from carina.models.spec import ModelSpec

log = logging.getLogger(__name__)

CONFIG = "configs/inference.json"
METADATA = "configs/metadata.json"
PARTS = ("network_def", "preprocessing", "inferer", "postprocessing")
_SEARCH = ("monai.transforms", "monai.inferers", "monai.networks.nets")
_SPECIAL = ("_target_", "_disabled_", "_desc_", "_requires_", "_mode_")


def _locate(name: str) -> type:
    if not isinstance(name, str) or not name:
        raise ModelError(f"bundle: invalid _target_ {name!r}")
    if "." in name:
        if not name.startswith("monai."):
            raise ModelError(f"bundle: _target_ {name!r} is outside MONAI; refused")
        module_name, _, attr = name.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module_name), attr, None)
        except ImportError:
            obj = None
    else:
        obj = None
        for module_name in _SEARCH:
            obj = getattr(importlib.import_module(module_name), name, None)
            if obj is not None:
                break
    if not isinstance(obj, type):
        raise ModelError(f"bundle: _target_ {name!r} is not a MONAI class")
    return obj


class ConfigResolver:
    """Builds parts of a bundle config without evaluating any expression (see the module doc)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self._done: dict[str, Any] = {}
        self._active: list[str] = []

    def _lookup(self, ref: str) -> Any:
        node: Any = self.config
        for key in ref.replace("#", "::").split("::"):
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise ModelError(f"bundle: reference @{ref} not found")
        return node

    def get(self, ref: str) -> Any:
        if ref in self._done:
            return self._done[ref]
        if ref in self._active:
            raise ModelError(f"bundle: circular reference {' -> '.join([*self._active, ref])}")
        self._active.append(ref)
        try:
            value = self._build(self._lookup(ref), ref)
        finally:
            self._active.pop()
        self._done[ref] = value
        return value

    def _build(self, node: Any, where: str) -> Any:
        if isinstance(node, str):
            if node.startswith("@"):
                return self.get(node[1:])
            if node.startswith("$"):
                raise ModelError(
                    f"bundle: {where} holds a Python expression ({node[:40]!r}); Carina does "
                    "not evaluate config expressions"
                )
            if node.startswith("%"):
                raise ModelError(f"bundle: {where} holds a macro ({node[:40]!r}); refused")
            return node
        if isinstance(node, list):
            built = [
                self._build(item, f"{where}::{i}")
                for i, item in enumerate(node)
                if not (isinstance(item, Mapping) and item.get("_disabled_") is True)
            ]
            return built
        if isinstance(node, Mapping):
            if node.get("_mode_", "default") != "default":
                raise ModelError(f"bundle: {where}: _mode_ {node['_mode_']!r} refused")
            args = {
                k: self._build(v, f"{where}::{k}") for k, v in node.items() if k not in _SPECIAL
            }
            if "_target_" not in node:
                return args
            cls = _locate(node["_target_"])
            try:
                return cls(**args)
            except Exception as exc:
                raise ModelError(f"bundle: cannot build {where} ({cls.__name__}): {exc}") from exc
        return node


def read_config(root: str | Path) -> dict[str, Any]:
    path = Path(root) / CONFIG
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read bundle config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: a bundle config is a JSON object")
    for part in PARTS:
        if part not in data:
            raise ModelError(f"{path}: no {part!r} in the bundle config")
    return data


def spec_from_bundle(root: str | Path, model_id: str | None = None) -> ModelSpec:
    """A :class:`ModelSpec` from a bundle's ``metadata.json`` (labels from the output channels)."""
    path = Path(root) / METADATA
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read bundle metadata {path}: {exc}") from exc
    outputs = meta.get("network_data_format", {}).get("outputs", {})
    channels: Mapping[str, Any] = {}
    for out in outputs.values():
        channels = out.get("channel_def", {}) or {}
        break
    labels = [Label(int(k), str(v)) for k, v in channels.items() if str(k).isdigit() and int(k) > 0]
    if not labels:
        raise ModelError(f"{path}: no labelled output channels (network_data_format.outputs)")
    name = str(model_id or meta.get("name", Path(root).name)).strip().lower().replace(" ", "-")
    modality = ""
    for inp in meta.get("network_data_format", {}).get("inputs", {}).values():
        modality = str(inp.get("modality", ""))
        break
    return ModelSpec(
        id=name,
        version=str(meta.get("version", "0")),
        task=str(meta.get("task", "segmentation")),
        modalities=(modality.upper(),) if modality else (),
        labels=LabelSet(labels),
        method=str(meta.get("description", "MONAI bundle")),
        citation=str(meta.get("references", meta.get("authors", ""))),
        requires_weights=True,
        framework="monai-bundle",
        format="monai-bundle",
        weights=".",
        licence=str(meta.get("license", "")),
    )


class BundleRunner:
    """A MONAI bundle folder run through its own config (see the module docstring)."""

    def __init__(self, spec: ModelSpec, folder: str | Path, *, device: str | None = None) -> None:
        self._spec = spec
        self.root = Path(folder) / (spec.weights or ".")
        self.device = device
        self._parts: dict[str, Any] | None = None

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    def load(self, device: str | None = None) -> None:
        import torch
        from monai.transforms.compose import Compose
        from monai.transforms.io.array import SaveImage
        from monai.transforms.io.dictionary import SaveImaged

        config = read_config(self.root)
        resolver = ConfigResolver(config)
        with warnings.catch_warnings(record=True) as caught:
            # MONAI's image loader reports optional decoders missing here; not the bundle's fault
            warnings.simplefilter("always")
            parts = {part: resolver.get(part) for part in PARTS}
        for w in caught:
            log.info("bundle %s: %s", self.spec.id, w.message)
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        weights = self.root / "models" / "model.pt"
        try:
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelError(f"bundle {self.spec.id!r}: cannot load {weights}: {exc}") from exc
        if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
            state = state["model"]
        net = parts["network_def"]
        try:
            net.load_state_dict(state)
        except Exception as exc:
            raise ModelError(f"bundle {self.spec.id!r}: weights do not fit: {exc}") from exc
        parts["network"] = net.to(dev).eval()
        post = parts["postprocessing"]
        kept = [
            t for t in getattr(post, "transforms", ()) if not isinstance(t, SaveImaged | SaveImage)
        ]
        parts["postprocessing"] = Compose(kept)
        parts["device"] = dev
        self._parts = parts

    def run(self, volume: Volume, **params: Any) -> SegmentationResult:
        import torch

        if params:
            raise ModelError(f"model {self.spec.id!r} takes no parameters, got {sorted(params)}")
        if self._parts is None:
            self.load(self.device)
        parts = self._parts
        assert parts is not None
        t = Timings()
        with tempfile.TemporaryDirectory(prefix="carina-bundle-") as tmp:
            with t.stage("preprocess"):
                src = write_image(volume, Path(tmp) / "image.nii.gz")
                item = parts["preprocessing"]({"image": str(src)})
            with t.stage("infer"), torch.inference_mode():
                image = item["image"]
                batch = image[None].to(parts["device"])
                pred = parts["inferer"](batch, parts["network"])[0].to("cpu")
            with t.stage("postprocess"):
                out = parts["postprocessing"]({"image": image, "pred": pred})
                labels = out["pred"]
                array = np.asarray(labels.detach().cpu().numpy())[0].astype(np.uint8)
                affine = np.asarray(labels.affine.detach().cpu().numpy(), dtype=np.float64)
                geometry = Geometry.from_ras_affine(affine, array.shape)
                known = np.isin(array, (0, *self.spec.labels.values))
                array[~known] = 0
                lm = LabelMap(array, geometry, labels=self.spec.labels)
                back = resample_to_geometry(lm, volume.geometry, interpolator="nearest")
                result = LabelMap(
                    back.array,
                    volume.geometry,
                    labels=self.spec.labels,
                    description=f"{self.spec.id} {self.spec.version}",
                )
        return SegmentationResult(result, t.seconds, self.spec.id, self.spec.version)
