"""Real CT cases with TotalSegmentator references, loaded once per session, on the CT grid."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from carina.core import LabelMap, LabelSet, Volume
from carina.dicom import read_volume
from carina.imaging import read_image, read_labelmap
from carina.models.morphology import fill_holes_per_slice
from carina.models.nnunet_tiny import TrainingCase


@dataclass
class Case:
    name: str
    volume: Volume
    reference: LabelMap | None
    extra: dict[str, npt.NDArray[np.bool_]] = field(default_factory=dict)


def on_grid(ref: LabelMap, volume: Volume) -> LabelMap:
    """The reference reoriented onto the CT's axes; it must then share the CT's grid."""
    out = ref.reorient(volume.geometry.orientation)
    assert out.geometry.same_grid(volume.geometry, atol=1e-3)
    return out


@pytest.fixture(scope="session")
def ts(shared_data: Path) -> Path:
    return shared_data / "totalsegmentator_ref"


@pytest.fixture(scope="session")
def total_labels(ts: Path) -> LabelSet:
    return LabelSet.from_json(ts / "label_map_total.json")


@pytest.fixture(scope="session")
def ct_3mm(ts: Path, total_labels: LabelSet) -> Case:
    v = read_image(ts / "ct_3mm/ct.nii.gz")
    return Case(
        "ct_3mm", v, on_grid(read_labelmap(ts / "ct_3mm/seg_total_fast.nii.gz", total_labels), v)
    )


@pytest.fixture(scope="session")
def ct_30sl(ts: Path, total_labels: LabelSet) -> Case:
    v = read_image(ts / "ct_3mm_30sl/ct.nii.gz")
    ref = on_grid(read_labelmap(ts / "ct_3mm_30sl/seg_total.nii.gz", total_labels), v)
    tissue = {
        n: on_grid(read_labelmap(ts / f"ct_3mm_30sl/tissue_types/{n}.nii.gz"), v).array > 0
        for n in ("subcutaneous_fat", "torso_fat", "skeletal_muscle")
    }
    # No body mask ships with the data: the reference body is the per-slice hole-filled union of
    # every labelled class and tissue type (it lacks the skin, about one voxel).
    body = fill_holes_per_slice(
        (ref.array > 0)
        | tissue["subcutaneous_fat"]
        | tissue["torso_fat"]
        | tissue["skeletal_muscle"]
    )
    return Case("ct_3mm_30sl", v, ref, {"body": body, **tissue})


@pytest.fixture(scope="session")
def ct_dicom(ts: Path, total_labels: LabelSet) -> Case:
    v = read_volume(ts / "ct_dicom")
    return Case(
        "ct_dicom", v, on_grid(read_labelmap(ts / "ct_dicom_seg_total.nii.gz", total_labels), v)
    )


@pytest.fixture(scope="session")
def lung_ct(shared_data: Path) -> Case:
    return Case("lung_ct", read_volume(shared_data / "lung_ct_tumor_boxes/ct_dicom"), None)


@dataclass
class TinyLung:
    """A tiny lung U-Net trained here on the lung CT, saved in every format Carina runs."""

    ct: Volume
    folders: dict[str, Path]
    bundle: Path
    train_s: float


@pytest.fixture(scope="session")
def tiny_lung(lung_ct: Case, tmp_path_factory: pytest.TempPathFactory) -> TinyLung:
    import time

    from carina.models.train_tiny import save_bundle, save_model, train_lung_unet

    start = time.perf_counter()
    net, spec = train_lung_unet(lung_ct.volume)
    train_s = time.perf_counter() - start
    root = tmp_path_factory.mktemp("tiny-lung")
    folders = {}
    for fmt in ("torch", "torchscript", "onnx"):
        folders[fmt] = root / fmt
        save_model(net, spec, folders[fmt], fmt)
    bundle = save_bundle(net, spec, root / "bundle")
    return TinyLung(lung_ct.volume, folders, bundle, train_s)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread: on a shared two-core machine a second thread waiting for a busy core
    makes nnU-Net's inference many times slower (and its timings meaningless)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class TinyNnUNet:
    """The tiny nnU-Net v2 body model (:mod:`carina.models.nnunet_tiny`), trained once per
    session on three real CTs; ``work`` holds nnU-Net's raw, preprocessed and results folders."""

    folder: Path
    work: Path
    cases: list[TrainingCase]
    train_s: float
    plan_s: float

    @property
    def lung_ct(self) -> Volume:
        return self.cases[0].image


@pytest.fixture(scope="session")
def tiny_nnunet(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyNnUNet:
    pytest.importorskip("nnunetv2")
    from carina.models.nnunet_tiny import default_cases, train_tiny_nnunet

    work = tmp_path_factory.mktemp("nnunet")
    cases = default_cases(shared_data)
    model = train_tiny_nnunet(cases, work)
    print(f"nnU-Net plan+preprocess {model.plan_s:.1f} s, training {model.train_s:.1f} s")
    return TinyNnUNet(model.folder, work, cases, model.train_s, model.plan_s)
