"""DICOMweb over the FastAPI app: STOW-RS, QIDO-RS matching, WADO-RS bytes, frames, rendering."""

from __future__ import annotations

import fnmatch
import io
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.pixels import apply_modality_lut, pixel_array

from carina.api import create_app
from carina.services.settings import Settings

from .helpers import admin_headers, multipart_body, split_multipart

ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
ACCEPT_FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


@dataclass
class StudyFacts:
    uid: str
    patient_id: str
    patient_name: str
    study_date: str
    modalities: set[str]
    series: set[str]
    instances: int


@dataclass
class Loaded:
    client: TestClient
    studies: dict[str, StudyFacts]
    files: dict[str, Path]  # SOPInstanceUID -> file holding the stored bytes


@pytest.fixture(scope="module")
def loaded(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    data_dir = tmp_path_factory.mktemp("dicomweb") / "data"
    app = create_app(Settings(data_dir=data_dir, dicom_port=None))
    paths = sorted((shared_data / "lung_ct_tumor_boxes" / "ct_dicom").glob("*.dcm"))
    paths += sorted(p for p in (shared_data / "dicom_variants").rglob("*.dcm"))
    with TestClient(app) as client:
        client.headers.update(admin_headers(app))

        archive = app.state.archive
        results = archive.ingest([(str(p), p.read_bytes()) for p in paths])
        studies: dict[str, StudyFacts] = {}
        files: dict[str, Path] = {}
        for result in results:
            if result.status.value != "stored":
                continue
            path = Path(result.source)
            with warnings.catch_warnings():  # some variants are deliberately odd
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            files[result.sop_instance_uid] = path
            facts = studies.get(result.study_instance_uid)
            if facts is None:
                facts = studies[result.study_instance_uid] = StudyFacts(
                    result.study_instance_uid,
                    str(ds.get("PatientID", "")),
                    str(ds.get("PatientName", "")),
                    str(ds.get("StudyDate", "")).replace(".", ""),
                    set(),
                    set(),
                    0,
                )
            if ds.get("Modality"):
                facts.modalities.add(str(ds.Modality))
            facts.series.add(result.series_instance_uid)
            facts.instances += 1
        yield Loaded(client, studies, files)


def _uids(response_json: list[dict], tag: str = "0020000D") -> list[str]:
    return [item[tag]["Value"][0] for item in response_json]


def _lung(loaded: Loaded) -> StudyFacts:
    return next(s for s in loaded.studies.values() if s.instances == 30)


# -- QIDO-RS ------------------------------------------------------------------------------------


def test_qido_all_studies_with_counts(loaded: Loaded) -> None:
    response = loaded.client.get("/dicom-web/studies")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+json")
    found = response.json()
    assert sorted(_uids(found)) == sorted(loaded.studies)
    for item in found:
        facts = loaded.studies[item["0020000D"]["Value"][0]]
        assert item["00201206"]["Value"] == [len(facts.series)]
        assert item["00201208"]["Value"] == [facts.instances]
        assert set(item["00080061"].get("Value", [])) == facts.modalities


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"PatientID": "{lung_pid}"}, lambda s, lung: s.patient_id == lung.patient_id),
        ({"PatientName": "*a*"}, lambda s, _: fnmatch.fnmatch(s.patient_name.lower(), "*a*")),
        ({"PatientName": "??????*"}, lambda s, _: len(s.patient_name) >= 6),
        ({"StudyDate": "19900101-20051231"}, lambda s, _: "19900101" <= s.study_date <= "20051231"),
        ({"StudyDate": "-19991231"}, lambda s, _: "" < s.study_date <= "19991231"),
        ({"StudyDate": "20100101-"}, lambda s, _: s.study_date >= "20100101"),
        ({"ModalitiesInStudy": "MR"}, lambda s, _: "MR" in s.modalities),
        ({"00080061": "SEG,SR"}, lambda s, _: bool({"SEG", "SR"} & s.modalities)),
        ({"PatientID": "no-such-patient"}, lambda s, _: False),
    ],
)
def test_qido_study_matching(loaded: Loaded, params: dict[str, str], expected) -> None:  # type: ignore[no-untyped-def]
    lung = _lung(loaded)
    query = {k: v.replace("{lung_pid}", lung.patient_id) for k, v in params.items()}
    response = loaded.client.get("/dicom-web/studies", params=query)
    assert response.status_code == 200, response.text
    want = sorted(s.uid for s in loaded.studies.values() if expected(s, lung))
    assert sorted(_uids(response.json())) == want
    if params != {"PatientID": "no-such-patient"}:
        assert want


def test_qido_uid_list_includefield_and_paging(loaded: Loaded) -> None:
    two = sorted(loaded.studies)[:2]
    response = loaded.client.get(
        "/dicom-web/studies",
        params={"StudyInstanceUID": ",".join(two), "includefield": "StudyDescription"},
    )
    assert sorted(_uids(response.json())) == two
    assert all("00081030" in item for item in response.json())
    everything = _uids(loaded.client.get("/dicom-web/studies").json())
    pages = []
    for offset in range(0, len(everything), 7):
        page = loaded.client.get("/dicom-web/studies", params={"limit": 7, "offset": offset})
        pages += _uids(page.json())
    assert pages == everything
    assert loaded.client.get("/dicom-web/studies", params={"limit": "x"}).status_code == 400
    assert loaded.client.get("/dicom-web/studies", params={"NoSuchKey": "1"}).status_code == 400


def test_qido_series_and_instances(loaded: Loaded) -> None:
    lung = _lung(loaded)
    (series_uid,) = lung.series
    series = loaded.client.get(
        f"/dicom-web/studies/{lung.uid}/series", params={"includefield": "Manufacturer,00180015"}
    ).json()
    assert _uids(series, "0020000E") == [series_uid]
    first = pydicom.dcmread(
        loaded.files[next(u for u, p in loaded.files.items() if p.parent.name == "ct_dicom")]
    )
    assert series[0]["00080060"]["Value"] == ["CT"]
    # attributes outside the catalog come from the cached metadata
    assert series[0]["00080070"]["Value"] == [first.Manufacturer] == ["SIEMENS"]
    assert series[0]["00180015"]["Value"] == [first.BodyPartExamined] == ["CHEST"]
    ct_series = loaded.client.get("/dicom-web/series", params={"Modality": "CT"}).json()
    assert series_uid in _uids(ct_series, "0020000E")
    assert all(item["00080060"]["Value"] == ["CT"] for item in ct_series)
    instances = loaded.client.get(
        f"/dicom-web/studies/{lung.uid}/series/{series_uid}/instances"
    ).json()
    assert len(instances) == 30
    numbers = [item["00200013"]["Value"][0] for item in instances]
    assert numbers == sorted(numbers)
    one = loaded.client.get(
        f"/dicom-web/studies/{lung.uid}/instances", params={"InstanceNumber": numbers[4]}
    ).json()
    assert [item["00200013"]["Value"][0] for item in one] == [numbers[4]]
    mr = loaded.client.get(
        "/dicom-web/instances", params={"SOPClassUID": pydicom.uid.MRImageStorage}
    ).json()
    assert mr
    assert {item["00080016"]["Value"][0] for item in mr} == {pydicom.uid.MRImageStorage}


# -- WADO-RS ------------------------------------------------------------------------------------


def test_wado_series_and_instance_bytes_identical(loaded: Loaded) -> None:
    lung = _lung(loaded)
    (series_uid,) = lung.series
    response = loaded.client.get(
        f"/dicom-web/studies/{lung.uid}/series/{series_uid}", headers={"Accept": ACCEPT_DICOM}
    )
    assert response.status_code == 200
    parts = split_multipart(response.content, response.headers["content-type"])
    assert len(parts) == 30
    for content_type, content in parts:
        assert content_type.startswith("application/dicom")
        sop = pydicom.dcmread(io.BytesIO(content), stop_before_pixels=True).SOPInstanceUID
        assert content == loaded.files[sop].read_bytes()
    sop = next(
        iter(
            u
            for u, p in loaded.files.items()
            if p.name == "MR_small_jp2klossless.dcm" or p.name == "MR_small.dcm"
        )
    )
    ds = pydicom.dcmread(loaded.files[sop])
    response = loaded.client.get(
        f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{sop}"
    )
    ((_, content),) = split_multipart(response.content, response.headers["content-type"])
    assert content == loaded.files[sop].read_bytes()
    study = loaded.client.get(f"/dicom-web/studies/{lung.uid}")
    assert len(split_multipart(study.content, study.headers["content-type"])) == 30


@pytest.mark.parametrize(
    "name",
    [
        "pydicom/MR_small_jp2klossless.dcm",
        "pydicom/JPGExtended.dcm",
        "pydicom/MR_small_implicit.dcm",
    ],
)
def test_wado_converts_to_explicit_le_on_request(
    shared_data: Path, tmp_path: Path, name: str
) -> None:
    path = shared_data / "dicom_variants" / name
    original = pydicom.dcmread(path)
    app = create_app(Settings(data_dir=tmp_path / "data", dicom_port=None))
    with TestClient(app) as client:
        client.headers.update(admin_headers(app))
        app.state.archive.store_instance(path.read_bytes())
        url = (
            f"/dicom-web/studies/{original.StudyInstanceUID}/series/"
            f"{original.SeriesInstanceUID}/instances/{original.SOPInstanceUID}"
        )
        explicit = (
            'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'
        )
        response = client.get(url, headers={"Accept": explicit})
        assert response.status_code == 200, response.text
        ((content_type, content),) = split_multipart(
            response.content, response.headers["content-type"]
        )
        assert content_type == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
        converted = pydicom.dcmread(io.BytesIO(content))
        assert converted.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert converted.SOPInstanceUID == original.SOPInstanceUID
        assert np.array_equal(converted.pixel_array, original.pixel_array)
        as_stored = client.get(url, headers={"Accept": ACCEPT_DICOM})
        ((_, content),) = split_multipart(as_stored.content, as_stored.headers["content-type"])
        assert content == path.read_bytes()
        jpeg_ls = (
            'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.80'
        )
        assert client.get(url, headers={"Accept": jpeg_ls}).status_code == 406


def test_wado_metadata_from_cache(loaded: Loaded) -> None:
    lung = _lung(loaded)
    (series_uid,) = lung.series
    response = loaded.client.get(f"/dicom-web/studies/{lung.uid}/series/{series_uid}/metadata")
    assert response.status_code == 200
    items = response.json()
    assert len(items) == 30
    for item in items:
        sop = item["00080018"]["Value"][0]
        ds = pydicom.dcmread(loaded.files[sop])
        assert item["00100020"] == ds["PatientID"].to_json_dict(None, 0)
        uri = item["7FE00010"]["BulkDataURI"]
        assert uri.startswith("http://testserver/dicom-web/studies/")
        bulk = loaded.client.get(uri, headers={"Accept": ACCEPT_FRAMES})
        ((_, content),) = split_multipart(bulk.content, bulk.headers["content-type"])
        assert content == pixel_array(ds).astype("<" + pixel_array(ds).dtype.str[1:]).tobytes()
        break
    assert len(loaded.client.get(f"/dicom-web/studies/{lung.uid}/metadata").json()) == 30


@pytest.mark.parametrize(
    "name",
    [
        "pydicom/MR_small_jp2klossless.dcm",
        "pydicom/MR_small_RLE.dcm",
        "pydicom/JPEG2000.dcm",
        "pydicom/SC_rgb_rle_2frame.dcm",
        "pydicom/examples_ybr_color.dcm",
        "pydicom/MR_small_bigendian.dcm",
        "highdicom/sm_image_jpegls.dcm",
        "pynetdicom/CTImageStorage.dcm",
    ],
)
def test_wado_frames_equal_pydicom_decoding(shared_data: Path, tmp_path: Path, name: str) -> None:
    path = shared_data / "dicom_variants" / name
    ds = pydicom.dcmread(path)
    app = create_app(Settings(data_dir=tmp_path / "data", dicom_port=None))
    with TestClient(app) as client:
        client.headers.update(admin_headers(app))

        app.state.archive.store_instance(path.read_bytes())
        frames = int(ds.get("NumberOfFrames") or 1)
        numbers = sorted({1, frames, (frames + 1) // 2})
        url = (
            f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}/frames/{','.join(map(str, numbers))}"
        )
        response = client.get(url, headers={"Accept": ACCEPT_FRAMES})
        assert response.status_code == 200, response.text
        parts = split_multipart(response.content, response.headers["content-type"])
        assert len(parts) == len(numbers)
        for number, (content_type, content) in zip(numbers, parts, strict=True):
            assert content_type == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
            expected = pixel_array(ds, index=number - 1)
            assert content == expected.astype(expected.dtype.newbyteorder("<")).tobytes()
        missing = client.get(url.rsplit("/", 1)[0] + f"/{frames + 1}")
        assert missing.status_code == 404
        # one frame asked for as a single part first: the frame's bytes alone; asked for as
        # multipart first (or */*), or several frames: multipart as above
        one = url.rsplit("/", 1)[0] + f"/{numbers[-1]}"
        single = client.get(
            one, headers={"Accept": f"application/octet-stream; transfer-syntax=*, {ACCEPT_FRAMES}"}
        )
        assert single.status_code == 200, single.text
        assert single.headers["content-type"] == (
            "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
        )
        expected = pixel_array(ds, index=numbers[-1] - 1)
        assert single.content == expected.astype(expected.dtype.newbyteorder("<")).tobytes()
        for accept in (f"{ACCEPT_FRAMES}, application/octet-stream", "*/*"):
            multi = client.get(one, headers={"Accept": accept})
            assert multi.headers["content-type"].startswith("multipart/related")
            assert split_multipart(multi.content, multi.headers["content-type"]) == [
                (single.headers["content-type"], single.content)
            ]
        if len(numbers) > 1:
            several = client.get(url, headers={"Accept": "application/octet-stream"})
            assert several.headers["content-type"].startswith("multipart/related")


def test_wado_rendered_png_with_window(loaded: Loaded) -> None:
    lung = _lung(loaded)
    sop = next(u for u, p in loaded.files.items() if p.name == "010.dcm")
    ds = pydicom.dcmread(loaded.files[sop])
    base = f"/dicom-web/studies/{lung.uid}/series/{ds.SeriesInstanceUID}/instances/{sop}"
    response = loaded.client.get(f"{base}/rendered", params={"window": "40,400"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = np.asarray(Image.open(io.BytesIO(response.content)))
    assert image.shape == (ds.Rows, ds.Columns)
    hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    expected = np.clip(np.rint(((hu - 39.5) / 399 + 0.5) * 255), 0, 255).astype(np.uint8)
    assert np.array_equal(image, expected)
    jpeg = loaded.client.get(f"{base}/rendered", headers={"Accept": "image/jpeg"})
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).format == "JPEG"
    thumb = loaded.client.get(f"/dicom-web/studies/{lung.uid}/thumbnail")
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 128
    small = loaded.client.get(f"{base}/frames/1/rendered", params={"viewport": "64,64"})
    assert Image.open(io.BytesIO(small.content)).size == (64, 64)
    assert loaded.client.get(f"{base}/rendered", params={"window": "40"}).status_code == 400


def test_wado_rendered_series_and_study(loaded: Loaded) -> None:
    lung = _lung(loaded)
    series_uid = next(iter(lung.series))
    by_number = sorted(
        (pydicom.dcmread(p) for u, p in loaded.files.items() if p.parent.name == "ct_dicom"),
        key=lambda ds: int(ds.InstanceNumber),
    )
    base = f"/dicom-web/studies/{lung.uid}/series/{series_uid}"
    response = loaded.client.get(
        f"{base}/rendered",
        params={"window": "-600,1500"},
        headers={"Accept": 'multipart/related; type="image/png"'},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith('multipart/related; type="image/png"')
    parts = split_multipart(response.content, response.headers["content-type"])
    assert len(parts) == len(by_number) == 30
    for (kind, body), ds in zip(parts, by_number, strict=True):
        assert kind == "image/png"
        hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
        expected = np.clip(np.rint(((hu + 600.5) / 1499 + 0.5) * 255), 0, 255).astype(np.uint8)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(body))), expected)
    study = loaded.client.get(
        f"/dicom-web/studies/{lung.uid}/rendered",
        params={"viewport": "64,64"},
        headers={"Accept": "image/jpeg"},
    )
    assert study.status_code == 200
    study_parts = split_multipart(study.content, study.headers["content-type"])
    assert len(study_parts) == lung.instances
    assert {Image.open(io.BytesIO(body)).size for _, body in study_parts} == {(64, 64)}
    assert (
        loaded.client.get(f"{base}/rendered", headers={"Accept": "application/dicom"}).status_code
        == 406
    )


def test_wado_errors(loaded: Loaded) -> None:
    lung = _lung(loaded)
    assert loaded.client.get("/dicom-web/studies/1.2.3.4").status_code == 404
    assert loaded.client.get("/dicom-web/studies/1.2.3.4/metadata").status_code == 404
    wrong = loaded.client.get(f"/dicom-web/studies/{lung.uid}", headers={"Accept": "image/png"})
    assert wrong.status_code == 406


# -- STOW-RS ------------------------------------------------------------------------------------


def test_stow_store_duplicate_conflict_and_reject(
    lung_ct_files: list[Path], tmp_path: Path
) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", dicom_port=None))
    with TestClient(app) as client:
        client.headers.update(admin_headers(app))

        originals = [p.read_bytes() for p in lung_ct_files[:5]]
        body, content_type = multipart_body(originals)
        response = client.post(
            "/dicom-web/studies", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == 200, response.text
        refs = response.json()["00081199"]["Value"]
        assert len(refs) == 5
        for ref, data in zip(refs, originals, strict=True):
            url = ref["00081190"]["Value"][0]
            got = client.get(url, headers={"Accept": ACCEPT_DICOM})
            ((_, content),) = split_multipart(got.content, got.headers["content-type"])
            assert content == data
        again = client.post(
            "/dicom-web/studies", content=body, headers={"Content-Type": content_type}
        )
        assert again.status_code == 200
        assert "00081198" not in again.json()

        ds = pydicom.dcmread(io.BytesIO(originals[0]))
        ds.ImageComments = "edited"
        edited = io.BytesIO()
        ds.save_as(edited)
        body, content_type = multipart_body([edited.getvalue(), b"not dicom"])
        conflict = client.post(
            "/dicom-web/studies", content=body, headers={"Content-Type": content_type}
        )
        assert conflict.status_code == 409
        failed = conflict.json()["00081198"]["Value"]
        assert [f["00081197"]["Value"][0] for f in failed] == [0x0111, 0xC000]
        assert failed[0]["00081155"]["Value"] == [ds.SOPInstanceUID]

        body, content_type = multipart_body([lung_ct_files[6].read_bytes(), b"junk"])
        partial = client.post(
            f"/dicom-web/studies/{ds.StudyInstanceUID}",
            content=body,
            headers={"Content-Type": content_type},
        )
        assert partial.status_code == 202
        assert len(partial.json()["00081199"]["Value"]) == 1
        assert len(partial.json()["00081198"]["Value"]) == 1

        body, content_type = multipart_body([lung_ct_files[7].read_bytes()])
        elsewhere = client.post(
            "/dicom-web/studies/1.2.3", content=body, headers={"Content-Type": content_type}
        )
        assert elsewhere.status_code == 409
        assert elsewhere.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]
        bad_type = client.post(
            "/dicom-web/studies", content=b"x", headers={"Content-Type": "application/dicom"}
        )
        assert bad_type.status_code == 415
        stored = client.get(f"/dicom-web/studies/{ds.StudyInstanceUID}/instances").json()
        assert len(stored) == 6
        assert json.loads(json.dumps(stored))


def test_qido_caps_results_with_a_warning(loaded: Loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    import carina.api.dicomweb as dicomweb

    monkeypatch.setattr(dicomweb, "QIDO_MAX_RESULTS", 5)
    capped = loaded.client.get("/dicom-web/instances")
    assert len(capped.json()) == 5
    assert capped.headers["warning"].startswith("299 ")
    exact = loaded.client.get("/dicom-web/instances", params={"limit": 3})
    assert len(exact.json()) == 3
    assert "warning" not in exact.headers
