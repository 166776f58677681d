"""TotalSegmentator tasks run by TotalSegmentator's own Python API.

A hospital that has ``pip install totalsegmentator`` and the weights of a task installs the task
as a Carina model (:func:`add_totalsegmentator`, ``carina models add --totalsegmentator TASK``):
a folder holding only a ``model.json`` with format ``totalsegmentator`` and options ``task`` and
``fast`` (and, when given, ``weights_dir``); the weights stay where TotalSegmentator keeps them.
:class:`TotalSegmentatorRunner` hands the :class:`Volume` to
``totalsegmentator.python_api.totalsegmentator`` in memory (``output=None``: nothing is written)
and returns its labels as a :class:`LabelMap` named by TotalSegmentator's
``map_to_binary.class_map[task]``. Checked against TotalSegmentator 2.18.

**The handover.** Carina's :class:`Volume` carries an LPS affine over its ``(i, j, k)`` array;
NIfTI is RAS. The runner gives TotalSegmentator the nibabel image that Carina's NIfTI writer
would write (:func:`carina.imaging.to_nifti`: the array as it is, the affine turned to RAS), so
TotalSegmentator sees exactly what its command line reads from that file. TotalSegmentator
reorients to RAS, resamples, predicts and undoes both, and returns an image of the input's shape
and affine; :func:`carina.imaging.from_nifti` turns it back, and the runner checks that the grid
is the input's before it names the labels.

**Weights.** Without a task's weights TotalSegmentator downloads them, which cannot work where
Carina runs offline. Before calling it the runner checks, in the folder TotalSegmentator reads
(``config.get_weights_dir()``: ``$TOTALSEG_WEIGHTS_PATH``, else
``$TOTALSEG_HOME_DIR/nnunet/results``, else ``~/.totalsegmentator/nnunet/results``), every
nnU-Net trained-model folder the task needs: for each dataset id of the task (and of the
cropping model a cropped task runs first) ``<DatasetXXX_name>/<trainer>__<plans>__<model>``
with ``dataset.json``, ``plans.json`` and ``fold_N/checkpoint_final.pth``, the names taken from
TotalSegmentator's ``map_tasks_config``. A missing one is a :class:`ModelError` naming the path
and the ways to install weights (``totalseg_download_weights -t TASK`` where a network is
reachable, ``totalseg_import_weights -i FILE.zip`` from a downloaded file). Licensed tasks need
TotalSegmentator's licence number in its ``config.json`` (checked offline, as it does).

**No network.** TotalSegmentator posts usage statistics after each prediction unless its
``config.json`` (in ``$TOTALSEG_HOME_DIR``, else ``~/.totalsegmentator``) says
``"send_usage_stats": false``. The runner writes that setting (and marks the statistics notice
shown) before every run and refuses to run when the file does not say so afterwards. It passes
no licence number (whose validation is an online call) and never lets weights be downloaded.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from carina.core.errors import ModelError
from carina.core.labels import Label, LabelSet, default_color, label_dtype
from carina.core.volume import LabelMap, Volume
from carina.models.base import SegmentationResult, Timings
from carina.models.spec import ModelSpec

log = logging.getLogger(__name__)

FORMAT = "totalsegmentator"
CHECKPOINT = "checkpoint_final.pth"
CITATION = (
    "Wasserthal J, Breit H-C, Meyer MT, et al. TotalSegmentator: robust segmentation of 104 "
    "anatomic structures in CT images. Radiol Artif Intell 5(5):e230024 (2023)"
)
INSTALL_HINT = (
    "install TotalSegmentator's weights with `totalseg_download_weights -t {task}` where the "
    "network is reachable, or unpack a downloaded weights file with `totalseg_import_weights "
    "-i FILE.zip` (set TOTALSEG_WEIGHTS_PATH or TOTALSEG_HOME_DIR to choose the folder)"
)
#: Environment variables TotalSegmentator reads or sets; saved and restored around a run.
_ENV = (
    "TOTALSEG_WEIGHTS_PATH",
    "TOTALSEG_HOME_DIR",
    "nnUNet_raw",
    "nnUNet_preprocessed",
    "nnUNet_results",
)
#: The cropping models of TotalSegmentator 2.x's ``python_api`` (run first when a task crops):
#: (dataset id, trainer) for CT (6 mm; 3 mm when the task asks for a robust crop), for MR, and
#: for a crop to the body.
_CROP_CT = (298, "nnUNetTrainer_4000epochs_NoMirroring")
_CROP_CT_ROBUST = (297, "nnUNetTrainer_4000epochs_NoMirroring")
_CROP_MR = (852, "nnUNetTrainer_2000epochs_NoMirroring")
_CROP_BODY = (300, "nnUNetTrainer")
#: ``vertebrae_pp_refined`` also runs the vertebral-body model.
_REFINED = (305, "nnUNetTrainer_DASegOrd0")


@dataclass(frozen=True)
class TrainedFolder:
    """One nnU-Net trained-model folder a TotalSegmentator task reads."""

    dataset_id: int
    folder: Path
    folds: tuple[int | str, ...]

    def missing(self) -> list[Path]:
        out = [
            path
            for path in (self.folder / "dataset.json", self.folder / "plans.json")
            if not path.is_file()
        ]
        out += [
            self.folder / f"fold_{f}" / CHECKPOINT
            for f in self.folds
            if not (self.folder / f"fold_{f}" / CHECKPOINT).is_file()
        ]
        if not self.folder.is_dir():
            return [self.folder]
        return out


def _import_totalsegmentator() -> Any:
    try:
        return importlib.import_module("totalsegmentator.python_api")
    except ImportError as exc:
        raise ModelError(
            f"TotalSegmentator is not installed (pip install totalsegmentator): {exc}"
        ) from exc


def _modalities(task: str, config: Mapping[str, Any]) -> tuple[str, ...]:
    if task.endswith("_mr") or str(config.get("modality") or "").lower() == "mr":
        return ("MR",)
    return ("CT",)


def task_labels(task: str) -> LabelSet:
    """TotalSegmentator's class names of ``task`` (``map_to_binary.class_map[task]``)."""
    _import_totalsegmentator()
    from totalsegmentator.map_to_binary import class_map

    if task not in class_map:
        raise ModelError(f"TotalSegmentator has no class map for task {task!r}")
    return LabelSet(
        [
            Label(int(value), str(name), default_color(int(value)))
            for value, name in sorted(class_map[task].items())
        ]
    )


def task_config(task: str, fast: bool = False) -> dict[str, Any]:
    """TotalSegmentator's configuration of ``task`` (its ``python_api.get_task_config``)."""
    api = _import_totalsegmentator()
    from totalsegmentator.map_tasks_config import TASK_CONFIGS

    raw = TASK_CONFIGS.get(task)
    if raw is None:
        raise ModelError(f"TotalSegmentator has no task {task!r}")
    if raw.get("commercial"):
        from totalsegmentator.config import has_valid_license_offline

        status, message = has_valid_license_offline()
        if status != "yes":
            raise ModelError(
                f"TotalSegmentator task {task!r} needs a licence (totalseg_set_license): {message}"
            )
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            config: dict[str, Any] = api.get_task_config(
                task, fast=fast, quiet=True, plans="nnUNetPlans"
            )
    except (ValueError, SystemExit) as exc:
        raise ModelError(f"TotalSegmentator task {task!r}: {exc}") from exc
    if not config.get("task_id"):
        raise ModelError(f"TotalSegmentator task {task!r} has no model")
    return config


def weights_dir(override: str | Path | None = None) -> Path:
    """The folder TotalSegmentator reads weights from (``override``: as its
    ``TOTALSEG_WEIGHTS_PATH``)."""
    if override:
        return Path(override)
    _import_totalsegmentator()
    from totalsegmentator.config import get_weights_dir

    return Path(get_weights_dir())


def _dataset_folder(dataset_id: int) -> str:
    from totalsegmentator.map_tasks_config import TASK_ID_WEIGHTS_CONFIGS

    info = TASK_ID_WEIGHTS_CONFIGS.get(dataset_id)
    if info is None:
        raise ModelError(f"TotalSegmentator knows no weights for dataset {dataset_id}")
    name = str(info["foldername"])
    return str(Path(info["rel_path"]) / name) if info.get("rel_path") else name


def required_folders(
    task: str, fast: bool = False, root: str | Path | None = None
) -> list[TrainedFolder]:
    """The nnU-Net trained-model folders TotalSegmentator reads for ``task`` under ``root``
    (default: :func:`weights_dir`), the task's own and its cropping model's."""
    config = task_config(task, fast)
    base = weights_dir(root)
    plans = str(config.get("plans") or "nnUNetPlans")
    model = str(config.get("model") or "3d_fullres")
    folds = tuple(config.get("folds") or (0,))
    ids = config["task_id"] if isinstance(config["task_id"], list) else [config["task_id"]]
    wanted: list[tuple[int, str, str, str, tuple[int | str, ...]]] = [
        (int(i), str(config["trainer"]), plans, model, folds) for i in ids
    ]
    first: list[TrainedFolder] = []
    crop = config.get("crop")
    if (crop is not None or config.get("cascade")) and config.get("crop_model"):
        first = required_folders(str(config["crop_model"]), False, root)
    elif crop is not None or config.get("cascade"):
        robust = bool(config.get("robust_crop"))
        dataset, trainer = (
            _CROP_MR if task.endswith("_mr") else _CROP_CT_ROBUST if robust else _CROP_CT
        )
        if crop is not None and ("body_trunc" in crop or "body_extremities" in crop):
            dataset, trainer = _CROP_BODY
        wanted.insert(0, (dataset, trainer, "nnUNetPlans", "3d_fullres", (0,)))
    if task == "vertebrae_pp_refined":
        wanted.insert(0, (*_REFINED, "nnUNetPlans", "3d_fullres", (0,)))
    return [*first, *_folders(base, wanted)]


def _folders(
    base: Path, wanted: list[tuple[int, str, str, str, tuple[int | str, ...]]]
) -> list[TrainedFolder]:
    return [
        TrainedFolder(d, base / _dataset_folder(d) / f"{trainer}__{plans}__{model}", folds)
        for d, trainer, plans, model, folds in wanted
    ]


def check_weights(task: str, fast: bool = False, root: str | Path | None = None) -> list[Path]:
    """The trained-model folders of ``task``; a :class:`ModelError` names the first missing
    file or folder and how to install the weights."""
    folders = required_folders(task, fast, root)
    for folder in folders:
        missing = folder.missing()
        if missing:
            mode = " (fast)" if fast else ""
            raise ModelError(
                f"TotalSegmentator task {task!r}{mode}: weights not found: {missing[0]} is "
                f"missing; {INSTALL_HINT.format(task=task)}"
            )
    return [f.folder for f in folders]


def spec_for_task(
    task: str,
    *,
    fast: bool = False,
    model_id: str | None = None,
    weights: str | Path | None = None,
) -> ModelSpec:
    """A :class:`ModelSpec` (format ``totalsegmentator``) for a TotalSegmentator task."""
    config = task_config(task, fast)
    labels = task_labels(task)
    from importlib.metadata import PackageNotFoundError, version

    try:
        ts_version = version("TotalSegmentator")
    except PackageNotFoundError:  # pragma: no cover - the import above succeeded
        ts_version = "unknown"
    resample = config.get("resample")
    spacing = (
        (float(resample),) * 3
        if isinstance(resample, int | float)
        else tuple(float(s) for s in resample)
        if isinstance(resample, list | tuple) and len(resample) == 3
        else None
    )
    name = model_id or f"totalseg-{task}{'-fast' if fast else ''}"
    options: dict[str, Any] = {"task": task, "fast": bool(fast)}
    if weights:
        options["weights_dir"] = str(Path(weights).resolve())
    return ModelSpec(
        id=re.sub(r"[^a-z0-9._-]", "-", name.lower())[:64],
        version=ts_version,
        task=f"TotalSegmentator task {task}{' (fast)' if fast else ''}",
        modalities=_modalities(task, config),
        labels=labels,
        method=f"TotalSegmentator {ts_version} ({task}{', fast' if fast else ''}), run by "
        "TotalSegmentator's Python API on nnU-Net",
        citation=CITATION,
        requires_weights=True,
        framework="totalsegmentator",
        format=FORMAT,
        weights="",
        spacing=spacing,  # type: ignore[arg-type]
        orientation="",
        licence="Apache-2.0 (code and open weights; some tasks need a licence)",
        options=options,
    )


def add_totalsegmentator(
    directory: str | Path,
    task: str,
    *,
    fast: bool = False,
    model_id: str | None = None,
    weights: str | Path | None = None,
) -> ModelSpec:
    """Install TotalSegmentator task ``task`` as a model (a folder holding its ``model.json``);
    its weights must be where TotalSegmentator reads them (or in ``weights``)."""
    from carina.models.installed import check_id

    spec = spec_for_task(task, fast=fast, model_id=model_id, weights=weights)
    check_id(spec.id)
    check_weights(task, fast, weights)
    target = Path(directory) / spec.id
    if target.exists():
        raise ModelError(f"a model {spec.id!r} is already installed (remove it first)")
    target.mkdir(parents=True)
    spec.save(target)
    return spec


@contextlib.contextmanager
def _saved_environment() -> Iterator[None]:
    """TotalSegmentator sets nnU-Net's folders in ``os.environ`` and torch's thread count; both
    are put back afterwards."""
    torch: Any
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        torch = None
    saved = {key: os.environ.get(key) for key in _ENV}
    threads = torch.get_num_threads() if torch is not None else 0
    try:
        yield
    finally:
        if torch is not None:
            torch.set_num_threads(threads)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def no_usage_stats() -> Path:
    """Turn off TotalSegmentator's usage statistics in its ``config.json`` (created there when
    missing, as TotalSegmentator does); returns the file. Refuses when it does not hold."""
    from totalsegmentator.config import get_config, get_totalseg_dir, set_config_key, setup_totalseg

    path = Path(get_totalseg_dir()) / "config.json"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            setup_totalseg()
            set_config_key("send_usage_stats", False)
            set_config_key("statistics_disclaimer_shown", True)
        config = get_config()
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise ModelError(
            f"cannot turn off TotalSegmentator's usage statistics in {path}: {exc}"
        ) from exc
    if not isinstance(config, dict) or config.get("send_usage_stats") is not False:
        raise ModelError(
            f"TotalSegmentator's usage statistics are not off in {path}; Carina does not run it "
            "while they are"
        )
    return path


def _ts_device(device: str | None) -> str:
    if device in (None, "", "cpu"):
        return "cpu"
    if str(device) == "cuda":
        return "gpu"
    if str(device).startswith("cuda:"):
        return f"gpu:{str(device).split(':', 1)[1]}"
    raise ModelError(f"unknown device {device!r} (cpu or cuda)")


class TotalSegmentatorRunner:
    """A TotalSegmentator task run through its Python API (module docstring).

    ``device`` is ``cpu`` (default) or ``cuda``/``cuda:N`` (TotalSegmentator falls back to the
    CPU when no GPU is there).
    """

    def __init__(
        self, spec: ModelSpec, folder: str | Path | None = None, *, device: str | None = None
    ) -> None:
        options = dict(spec.options or {})
        if not options.get("task"):
            raise ModelError(f"model {spec.id!r}: a TotalSegmentator model needs options.task")
        self._spec = spec
        self.folder = Path(folder) if folder is not None else None
        self.task = str(options["task"])
        self.fast = bool(options.get("fast", False))
        self.weights = options.get("weights_dir") or None
        self.device = device

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    def check(self) -> list[Path]:
        """TotalSegmentator is installed and the task's weights are there (else ModelError)."""
        with _saved_environment():
            if self.weights:
                os.environ["TOTALSEG_WEIGHTS_PATH"] = str(self.weights)
            _import_totalsegmentator()
            return check_weights(self.task, self.fast)

    def run(self, volume: Volume, **params: Any) -> SegmentationResult:
        if params:
            raise ModelError(f"model {self.spec.id!r} takes no parameters, got {sorted(params)}")
        if volume.channels != 1:
            raise ModelError(f"model {self.spec.id!r} needs a single-channel image")
        from carina.imaging import from_nifti, to_nifti

        api = _import_totalsegmentator()
        device = _ts_device(self.device)
        t = Timings()
        chatter = io.StringIO()
        with _saved_environment():
            if self.weights:
                os.environ["TOTALSEG_WEIGHTS_PATH"] = str(self.weights)
            with t.stage("preprocess"):
                check_weights(self.task, self.fast)
                no_usage_stats()
                image = to_nifti(volume)
            with t.stage("infer"):
                try:
                    with contextlib.redirect_stdout(chatter):
                        out = api.totalsegmentator(
                            image,
                            None,
                            ml=True,
                            task=self.task,
                            fast=self.fast,
                            device=device,
                            quiet=True,
                            nr_thr_resamp=1,
                            nr_thr_saving=1,
                            skip_saving=True,
                        )
                except SystemExit as exc:
                    raise ModelError(
                        f"model {self.spec.id!r}: TotalSegmentator stopped: "
                        f"{chatter.getvalue().strip()[-500:] or exc}"
                    ) from exc
                except Exception as exc:
                    raise ModelError(
                        f"model {self.spec.id!r}: TotalSegmentator failed: {exc}"
                    ) from exc
        log.debug("TotalSegmentator: %s", chatter.getvalue().strip())
        with t.stage("postprocess"):
            seg = out[0] if isinstance(out, tuple) else out
            back = from_nifti(seg, "totalsegmentator")
            if not back.geometry.same_grid(volume.geometry, atol=1e-4):
                raise ModelError(
                    f"model {self.spec.id!r}: TotalSegmentator returned labels on {back.geometry}, "
                    f"not on the input grid {volume.geometry}"
                )
            array = np.rint(np.asarray(back.array)).astype(
                label_dtype(max(self.spec.labels.values, default=0))
            )
            array[~np.isin(array, (0, *self.spec.labels.values))] = 0
            result = LabelMap(
                array,
                volume.geometry,
                labels=self.spec.labels,
                description=f"{self.spec.id} {self.spec.version}",
            )
        return SegmentationResult(result, t.seconds, self.spec.id, self.spec.version)
