"""`carina segment`: NIfTI and DICOM SEG outputs read back and compared with the tool's labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from typer.testing import CliRunner

from carina.cli.main import app
from carina.dicom import read_volume
from carina.dicom.seg import read_segmentation
from carina.imaging import read_image, read_labelmap
from carina.models import get_tool

runner = CliRunner()


@pytest.fixture(scope="module")
def ts(shared_data: Path) -> Path:
    return shared_data / "totalsegmentator_ref"


def test_list_shows_every_tool() -> None:
    result = runner.invoke(app, ["segment", "--list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for tool in (
        "body",
        "lungs",
        "airways",
        "bones",
        "lung-vessels",
        "nodule-candidates",
        "tissue",
    ):
        assert tool in result.output


def test_nifti_in_nifti_out_keeps_geometry(ts: Path, tmp_path: Path) -> None:
    src = ts / "ct_3mm_30sl/ct.nii.gz"
    out = tmp_path / "lungs.nii.gz"
    result = runner.invoke(app, ["segment", str(src), "-o", str(out), "--tool", "lungs"])
    assert result.exit_code == 0, result.output
    assert "lung_right" in result.output
    image = read_image(src)
    written = read_labelmap(out)
    assert written.geometry.same_grid(image.geometry)
    expected = get_tool("lungs").run(image).labels
    assert np.array_equal(np.asarray(written.array), np.asarray(expected.array))
    assert written.present_values() == [1, 2]


def test_postprocessing_options(ts: Path, tmp_path: Path) -> None:
    src = ts / "ct_3mm/ct.nii.gz"
    plain, cleaned = tmp_path / "plain.nii.gz", tmp_path / "clean.nii.gz"
    assert (
        runner.invoke(app, ["segment", str(src), "-o", str(plain), "--tool", "bones"]).exit_code
        == 0
    )
    result = runner.invoke(
        app,
        [
            "segment",
            str(src),
            "-o",
            str(cleaned),
            "--tool",
            "bones",
            "--largest-component",
            "--fill-holes",
            "--min-size",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    before = np.asarray(read_labelmap(plain).array)
    after = np.asarray(read_labelmap(cleaned).array)
    full = np.ones((3, 3, 3), dtype=bool)
    assert ndi.label(before == 1, structure=full)[1] > 1
    assert ndi.label(after == 1, structure=full)[1] == 1
    # no enclosed background left inside the bone label
    assert not (ndi.binary_fill_holes(after == 1, structure=full) & (after == 0)).any()


def test_dicom_in_seg_out_reads_back(shared_data: Path, tmp_path: Path) -> None:
    series = shared_data / "lung_ct_tumor_boxes/ct_dicom"
    out = tmp_path / "lungs.dcm"
    result = runner.invoke(app, ["segment", str(series), "-o", str(out), "--tool", "lungs"])
    assert result.exit_code == 0, result.output
    volume = read_volume(series)
    expected = get_tool("lungs").run(volume).labels
    # the SEG's frames may come back in the other slice order: same voxels, axes flipped
    seg = read_segmentation(out).reorient(volume.geometry.orientation)
    assert seg.geometry.same_grid(volume.geometry, atol=1e-3)
    assert [lab.name for lab in seg.labels] == ["lung_right", "lung_left"]
    assert np.array_equal(np.asarray(seg.array), np.asarray(expected.array))


def test_seg_needs_dicom_input(ts: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["segment", str(ts / "ct_3mm/ct.nii.gz"), "-o", str(tmp_path / "x.dcm"), "--tool", "body"],
    )
    assert result.exit_code == 2
    assert "not DICOM" in result.output
    assert not (tmp_path / "x.dcm").exists()


def test_seg_refused_when_source_uids_are_empty(ts: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["segment", str(ts / "ct_dicom"), "-o", str(tmp_path / "x.dcm"), "--tool", "body"]
    )
    assert result.exit_code == 2
    assert "empty" in result.output
    assert "UID" in result.output
    assert not (tmp_path / "x.dcm").exists()


def test_unknown_tool_and_bad_suffix(ts: Path, tmp_path: Path) -> None:
    src = str(ts / "ct_3mm_30sl/ct.nii.gz")
    result = runner.invoke(
        app, ["segment", src, "-o", str(tmp_path / "x.nii.gz"), "--tool", "liver-ai"]
    )
    assert result.exit_code == 2
    assert "unknown tool 'liver-ai'" in result.output
    result = runner.invoke(app, ["segment", src, "-o", str(tmp_path / "x.png"), "--tool", "body"])
    assert result.exit_code == 2
    assert "must be a label-map image" in result.output


@pytest.mark.parametrize(
    ("tool", "names", "code"),
    [
        ("body", ["body"], "~SCT^38266002^Entire body~"),
        ("lungs", ["lung_right", "lung_left"], "~SCT^3341006^Right lung~"),
    ],
)
def test_nifti_in_slicer_segmentation_out(
    ts: Path, tmp_path: Path, tool: str, names: list[str], code: str
) -> None:
    src = ts / "ct_3mm_30sl/ct.nii.gz"
    out = tmp_path / f"{tool}.seg.nrrd"
    result = runner.invoke(app, ["segment", str(src), "-o", str(out), "--tool", tool])
    assert result.exit_code == 0, result.output
    image = read_image(src)
    expected = get_tool(tool).run(image).labels
    written = read_labelmap(out)
    assert written.geometry.same_grid(image.geometry, atol=1e-6)
    np.testing.assert_array_equal(written.array, expected.array)
    assert written.present_values()
    assert written.labels == expected.labels  # names, colours and SNOMED codes of the tool
    header = out.read_bytes().split(b"\n\n", 1)[0].decode()
    for n, name in enumerate(names):
        assert f"Segment{n}_Name:={name}" in header.splitlines()
    assert code in header
