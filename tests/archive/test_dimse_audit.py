"""What DICOM peers do is reported for the audit log; unknown calling AE titles can be refused."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
)

from carina.archive import Archive
from carina.archive.dimse import DimseActivity, DimseServer

from .helpers import free_port


def _wait_for(activity: list[DimseActivity], count: int) -> None:
    deadline = time.monotonic() + 10
    while len(activity) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def test_store_find_and_refusal_are_reported(lung_ct_files: list[Path], tmp_path: Path) -> None:
    activity: list[DimseActivity] = []
    with Archive(tmp_path / "data") as archive:
        server = DimseServer(
            archive,
            "CARINA",
            "127.0.0.1",
            free_port(),
            allowed_callers=["MODALITY"],
            on_activity=activity.append,
        )
        server.start()
        try:
            refused = AE(ae_title="STRANGER")
            refused.add_requested_context(CTImageStorage)
            assoc = refused.associate("127.0.0.1", server.port, ae_title="CARINA")
            assert not assoc.is_established
            _wait_for(activity, 1)
            assert activity[0].operation == "ASSOCIATE"
            assert activity[0].outcome == "denied"
            assert activity[0].calling_ae == "STRANGER"

            modality = AE(ae_title="MODALITY")
            modality.add_requested_context(CTImageStorage)
            modality.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
            assoc = modality.associate("127.0.0.1", server.port, ae_title="CARINA")
            assert assoc.is_established
            for path in lung_ct_files[:3]:
                assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = ""
            answers = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
            assert answers[-1][0].Status == 0
            assoc.release()
            _wait_for(activity, 3)
        finally:
            server.stop()
    study = str(pydicom.dcmread(lung_ct_files[0], stop_before_pixels=True).StudyInstanceUID)
    find = next(a for a in activity if a.operation == "C-FIND")
    assert find.studies == (study,)
    assert find.calling_ae == "MODALITY"
    store = next(a for a in activity if a.operation == "C-STORE")
    assert (store.studies, store.count, store.outcome) == ((study,), 3, "allowed")
    assert store.address == "127.0.0.1"
