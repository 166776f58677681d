"""TotalSegmentator tasks through Carina: TotalSegmentator's own code on a stand-in for the
weights of its ``body`` task (fast), the tiny nnU-Net body model trained here and placed where
TotalSegmentator reads them; compared with TotalSegmentator's command line on the same real CTs,
installed and run from Carina's CLI, and refused when weights or the package are missing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt
import pytest
from typer.testing import CliRunner

from carina.core.errors import ModelError
from carina.dicom.seg import read_segmentation
from carina.imaging import from_nifti, read_image, read_labelmap, to_nifti, write_image
from carina.models import STAGES
from carina.models.installed import load_runner
from tests.models.conftest import TinyNnUNet

pytest.importorskip("torch")
pytest.importorskip("nnunetv2")
pytest.importorskip("totalsegmentator")

from carina.models.nnunet_tiny import as_totalsegmentator_body
from carina.models.totalseg import (
    TotalSegmentatorRunner,
    add_totalsegmentator,
    check_weights,
    required_folders,
    spec_for_task,
    task_labels,
)

BIN = Path(sys.executable).parent
#: the stand-in's Dice against the body tool on each CT (the tiny model's own is 0.95-0.97)
BODY_DICE = 0.7

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dice(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    x, y = np.asarray(a) > 0, np.asarray(b) > 0
    return float(2 * (x & y).sum() / max(int(x.sum() + y.sum()), 1))


@dataclass
class StandIn:
    """TotalSegmentator's folders: its home (config.json) and weights, the stand-in in them."""

    home: Path
    weights: Path
    folder: Path
    tiny: TinyNnUNet


@pytest.fixture(scope="module")
def standin(tiny_nnunet: TinyNnUNet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    root = tmp_path_factory.mktemp("totalseg")
    home, weights = root / "home", root / "weights"
    with pytest.MonkeyPatch.context() as mp:
        # TotalSegmentator's folders here, never the user's ~/.totalsegmentator
        mp.setenv("TOTALSEG_HOME_DIR", str(home))
        mp.setenv("TOTALSEG_WEIGHTS_PATH", str(weights))
        folder = as_totalsegmentator_body(tiny_nnunet.folder, weights)
        yield StandIn(home, weights, folder, tiny_nnunet)


@pytest.fixture(scope="module")
def runner(standin: StandIn) -> TotalSegmentatorRunner:
    return TotalSegmentatorRunner(spec_for_task("body", fast=True), None, device="cpu")


def _totalsegmentator_cli(standin: StandIn, ct: Path, out: Path) -> Path:
    """TotalSegmentator's own command line on a NIfTI file, with its usage statistics off (the
    setting Carina writes into its config.json before every run)."""
    home = standin.home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "config.json"
    if not config.exists():
        config.write_text(
            json.dumps(
                {
                    "totalseg_id": "totalseg_TEST0000",
                    "send_usage_stats": False,
                    "prediction_counter": 0,
                    "statistics_disclaimer_shown": True,
                }
            )
        )
    env = {
        **os.environ,
        "TOTALSEG_HOME_DIR": str(home),
        "TOTALSEG_WEIGHTS_PATH": str(standin.weights),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        str(BIN / "TotalSegmentator"),
        "-i", str(ct), "-o", str(out), "--ml", "-ta", "body", "--fast", "-d", "cpu",
        "-nr", "1", "-ns", "1", "-q",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    print(f"TotalSegmentator CLI: {time.perf_counter() - start:.1f} s for {ct.name}")
    assert json.loads(config.read_text())["send_usage_stats"] is False
    return out


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record (and refuse) every IP connection attempted in this process."""
    attempts: list[Any] = []
    real = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError(f"network call to {address} during a test")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


def test_weights_folder_is_totalsegmentators(standin: StandIn) -> None:
    (folder,) = required_folders("body", fast=True)
    assert folder.dataset_id == 300
    assert folder.folds == (0,)
    assert folder.folder == (
        standin.weights / "Dataset300_body_6mm_1559subj/nnUNetTrainer__nnUNetPlans__3d_fullres"
    )
    assert check_weights("body", fast=True) == [standin.folder]
    # the stand-in is the tiny model's files, renamed only in its dataset folder and fold
    tiny = standin.tiny.folder
    for name in ("dataset.json", "plans.json"):
        assert (standin.folder / name).read_bytes() == (tiny / name).read_bytes()
    assert (standin.folder / "fold_0/checkpoint_final.pth").read_bytes() == (
        tiny / "fold_all/checkpoint_final.pth"
    ).read_bytes()
    labels = task_labels("body")
    assert [(lab.value, lab.name) for lab in labels] == [(1, "body_trunc"), (2, "body_extremities")]


def test_handover_is_the_nifti_carina_writes(standin: StandIn, tmp_path: Path) -> None:
    ct = standin.tiny.lung_ct
    image = to_nifti(ct)
    written = nib.load(str(write_image(ct, tmp_path / "ct.nii.gz")))
    assert np.array_equal(np.asarray(image.dataobj), np.asarray(written.dataobj))
    assert np.allclose(image.affine, written.affine, atol=1e-6)
    # RAS: the LPS affine's first two rows negated
    assert np.allclose(image.affine, np.diag([-1, -1, 1, 1]) @ ct.geometry.affine)
    back = from_nifti(image)
    assert back.geometry.same_grid(ct.geometry, atol=1e-6)
    assert np.array_equal(back.array, ct.array)


def test_carina_equals_totalsegmentator_cli(
    runner: TotalSegmentatorRunner, standin: StandIn, shared_data: Path, tmp_path: Path,
    no_network: list[Any],
) -> None:  # fmt: skip
    ct = standin.tiny.lung_ct  # read from its DICOM series
    lung_file = write_image(ct, tmp_path / "lungct.nii.gz")
    ct_3mm_file = shared_data / "totalsegmentator_ref/ct_3mm/ct.nii.gz"  # RAS on disk
    theirs = {
        "lungct": _totalsegmentator_cli(standin, lung_file, tmp_path / "lungct-seg.nii.gz"),
        "ts3mm": _totalsegmentator_cli(standin, ct_3mm_file, tmp_path / "ts3mm-seg.nii.gz"),
    }
    names = task_labels("body")
    results = {}
    for name, volume in (
        ("DICOM", ct),
        ("NIfTI", read_image(lung_file)),
        ("RAS NIfTI", read_image(ct_3mm_file)),
    ):
        result = runner.run(volume)
        ours = results[name] = result.labels
        reference = read_labelmap(theirs["ts3mm" if name == "RAS NIfTI" else "lungct"], names)
        # TotalSegmentator writes its labels on the grid it read
        assert np.allclose(reference.geometry.affine, volume.geometry.affine, atol=1e-4)
        assert ours.geometry.same_grid(volume.geometry, atol=1e-6)
        assert np.allclose(ours.geometry.affine, reference.geometry.affine, atol=1e-4)
        assert [lab.name for lab in ours.labels] == ["body_trunc", "body_extremities"]
        present = set(ours.present_values()) | set(reference.present_values())
        assert 1 in present
        for value in sorted(present):
            d = dice(ours.array == value, np.asarray(reference.array) == value)
            print(f"{name}: {names[value].name} Dice Carina vs TotalSegmentator {d:.5f}")
            assert d >= 0.999
        print(f"{name}: timings {dict(result.timings)}")
        assert set(result.timings) == set(STAGES)
        assert result.timings["infer"] > 0
    assert no_network == []
    config = json.loads((standin.home / "config.json").read_text())
    assert config["send_usage_stats"] is False
    # the stand-in is a body mask on the right voxels: a transposed or flipped handover could not
    # match the weight-free body tool
    for case in standin.tiny.cases:
        if case.name == "tsdicom":
            continue
        labels = results["DICOM"] if case.name == "lungct" else results["RAS NIfTI"]
        learned = dice(labels.array == 1, case.target.array)
        print(f"{case.name}: body_trunc Dice vs the body tool {learned:.3f}")
        assert learned > BODY_DICE


def test_models_add_list_and_segment(standin: StandIn, shared_data: Path, tmp_path: Path) -> None:
    from carina.cli.main import app

    cli = CliRunner()
    data = str(tmp_path / "data")
    args = ["models", "add", "--totalsegmentator", "body", "--fast", "--data-dir", data]
    result = cli.invoke(app, [*args, "--id", "ts-body", "--weights", str(standin.weights)])
    assert result.exit_code == 0, result.output
    assert "installed ts-body" in result.output
    assert "totalsegmentator" in result.output
    installed = tmp_path / "data/models/ts-body"
    spec = json.loads((installed / "model.json").read_text())
    assert spec["format"] == "totalsegmentator"
    assert spec["options"] == {"task": "body", "fast": True, "weights_dir": str(standin.weights)}
    assert [lab["name"] for lab in spec["labels"]] == ["body_trunc", "body_extremities"]
    assert spec["modalities"] == ["CT"]
    assert spec["spacing"] == [6.0, 6.0, 6.0]
    assert sorted(p.name for p in installed.iterdir()) == ["model.json"]

    listed = cli.invoke(app, ["models", "list", "--json", "--data-dir", data])
    assert listed.exit_code == 0, listed.output
    assert [m["id"] for m in json.loads(listed.output)] == ["ts-body"]
    again = cli.invoke(app, [*args, "--id", "ts-body"])
    assert again.exit_code == 2
    assert "already installed" in again.output

    ct_dir = shared_data / "lung_ct_tumor_boxes/ct_dicom"
    out = tmp_path / "body.dcm"
    result = cli.invoke(
        app, ["segment", str(ct_dir), "-o", str(out), "--model", "ts-body", "--data-dir", data]
    )
    assert result.exit_code == 0, result.output
    ct = standin.tiny.lung_ct
    seg = read_segmentation(out).reorient(ct.geometry.orientation)
    assert seg.geometry.same_grid(ct.geometry, atol=1e-3)
    direct = load_runner(tmp_path / "data/models", "ts-body", "cpu").run(ct).labels
    assert [lab.name for lab in seg.labels] == [
        lab.name for lab in direct.labels if (np.asarray(direct.array) == lab.value).any()
    ]
    for lab in seg.labels:
        value = direct.labels.by_name(lab.name).value
        assert np.array_equal(np.asarray(seg.array) == lab.value, np.asarray(direct.array) == value)


def test_missing_weights_are_refused(
    standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ct = standin.tiny.lung_ct
    empty = tmp_path / "no-weights"
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(empty))
    folder = empty / "Dataset300_body_6mm_1559subj/nnUNetTrainer__nnUNetPlans__3d_fullres"
    runner = TotalSegmentatorRunner(spec_for_task("body", fast=True), None, device="cpu")
    with pytest.raises(ModelError, match="totalseg_download_weights -t body") as err:
        runner.run(ct)
    assert str(folder) in str(err.value)
    assert "totalseg_import_weights" in str(err.value)
    assert not empty.exists()  # nothing was downloaded or created
    with pytest.raises(ModelError, match="Dataset300_body_6mm_1559subj"):
        add_totalsegmentator(tmp_path / "models", "body", fast=True)
    assert not (tmp_path / "models").exists()
    # the full-resolution body model is another dataset
    with pytest.raises(ModelError, match="Dataset299_body_1559subj"):
        check_weights("body", fast=False, root=standin.weights)

    untrained = tmp_path / "untrained"
    shutil.copytree(standin.weights, untrained)
    (untrained / folder.relative_to(empty) / "fold_0/checkpoint_final.pth").unlink()
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(untrained))
    with pytest.raises(ModelError, match=r"fold_0/checkpoint_final\.pth is missing"):
        runner.run(ct)


def test_not_installed_unknown_and_licensed_tasks_are_refused(
    standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ModelError, match="no task 'no_such_task'"):
        spec_for_task("no_such_task")
    # a licensed task without TotalSegmentator's licence number in its config.json
    with pytest.raises(ModelError, match="needs a licence"):
        spec_for_task("tissue_types")
    spec = spec_for_task("body", fast=True)
    # a Python without TotalSegmentator: its import fails
    monkeypatch.setitem(sys.modules, "totalsegmentator.python_api", None)
    with pytest.raises(ModelError, match=r"TotalSegmentator is not installed \(pip install"):
        TotalSegmentatorRunner(spec, None).run(standin.tiny.lung_ct)
    with pytest.raises(ModelError, match="TotalSegmentator is not installed"):
        spec_for_task("body")


def _unshare_net() -> list[str]:
    """The command prefix that runs a program in a new, empty network namespace (``unshare``
    from util-linux: as root directly, otherwise in a user namespace)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare (util-linux) here")
    prefix = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--net"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no network namespace here: {probe.stderr.strip()}")
    return prefix


def test_segment_needs_no_network(standin: StandIn, shared_data: Path, tmp_path: Path) -> None:
    """``carina segment`` with a TotalSegmentator model, every process it starts (nnU-Net's
    included) in a network namespace with no interface up, equals the run with a network."""
    prefix = _unshare_net()
    env = {
        **os.environ,
        "TOTALSEG_HOME_DIR": str(standin.home),
        "TOTALSEG_WEIGHTS_PATH": str(standin.weights),
        "OMP_NUM_THREADS": "1",
    }
    # the namespace has no network: not even loopback answers
    probe = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 9), timeout=2)\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno)\n"
    )
    cut = subprocess.run([*prefix, sys.executable, "-c", probe], capture_output=True, text=True)
    assert cut.returncode == 0, cut.stderr
    assert cut.stdout.startswith("refused"), cut.stdout
    data = tmp_path / "data"
    add = [
        str(BIN / "carina"), "models", "add", "--totalsegmentator", "body", "--fast",
        "--id", "ts-body", "--weights", str(standin.weights), "--data-dir", str(data),
    ]  # fmt: skip
    done = subprocess.run(add, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    ct_dir = shared_data / "lung_ct_tumor_boxes/ct_dicom"
    out = tmp_path / "offline.nii.gz"
    segment = [
        str(BIN / "carina"), "segment", str(ct_dir), "-o", str(out), "--model", "ts-body",
        "--data-dir", str(data),
    ]  # fmt: skip
    done = subprocess.run([*prefix, *segment], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    ct = standin.tiny.lung_ct
    offline = read_labelmap(out, task_labels("body"))
    assert offline.geometry.same_grid(ct.geometry, atol=1e-4)
    online = load_runner(data / "models", "ts-body", "cpu").run(ct).labels
    assert np.array_equal(np.asarray(offline.array), np.asarray(online.array))
    assert (np.asarray(offline.array) == 1).sum() > 0
