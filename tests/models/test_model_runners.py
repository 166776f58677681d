"""Trained-model runners on a network trained here: PyTorch, TorchScript, ONNX Runtime and a
MONAI bundle give the same lungs on the real lung CT, on the input's grid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from carina.core.errors import ModelError
from carina.imaging import read_labelmap, write_image
from carina.models import STAGES, Runner
from carina.models.bundle import BundleRunner, spec_from_bundle
from carina.models.installed import runner_for
from carina.models.spec import Intensity, ModelSpec
from carina.models.train_tiny import lung_spec, lung_target

from .conftest import TinyLung

pytest.importorskip("torch")
pytest.importorskip("monai")


def dice(a: npt.NDArray[np.generic], b: npt.NDArray[np.generic]) -> float:
    x, y = np.asarray(a) > 0, np.asarray(b) > 0
    return float(2 * (x & y).sum() / (x.sum() + y.sum()))


def _runner(tiny: TinyLung, fmt: str) -> Runner:
    folder = tiny.folders[fmt]
    return runner_for(ModelSpec.load(folder), folder, "cpu")


def test_pytorch_torchscript_and_onnx_agree_on_the_lung_ct(tiny_lung: TinyLung) -> None:
    ct = tiny_lung.ct
    results = {fmt: _runner(tiny_lung, fmt).run(ct) for fmt in ("torch", "torchscript", "onnx")}
    ref = results["torch"].labels
    assert ref.geometry.same_grid(ct.geometry, atol=1e-6)
    assert ref.labels.by_name("lung").value == 1
    assert set(np.unique(ref.array)) == {0, 1}
    for fmt, res in results.items():
        assert set(res.timings) >= set(STAGES)
        assert res.timings["infer"] > 0
        assert res.labels.geometry.same_grid(ct.geometry, atol=1e-6)
        d = dice(res.labels.array, ref.array)
        print(f"{fmt}: Dice vs PyTorch {d:.5f}, timings {dict(res.timings)}")
        assert d >= 0.999
    # the network learned its target (the weight-free lungs tool), it is not a constant
    learned = dice(ref.array, lung_target(ct).array)
    print(f"trained in {tiny_lung.train_s:.1f} s, Dice vs lungs tool {learned:.3f}")
    assert learned > 0.6


def test_resampling_is_in_patient_space(tiny_lung: TinyLung) -> None:
    runner = _runner(tiny_lung, "torch")
    ct = tiny_lung.ct
    lps = runner.run(ct).labels
    flipped = ct.reorient("RAS")
    ras = runner.run(flipped).labels
    assert ras.geometry.same_grid(flipped.geometry, atol=1e-6)
    back = ras.reorient(ct.geometry.orientation)
    assert np.array_equal(back.array, lps.array)


def _monai_bundle_run(bundle: Path, image: Path, out: Path) -> Path:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    # what ``python -m monai.bundle run --config_file ... --input_image ...`` calls (its command
    # line needs the optional ``fire`` package)
    script = (
        "import sys; from monai.bundle import run; "
        "run(config_file=sys.argv[1], bundle_root=sys.argv[2], input_image=sys.argv[3], "
        "output_dir=sys.argv[4])"
    )
    cmd = [
        sys.executable,
        "-c",
        script,
        str(bundle / "configs/inference.json"),
        str(bundle),
        str(image),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = sorted(out.glob("*_seg.nii.gz"))
    assert len(written) == 1, (list(out.iterdir()), proc.stderr[-2000:])
    return written[0]


def test_bundle_run_by_carina_equals_monai_bundle_run(tiny_lung: TinyLung, tmp_path: Path) -> None:
    pytest.importorskip("ignite")  # MONAI's bundle evaluator needs it
    bundle = tiny_lung.bundle
    image = write_image(tiny_lung.ct, tmp_path / "lung_ct.nii.gz")
    spec = spec_from_bundle(bundle)
    assert spec.id == "tiny-lung"
    assert spec.format == "monai-bundle"
    assert [lab.name for lab in spec.labels] == ["lung"]
    runner = BundleRunner(spec, bundle, device="cpu")
    ours = runner.run(tiny_lung.ct)
    assert ours.labels.geometry.same_grid(tiny_lung.ct.geometry, atol=1e-6)
    theirs_path = _monai_bundle_run(bundle, image, tmp_path / "monai-out")
    theirs = read_labelmap(theirs_path).reorient(tiny_lung.ct.geometry.orientation)
    assert theirs.geometry.same_grid(tiny_lung.ct.geometry, atol=1e-3)
    d = dice(ours.labels.array, theirs.array)
    print(f"bundle: Dice Carina vs monai.bundle run {d:.5f}, timings {dict(ours.timings)}")
    assert d >= 0.999
    assert int((np.asarray(theirs.array) > 0).sum()) > 1000
    # the same network behind Carina's own resampling (SimpleITK grid over the same extent, not
    # MONAI's Spacingd grid) gives similar lungs; the tiny network is sensitive to the grid shift
    torch_labels = _runner(tiny_lung, "torch").run(tiny_lung.ct).labels
    print(f"bundle vs PyTorch runner Dice {dice(ours.labels.array, torch_labels.array):.4f}")
    assert dice(ours.labels.array, torch_labels.array) > 0.85


def _edited_bundle(src: Path, dst: Path, part: str, value: object) -> Path:
    import shutil

    shutil.copytree(src, dst)
    path = dst / "configs/inference.json"
    config = json.loads(path.read_text())
    config[part] = value
    path.write_text(json.dumps(config))
    return dst


@pytest.mark.parametrize(
    ("part", "value", "message"),
    [
        ("network_def", "$__import__('os').system('true')", "expression"),
        ("inferer", {"_target_": "os.system", "command": "true"}, "outside MONAI"),
        ("inferer", {"_target_": "builtins.eval", "source": "1"}, "outside MONAI"),
        ("inferer", "%configs/other.json#inferer", "macro"),
        ("inferer", "@inferer", "circular"),
        ("postprocessing", "@nowhere", "not found"),
    ],
)
def test_bundle_config_refuses_code(
    tiny_lung: TinyLung, tmp_path: Path, part: str, value: object, message: str
) -> None:
    bundle = _edited_bundle(tiny_lung.bundle, tmp_path / "b", part, value)
    runner = BundleRunner(spec_from_bundle(bundle), bundle, device="cpu")
    with pytest.raises(ModelError, match=message):
        runner.load("cpu")


def test_model_spec_round_trip_and_validation(tmp_path: Path) -> None:
    spec = lung_spec(weights="model.pt")
    spec.save(tmp_path)
    again = ModelSpec.load(tmp_path)
    assert again == spec
    assert again.labels.to_list() == spec.labels.to_list()
    with pytest.raises(ModelError, match="format"):
        ModelSpec.from_dict({**spec.to_dict(), "format": "pickle"})
    with pytest.raises(ModelError, match="spacing"):
        ModelSpec.from_dict({**spec.to_dict(), "spacing": [1, 0, 1]})
    with pytest.raises(ModelError, match="window"):
        Intensity("window", 10, -10)
    with pytest.raises(ModelError, match="invalid model spec"):
        ModelSpec.from_dict({"id": "x"})


def test_missing_weights_and_foreign_network_are_errors(
    tiny_lung: TinyLung, tmp_path: Path
) -> None:
    spec = ModelSpec.load(tiny_lung.folders["torch"])
    with pytest.raises(ModelError, match="not found"):
        runner_for(spec, tmp_path, "cpu").run(tiny_lung.ct)
    from dataclasses import replace

    (tmp_path / "model.pt").write_bytes((tiny_lung.folders["torch"] / "model.pt").read_bytes())
    bad = replace(spec, network={"name": "os.system", "args": {}})
    with pytest.raises(ModelError, match="unknown MONAI network"):
        runner_for(bad, tmp_path, "cpu").run(tiny_lung.ct)
