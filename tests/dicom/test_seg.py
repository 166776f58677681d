"""DICOM SEG export and import: written by Carina, read back by highdicom and pydicom."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from carina.core import Label, LabelMap, LabelSet
from carina.core.errors import DicomError, GeometryError
from carina.dicom import load_series, scan
from carina.dicom.files import open_dataset
from carina.dicom.seg import Provenance, read_segmentation, write_segmentation
from carina.imaging import read_labelmap, resample_to_geometry


def _sources(folder: Path) -> tuple[list[Dataset], LabelMap | None]:
    (info,) = [s for s in scan(folder).series if s.has_pixels]
    return [open_dataset(ref)[0] for ref in info.sources], None


@pytest.fixture(scope="module")
def totalseg(shared_data: Path) -> tuple[list[Dataset], LabelMap, LabelSet]:
    """The TotalSegmentator CT with its reference seg on the CT grid.

    These files were published with empty SOP/Study/Series UIDs; the SEG writer refuses such
    sources, so the UIDs are filled in memory here (from the file meta, or made up).
    """
    ref = shared_data / "totalsegmentator_ref"
    (info,) = scan(ref / "ct_dicom").series
    ct = load_series(info).volume
    labels = LabelSet.from_json(ref / "label_map_total.json")
    seg = resample_to_geometry(
        read_labelmap(ref / "ct_dicom_seg_total.nii.gz", labels), ct.geometry
    )
    assert isinstance(seg, LabelMap)
    sources = []
    for r in info.sources:
        ds = open_dataset(r)[0]
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2"
        sources.append(ds)
    return sources, seg, labels


@pytest.mark.parametrize("seg_type", ["LABELMAP", "BINARY"])
def test_round_trip_117_class_reference(
    totalseg: tuple[list[Dataset], LabelMap, LabelSet], tmp_path: Path, seg_type: str
) -> None:
    sources, seg, labels = totalseg
    out = write_segmentation(
        seg,
        sources,
        tmp_path / "seg.dcm",
        seg_type=seg_type,
        provenance=Provenance("TotalSegmentator", "2.0"),
    )
    # pydicom sees a standard SEG referencing the source series
    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG"
    assert ds.SegmentationType == seg_type
    names = [s.SegmentLabel for s in ds.SegmentSequence if int(s.SegmentNumber) > 0]
    assert names == [labels[v].name for v in seg.present_values()]
    referenced = {
        item.ReferencedSOPInstanceUID
        for item in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert referenced == {s.SOPInstanceUID for s in sources}
    assert ds.SegmentSequence[-1].SegmentAlgorithmType == "AUTOMATIC"
    # highdicom and Carina read back identical masks on the same grid
    back = read_segmentation(out, labels).reorient(seg.geometry.orientation)
    assert back.geometry.same_grid(seg.geometry, atol=1e-3)
    np.testing.assert_array_equal(back.array, seg.array)
    assert [lab.name for lab in back.labels] == [labels[v].name for v in seg.present_values()]
    # without a label set, the values recorded at export come back
    assert read_segmentation(out).present_values() == seg.present_values()
    hd_seg = hd.seg.segread(out)
    liver_number = names.index("liver") + 1
    liver = hd_seg.get_volume(segment_numbers=[liver_number], combine_segments=True)
    assert int(np.asarray(liver.array).astype(bool).sum()) == int(seg.mask("liver").sum())


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
def test_binary_seg_passes_dciodvfy(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "lung_ct_tumor_boxes" / "ct_dicom"
    (info,) = [s for s in scan(folder).series if s.has_pixels]
    ct = load_series(info).volume
    sources = [open_dataset(ref)[0] for ref in info.sources]
    body = (np.asarray(ct.array) > -300).astype(np.uint8)
    air = (np.asarray(ct.array) < -900) & (body == 0)
    arr = body.copy()
    arr[air] = 0
    lungs_like = (np.asarray(ct.array) < -500) & (np.asarray(ct.array) > -950)
    arr[lungs_like] = 2
    labels = LabelSet([Label(1, "dense"), Label(2, "aerated")])
    lm = LabelMap(arr, ct.geometry, labels=labels)
    out = write_segmentation(lm, sources, tmp_path / "seg.dcm", seg_type="BINARY")
    run = subprocess.run(["dciodvfy", str(out)], capture_output=True, text=True, check=False)
    errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
    assert errors == []
    back = read_segmentation(out, labels).reorient(ct.geometry.orientation)
    np.testing.assert_array_equal(back.array, arr)
    assert pydicom.dcmread(out).SegmentSequence[0].SegmentAlgorithmType == "MANUAL"


def test_refusals_name_the_cause(
    totalseg: tuple[list[Dataset], LabelMap, LabelSet], shared_data: Path, tmp_path: Path
) -> None:
    sources, seg, _ = totalseg
    ref = shared_data / "totalsegmentator_ref" / "ct_dicom"
    (info,) = scan(ref).series
    raw = [open_dataset(r)[0] for r in info.sources]
    with pytest.raises(DicomError, match="empty SOPClassUID"):
        write_segmentation(seg, raw, tmp_path / "x.dcm")
    empty = LabelMap(np.zeros(seg.shape, np.uint8), seg.geometry)
    with pytest.raises(Exception, match="empty"):
        write_segmentation(empty, sources, tmp_path / "x.dcm")
    other = LabelMap(
        np.asarray(seg.array),
        type(seg.geometry)(seg.geometry.affine, seg.geometry.shape, "1.2.3.999"),
        labels=seg.labels,
    )
    with pytest.raises(GeometryError, match="frames of reference"):
        write_segmentation(other, sources, tmp_path / "x.dcm")
    assert not list(tmp_path.iterdir())
    bad = tmp_path / "not-seg.dcm"
    bad.write_bytes(b"nothing")
    with pytest.raises(DicomError, match="cannot read SEG"):
        read_segmentation(bad)
