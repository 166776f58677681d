"""The installed-models directory: ``<data_dir>/models/<id>/`` holding a ``model.json`` spec.

A model folder holds ``model.json`` (a :class:`~carina.models.spec.ModelSpec`) and its weights
(a state dict, TorchScript or ONNX file, a MONAI bundle or an nnU-Net v2 trained-model folder;
a TotalSegmentator task's folder holds only its ``model.json``, the weights staying where
TotalSegmentator keeps them, see :mod:`carina.models.totalseg`).
:func:`add_model` copies a folder in (a bare MONAI bundle gets its ``model.json`` from the
bundle's metadata, an nnU-Net folder from its ``dataset.json`` and ``plans.json``),
:func:`remove_model` deletes one, :func:`installed_models` lists them (:func:`scan_models` also
names the unreadable ones) and :func:`runner_for` builds the runner for a spec's format. Runners
load their weights at first use.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from carina.core.errors import ModelError
from carina.models.base import Runner
from carina.models.spec import SPEC_FILE, ModelSpec

log = logging.getLogger(__name__)

MODELS_DIRNAME = "models"
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def models_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / MODELS_DIRNAME


def check_id(model_id: str) -> str:
    if not _ID.match(model_id):
        raise ModelError(
            f"invalid model id {model_id!r}: lower-case letters, digits, '.', '_' and '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return model_id


def runner_for(spec: ModelSpec, folder: str | Path, device: str | None = None) -> Runner:
    """The runner for ``spec`` (weights under ``folder``), by kind and format."""
    if spec.interactive:
        from carina.models.click_guided import ClickGuidedRunner

        return ClickGuidedRunner(spec, folder, device=device)
    if spec.format in ("torch", "torchscript"):
        from carina.models.torch_runner import TorchRunner

        return TorchRunner(spec, folder, device=device)
    if spec.format == "onnx":
        from carina.models.torch_runner import OnnxRunner

        return OnnxRunner(spec, folder, device=device)
    if spec.format == "monai-bundle":
        from carina.models.bundle import BundleRunner

        return BundleRunner(spec, folder, device=device)
    if spec.format == "nnunet":
        from carina.models.nnunet import NnUNetRunner

        return NnUNetRunner(spec, folder, device=device)
    if spec.format == "totalsegmentator":
        from carina.models.totalseg import TotalSegmentatorRunner

        return TotalSegmentatorRunner(spec, folder, device=device)
    raise ModelError(f"no runner for format {spec.format!r}")  # pragma: no cover


def scan_models(
    directory: str | Path,
) -> tuple[list[tuple[ModelSpec, Path]], list[tuple[Path, str]]]:
    """The models under ``directory``, by id: ``(spec, folder)`` of each readable one, and
    ``(folder, reason)`` of each whose ``model.json`` cannot be read as a spec."""
    root = Path(directory)
    if not root.is_dir():
        return [], []
    found: list[tuple[ModelSpec, Path]] = []
    broken: list[tuple[Path, str]] = []
    for folder in sorted(p for p in root.iterdir() if (p / SPEC_FILE).is_file()):
        try:
            found.append((ModelSpec.load(folder), folder))
        except ModelError as exc:
            broken.append((folder, str(exc)))
    return found, broken


def installed_models(directory: str | Path) -> list[tuple[ModelSpec, Path]]:
    """(spec, folder) of every readable model under ``directory``, by id; a folder whose spec
    cannot be read is left out with a warning in the log (:func:`scan_models` names them)."""
    found, broken = scan_models(directory)
    for folder, reason in broken:
        log.warning("model folder %s left out: %s", folder, reason)
    return found


def load_runner(directory: str | Path, model_id: str, device: str | None = None) -> Runner:
    folder = Path(directory) / check_id(model_id)
    if not (folder / SPEC_FILE).is_file():
        raise ModelError(f"no installed model {model_id!r} in {directory}")
    return runner_for(ModelSpec.load(folder), folder, device)


def add_model(
    directory: str | Path, source: str | Path, *, model_id: str | None = None
) -> ModelSpec:
    """Copy the model folder ``source`` (``model.json`` + weights, or a MONAI bundle) in."""
    src = Path(source)
    if not src.is_dir():
        raise ModelError(f"{src} is not a folder (a model folder or a MONAI bundle)")
    if (src / SPEC_FILE).is_file():
        spec = ModelSpec.load(src)
    elif (src / "configs" / "metadata.json").is_file():
        from carina.models.bundle import read_config, spec_from_bundle

        read_config(src)
        spec = spec_from_bundle(src, model_id)
    elif (src / "plans.json").is_file() or (src / "dataset.json").is_file():
        from carina.models.nnunet import spec_from_nnunet

        spec = spec_from_nnunet(src, model_id)
    else:
        raise ModelError(
            f"{src} has neither {SPEC_FILE}, configs/metadata.json (MONAI bundle) nor "
            "dataset.json and plans.json (nnU-Net trained-model folder)"
        )
    if model_id is not None and spec.id != model_id:
        from dataclasses import replace

        spec = replace(spec, id=model_id)
    check_id(spec.id)
    target = Path(directory) / spec.id
    if target.exists():
        raise ModelError(f"a model {spec.id!r} is already installed (remove it first)")
    weights = src / spec.weights if spec.weights else None
    if weights is None or not weights.exists():
        raise ModelError(f"model {spec.id!r}: weights {spec.weights!r} not found in {src}")
    Path(directory).mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, target, symlinks=False)
    spec.save(target)
    return spec


def remove_model(directory: str | Path, model_id: str) -> None:
    folder = Path(directory) / check_id(model_id)
    if not (folder / SPEC_FILE).is_file():
        raise ModelError(f"no installed model {model_id!r} in {directory}")
    shutil.rmtree(folder)
