"""Exchange with a remote PACS over DIMSE: query (C-FIND), pull (C-GET), push (C-STORE), sync.

Pulled instances go through the archive's one ingest path, so they are validated, deduplicated
and stored atomically like any other.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from carina.archive.archive import Archive, IngestResult, IngestStatus, StoredInstance
from carina.archive.dimse import (
    STATUS_CANNOT_UNDERSTAND,
    STATUS_DUPLICATE,
    STATUS_OUT_OF_RESOURCES,
    STATUS_SUCCESS,
    set_nodelay,
)
from carina.core.errors import CarinaError, NotFoundError

log = logging.getLogger(__name__)

MAX_CONTEXTS = 128
PULL_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEG2000,
    JPEGLosslessSV1,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]
_LEVEL_KEYS = {
    "STUDY": ("StudyInstanceUID",),
    "SERIES": ("StudyInstanceUID", "SeriesInstanceUID"),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}
_PENDING = (0xFF00, 0xFF01)


class PacsError(CarinaError):
    """A remote PACS could not be reached or refused an operation."""


@dataclass(frozen=True)
class Peer:
    """A remote DICOM node."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, known: dict[str, str] | None = None) -> Peer:
        """``AE@host:port``, or an AE title listed in ``known`` (title -> ``host:port``)."""
        title, at, address = text.partition("@")
        if not at:
            if known and text in known:
                title, address = text, known[text]
            else:
                raise PacsError(f"unknown peer {text!r}: give AE@host:port or configure it")
        host, _, port = address.rpartition(":")
        if not title or not host or not port.isdigit():
            raise PacsError(f"a peer is AE@host:port, got {text!r}")
        return cls(title, host, int(port))


@dataclass
class PullReport:
    """What a pull received: per-instance ingest results and the final C-GET status."""

    results: list[IngestResult] = field(default_factory=list)
    status: int | None = None
    failed_suboperations: int = 0

    @property
    def stored(self) -> int:
        return sum(r.status is IngestStatus.STORED for r in self.results)


@dataclass
class SyncReport:
    """Studies found on the peer and what was pulled for each."""

    studies: dict[str, PullReport | None] = field(default_factory=dict)


class PacsClient:
    """DIMSE client of one archive towards remote PACS nodes (Study Root)."""

    def __init__(self, archive: Archive, calling_ae: str = "CARINA", timeout: float = 60) -> None:
        self.archive = archive
        self.calling_ae = calling_ae
        self.timeout = timeout

    def _associate(
        self,
        peer: Peer,
        contexts: Sequence[tuple[str, Sequence[str]]],
        roles: Sequence[Any] = (),
        handlers: Sequence[Any] = (),
    ) -> Association:
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        for abstract, syntaxes in contexts[:MAX_CONTEXTS]:
            ae.add_requested_context(abstract, list(syntaxes))
        assoc = ae.associate(
            peer.host,
            peer.port,
            ae_title=peer.ae_title,
            ext_neg=list(roles),
            evt_handlers=[(evt.EVT_CONN_OPEN, set_nodelay), *handlers],
        )
        if not assoc.is_established:
            raise PacsError(f"{peer.ae_title} at {peer.host}:{peer.port} refused the association")
        return assoc

    def find(
        self, peer: Peer, level: str, filters: dict[str, str], keys: Sequence[str] = ()
    ) -> list[Dataset]:
        """C-FIND (Study Root) at ``level``; ``keys`` are extra attributes to return."""
        query = Dataset()
        query.QueryRetrieveLevel = level
        for keyword in (*_LEVEL_KEYS.get(level, ()), *keys):
            setattr(query, keyword, "")
        for keyword, value in filters.items():
            setattr(query, keyword, value)
        model = StudyRootQueryRetrieveInformationModelFind
        assoc = self._associate(peer, [(model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])])
        answers: list[Dataset] = []
        try:
            for status, identifier in assoc.send_c_find(query, model):
                if not status:
                    raise PacsError("C-FIND: no answer from the peer")
                if status.Status in _PENDING and identifier is not None:
                    answers.append(identifier)
                elif status.Status != STATUS_SUCCESS:
                    raise PacsError(f"C-FIND failed with status 0x{status.Status:04X}")
        finally:
            assoc.release()
        return answers

    def pull(self, peer: Peer, study_uid: str, series_uid: str | None = None) -> PullReport:
        """C-GET a study (or one of its series) from ``peer`` into the archive."""
        filters = {"StudyInstanceUID": study_uid}
        if series_uid:
            filters["SeriesInstanceUID"] = series_uid
        found = self.find(peer, "IMAGE", filters, ["SOPClassUID", "SOPInstanceUID"])
        sop_classes = sorted({str(ds.SOPClassUID) for ds in found if ds.get("SOPClassUID")})
        if not sop_classes:
            raise NotFoundError(f"{peer.ae_title} has no instances of study {study_uid}")
        report = PullReport()

        def on_store(event: Event) -> Dataset:
            data = event.encoded_dataset(include_meta=True)
            try:
                result = self.archive.ingest_one(data, f"C-GET from {peer.ae_title}")
            except CarinaError as exc:
                return _status(STATUS_OUT_OF_RESOURCES, str(exc))
            report.results.append(result)
            if result.status.ok:
                return _status(STATUS_SUCCESS)
            if result.status is IngestStatus.CONFLICT:
                return _status(STATUS_DUPLICATE, result.reason)
            return _status(STATUS_CANNOT_UNDERSTAND, result.reason)

        model = StudyRootQueryRetrieveInformationModelGet
        # one context per (SOP class, transfer syntax): the peer then sends each instance in
        # the syntax it holds instead of the one it would pick for a multi-syntax context
        per_class = max(1, min(len(PULL_TRANSFER_SYNTAXES), (MAX_CONTEXTS - 1) // len(sop_classes)))
        storage = [
            (uid, [syntax])
            for uid in sop_classes[: MAX_CONTEXTS - 1]
            for syntax in PULL_TRANSFER_SYNTAXES[:per_class]
        ]
        roles = [build_role(uid, scp_role=True) for uid in sop_classes[: MAX_CONTEXTS - 1]]
        assoc = self._associate(
            peer,
            [(model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]), *storage],
            roles,
            [(evt.EVT_C_STORE, on_store)],
        )
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
        identifier.StudyInstanceUID = study_uid
        if series_uid:
            identifier.SeriesInstanceUID = series_uid
        try:
            for status, _ in assoc.send_c_get(identifier, model):
                if not status:
                    raise PacsError("C-GET: no answer from the peer")
                report.status = int(status.Status)
                if status.Status not in _PENDING:
                    report.failed_suboperations = int(
                        status.get("NumberOfFailedSuboperations", 0) or 0
                    )
        finally:
            assoc.release()
        if report.status not in (STATUS_SUCCESS, 0xB000):
            raise PacsError(f"C-GET ended with status 0x{report.status or 0:04X}")
        return report

    def push(self, peer: Peer, study_uid: str, series_uid: str | None = None) -> dict[str, int]:
        """C-STORE the stored instances of a study (or series) to ``peer``, as stored.

        Returns the C-STORE status per SOPInstanceUID.
        """
        instances = self.archive.instances(study_uid, series_uid)
        contexts = _contexts(instances)
        assoc = self._associate(peer, contexts)
        statuses: dict[str, int] = {}
        try:
            for instance in instances:
                ds = pydicom.dcmread(io.BytesIO(self.archive.read(instance)))
                status = assoc.send_c_store(ds)
                statuses[instance.sop_instance_uid] = int(status.Status) if status else -1
        finally:
            assoc.release()
        return statuses

    def sync(self, peer: Peer, filters: dict[str, str]) -> SyncReport:
        """Pull the studies matching ``filters`` on ``peer`` that are missing or incomplete here.

        Completeness is judged by instance count (NumberOfStudyRelatedInstances on the peer).
        """
        report = SyncReport()
        studies = self.find(
            peer, "STUDY", filters, ["StudyInstanceUID", "NumberOfStudyRelatedInstances"]
        )
        for study in studies:
            uid = str(study.StudyInstanceUID)
            remote = int(study.get("NumberOfStudyRelatedInstances") or 0)
            try:
                local = len(self.archive.instances(uid))
            except NotFoundError:
                local = 0
            report.studies[uid] = None if remote and local >= remote else self.pull(peer, uid)
        return report


def _status(code: int, comment: str | None = None) -> Dataset:
    status = Dataset()
    status.Status = code
    if comment:
        status.ErrorComment = comment[:64]
    return status


def _contexts(instances: list[StoredInstance]) -> list[tuple[str, list[str]]]:
    """One presentation context per (SOP class, stored transfer syntax)."""
    seen: dict[tuple[str, str], None] = {}
    for instance in instances:
        seen[(instance.sop_class_uid, instance.transfer_syntax_uid)] = None
    return [(sop_class, [syntax]) for sop_class, syntax in seen]
