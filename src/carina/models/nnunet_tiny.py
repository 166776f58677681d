"""A tiny nnU-Net v2 body model trained in seconds on CPU with nnU-Net's own pipeline.

No trained nnU-Net model can be downloaded where Carina is tested, so the one that exercises
:mod:`carina.models.nnunet` is trained here, on real CTs, from a weight-free target (the
``body`` tool, label 1), with nnU-Net doing everything it does for a real dataset:

1. **dataset conversion** (Carina): each CT (DICOM series or image file) and its target are
   resampled to :data:`SPACING` mm (linear for the CT, nearest neighbour for the target) and
   written as ``nnUNet_raw/Dataset990_TinyBody/imagesTr/<case>_0000.nii.gz`` and
   ``labelsTr/<case>.nii.gz`` with a ``dataset.json`` (channel ``CT``, labels background/body);
2. **planning and preprocessing** (nnU-Net's ``extract_fingerprints``, ``plan_experiments`` and
   ``preprocess``, the functions behind ``nnUNetv2_plan_and_preprocess``), ``3d_fullres`` only;
   the plans' network is then narrowed to :data:`FEATURES` per stage (editing ``plans.json`` is
   how nnU-Net's documentation adapts a plan) so that it trains on two CPU cores;
3. **training** with nnU-Net's ``nnUNetTrainer``, looked up by name as ``nnUNetv2_train`` does
   (``get_trainer_from_args``; nnU-Net's predictor finds the class the same way), with
   ``num_epochs``, ``num_iterations_per_epoch``, ``num_val_iterations_per_epoch`` and the
   learning rate set on the instance, on fold ``all`` (three cases are too few for the
   five-fold split), with ``nnUNet_n_proc_DA=0``, ``nnUNet_compile=f`` and one torch thread.
   nnU-Net's final validation is skipped. (The ``nnUNetTrainer_Xepochs`` variants would do as
   well, but nnU-Net's look-up imports its ``primus`` trainers first, which need torchvision.)

The result is an nnU-Net trained-model folder
``nnUNet_results/Dataset990_TinyBody/nnUNetTrainer__nnUNetPlans__3d_fullres`` (with
``dataset.json``, ``plans.json`` and ``fold_all/checkpoint_final.pth``), as ``nnUNetv2_predict``
and ``carina models add`` take it.

``python -m carina.models.nnunet_tiny WORK [--shared-data DIR]`` trains it under ``WORK`` on the
three CTs of :func:`default_cases` (from Carina's shared data folder, ``$CARINA_SHARED_DATA`` by
default) and prints the time taken and the result folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from carina.core.errors import ModelError
from carina.core.labels import Label, LabelSet
from carina.core.volume import LabelMap, Volume
from carina.imaging.formats import write_image
from carina.imaging.resample import resample_to_spacing

DATASET_ID = 990
DATASET_NAME = f"Dataset{DATASET_ID:03d}_TinyBody"
TRAINER = "nnUNetTrainer"
EPOCHS = 6
ITERATIONS = 15
#: nnU-Net's default is 0.01; the few steps here go further with 0.03.
LEARNING_RATE = 0.03
PLANS = "nnUNetPlans"
CONFIGURATION = "3d_fullres"
FOLD = "all"
#: nnU-Net's variable for its data-augmentation worker count (0: in the training process).
N_PROC_DA = "nnUNet_n_proc_DA"
#: Voxel size (mm) of the training images; nnU-Net's target spacing follows from it.
SPACING = 8.0
#: Features per resolution stage of the narrowed plan (nnU-Net's default starts at 32).
FEATURES = (4, 8, 16, 32, 32, 32)

LABELS = LabelSet([Label(1, "body")])


@dataclass(frozen=True)
class TrainingCase:
    """One training image and its target on the image's grid."""

    name: str
    image: Volume
    target: LabelMap


@dataclass(frozen=True)
class TrainedModel:
    """Where the tiny model landed and what it took."""

    folder: Path
    raw: Path
    train_s: float
    plan_s: float


def default_cases(shared_data: str | Path) -> list[TrainingCase]:
    """The chest CT of Lung-PET-CT-Dx A0002 and TotalSegmentator's 20-slice DICOM series and
    3 mm abdominal CT, each with the ``body`` tool as target."""
    from carina.dicom import read_volume
    from carina.imaging.formats import read_image

    root = Path(shared_data)
    images = {
        "lungct": read_volume(root / "lung_ct_tumor_boxes/ct_dicom"),
        "tsdicom": read_volume(root / "totalsegmentator_ref/ct_dicom"),
        "ts3mm": read_image(root / "totalsegmentator_ref/ct_3mm/ct.nii.gz"),
    }
    return [TrainingCase(name, v, body_target(v)) for name, v in images.items()]


def body_target(volume: Volume) -> LabelMap:
    """The training target: the ``body`` tool as label 1 on ``volume``'s grid."""
    from carina.models.registry import get_tool

    body = np.asarray(get_tool("body").run(volume).labels.array) > 0
    return LabelMap(body.astype(np.uint8), volume.geometry, labels=LABELS)


def write_raw_dataset(
    cases: Sequence[TrainingCase], raw_root: str | Path, *, spacing: float = SPACING
) -> Path:
    """Write ``cases`` as nnU-Net raw dataset :data:`DATASET_NAME` under ``raw_root``."""
    if not cases:
        raise ModelError("an nnU-Net dataset needs at least one case")
    folder = Path(raw_root) / DATASET_NAME
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(exist_ok=True)
    grid = (spacing, spacing, spacing)
    for case in cases:
        image = resample_to_spacing(case.image, grid, interpolator="linear")
        target = resample_to_spacing(case.target, grid, interpolator="nearest")
        write_image(
            image.with_array(np.asarray(image.array, dtype=np.float32)),
            folder / "imagesTr" / f"{case.name}_0000.nii.gz",
        )
        write_image(
            target.with_array(np.asarray(target.array, dtype=np.uint8)),
            folder / "labelsTr" / f"{case.name}.nii.gz",
        )
    dataset = {
        "name": "TinyBody",
        "description": "The body on chest and abdominal CT, target from Carina's weight-free "
        "body tool; a test model, not for clinical use",
        "reference": "carina.models.nnunet_tiny",
        "licence": "CC BY 4.0 (trained on TCIA Lung-PET-CT-Dx, CC BY 4.0, and TotalSegmentator "
        "test data, Apache-2.0)",
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **{lab.name: lab.value for lab in LABELS}},
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    return folder


@contextlib.contextmanager
def nnunet_environment(work: str | Path) -> Iterator[dict[str, str]]:
    """nnU-Net's folders (``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``) under
    ``work`` and the CPU settings, set in ``os.environ`` for the block and restored after."""
    root = Path(work)
    env = {
        "nnUNet_raw": str(root / "nnUNet_raw"),
        "nnUNet_preprocessed": str(root / "nnUNet_preprocessed"),
        "nnUNet_results": str(root / "nnUNet_results"),
        "nnUNet_compile": "f",
    }
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def narrow_plans(plans_file: str | Path, features: Sequence[int] = FEATURES) -> dict[str, Any]:
    """Narrow the ``3d_fullres`` network of an nnU-Net ``plans.json`` to ``features`` per stage
    (the stages and the patch size nnU-Net planned are kept)."""
    path = Path(plans_file)
    plans: dict[str, Any] = json.loads(path.read_text())
    arch = plans["configurations"][CONFIGURATION]["architecture"]["arch_kwargs"]
    n = int(arch["n_stages"])
    arch["features_per_stage"] = [int(features[min(i, len(features) - 1)]) for i in range(n)]
    path.write_text(json.dumps(plans, indent=2) + "\n")
    return plans


def plan_and_preprocess(dataset_id: int = DATASET_ID) -> dict[str, Any]:
    """nnU-Net's fingerprint, plan and ``3d_fullres`` preprocessing of a raw dataset (the
    environment of :func:`nnunet_environment` must be set); returns the narrowed plans."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.paths import nnUNet_preprocessed

    with contextlib.redirect_stdout(None), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nnU-Net's own deprecation and numpy chatter
        extract_fingerprints([dataset_id], num_processes=1)
        plan_experiments([dataset_id])
        plans_file = Path(os.fspath(nnUNet_preprocessed)) / DATASET_NAME / f"{PLANS}.json"
        plans = narrow_plans(plans_file)
        preprocess(
            [dataset_id],
            PLANS,
            configurations=(CONFIGURATION,),
            num_processes=(1,),
            show_progress_bar=False,
        )
    return plans


def train(
    dataset_id: int = DATASET_ID,
    *,
    epochs: int = EPOCHS,
    iterations: int = ITERATIONS,
    val_iterations: int = 2,
    learning_rate: float = LEARNING_RATE,
    seed: int = 0,
) -> Path:
    """Train :data:`TRAINER` on fold ``all`` of a preprocessed dataset on the CPU (environment of
    :func:`nnunet_environment`); returns the trained-model folder."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    torch.manual_seed(seed)
    np.random.seed(seed)
    # one thread: the tiny network gains nothing from more, and on a shared machine a second
    # thread waiting at every operator for a busy core costs many times the work
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    # data augmentation in this process (nnU-Net's planner needs the variable unset or positive)
    saved = os.environ.get(N_PROC_DA)
    os.environ[N_PROC_DA] = "0"
    try:
        with contextlib.redirect_stdout(None), warnings.catch_warnings():
            # nnU-Net's chatter (its pseudo Dice divides 0 by 0 for a class missing in a batch)
            warnings.simplefilter("ignore")
            # nnU-Net's own look-up of the trainer class by name, as nnUNetv2_train does
            trainer = get_trainer_from_args(
                str(dataset_id), CONFIGURATION, FOLD, TRAINER, PLANS, device=torch.device("cpu")
            )
            trainer.num_epochs = epochs
            trainer.initial_lr = learning_rate
            trainer.num_iterations_per_epoch = iterations
            trainer.num_val_iterations_per_epoch = val_iterations
            trainer.run_training()
    finally:
        torch.set_num_threads(threads)
        if saved is None:
            os.environ.pop(N_PROC_DA, None)
        else:
            os.environ[N_PROC_DA] = saved
    return Path(trainer.output_folder_base)


def train_tiny_nnunet(
    cases: Sequence[TrainingCase], work: str | Path, *, iterations: int = ITERATIONS
) -> TrainedModel:
    """The whole recipe under ``work``: raw dataset, plan and preprocess, train."""
    with nnunet_environment(work) as env:
        start = time.perf_counter()
        raw = write_raw_dataset(cases, env["nnUNet_raw"])
        plan_and_preprocess()
        planned = time.perf_counter()
        folder = train(iterations=iterations)
        done = time.perf_counter()
    return TrainedModel(folder, raw, done - planned, planned - start)


def as_totalsegmentator_body(folder: str | Path, weights_root: str | Path) -> Path:
    """Place the trained model ``folder`` where TotalSegmentator reads the weights of its
    ``body`` task in fast mode, under ``weights_root`` (its ``TOTALSEG_WEIGHTS_PATH``).

    The folder TotalSegmentator expects comes from its own tables
    (:func:`carina.models.totalseg.required_folders`; in 2.x
    ``Dataset300_body_6mm_1559subj/nnUNetTrainer__nnUNetPlans__3d_fullres``, fold 0). Its
    trainer, plans and configuration are the ones trained here, so only two names change: the
    dataset folder (``Dataset990_TinyBody`` becomes TotalSegmentator's) and the fold
    (``fold_all`` becomes ``fold_0``). ``dataset.json``, ``plans.json`` and
    ``checkpoint_final.pth`` are copied byte for byte; the model predicts label 1, the body,
    which is label 1 (``body_trunc``) of TotalSegmentator's ``body`` task. A stand-in for tests:
    it is not TotalSegmentator's model.
    """
    import shutil

    from carina.models.totalseg import required_folders

    (target,) = required_folders("body", fast=True, root=weights_root)
    expected = f"{TRAINER}__{PLANS}__{CONFIGURATION}"
    if target.folder.name != expected or len(target.folds) != 1:
        raise ModelError(
            f"TotalSegmentator reads {target.folder.name} folds {target.folds} for body (fast), "
            f"not {expected} with one fold: the tiny model cannot stand in for it"
        )
    src = Path(folder)
    fold = target.folder / f"fold_{target.folds[0]}"
    fold.mkdir(parents=True, exist_ok=True)
    for name in ("dataset.json", "plans.json"):
        shutil.copyfile(src / name, target.folder / name)
    shutil.copyfile(src / f"fold_{FOLD}" / "checkpoint_final.pth", fold / "checkpoint_final.pth")
    return target.folder


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Train the tiny nnU-Net v2 body model on CPU.")
    parser.add_argument("work", type=Path, help="folder for nnUNet_raw/_preprocessed/_results")
    parser.add_argument(
        "--shared-data",
        type=Path,
        default=Path(os.environ.get("CARINA_SHARED_DATA", "shared/data")),
        help="Carina's shared data folder (default: $CARINA_SHARED_DATA)",
    )
    parser.add_argument(
        "--iterations", type=int, default=ITERATIONS, help="training iterations per epoch"
    )
    args = parser.parse_args(argv)
    model = train_tiny_nnunet(
        default_cases(args.shared_data), args.work, iterations=args.iterations
    )
    print(f"planned and preprocessed in {model.plan_s:.1f} s, trained in {model.train_s:.1f} s")
    print(model.folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
