"""Fuzzy matching of person names in QIDO-RS, and the migration that fills the name search forms."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid
from sqlalchemy import select, text

from carina.api import create_app
from carina.archive import Archive
from carina.db import Patient, Study
from carina.db.engine import create_db_engine, sqlite_url, upgrade_database
from carina.db.names import fold, search_form
from carina.services.settings import Settings
from tests.dicom_factory import ct_instance

from .helpers import admin_headers

# (PatientName, ReferringPhysicianName) of one study each
PEOPLE = {
    "mueller": ("Müller^Hans", "Ñúñez^Ana^^Dr."),
    "doe_john": ("DOE^JOHN^A", "House^Gregory"),
    "doe_jane": ("Doe^Jane", "Wilson^James"),
    "doeson": ("Doeson^Max", ""),
    "smith": ("Smith^John", "Cuddy^Lisa"),
    "ideographic": ("Yamada^Tarou=山田^太郎=やまだ^たろう", ""),
}


def _instance(patient_name: str, referring: str) -> tuple[str, bytes]:
    study = generate_uid()
    ds = pydicom.dcmread(io.BytesIO(ct_instance(study, patient_id=patient_name[:8])))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = patient_name
    ds.ReferringPhysicianName = referring
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return study, out.getvalue()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("fuzzy"), dicom_port=None))
    with TestClient(app) as test_client:
        test_client.headers.update(admin_headers(app))
        studies: dict[str, str] = {}
        for key, (name, referring) in PEOPLE.items():
            study, data = _instance(name, referring)
            (result,) = app.state.archive.ingest([(key, data)])
            assert result.status.value == "stored"
            studies[study] = key
        yield test_client, studies


def _found(client: tuple[TestClient, dict[str, str]], **params: str) -> set[str]:
    test_client, studies = client
    response = test_client.get("/dicom-web/studies", params=params)
    assert response.status_code in (200, 204), response.text
    if response.status_code == 204:
        return set()
    return {studies[item["0020000D"]["Value"][0]] for item in response.json()}


def test_search_forms_fold_case_diacritics_and_components() -> None:
    assert fold("Müller") == fold("MULLER") == "muller"
    assert fold("Straße") == "strasse"
    assert search_form("Müller^Hans") == " muller hans"
    assert search_form("DOE^JOHN^A^^") == " doe john a"
    assert (
        search_form("Yamada^Tarou=山田^太郎=やまだ^たろう")
        == " yamada tarou 山田 太郎 やまだ たろう"
    )
    assert search_form("") == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("doe", {"doe_john", "doe_jane", "doeson"}),  # a word prefix, any component
        ("john doe", {"doe_john"}),  # every word, in any order
        ("Doe^John", {"doe_john"}),
        ("jo do", {"doe_john"}),
        ("muller", {"mueller"}),  # diacritics and case ignored
        ("MÜLLER^hans", {"mueller"}),
        ("hans mü*", {"mueller"}),
        ("j?hn", {"doe_john", "smith"}),
        ("john", {"doe_john", "smith"}),
        ("山田", {"ideographic"}),
        ("tarou", {"ideographic"}),
        ("smithers", set()),
        ("ohn", set()),  # only word beginnings match
        ("*", set(PEOPLE)),
    ],
)
def test_fuzzy_patient_name(
    client: tuple[TestClient, dict[str, str]], value: str, expected: set[str]
) -> None:
    assert _found(client, PatientName=value, fuzzymatching="true") == expected


def test_fuzzy_referring_physician(client: tuple[TestClient, dict[str, str]]) -> None:
    assert _found(client, ReferringPhysicianName="nunez", fuzzymatching="true") == {"mueller"}
    assert _found(client, ReferringPhysicianName="dr ana", fuzzymatching="true") == {"mueller"}
    assert _found(client, ReferringPhysicianName="nunez") == set()


def test_without_fuzzy_matching_names_match_as_before(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    assert _found(client, PatientName="doe") == set()
    assert _found(client, PatientName="doe^jane") == {"doe_jane"}
    assert _found(client, PatientName="doe^jane", fuzzymatching="false") == {"doe_jane"}
    assert _found(client, PatientName="muller*") == set()
    assert _found(client, PatientName="doe*") == {"doe_john", "doe_jane", "doeson"}


def test_fuzzy_combines_with_other_keys(client: tuple[TestClient, dict[str, str]]) -> None:
    found = _found(client, PatientName="john", StudyDate="20240101", fuzzymatching="true")
    assert found == {"doe_john", "smith"}
    assert _found(client, PatientName="john", StudyDate="20230101", fuzzymatching="true") == set()


def test_bad_fuzzymatching_value_is_refused(client: tuple[TestClient, dict[str, str]]) -> None:
    test_client, _ = client
    response = test_client.get(
        "/dicom-web/studies", params={"PatientName": "doe", "fuzzymatching": "maybe"}
    )
    assert response.status_code == 400
    assert "fuzzymatching" in response.text


def test_migration_fills_search_forms_of_existing_rows(tmp_path: Path) -> None:
    engine = create_db_engine(sqlite_url(tmp_path / "catalog.sqlite"))
    try:
        upgrade_database(engine, "0007")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO patients (id, patient_id, patient_name, birth_date, sex) "
                    "VALUES (1, 'P1', 'Müller^Hans', '', '')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO studies (id, study_instance_uid, patient_pk, study_date, "
                    "study_time, accession_number, study_id, study_description, "
                    "referring_physician_name, modalities_in_study) "
                    "VALUES (1, '1.2.3', 1, '', '', '', '', '', 'Ñúñez^Ana', '')"
                )
            )
        upgrade_database(engine)
        with engine.connect() as connection:
            assert connection.scalar(select(Patient.patient_name_words)) == " muller hans"
            assert connection.scalar(select(Study.referring_physician_words)) == " nunez ana"
    finally:
        engine.dispose()
    with Archive(tmp_path) as archive, archive.session() as session:
        assert session.scalar(select(Patient.patient_name)) == "Müller^Hans"
