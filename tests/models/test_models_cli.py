"""``carina models`` and ``carina segment --model`` with the tiny lung network trained here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from carina.cli.main import app
from carina.dicom.seg import read_segmentation
from carina.imaging import read_labelmap, write_image
from carina.models.installed import runner_for
from carina.models.spec import ModelSpec

from .conftest import TinyLung

pytest.importorskip("torch")

cli = CliRunner()


def _invoke(*args: str) -> tuple[int, str]:
    result = cli.invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_models_add_list_info_segment_remove(
    tiny_lung: TinyLung, tmp_path: Path, shared_data: Path
) -> None:
    ct_dir = shared_data / "lung_ct_tumor_boxes/ct_dicom"
    data = str(tmp_path / "data")
    code, out = _invoke("models", "add", str(tiny_lung.folders["onnx"]), "--data-dir", data)
    assert code == 0, out
    assert "tiny-lung" in out
    # a bare MONAI bundle: the spec comes from its metadata, installed under another id
    code, out = _invoke(
        "models", "add", str(tiny_lung.bundle), "--id", "lung-bundle", "--data-dir", data
    )
    assert code == 0, out
    assert (tmp_path / "data/models/lung-bundle/configs/inference.json").is_file()
    code, out = _invoke("models", "add", str(tiny_lung.folders["torch"]), "--data-dir", data)
    assert code == 2
    assert "already installed" in out

    code, out = _invoke("models", "list", "--json", "--data-dir", data)
    assert code == 0, out
    listed = {m["id"]: m for m in json.loads(out)}
    assert set(listed) == {"tiny-lung", "lung-bundle"}
    assert listed["tiny-lung"]["format"] == "onnx"
    assert listed["lung-bundle"]["format"] == "monai-bundle"
    assert listed["lung-bundle"]["labels"][0]["name"] == "lung"

    code, out = _invoke("models", "info", "tiny-lung", "--data-dir", data)
    assert code == 0, out
    info = json.loads(out)
    assert info["spacing"] == [4.0, 4.0, 4.0]
    assert info["intensity"] == {"mode": "window", "lo": -1000.0, "hi": 500.0}

    code, out = _invoke("segment", "--list", "--data-dir", data)
    assert code == 0
    assert "tiny-lung" in out
    assert "lung-bundle" in out

    src = write_image(tiny_lung.ct, tmp_path / "ct.nii.gz")
    seg = tmp_path / "lungs.nii.gz"
    code, out = _invoke(
        "segment", str(src), "-o", str(seg), "--model", "tiny-lung", "--json", "--data-dir", data
    )
    assert code == 0, out
    payload = json.loads(out)
    assert payload["tool"] == "tiny-lung"
    assert set(payload["timings_s"]) == {"preprocess", "infer", "postprocess"}
    written = read_labelmap(seg)
    assert written.geometry.same_grid(tiny_lung.ct.geometry, atol=1e-3)
    folder = tiny_lung.folders["onnx"]
    direct = runner_for(ModelSpec.load(folder), folder, "cpu").run(tiny_lung.ct).labels
    assert np.array_equal(np.asarray(written.array), np.asarray(direct.array))
    assert payload["volumes_ml"]["lung"] == pytest.approx(direct.volumes_ml()[1], rel=1e-6)

    # DICOM series in, DICOM SEG out, with the model's label and its SNOMED code
    dcm = tmp_path / "lungs.dcm"
    code, out = _invoke(
        "segment", str(ct_dir), "-o", str(dcm), "--model", "tiny-lung", "--data-dir", data
    )
    assert code == 0, out
    seg = read_segmentation(dcm).reorient(tiny_lung.ct.geometry.orientation)
    assert seg.geometry.same_grid(tiny_lung.ct.geometry, atol=1e-3)
    assert [lab.name for lab in seg.labels] == ["lung"]
    segments = {s.SegmentLabel: s for s in pydicom.dcmread(dcm).SegmentSequence}
    assert segments["lung"].SegmentedPropertyTypeCodeSequence[0].CodeValue == "39607008"
    assert np.array_equal(np.asarray(seg.array), np.asarray(direct.array))

    code, out = _invoke("models", "remove", "tiny-lung", "--data-dir", data)
    assert code == 0, out
    assert not (tmp_path / "data/models/tiny-lung").exists()
    code, out = _invoke("models", "remove", "tiny-lung", "--data-dir", data)
    assert code == 2
    assert "no installed model" in out
    code, out = _invoke("models", "info", "tiny-lung", "--data-dir", data)
    assert code == 2
    code, out = _invoke(
        "segment", str(src), "-o", str(seg), "--model", "tiny-lung", "--data-dir", data
    )
    assert code == 2
    assert "unknown tool" in out


def test_models_add_refuses_bad_folders(tmp_path: Path, tiny_lung: TinyLung) -> None:
    data = str(tmp_path / "data")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out = _invoke("models", "add", str(empty), "--data-dir", data)
    assert code == 2
    assert "neither model.json" in out
    code, out = _invoke(
        "models", "add", str(tiny_lung.folders["torch"]), "--id", "../evil", "--data-dir", data
    )
    assert code == 2
    assert "invalid model id" in out
    assert not (tmp_path / "evil").exists()


def test_models_list_skips_a_broken_spec(tmp_path: Path, tiny_lung: TinyLung) -> None:
    data = tmp_path / "data"
    code, out = _invoke("models", "add", str(tiny_lung.folders["onnx"]), "--data-dir", str(data))
    assert code == 0, out
    broken = data / "models/half-copied"
    broken.mkdir()
    (broken / "model.json").write_text('{"id": "half-copied", "vers')
    result = cli.invoke(
        app, ["models", "list", "--json", "--data-dir", str(data)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert [m["id"] for m in json.loads(result.stdout)] == ["tiny-lung"]
    assert "skipped half-copied" in result.stderr
    assert "cannot read" in result.stderr
    # the good model still runs; the broken one is no tool
    code, out = _invoke("segment", "--list", "--data-dir", str(data))
    assert code == 0, out
    assert "tiny-lung" in out
    assert "half-copied" not in out
