"""The annotation API on the real 30-slice lung CT (Lung-PET-CT-Dx A0002): versions, history,
diffs, optimistic locking, SEG, NIfTI and 3D Slicer (.seg.nrrd) export/import, tasks and review
with permissions, agreement and consensus of two annotators' threshold masks."""

from __future__ import annotations

import csv
import gzip
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest

from carina.annotation.agreement import dice
from carina.core.labels import Label, LabelSet
from carina.core.volume import LabelMap
from carina.dicom import load_series, scan
from carina.dicom.seg import read_segmentation
from carina.imaging import read_labelmap, read_seg_nrrd, read_segments, write_seg_nrrd
from tests.api.conftest import Site, build_site
from tests.dicom_factory import ct_slices_with_geometry
from tests.imaging.test_segnrrd import _write_layers

LABELS = [
    {"value": 1, "name": "lesion", "color": [255, 0, 0]},
    {"value": 2, "name": "lung", "color": [0, 128, 255]},
]


class Lung:
    """The lung CT as the archive holds it, and its volume as load_series assembles it."""

    def __init__(self, folder: Path) -> None:
        (info,) = scan(folder).series
        self.study = info.study_instance_uid
        self.series = info.series_instance_uid
        self.volume = load_series(info).volume
        self.hu = np.asarray(self.volume.array).transpose(2, 1, 0)  # (k, j, i) as on the wire
        self.files = sorted(folder.glob("*.dcm"))


@pytest.fixture(scope="module")
def lung(shared_data: Path) -> Lung:
    return Lung(shared_data / "lung_ct_tumor_boxes" / "ct_dicom")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, lung: Lung) -> Iterator[Site]:
    for site in build_site(tmp_path_factory.mktemp("annot") / "data"):
        results = site.app.state.archive.ingest([(str(f), f.read_bytes()) for f in lung.files])
        assert all(r.status.ok for r in results)
        site.store.add_studies("alpha", [lung.study])
        response = site.client.post(
            "/api/projects/alpha/label-sets",
            json={"name": "chest", "labels": LABELS},
            headers=site.headers("manager"),
        )
        assert response.status_code == 201, response.text
        yield site


def _raw(array: np.ndarray) -> dict[str, Any]:
    return {
        "content": array.astype(array.dtype.newbyteorder("<")).tobytes(),
        "headers": {
            "Content-Type": "application/octet-stream",
            "X-Carina-Shape": ",".join(str(s) for s in array.shape),
            "X-Carina-Dtype": array.dtype.name,
        },
    }


def _save(
    site: Site, user: str, seg: int, array: np.ndarray, parent: int | None = None, **query: str
) -> Any:
    raw = _raw(array)
    params: dict[str, Any] = dict(query)
    if parent is not None:
        params["parent"] = parent
    return site.client.post(
        f"/api/projects/alpha/segmentations/{seg}/versions",
        content=raw["content"],
        headers={**raw["headers"], **site.headers(user)},
        params=params,
    )


def _new_seg(site: Site, lung: Lung, user: str = "annotator") -> dict[str, Any]:
    response = site.client.post(
        "/api/projects/alpha/segmentations",
        json={"study": lung.study, "series": lung.series, "label_set": "chest", "name": "lungs"},
        headers=site.headers(user),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _lung_mask(lung: Lung, threshold: float) -> np.ndarray:
    """Label 2 where HU < threshold inside the body (a crude threshold lung mask)."""
    labels = np.zeros(lung.hu.shape, dtype=np.uint8)
    inside = np.zeros(lung.hu.shape, dtype=bool)
    inside[:, 100:420, 60:450] = True  # leave the air outside the patient out
    labels[(lung.hu < threshold) & inside] = 2
    return labels


def test_versions_history_diff_and_locking(site: Site, lung: Lung) -> None:
    seg = _new_seg(site, lung)
    assert seg["shape"] == [30, 512, 512]
    assert seg["head"] is None
    v1_labels = _lung_mask(lung, -500)
    assert 1_000_000 < np.count_nonzero(v1_labels) < 3_000_000
    r1 = _save(site, "annotator", seg["id"], v1_labels, tool="threshold", comment="HU < -500")
    assert r1.status_code == 201, r1.text
    v1 = r1.json()
    assert (v1["number"], v1["parent"], v1["author"], v1["tool"]) == (
        1,
        None,
        "annotator",
        "threshold",
    )
    assert v1["voxel_counts"] == {"2": int(np.count_nonzero(v1_labels))}

    v2_labels = v1_labels.copy()
    v2_labels[12:15, 250:280, 300:340] = 1  # a lesion box over lung and soft tissue
    r2 = _save(site, "annotator", seg["id"], v2_labels, parent=v1["id"], comment="lesion")
    assert r2.status_code == 201, r2.text
    v2 = r2.json()
    assert (v2["number"], v2["parent"]) == (2, v1["id"])

    # a second editor still on version 1 cannot overwrite version 2
    stale = _save(site, "manager", seg["id"], v1_labels, parent=v1["id"])
    assert stale.status_code == 409
    assert stale.json()["head"] == v2["id"]
    assert f"head is version {v2['id']}" in stale.json()["detail"]
    # nor can a save that claims to be the first
    assert _save(site, "manager", seg["id"], v1_labels).status_code == 409

    history = site.client.get(
        f"/api/projects/alpha/segmentations/{seg['id']}", headers=site.headers("viewer")
    ).json()
    assert history["head"] == v2["id"]
    assert [(v["id"], v["parent"]) for v in history["versions"]] == [
        (v1["id"], None),
        (v2["id"], v1["id"]),
    ]

    # each version reads back byte for byte
    for version, labels in ((v1, v1_labels), (v2, v2_labels)):
        got = site.client.get(
            f"/api/projects/alpha/segmentations/{seg['id']}/versions/{version['id']}",
            headers=site.headers("viewer"),
        )
        assert got.status_code == 200
        assert got.headers["X-Carina-Shape"] == "30,512,512"
        assert got.headers["X-Carina-Dtype"] == "uint8"
        assert got.content == labels.tobytes()

    diff = site.client.get(
        f"/api/projects/alpha/segmentations/{seg['id']}/versions/{v2['id']}/diff",
        headers=site.headers("viewer"),
    ).json()
    box = np.zeros(lung.hu.shape, dtype=bool)
    box[12:15, 250:280, 300:340] = True
    voxel_ml = lung.volume.geometry.voxel_volume_mm3 / 1000
    by_label = {row["value"]: row for row in diff["labels"]}
    assert diff["from_version"] == v1["id"]
    assert by_label[1]["added_voxels"] == box.sum() == 3 * 30 * 40
    assert by_label[1]["removed_voxels"] == 0
    assert by_label[1]["added_ml"] == pytest.approx(box.sum() * voxel_ml)
    lost = int(np.count_nonzero(box & (v1_labels == 2)))
    assert 0 < lost < box.sum()
    assert by_label[2]["removed_voxels"] == lost
    assert by_label[2]["added_voxels"] == 0
    assert diff["changed_voxels"] == box.sum()

    # saving the same voxels again makes a new version sharing one content-addressed blob
    r3 = _save(site, "annotator", seg["id"], v1_labels, parent=v2["id"], comment="undo")
    assert r3.status_code == 201
    assert r3.json()["sha256"] == v1["sha256"]
    blobs = list((site.app.state.settings.data_dir / "annotations" / "blobs").rglob("*.lm"))
    assert v1["sha256"] in {p.stem for p in blobs}
    assert not list((site.app.state.settings.data_dir / "annotations").rglob("*.part"))


def test_saves_that_are_refused(site: Site, lung: Lung) -> None:
    seg = _new_seg(site, lung)
    labels = _lung_mask(lung, -500)
    unknown = labels.copy()
    unknown[0, 0, 0:3] = 7
    refused = _save(site, "annotator", seg["id"], unknown)
    assert refused.status_code == 422
    assert "label value(s) 7 are not in label set 'chest'" in refused.json()["detail"]
    wrong_grid = _save(site, "annotator", seg["id"], labels[:29])
    assert wrong_grid.status_code == 422
    assert "(slices, rows, columns) = (30, 512, 512)" in wrong_grid.json()["detail"]
    short = _raw(labels)
    response = site.client.post(
        f"/api/projects/alpha/segmentations/{seg['id']}/versions",
        content=short["content"][:-1],
        headers={**short["headers"], **site.headers("annotator")},
    )
    assert response.status_code == 422
    # a viewer and a reviewer may read but not save
    for user in ("viewer", "reviewer"):
        assert _save(site, user, seg["id"], labels).status_code == 403
    # nothing was saved by any of these
    history = site.client.get(
        f"/api/projects/alpha/segmentations/{seg['id']}", headers=site.headers("viewer")
    ).json()
    assert history["versions"] == []
    # a series of another project's study is not found
    other = site.studies["beta"]
    response = site.client.post(
        "/api/projects/alpha/segmentations",
        json={"study": other.study, "series": other.series, "label_set": "chest"},
        headers=site.headers("annotator"),
    )
    assert response.status_code == 404


def test_seg_and_nifti_export_read_back_identical(site: Site, lung: Lung) -> None:
    seg = _new_seg(site, lung)
    labels = _lung_mask(lung, -600)
    labels[5:8, 200:230, 150:200] = 1
    version = _save(site, "annotator", seg["id"], labels).json()
    base = f"/api/projects/alpha/segmentations/{seg['id']}/versions/{version['id']}"
    expected = labels.transpose(2, 1, 0)  # (i, j, k)

    response = site.client.get(base + "/seg", headers=site.headers("viewer"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom"
    number = version["number"]
    disposition = response.headers["content-disposition"]
    assert disposition == f'attachment; filename="lungs-{seg["id"]}-v{number}.dcm"'
    ds = pydicom.dcmread(io.BytesIO(response.content))
    assert ds.Modality == "SEG"
    assert ds.StudyInstanceUID == lung.study
    referenced = {
        item.ReferencedSOPInstanceUID
        for series in ds.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    assert referenced == {
        pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in lung.files
    }
    # the SEG lists frames from the other end (LPI): the same grid in patient space
    back = read_segmentation(ds).reorient(lung.volume.geometry.orientation)
    assert back.geometry.same_grid(lung.volume.geometry, atol=1e-4)
    assert {lab.name for lab in back.labels} == {"lesion", "lung"}
    names = {lab.value: lab.name for lab in back.labels}
    remapped = np.zeros_like(expected)
    for value, name in names.items():
        remapped[np.asarray(back.array) == value] = {"lesion": 1, "lung": 2}[name]
    assert np.array_equal(remapped, expected)

    response = site.client.get(base + "/nifti", headers=site.headers("viewer"))
    assert response.status_code == 200
    disposition = response.headers["content-disposition"]
    assert disposition == f'attachment; filename="lungs-{seg["id"]}-v{number}.nii.gz"'
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels.nii.gz"
        path.write_bytes(response.content)
        nifti = read_labelmap(path)
        assert nifti.geometry.same_grid(lung.volume.geometry, atol=1e-4)
        assert np.array_equal(np.asarray(nifti.array), expected)

        # the SEG comes back in as a new version (how AI pre-labels enter): identical voxels
        imported = site.client.post(
            f"/api/projects/alpha/segmentations/{seg['id']}/import",
            params={
                "format": "seg",
                "parent": version["id"],
                "model": "prelabel",
                "model_version": "2",
            },
            content=_seg_bytes(site, base),
            headers={"Content-Type": "application/dicom", **site.headers("annotator")},
        )
        assert imported.status_code == 201, imported.text
        assert imported.json()["sha256"] == version["sha256"]
        assert imported.json()["model"] == "prelabel"

        # a NIfTI of the same labels on a flipped axis order is resampled onto the series grid
        img = nib.load(path)
        flipped = nib.Nifti1Image(
            np.asarray(img.dataobj)[::-1].copy(), img.affine @ _flip_x(img.shape[0])
        )
        flipped_path = Path(tmp) / "flipped.nii.gz"
        nib.save(flipped, flipped_path)
        imported = site.client.post(
            f"/api/projects/alpha/segmentations/{seg['id']}/import",
            params={"format": "nifti", "parent": imported.json()["id"]},
            content=flipped_path.read_bytes(),
            headers={"Content-Type": "application/gzip", **site.headers("annotator")},
        )
        assert imported.status_code == 201, imported.text
        assert imported.json()["sha256"] == version["sha256"]


def test_nifti_imports_that_are_refused(site: Site, lung: Lung) -> None:
    seg = _new_seg(site, lung)
    url = f"/api/projects/alpha/segmentations/{seg['id']}/import"

    def post(content: bytes) -> Any:
        return site.client.post(
            url,
            params={"format": "nifti"},
            content=content,
            headers={"Content-Type": "application/gzip", **site.headers("annotator")},
        )

    # a header declaring far more voxels than the series grid: refused before the voxels are
    # unpacked (the body is a few bytes of zeros, gzipped, that would unpack into gigabytes)
    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint8)
    header.set_data_shape((4096, 4096, 4096))
    buffer = io.BytesIO()
    header.write_to(buffer)
    bomb = gzip.compress(buffer.getvalue().ljust(352, b"\0") + bytes(1 << 16))
    assert len(bomb) < 2000
    response = post(bomb)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert f"the NIfTI holds {4096**3} voxel values" in detail
    assert f"at most {16 * 30 * 512 * 512} are accepted" in detail
    for damaged in (b"", b"\x1f\x8b\x08\x00broken", b"not a nifti at all" * 40):
        response = post(damaged)
        assert response.status_code == 400, response.text
        assert "NIfTI" in response.json()["detail"]
    # nothing was stored
    after = site.client.get(
        f"/api/projects/alpha/segmentations/{seg['id']}", headers=site.headers("annotator")
    )
    assert after.status_code == 200
    assert after.json()["versions"] == []
    assert after.json()["head"] is None


def _slicer_file(lung: Lung, path: Path, kji: np.ndarray, labels: LabelSet) -> bytes:
    """A .seg.nrrd of the (k, j, i) label map ``kji`` (values of ``labels``) on the lung grid,
    cropped to the box holding its voxels and stored right-to-left, head first (RAI), as another
    tool may save it."""
    ijk = kji.transpose(2, 1, 0)
    box = np.argwhere(ijk > 0)
    start, stop = box.min(axis=0), box.max(axis=0) + 1
    crop = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
    cropped = LabelMap(
        np.ascontiguousarray(ijk[crop]),
        lung.volume.geometry.cropped(start, stop),
        labels=labels,
    )
    stored = cropped.reorient("RAI")
    assert isinstance(stored, LabelMap)
    assert stored.geometry.shape != lung.volume.geometry.shape
    write_seg_nrrd(stored, path)
    return path.read_bytes()


def _import_slicer(site: Site, seg: int, data: bytes, user: str = "annotator", **query: Any) -> Any:
    return site.client.post(
        f"/api/projects/alpha/segmentations/{seg}/import",
        params={"format": "slicer", **query},
        content=data,
        headers={"Content-Type": "application/octet-stream", **site.headers(user)},
    )


def test_slicer_export_reads_back_identical(site: Site, lung: Lung, tmp_path: Path) -> None:
    seg = _new_seg(site, lung)
    labels = _lung_mask(lung, -600)
    labels[5:8, 200:230, 150:200] = 1
    version = _save(site, "annotator", seg["id"], labels).json()
    base = f"/api/projects/alpha/segmentations/{seg['id']}/versions/{version['id']}"

    response = site.client.get(base + "/slicer", headers=site.headers("viewer"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    disposition = response.headers["content-disposition"]
    assert disposition == f'attachment; filename="lungs-{seg["id"]}-v1.seg.nrrd"'
    path = tmp_path / "export.seg.nrrd"
    path.write_bytes(response.content)
    back = read_seg_nrrd(path)
    assert back.geometry.same_grid(lung.volume.geometry, atol=1e-4)
    assert np.array_equal(np.asarray(back.array), labels.transpose(2, 1, 0))
    assert [(lab.value, lab.name, list(lab.color)) for lab in back.labels] == [
        (label["value"], label["name"], label["color"]) for label in LABELS
    ]
    segments = read_segments(path)
    assert [(s.name, s.label_value, s.layer) for s in segments] == [
        ("lesion", 1, 0),
        ("lung", 2, 0),
    ]
    # a segment's extent is its voxel bounding box (i0 i1 j0 j1 k0 k1)
    assert segments[0].extent == (150, 199, 200, 229, 5, 7)

    audit = site.client.get(
        "/api/audit", params={"action": "annotation.export"}, headers=site.headers("admin")
    ).json()
    assert any(
        row["detail"] == f"Slicer {version['id']}" and row["user_name"] == "viewer" for row in audit
    )
    # only members read it
    outsider = site.client.get(base + "/slicer", headers=site.headers("outsider"))
    assert outsider.status_code == 404


def test_slicer_import_matches_segments_by_name(site: Site, lung: Lung, tmp_path: Path) -> None:
    seg = _new_seg(site, lung)
    expected = _lung_mask(lung, -600)  # lung = 2 in the label set
    expected[5:8, 200:230, 150:200] = 1  # lesion = 1
    # the file numbers them the other way round and lists lung first
    theirs = np.zeros_like(expected)
    theirs[expected == 2] = 3
    theirs[expected == 1] = 9
    data = _slicer_file(
        lung,
        tmp_path / "theirs.seg.nrrd",
        theirs,
        LabelSet([Label(3, "lung", (0, 0, 255)), Label(9, "lesion", (0, 255, 0))]),
    )
    assert [s.name for s in read_segments(tmp_path / "theirs.seg.nrrd")] == ["lung", "lesion"]

    imported = _import_slicer(site, seg["id"], data, model="slicer-edit", comment="from Slicer")
    assert imported.status_code == 201, imported.text
    version = imported.json()
    assert version["tool"] == "import:slicer"
    assert version["model"] == "slicer-edit"
    assert version["voxel_counts"] == {
        "1": int(np.count_nonzero(expected == 1)),
        "2": int(np.count_nonzero(expected == 2)),
    }
    stored = site.client.get(
        f"/api/projects/alpha/segmentations/{seg['id']}/versions/{version['id']}",
        headers=site.headers("viewer"),
    )
    assert stored.headers["X-Carina-Shape"] == "30,512,512"
    got = np.frombuffer(stored.content, dtype=stored.headers["X-Carina-Dtype"]).reshape(
        expected.shape
    )
    assert np.array_equal(got, expected)

    # a Slicer file of two layers (lung in one, lesion in another, both numbered 1) also fits
    ijk = expected.transpose(2, 1, 0)
    layered = _write_layers(
        tmp_path / "layers.seg.nrrd",
        [(ijk == 2).astype(np.uint8), (ijk == 1).astype(np.uint8)],
        LabelMap(ijk, lung.volume.geometry),
        [("lung", 0, 1, (0.0, 0.0, 1.0), ""), ("lesion", 1, 1, (0.0, 1.0, 0.0), "")],
    )
    again = _import_slicer(site, seg["id"], layered.read_bytes(), parent=version["id"])
    assert again.status_code == 201, again.text
    assert again.json()["sha256"] == version["sha256"]


def test_slicer_imports_that_are_refused(site: Site, lung: Lung, tmp_path: Path) -> None:
    seg = _new_seg(site, lung)
    labels = _lung_mask(lung, -600)
    labels[5:8, 200:230, 150:200] = 1
    good = _slicer_file(
        lung,
        tmp_path / "good.seg.nrrd",
        labels,
        LabelSet([Label(1, "lesion"), Label(2, "lung")]),
    )
    unknown = _slicer_file(
        lung,
        tmp_path / "unknown.seg.nrrd",
        labels,
        LabelSet([Label(1, "tumour"), Label(2, "lung")]),
    )
    response = _import_slicer(site, seg["id"], unknown)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "segment(s) 'tumour' not in the label set" in detail
    assert "'lesion', 'lung'" in detail

    for damaged in (good[: len(good) // 2], b"NRRD0004\nnot a header\n\n", b""):
        response = _import_slicer(site, seg["id"], damaged)
        assert response.status_code == 400, response.text
        assert "not a readable Slicer segmentation" in response.json()["detail"]

    # a detached header would have the reader take voxels from any file of the server it names
    elsewhere = tmp_path / "elsewhere.raw"
    elsewhere.write_bytes(bytes([0, 1] * 32))
    detached = (
        "NRRD0004\ntype: unsigned char\ndimension: 3\nspace: left-posterior-superior\n"
        "sizes: 4 4 4\nspace directions: (1,0,0) (0,1,0) (0,0,1)\nkinds: domain domain domain\n"
        f"encoding: raw\nspace origin: (0,0,0)\nData File: {elsewhere}\n"
        "Segment0_ID:=Segment_1\nSegment0_Name:=lesion\nSegment0_LabelValue:=1\n"
        "Segment0_Layer:=0\n\n"
    ).encode()
    assert np.count_nonzero(read_seg_nrrd(_written(tmp_path, detached)).array) == 32
    response = _import_slicer(site, seg["id"], detached)
    assert response.status_code == 400
    assert "names a separate data file" in response.json()["detail"]
    # sizes far beyond the series grid are refused before anything is decompressed
    huge = good.replace(b"sizes: ", b"sizes: 1000 ", 1).replace(b"dimension: 3", b"dimension: 4")
    response = _import_slicer(site, seg["id"], huge)
    assert response.status_code == 400
    assert f"at most {16 * 30 * 512 * 512} are accepted" in response.json()["detail"]

    # lung and lesion in two layers that share voxels
    ijk = labels.transpose(2, 1, 0)
    lesion = (ijk == 1).astype(np.uint8)
    lung_layer = (ijk == 2).astype(np.uint8)
    lung_layer[150:200, 200:230, 5:8] = 1
    overlap = _write_layers(
        tmp_path / "overlap.seg.nrrd",
        [lung_layer, lesion],
        LabelMap(ijk, lung.volume.geometry),
        [("lung", 0, 1, (0.0, 0.0, 1.0), ""), ("lesion", 1, 1, (0.0, 1.0, 0.0), "")],
    )
    response = _import_slicer(site, seg["id"], overlap.read_bytes())
    assert response.status_code == 400
    assert "'lung' (layer 0) and 'lesion' (layer 1) overlap" in response.json()["detail"]
    assert f"{3 * 30 * 50} voxels in all" in response.json()["detail"]

    # a viewer and a reviewer may not import
    for user in ("viewer", "reviewer"):
        assert _import_slicer(site, seg["id"], good, user=user).status_code == 403
    history = site.client.get(
        f"/api/projects/alpha/segmentations/{seg['id']}", headers=site.headers("viewer")
    ).json()
    assert history["versions"] == []
    # the same file from an annotator is accepted
    assert _import_slicer(site, seg["id"], good).status_code == 201


def _written(folder: Path, data: bytes) -> Path:
    path = folder / "written.seg.nrrd"
    path.write_bytes(data)
    return path


def _seg_bytes(site: Site, base: str) -> bytes:
    return site.client.get(base + "/seg", headers=site.headers("viewer")).content


def _flip_x(n: int) -> np.ndarray:
    flip = np.eye(4)
    flip[0, 0] = -1
    flip[0, 3] = n - 1
    return flip


def _task(site: Site, lung: Lung, assignees: list[str], milestone: str = "m1") -> dict[str, Any]:
    response = site.client.post(
        "/api/projects/alpha/tasks",
        json={
            "study": lung.study,
            "series": lung.series,
            "label_set": "chest",
            "assignees": assignees,
            "title": "lungs",
            "instructions": "outline both lungs",
            "milestone": milestone,
            "due_at": "2030-01-31T00:00:00Z",
        },
        headers=site.headers("manager"),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _part(task: dict[str, Any], user: str) -> dict[str, Any]:
    (part,) = [a for a in task["assignments"] if a["annotator"] == user]
    return part


def test_task_lifecycle_and_review_rules(site: Site, lung: Lung) -> None:
    # only managers create tasks
    denied = site.client.post(
        "/api/projects/alpha/tasks",
        json={
            "study": lung.study,
            "series": lung.series,
            "label_set": "chest",
            "assignees": ["annotator"],
        },
        headers=site.headers("annotator"),
    )
    assert denied.status_code == 403
    # viewers cannot be assigned annotation work
    refused = site.client.post(
        "/api/projects/alpha/tasks",
        json={
            "study": lung.study,
            "series": lung.series,
            "label_set": "chest",
            "assignees": ["viewer"],
        },
        headers=site.headers("manager"),
    )
    assert refused.status_code == 403
    task = _task(site, lung, ["annotator", "manager"])
    tid = task["id"]
    assert {a["state"] for a in task["assignments"]} == {"open"}
    queue = site.client.get("/api/projects/alpha/queue", headers=site.headers("annotator")).json()
    assert tid in [t["id"] for t in queue]
    assert site.client.get("/api/projects/alpha/queue", headers=site.headers("viewer")).json() == []

    mine = _part(task, "annotator")["segmentation"]
    theirs = _part(task, "manager")["segmentation"]
    labels = _lung_mask(lung, -500)
    # the manager may annotate, but not on the annotator's part
    assert _save(site, "manager", mine, labels).status_code == 403
    # submitting before any save is refused
    early = site.client.post(
        f"/api/projects/alpha/tasks/{tid}/transition",
        json={"action": "submit"},
        headers=site.headers("annotator"),
    )
    assert early.status_code == 409
    v1 = _save(site, "annotator", mine, labels)
    assert v1.status_code == 201
    task = site.client.get(
        f"/api/projects/alpha/tasks/{tid}", headers=site.headers("viewer")
    ).json()
    assert _part(task, "annotator")["state"] == "in_progress"
    submitted = site.client.post(
        f"/api/projects/alpha/tasks/{tid}/transition",
        json={"action": "submit"},
        headers=site.headers("annotator"),
    )
    assert submitted.status_code == 200
    assert _part(submitted.json(), "annotator")["state"] == "submitted"
    # no more saves once submitted
    assert _save(site, "annotator", mine, labels, parent=v1.json()["id"]).status_code == 409

    # the manager's own part: saved and submitted; the manager cannot review it
    assert _save(site, "manager", theirs, _lung_mask(lung, -400)).status_code == 201
    site.client.post(
        f"/api/projects/alpha/tasks/{tid}/transition",
        json={"action": "submit"},
        headers=site.headers("manager"),
    )
    own = site.client.post(
        f"/api/projects/alpha/tasks/{tid}/review",
        json={"annotator": "manager", "decision": "accept"},
        headers=site.headers("manager"),
    )
    assert own.status_code == 403
    assert "cannot review their own" in own.json()["detail"]
    # nor the co-annotator's part of the same task
    co = site.client.post(
        f"/api/projects/alpha/tasks/{tid}/review",
        json={"annotator": "annotator", "decision": "accept"},
        headers=site.headers("manager"),
    )
    assert co.status_code == 403
    assert "annotate task" in co.json()["detail"]
    # annotators do not review at all
    assert (
        site.client.post(
            f"/api/projects/alpha/tasks/{tid}/review",
            json={"annotator": "manager", "decision": "accept"},
            headers=site.headers("annotator"),
        ).status_code
        == 403
    )
    # the reviewer sends the annotator's part back with a comment
    returned = site.client.post(
        f"/api/projects/alpha/tasks/{tid}/review",
        json={"annotator": "annotator", "decision": "return", "comment": "include the hilum"},
        headers=site.headers("reviewer"),
    )
    assert returned.status_code == 200, returned.text
    part = _part(returned.json(), "annotator")
    assert (part["state"], part["reviewer"], part["review_comment"]) == (
        "returned",
        "reviewer",
        "include the hilum",
    )
    queue = site.client.get("/api/projects/alpha/queue", headers=site.headers("annotator")).json()
    assert tid in [t["id"] for t in queue]
    fixed = labels.copy()
    fixed[10:20, 240:260, 240:260] = 2
    assert _save(site, "annotator", mine, fixed, parent=v1.json()["id"]).status_code == 201
    site.client.post(
        f"/api/projects/alpha/tasks/{tid}/transition",
        json={"action": "submit"},
        headers=site.headers("annotator"),
    )
    for user in ("annotator", "manager"):
        accepted = site.client.post(
            f"/api/projects/alpha/tasks/{tid}/review",
            json={"annotator": user, "decision": "accept"},
            headers=site.headers("reviewer"),
        )
        assert accepted.status_code == 200
    assert {a["state"] for a in accepted.json()["assignments"]} == {"accepted"}

    board = site.client.get(
        "/api/projects/alpha/annotation-dashboard", headers=site.headers("viewer")
    ).json()
    assert board["people"]["annotator"]["accepted"] >= 1
    assert board["milestones"]["m1"]["accepted"] == 2
    events = site.app.state.audit.events(project="alpha", action="annotation.")
    actions = [(e.action, e.user_name) for e in events]
    assert ("annotation.save", "annotator") in actions
    assert ("annotation.review", "reviewer") in actions
    reviews = [e for e in events if e.action == "annotation.review"]
    assert any("return annotator: include the hilum" in e.detail for e in reviews)


def test_agreement_and_consensus_of_two_annotators(site: Site, lung: Lung) -> None:
    task = _task(site, lung, ["annotator", "owner"], milestone="m2")
    tid = task["id"]
    a = _lung_mask(lung, -500)
    b = _lung_mask(lung, -300)
    b[14:16, 250:270, 300:320] = 1
    assert _save(site, "annotator", _part(task, "annotator")["segmentation"], a).status_code == 201
    assert _save(site, "owner", _part(task, "owner")["segmentation"], b).status_code == 201

    stats = site.client.get(
        f"/api/projects/alpha/tasks/{tid}/agreement", headers=site.headers("viewer")
    ).json()
    by_name = {row["name"]: row for row in stats}
    assert by_name["lung"]["dice"] == pytest.approx(dice(a == 2, b == 2))
    assert 0.8 < by_name["lung"]["dice"] < 1.0
    voxel_ml = lung.volume.geometry.voxel_volume_mm3 / 1000
    drawn = {"annotator": a, "owner": b}
    first, second = drawn[by_name["lung"]["rater_a"]], drawn[by_name["lung"]["rater_b"]]
    assert by_name["lung"]["volume_diff_ml"] == pytest.approx(
        (np.count_nonzero(second == 2) - np.count_nonzero(first == 2)) * voxel_ml
    )
    assert abs(by_name["lung"]["volume_diff_ml"]) > 0
    assert by_name["lung"]["hd95_mm"] > 0
    assert by_name["lesion"]["dice"] == 0.0
    table = site.client.get(
        f"/api/projects/alpha/tasks/{tid}/agreement",
        params={"format": "csv"},
        headers=site.headers("viewer"),
    )
    assert table.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert float(rows[1]["dice"]) == pytest.approx(by_name["lung"]["dice"])

    assert (
        site.client.post(
            f"/api/projects/alpha/tasks/{tid}/consensus",
            json={"method": "majority"},
            headers=site.headers("annotator"),
        ).status_code
        == 403
    )
    for method in ("majority", "staple"):
        made = site.client.post(
            f"/api/projects/alpha/tasks/{tid}/consensus",
            json={"method": method},
            headers=site.headers("manager"),
        )
        assert made.status_code == 201, made.text
        version = made.json()["version"]
        assert version["provenance"]["method"] == method
        assert {i["annotator"] for i in version["provenance"]["inputs"]} == {"annotator", "owner"}
        raw = site.client.get(
            f"/api/projects/alpha/segmentations/{made.json()['segmentation']}/versions/{version['id']}",
            headers=site.headers("viewer"),
        )
        consensus = np.frombuffer(raw.content, dtype=np.uint8).reshape(30, 512, 512)
        both = (a == 2) & (b == 2)
        either = (a == 2) | (b == 2)
        if method == "majority":  # two raters: a voxel needs both
            assert np.array_equal(consensus == 2, both)
            assert not (consensus == 1).any()
        else:
            assert not ((consensus == 2) & ~either).any()
            assert ((consensus == 2) & both).sum() == both.sum()


def test_a_viewer_on_another_origin_reads_the_grid_headers(tmp_path: Path) -> None:
    study, series = "1.2.826.0.1.3680043.10.9.1", "1.2.826.0.1.3680043.10.9.2"
    for site in build_site(tmp_path / "data", cors_origins=["http://viewer.local"]):
        results = site.app.state.archive.ingest(
            [(None, d) for d in ct_slices_with_geometry(study, series, count=3)]
        )
        assert all(r.status.ok for r in results)
        site.store.add_studies("alpha", [study])
        headers = site.headers("manager")
        site.client.post(
            "/api/projects/alpha/label-sets",
            json={"name": "chest", "labels": LABELS},
            headers=headers,
        )
        seg = site.client.post(
            "/api/projects/alpha/segmentations",
            json={"study": study, "series": series, "label_set": "chest"},
            headers=headers,
        ).json()
        assert seg["shape"] == [3, 8, 8]
        labels = np.zeros((3, 8, 8), dtype=np.uint16)
        labels[1, 2:5, 3:6] = 2
        version = _save(site, "manager", seg["id"], labels).json()
        response = site.client.get(
            f"/api/projects/alpha/segmentations/{seg['id']}/versions/{version['id']}",
            headers={"Origin": "http://viewer.local", **headers},
        )
        assert response.headers["access-control-allow-origin"] == "http://viewer.local"
        exposed = {
            h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
        }
        assert {"x-carina-shape", "x-carina-dtype"} <= exposed
        assert response.headers["X-Carina-Dtype"] == "uint16"
        assert np.array_equal(np.frombuffer(response.content, dtype="<u2").reshape(3, 8, 8), labels)


def test_label_maps_travel_gzipped(site: Site, lung: Lung) -> None:
    seg = _new_seg(site, lung)
    labels = _lung_mask(lung, -450)
    raw = _raw(labels)
    packed = gzip.compress(raw["content"])
    assert len(packed) < len(raw["content"]) / 20
    saved = site.client.post(
        f"/api/projects/alpha/segmentations/{seg['id']}/versions",
        content=packed,
        headers={**raw["headers"], "Content-Encoding": "gzip", **site.headers("annotator")},
    )
    assert saved.status_code == 201, saved.text
    url = f"/api/projects/alpha/segmentations/{seg['id']}/versions/{saved.json()['id']}"
    with site.client.stream(
        "GET", url, headers={"Accept-Encoding": "gzip", **site.headers("viewer")}
    ) as response:
        body = response.read()
        assert response.headers["content-encoding"] == "gzip"
        assert response.num_bytes_downloaded < len(raw["content"]) / 20
    assert body == raw["content"]
    # a body that inflates past the declared shape is refused before it is all inflated
    bomb = gzip.compress(bytes(len(raw["content"]) * 4))
    refused = site.client.post(
        f"/api/projects/alpha/segmentations/{seg['id']}/versions",
        content=bomb,
        params={"parent": saved.json()["id"]},
        headers={**raw["headers"], "Content-Encoding": "gzip", **site.headers("annotator")},
    )
    assert refused.status_code == 422
    refused = site.client.post(
        f"/api/projects/alpha/segmentations/{seg['id']}/versions",
        content=packed,
        params={"parent": saved.json()["id"]},
        headers={**raw["headers"], "Content-Encoding": "br", **site.headers("annotator")},
    )
    assert refused.status_code == 422
