"""nnU-Net v2 trained-model folders: a tiny model trained here with nnU-Net's own pipeline, run
by Carina and by ``nnUNetv2_predict`` on the same real CTs, installed and run from the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from typer.testing import CliRunner

from carina.core.errors import ModelError
from carina.core.volume import LabelMap, Volume
from carina.dicom.seg import read_segmentation
from carina.imaging import read_image, read_labelmap, write_image
from carina.models import STAGES
from carina.models.installed import add_model, runner_for
from carina.models.spec import ModelSpec

pytest.importorskip("torch")
pytest.importorskip("nnunetv2")

from carina.models.nnunet import (
    NnUNetRunner,
    labels_from_dataset,
    modalities_from_channels,
    spec_from_nnunet,
)
from carina.models.nnunet_tiny import DATASET_ID, FOLD, TRAINER
from tests.models.conftest import TinyNnUNet

BIN = Path(sys.executable).parent
#: Dice of the tiny model against its target on each training CT (measured 0.95-0.97)
BODY_DICE = 0.7


def dice(a: npt.NDArray[np.generic], b: npt.NDArray[np.generic]) -> float:
    x, y = np.asarray(a) > 0, np.asarray(b) > 0
    return float(2 * (x & y).sum() / max(int(x.sum() + y.sum()), 1))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def runner(tiny_nnunet: TinyNnUNet) -> NnUNetRunner:
    folder = tiny_nnunet.folder
    return NnUNetRunner(spec_from_nnunet(folder), folder, device="cpu")


def _nnunetv2_predict(work: Path, inputs: dict[str, Volume | Path], out: Path) -> dict[str, Path]:
    """nnU-Net's own command line on NIfTI files (volumes are written by Carina), in its
    sequential mode (no worker processes)."""
    src = out.parent / f"{out.name}-in"
    src.mkdir()
    for name, item in inputs.items():
        target = src / f"{name}_0000.nii.gz"
        if isinstance(item, Path):
            shutil.copyfile(item, target)
        else:
            write_image(item, target)
    env = {
        **os.environ,
        "nnUNet_raw": str(work / "nnUNet_raw"),
        "nnUNet_preprocessed": str(work / "nnUNet_preprocessed"),
        "nnUNet_results": str(work / "nnUNet_results"),
        "nnUNet_compile": "f",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        str(BIN / "nnUNetv2_predict"),
        "-i", str(src), "-o", str(out),
        "-d", str(DATASET_ID), "-c", "3d_fullres", "-tr", TRAINER, "-f", FOLD,
        "-device", "cpu", "-npp", "0", "-nps", "0", "--disable_progress_bar",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    print(f"nnUNetv2_predict: {time.perf_counter() - start:.1f} s for {len(inputs)} images")
    return {name: out / f"{name}.nii.gz" for name in inputs}


def test_handover_is_what_nnunet_reads_from_nifti(
    runner: NnUNetRunner, tiny_nnunet: TinyNnUNet, shared_data: Path, tmp_path: Path
) -> None:
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    ct_3mm = shared_data / "totalsegmentator_ref/ct_3mm/ct.nii.gz"
    for volume in (tiny_nnunet.lung_ct, read_image(ct_3mm)):
        path = write_image(volume, tmp_path / "ct.nii.gz")
        theirs, props = SimpleITKIO().read_images([str(path)])
        _, ours, our_props = runner.handover(volume)
        assert ours.dtype == theirs.dtype == np.float32
        assert ours.shape == theirs.shape
        assert np.array_equal(ours, theirs)
        assert np.allclose(our_props["spacing"], props["spacing"], atol=1e-5)
        for key in ("spacing", "origin", "direction"):
            assert np.allclose(our_props["sitk_stuff"][key], props["sitk_stuff"][key], atol=1e-4)


def test_carina_equals_nnunetv2_predict(
    runner: NnUNetRunner, tiny_nnunet: TinyNnUNet, shared_data: Path, tmp_path: Path
) -> None:
    ct = tiny_nnunet.lung_ct  # read from its DICOM series
    ct_3mm_file = shared_data / "totalsegmentator_ref/ct_3mm/ct.nii.gz"  # RAS on disk
    theirs = _nnunetv2_predict(
        tiny_nnunet.work, {"lungct": ct, "ts3mm": ct_3mm_file}, tmp_path / "pred"
    )
    nifti = read_image(tmp_path / "pred-in/lungct_0000.nii.gz")
    results: dict[str, LabelMap] = {}
    for name, volume in (
        ("DICOM", ct),
        ("NIfTI", nifti),
        ("RAS NIfTI", read_image(ct_3mm_file)),
    ):
        result = runner.run(volume)
        ours = results[name] = result.labels
        reference = read_labelmap(theirs["ts3mm" if name == "RAS NIfTI" else "lungct"])
        # nnU-Net writes its labels on the grid it read: the same voxel order and affine
        assert np.allclose(reference.geometry.affine, volume.geometry.affine, atol=1e-4)
        assert ours.geometry.same_grid(volume.geometry, atol=1e-6)
        assert np.allclose(ours.geometry.affine, reference.geometry.affine, atol=1e-4)
        d = dice(ours.array, reference.array)
        print(f"{name}: Dice Carina vs nnUNetv2_predict {d:.5f}, timings {dict(result.timings)}")
        assert d >= 0.999
        assert set(result.timings) == set(STAGES)
        assert result.timings["infer"] > 0
    assert [lab.name for lab in ours.labels] == ["body"]
    # the network learned its target (the body tool): a broken handover (axes or spacing
    # swapped) could not match it
    for case in tiny_nnunet.cases:
        labels = results["DICOM"] if case.name == "lungct" else runner.run(case.image).labels
        learned = dice(labels.array, case.target.array)
        print(f"{case.name}: Dice vs the body tool {learned:.3f}")
        assert learned > BODY_DICE
    print(f"trained in {tiny_nnunet.train_s:.1f} s (planning {tiny_nnunet.plan_s:.1f} s)")


def test_models_add_and_segment_with_the_nnunet_folder(
    tiny_nnunet: TinyNnUNet, shared_data: Path, tmp_path: Path
) -> None:
    from carina.cli.main import app

    cli = CliRunner()
    data = str(tmp_path / "data")
    result = cli.invoke(
        app, ["models", "add", str(tiny_nnunet.folder), "--id", "lung-nnunet", "--data-dir", data]
    )
    assert result.exit_code == 0, result.output
    assert "nnunet" in result.output
    installed = tmp_path / "data/models/lung-nnunet"
    spec = json.loads((installed / "model.json").read_text())
    assert spec["format"] == "nnunet"
    assert spec["modalities"] == ["CT"]
    assert [lab["name"] for lab in spec["labels"]] == ["body"]
    assert spec["spacing"] == [8.0, 8.0, 8.0]
    assert spec["options"]["folds"] == ["all"]
    assert spec["options"]["configuration"] == "3d_fullres"
    assert "CC BY 4.0" in spec["licence"]
    assert "nnU-Net" in spec["citation"]
    assert (installed / "fold_all/checkpoint_final.pth").is_file()

    ct_dir = shared_data / "lung_ct_tumor_boxes/ct_dicom"
    out = tmp_path / "lungs.dcm"
    result = cli.invoke(
        app, ["segment", str(ct_dir), "-o", str(out), "--model", "lung-nnunet", "--data-dir", data]
    )
    assert result.exit_code == 0, result.output
    seg = read_segmentation(out).reorient(tiny_nnunet.lung_ct.geometry.orientation)
    assert seg.geometry.same_grid(tiny_nnunet.lung_ct.geometry, atol=1e-3)
    loaded = ModelSpec.load(installed)
    direct = runner_for(loaded, installed, "cpu").run(tiny_nnunet.lung_ct).labels
    present = [lab.name for lab in direct.labels if (np.asarray(direct.array) == lab.value).any()]
    assert [lab.name for lab in seg.labels] == present
    for lab in seg.labels:
        value = direct.labels.by_name(lab.name).value
        assert np.array_equal(np.asarray(seg.array) == lab.value, np.asarray(direct.array) == value)


def test_broken_folders_and_inputs_are_model_errors(
    tiny_nnunet: TinyNnUNet, tmp_path: Path
) -> None:
    folder = tiny_nnunet.folder
    ct = tiny_nnunet.lung_ct
    spec = spec_from_nnunet(folder)

    no_plans = tmp_path / "no-plans" / folder.name
    shutil.copytree(folder, no_plans)
    (no_plans / "plans.json").unlink()
    with pytest.raises(ModelError, match=r"plans\.json is missing"):
        spec_from_nnunet(no_plans)
    with pytest.raises(ModelError, match=r"plans\.json is missing"):
        add_model(tmp_path / "models", no_plans)
    with pytest.raises(ModelError, match=r"plans\.json is missing"):
        NnUNetRunner(spec, no_plans).run(ct)

    untrained = tmp_path / "untrained" / folder.name
    shutil.copytree(folder, untrained)
    (untrained / "fold_all/checkpoint_final.pth").unlink()
    with pytest.raises(ModelError, match=r"no fold_N/checkpoint_final\.pth"):
        spec_from_nnunet(untrained)
    with pytest.raises(ModelError, match=r"fold_all/checkpoint_final\.pth is missing"):
        NnUNetRunner(spec, untrained, folds=["all"]).run(ct)

    two_channels = tmp_path / "two-channels" / folder.name
    shutil.copytree(folder, two_channels)
    dataset = json.loads((two_channels / "dataset.json").read_text())
    dataset["channel_names"] = {"0": "T2", "1": "ADC"}
    (two_channels / "dataset.json").write_text(json.dumps(dataset))
    two = spec_from_nnunet(two_channels)
    assert two.modalities == ("MR",)
    with pytest.raises(ModelError, match=r"needs 2 input channels \(T2, ADC\)"):
        NnUNetRunner(two, two_channels).run(ct)

    cascade = tmp_path / "cascade" / folder.name
    shutil.copytree(folder, cascade)
    plans = json.loads((cascade / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["previous_stage"] = "3d_lowres"
    (cascade / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(ModelError, match="cascade"):
        NnUNetRunner(spec, cascade).run(ct)

    with pytest.raises(ModelError, match="tile_step_size"):
        NnUNetRunner(spec, folder, tile_step_size=0)


def test_nnunet_missing_is_a_model_error(
    tiny_nnunet: TinyNnUNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a Python without nnunetv2: its import fails
    monkeypatch.setitem(sys.modules, "nnunetv2.inference.predict_from_raw_data", None)
    runner = NnUNetRunner(spec_from_nnunet(tiny_nnunet.folder), tiny_nnunet.folder)
    with pytest.raises(ModelError, match="needs nnU-Net v2"):
        runner.load("cpu")


def test_dataset_json_labels_modalities_and_spec_round_trip(
    tiny_nnunet: TinyNnUNet, tmp_path: Path
) -> None:
    plain = labels_from_dataset({"labels": {"background": 0, "liver": 1, "tumour": 2}})
    assert [(lab.value, lab.name) for lab in plain] == [(1, "liver"), (2, "tumour")]
    ignored = labels_from_dataset({"labels": {"background": 0, "lesion": 1, "ignore": 2}})
    assert [lab.name for lab in ignored] == ["lesion"]
    regions = labels_from_dataset(
        {
            "labels": {
                "background": 0,
                "whole tumour": [1, 2, 3],
                "tumour core": [2, 3],
                "enhancing": [3],
            },
            "regions_class_order": [1, 2, 3],
        }
    )
    assert [(lab.value, lab.name) for lab in regions] == [
        (1, "whole tumour"),
        (2, "tumour core"),
        (3, "enhancing"),
    ]
    with pytest.raises(ModelError, match="regions_class_order"):
        labels_from_dataset({"labels": {"background": 0, "a": [1, 2], "b": [2]}})
    assert modalities_from_channels({"0": "CT"}) == ("CT",)
    assert modalities_from_channels({"0": "T2", "1": "ADC", "2": "noNorm"}) == ("MR",)

    spec = spec_from_nnunet(tiny_nnunet.folder, "lung-nnunet")
    spec.save(tmp_path)
    assert ModelSpec.load(tmp_path) == spec


@pytest.mark.parametrize("reader", ["SimpleITKIOWithReorient", "NibabelIOWithReorient"])
def test_reorienting_readers(
    reader: str,
    runner: NnUNetRunner,
    tiny_nnunet: TinyNnUNet,
    shared_data: Path,
    tmp_path: Path,
) -> None:
    from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name

    folder = tmp_path / "reorient" / tiny_nnunet.folder.name
    shutil.copytree(tiny_nnunet.folder, folder)
    plans = json.loads((folder / "plans.json").read_text())
    plans["image_reader_writer"] = reader
    (folder / "plans.json").write_text(json.dumps(plans))
    reorienting = NnUNetRunner(spec_from_nnunet(folder), folder, device="cpu")
    ct_3mm = read_image(shared_data / "totalsegmentator_ref/ct_3mm/ct.nii.gz")
    for volume in (tiny_nnunet.lung_ct, ct_3mm):
        path = write_image(volume, tmp_path / "ct.nii.gz")
        theirs, props = recursive_find_reader_writer_by_name(reader)().read_images([str(path)])
        _, ours, our_props = reorienting.handover(volume)
        assert np.array_equal(ours, theirs)
        assert np.allclose(our_props["spacing"], props["spacing"], atol=1e-5)
    # LPS -> RAS flips two axes; nnU-Net's mirroring makes the network (nearly) blind to flips,
    # so the labels, turned back onto the input grid, match the plain reader's
    flipped = reorienting.run(tiny_nnunet.lung_ct).labels
    plain = runner.run(tiny_nnunet.lung_ct).labels
    assert flipped.geometry.same_grid(tiny_nnunet.lung_ct.geometry, atol=1e-6)
    assert dice(flipped.array, plain.array) > 0.99
