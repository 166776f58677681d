"""nnU-Net v2 trained-model folders run by nnU-Net's own predictor.

A trained-model folder is what ``nnUNetv2_train`` leaves under
``<nnUNet_results>/DatasetXXX_Name/<Trainer>__<Plans>__<configuration>``: ``dataset.json``,
``plans.json`` and ``fold_N/checkpoint_final.pth`` (or ``fold_all``). :func:`spec_from_nnunet`
derives a :class:`~carina.models.spec.ModelSpec` (format ``nnunet``) from the two JSON files;
:class:`NnUNetRunner` runs the folder with
``nnunetv2.inference.predict_from_raw_data.nnUNetPredictor``
(``initialize_from_trained_model_folder``, then the three steps of its
``predict_single_npy_array``: nnU-Net's preprocessing, its sliding-window prediction with its
test-time mirroring, and its resampling back to the input shape), so the network sees exactly
what ``nnUNetv2_predict`` would give it.

The handover is the point where Carina could go wrong, so it follows nnU-Net's reader, the
``image_reader_writer`` named in ``plans.json``:

- ``SimpleITKIO`` and ``NibabelIO`` present a NIfTI ``(i, j, k)`` grid as the array
  ``[k, j, i]`` (SimpleITK's ``GetArrayFromImage`` order; nibabel's array transposed) with the
  spacing reversed, ``(s_k, s_j, s_i)``, and do not reorient. Carina's :class:`Volume` array is
  ``(i, j, k)`` with its LPS affine (a NIfTI written from it keeps that voxel order), so the
  runner hands over ``array.transpose(2, 1, 0)[None]`` as float32 and ``spacing[::-1]``;
- ``SimpleITKIOWithReorient`` and ``NibabelIOWithReorient`` first reorient to RAS (axes
  increasing towards right, anterior, superior): the runner hands over ``volume.reorient("RAS")``
  the same way and turns the labels back afterwards.

The labels come back as nnU-Net's array ``[k, j, i]`` on the input grid; transposed, they are a
:class:`LabelMap` on the input :class:`Geometry` with the labels of ``dataset.json`` (names;
colours from Carina's defaults). Region-based models write ``regions_class_order`` values, named
after their regions in ``dataset.json`` order. Cascades (a configuration with a previous stage,
``3d_cascade_fullres``) and models needing more than one input channel are refused with a
:class:`ModelError`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from carina.core.errors import LabelError, ModelError
from carina.core.labels import Label, LabelSet, default_color, label_dtype
from carina.core.volume import LabelMap, Volume
from carina.imaging.resample import resample_to_geometry
from carina.models.base import SegmentationResult, Timings
from carina.models.spec import ModelSpec

log = logging.getLogger(__name__)

DATASET_JSON = "dataset.json"
PLANS_JSON = "plans.json"
CHECKPOINT = "checkpoint_final.pth"
#: nnU-Net readers whose array Carina reproduces, and whether they reorient to RAS first.
READERS = {
    "SimpleITKIO": False,
    "NibabelIO": False,
    "SimpleITKIOWithReorient": True,
    "NibabelIOWithReorient": True,
}
NNUNET_CITATION = (
    "Isensee F, Jaeger PF, Kohl SAA, Petersen J, Maier-Hein KH. nnU-Net: a self-configuring "
    "method for deep learning-based biomedical image segmentation. Nat Methods 18, 203-211 (2021)"
)
_FOLDER_NAME = re.compile(r"^(?P<trainer>.+?)__(?P<plans>.+?)__(?P<configuration>.+)$")
_MODALITY = {"CT": "CT", "PT": "PT", "PET": "PT", "MR": "MR", "MRI": "MR"}
_MR_NAMES = ("T1", "T2", "FLAIR", "ADC", "DWI", "PD", "SWI", "BOLD")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelError(
            f"{path.parent} is not an nnU-Net trained-model folder: {path.name} is missing"
        ) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def available_folds(folder: str | Path, checkpoint: str = CHECKPOINT) -> list[int | str]:
    """The folds of a trained-model folder holding ``checkpoint``: ``fold_0``... by number, or
    ``["all"]`` when only ``fold_all`` has one (nnU-Net's own default ignores ``fold_all``)."""
    root = Path(folder)
    numbered: list[int] = []
    for sub in root.glob("fold_*"):
        suffix = sub.name[len("fold_") :]
        if suffix.isdigit() and (sub / checkpoint).is_file():
            numbered.append(int(suffix))
    if numbered:
        return [*sorted(numbered)]
    if (root / "fold_all" / checkpoint).is_file():
        return ["all"]
    return []


def modalities_from_channels(channel_names: Mapping[str, Any]) -> tuple[str, ...]:
    """DICOM modalities of a model's input channels (``channel_names`` of ``dataset.json``:
    ``CT``, ``T2``, ``ADC``... or a normalisation name), unique, in channel order."""
    found: list[str] = []
    for key in sorted(channel_names, key=lambda k: int(k)):
        name = str(channel_names[key]).strip().upper()
        modality = _MODALITY.get(name)
        if modality is None and name.startswith(_MR_NAMES):
            modality = "MR"
        if modality and modality not in found:
            found.append(modality)
    return tuple(found)


def labels_from_dataset(dataset: Mapping[str, Any]) -> LabelSet:
    """Carina labels of an nnU-Net ``dataset.json`` (``{"background": 0, "name": value}``;
    the ``ignore`` label is left out; region-based labels ``{"name": [values]}`` take their
    values from ``regions_class_order``)."""
    raw = dataset.get("labels")
    if not isinstance(raw, Mapping) or not raw:
        raise ModelError("dataset.json: no labels")
    named = [(str(k), v) for k, v in raw.items() if str(k) not in ("background", "ignore")]
    regions = any(isinstance(v, list | tuple) for _, v in named)
    out: list[Label] = []
    try:
        if regions:
            order = dataset.get("regions_class_order")
            if not isinstance(order, list) or len(order) != len(named):
                raise ModelError(
                    "dataset.json: region-based labels need a regions_class_order with one value "
                    "per region"
                )
            for (name, _), value in zip(named, order, strict=True):
                out.append(Label(int(value), name, default_color(int(value))))
        else:
            for name, value in named:
                out.append(Label(int(value), name, default_color(int(value))))
        return LabelSet(out)
    except ModelError:
        raise
    except (TypeError, ValueError, LabelError) as exc:
        raise ModelError(f"dataset.json: invalid labels: {exc}") from exc


def _roi(patch: Any) -> tuple[int, int, int]:
    """nnU-Net's patch size ``[k, j, i]`` (or ``[j, i]`` for 2-D) along (i, j, k)."""
    if isinstance(patch, list) and len(patch) == 3:
        return (int(patch[2]), int(patch[1]), int(patch[0]))
    if isinstance(patch, list) and len(patch) == 2:
        return (int(patch[1]), int(patch[0]), 1)
    return (1, 1, 1)


def spec_from_nnunet(
    folder: str | Path, model_id: str | None = None, *, checkpoint: str = CHECKPOINT
) -> ModelSpec:
    """A :class:`ModelSpec` (format ``nnunet``) for an nnU-Net trained-model folder."""
    root = Path(folder)
    dataset = _read_json(root / DATASET_JSON)
    plans = _read_json(root / PLANS_JSON)
    folds = available_folds(root, checkpoint)
    if not folds:
        raise ModelError(f"{root}: no fold_N/{checkpoint} (the model has not been trained)")
    match = _FOLDER_NAME.match(root.name)
    configurations = plans.get("configurations") or {}
    configuration = match.group("configuration") if match else ""
    if configuration not in configurations:
        if len(configurations) != 1:
            raise ModelError(
                f"{root.name}: cannot tell the configuration (expected "
                "<Trainer>__<Plans>__<configuration>)"
            )
        configuration = next(iter(configurations))
    trainer = match.group("trainer") if match else ""
    config = dict(configurations[configuration])
    parent = configurations.get(config.get("inherits_from", ""), {})
    spacing = config.get("spacing", parent.get("spacing"))
    patch = config.get("patch_size", parent.get("patch_size"))
    channels = dataset.get("channel_names") or dataset.get("modality") or {}
    dataset_name = str(plans.get("dataset_name", root.parent.name))
    name = model_id or f"{dataset_name}-{configuration}".lower()
    citation = "; ".join(
        str(dataset[k]) for k in ("citation", "reference") if str(dataset.get(k, "")).strip()
    )
    return ModelSpec(
        id=re.sub(r"[^a-z0-9._-]", "-", name.lower())[:64],
        version=str(dataset.get("release", dataset.get("version", "1"))),
        task=str(dataset.get("description") or f"nnU-Net {configuration} model {dataset_name}"),
        modalities=modalities_from_channels(channels),
        labels=labels_from_dataset(dataset),
        method=f"nnU-Net v2 ({trainer or 'trainer'}, {plans.get('plans_name', 'plans')}, "
        f"{configuration}), run by nnU-Net's predictor",
        citation="; ".join(c for c in (citation, NNUNET_CITATION) if c),
        requires_weights=True,
        framework="nnunetv2",
        format="nnunet",
        weights=".",
        # nnU-Net's spacing is in its [k, j, i] order; Carina's specs list it along (i, j, k)
        spacing=(
            (float(spacing[2]), float(spacing[1]), float(spacing[0]))
            if isinstance(spacing, list) and len(spacing) == 3
            else None
        ),
        orientation="",
        roi_size=_roi(patch),
        overlap=0.5,
        licence=str(dataset.get("licence", dataset.get("license", ""))),
        options={
            "configuration": configuration,
            "trainer": trainer,
            "plans": str(plans.get("plans_name", "")),
            "folds": folds,
            "checkpoint": checkpoint,
            "channels": [str(channels[k]) for k in sorted(channels, key=lambda k: int(k))],
            "image_reader_writer": str(plans.get("image_reader_writer", "SimpleITKIO")),
        },
    )


def _select_device(device: str | None) -> Any:
    import torch

    if device in (None, "", "cpu"):
        return torch.device("cpu")
    if str(device).startswith("cuda"):
        if torch.cuda.is_available():
            return torch.device(str(device))
        log.warning("CUDA asked for but not available; nnU-Net runs on the CPU")
        return torch.device("cpu")
    raise ModelError(f"unknown device {device!r} (cpu or cuda)")


class NnUNetRunner:
    """An nnU-Net v2 trained-model folder run through ``nnUNetPredictor`` (module docstring).

    ``folds`` defaults to the spec's ``options["folds"]``, else every ``fold_N`` holding
    ``checkpoint`` (else ``fold_all``); ``checkpoint``, ``use_mirroring`` and ``tile_step_size``
    default to the spec's options, else to the predictor's (``checkpoint_final.pth``, mirroring
    on, 0.5); ``device`` is ``cpu`` unless ``cuda`` is asked for and available.
    """

    def __init__(
        self,
        spec: ModelSpec,
        folder: str | Path,
        *,
        device: str | None = None,
        folds: Sequence[int | str] | None = None,
        checkpoint: str | None = None,
        use_mirroring: bool | None = None,
        tile_step_size: float | None = None,
    ) -> None:
        options = dict(spec.options or {})
        self._spec = spec
        self.root = Path(folder) / (spec.weights or ".")
        self.device = device
        self.checkpoint = str(checkpoint or options.get("checkpoint") or CHECKPOINT)
        chosen = folds if folds is not None else options.get("folds")
        self.folds = list(chosen) if chosen is not None else None
        self.use_mirroring = bool(
            options.get("use_mirroring", True) if use_mirroring is None else use_mirroring
        )
        self.tile_step_size = float(
            options.get("tile_step_size", 0.5) if tile_step_size is None else tile_step_size
        )
        if not 0.0 < self.tile_step_size <= 1.0:
            raise ModelError(f"tile_step_size must be in (0, 1], got {self.tile_step_size}")
        self._predictor: Any = None
        self._reorient = False
        self._channels = 1
        self._channel_names: list[str] = []
        self._inspected = False

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    def _check_folder(self) -> list[int | str]:
        for name in (DATASET_JSON, PLANS_JSON):
            if not (self.root / name).is_file():
                raise ModelError(
                    f"model {self.spec.id!r}: {self.root} is not an nnU-Net trained-model "
                    f"folder ({name} is missing)"
                )
        folds = (
            self.folds if self.folds is not None else available_folds(self.root, self.checkpoint)
        )
        if not folds:
            raise ModelError(f"model {self.spec.id!r}: no fold_N/{self.checkpoint} in {self.root}")
        for fold in folds:
            path = self.root / f"fold_{fold}" / self.checkpoint
            if not path.is_file():
                raise ModelError(f"model {self.spec.id!r}: {path} is missing")
        return list(folds)

    def _inspect(self) -> list[int | str]:
        """Check the folder; note nnU-Net's reader and the number of input channels."""
        folds = self._check_folder()
        plans = _read_json(self.root / PLANS_JSON)
        dataset = _read_json(self.root / DATASET_JSON)
        reader = str(plans.get("image_reader_writer", "SimpleITKIO"))
        if reader not in READERS:
            raise ModelError(
                f"model {self.spec.id!r}: nnU-Net reader {reader!r} is not supported "
                f"({', '.join(READERS)})"
            )
        self._reorient = READERS[reader]
        channels = dataset.get("channel_names") or dataset.get("modality") or {}
        self._channels = max(1, len(channels))
        self._channel_names = [str(channels[k]) for k in sorted(channels, key=lambda k: int(k))]
        self._inspected = True
        return folds

    def load(self, device: str | None = None) -> None:
        """Build nnU-Net's predictor from the folder (once)."""
        folds = self._inspect()
        try:
            import torch  # noqa: F401
            from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        except ImportError as exc:
            raise ModelError(
                f"model {self.spec.id!r} needs nnU-Net v2 (pip install 'carina[ai]'): {exc}"
            ) from exc
        dev = _select_device(device if device is not None else self.device)
        chatter = io.StringIO()
        try:
            with contextlib.redirect_stdout(chatter):
                predictor = nnUNetPredictor(
                    tile_step_size=self.tile_step_size,
                    use_gaussian=True,
                    use_mirroring=self.use_mirroring,
                    perform_everything_on_device=dev.type == "cuda",
                    device=dev,
                    verbose=False,
                    verbose_preprocessing=False,
                    allow_tqdm=False,
                )
                predictor.initialize_from_trained_model_folder(
                    str(self.root), use_folds=tuple(folds), checkpoint_name=self.checkpoint
                )
        except Exception as exc:
            raise ModelError(
                f"model {self.spec.id!r}: nnU-Net cannot load {self.root}: {exc}"
            ) from exc
        if predictor.configuration_manager.previous_stage_name is not None:
            raise ModelError(
                f"model {self.spec.id!r}: cascade configuration "
                f"({predictor.configuration_manager.previous_stage_name} first) is not supported"
            )
        log.debug("nnU-Net predictor: %s", chatter.getvalue().strip())
        self._predictor = predictor

    def handover(self, volume: Volume) -> tuple[Volume, npt.NDArray[np.float32], dict[str, Any]]:
        """The grid nnU-Net's reader would see, its array ``[c, k, j, i]`` and properties."""
        if not self._inspected:
            self._inspect()
        grid = volume.reorient("RAS") if self._reorient else volume
        g = grid.geometry
        array = np.asarray(grid.array, dtype=np.float32).transpose(2, 1, 0)[None]
        spacing = g.spacing
        properties = {
            "sitk_stuff": {
                "spacing": spacing,
                "origin": g.origin,
                "direction": tuple(float(x) for x in g.direction.ravel()),
            },
            "spacing": [abs(float(s)) for s in spacing[::-1]],
        }
        return grid, np.ascontiguousarray(array), properties

    def run(self, volume: Volume, **params: Any) -> SegmentationResult:
        import torch
        from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy
        from nnunetv2.inference.export_prediction import (
            convert_predicted_logits_to_segmentation_with_correct_shape,
        )

        if params:
            raise ModelError(f"model {self.spec.id!r} takes no parameters, got {sorted(params)}")
        if not self._inspected:
            self._inspect()
        if volume.channels != 1:
            raise ModelError(f"model {self.spec.id!r} needs a single-channel image")
        if self._channels != 1:
            raise ModelError(
                f"model {self.spec.id!r} needs {self._channels} input channels "
                f"({', '.join(self._channel_names)}); one image was given"
            )
        if self._predictor is None:
            self.load(self.device)
        p = self._predictor
        t = Timings()
        with t.stage("preprocess"):
            grid, array, properties = self.handover(volume)
            adapter = PreprocessAdapterFromNpy(
                [array],
                [None],
                [properties],
                [None],
                p.plans_manager,
                p.dataset_json,
                p.configuration_manager,
                num_threads_in_multithreaded=1,
                verbose=False,
            )
            item = next(adapter)
        with t.stage("infer"):
            logits = p.predict_logits_from_preprocessed_data(item["data"]).cpu()
        with t.stage("postprocess"):
            seg = convert_predicted_logits_to_segmentation_with_correct_shape(
                logits,
                p.plans_manager,
                p.configuration_manager,
                p.label_manager,
                item["data_properties"],
                return_probabilities=False,
            )
            if isinstance(seg, torch.Tensor):
                seg = seg.numpy()
            out = np.ascontiguousarray(np.asarray(seg).transpose(2, 1, 0))
            out = out.astype(label_dtype(max(self.spec.labels.values, default=0)))
            if out.shape != grid.shape:
                raise ModelError(
                    f"model {self.spec.id!r}: nnU-Net returned shape {out.shape}, "
                    f"expected {grid.shape}"
                )
            out[~np.isin(out, (0, *self.spec.labels.values))] = 0
            labels: Volume = LabelMap(out, grid.geometry, labels=self.spec.labels)
            if grid is not volume:
                labels = labels.reorient(volume.geometry.orientation)
                if not labels.geometry.same_grid(volume.geometry, atol=1e-6):
                    labels = resample_to_geometry(labels, volume.geometry, interpolator="nearest")
            result = LabelMap(
                np.asarray(labels.array),
                volume.geometry,
                labels=self.spec.labels,
                description=f"{self.spec.id} {self.spec.version}",
            )
        return SegmentationResult(result, t.seconds, self.spec.id, self.spec.version)
