"""Exchange with a remote PACS: query, pull, push and sync.

A peer is a DIMSE node (:class:`Peer`: C-FIND, C-GET or C-MOVE, C-STORE) or a DICOMweb service
(:class:`WebPeer`: QIDO-RS, WADO-RS, STOW-RS); the same calls work on either. Pulled instances
go through the archive's one ingest path, so they are validated, deduplicated and stored
atomically like any other.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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
from pynetdicom import AE, AllStoragePresentationContexts, build_role, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from carina.archive.archive import Archive, IngestResult, IngestStatus, StoredInstance
from carina.archive.dicomweb_client import DicomWebClient
from carina.archive.dimse import (
    ACCEPTED_TRANSFER_SYNTAXES,
    MAX_PDU,
    STATUS_CANNOT_UNDERSTAND,
    STATUS_DUPLICATE,
    STATUS_OUT_OF_RESOURCES,
    STATUS_SUCCESS,
    set_nodelay,
)
from carina.archive.peers import AnyPeer, PacsError, Peer, WebPeer, parse_peer
from carina.core.errors import CarinaError, NotFoundError

__all__ = [
    "AnyPeer",
    "PacsClient",
    "PacsError",
    "Peer",
    "PullMethod",
    "PullReport",
    "SyncReport",
    "WebPeer",
    "parse_peer",
]

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


PullMethod = Literal["get", "move"]


@dataclass
class PullReport:
    """What a pull received: per-instance ingest results and the final retrieve status.

    A C-MOVE to a listener other than the client's own (``carina serve``) leaves ``results``
    empty: the listener ingests, and ``completed`` says how many the peer sent successfully.
    """

    results: list[IngestResult] = field(default_factory=list)
    status: int | None = None
    failed_suboperations: int = 0
    completed: int = 0

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
        self, peer: AnyPeer, level: str, filters: dict[str, str], keys: Sequence[str] = ()
    ) -> list[Dataset]:
        """Search ``peer`` at ``level`` (STUDY, SERIES, IMAGE; C-FIND in the Study Root model or
        QIDO-RS); ``keys`` are extra attributes to return."""
        if isinstance(peer, WebPeer):
            with DicomWebClient(peer, self.timeout) as web:
                return web.search(level, filters, (*_LEVEL_KEYS.get(level, ()), *keys))
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

    def _ingest(self, report: PullReport, source: str) -> Callable[[Event], Dataset]:
        """A C-STORE handler ingesting into the archive and recording results in ``report``."""
        lock = threading.Lock()

        def on_store(event: Event) -> Dataset:
            data = event.encoded_dataset(include_meta=True)
            try:
                result = self.archive.ingest_one(data, source)
            except CarinaError as exc:
                return _status(STATUS_OUT_OF_RESOURCES, str(exc))
            with lock:
                report.results.append(result)
            if result.status.ok:
                return _status(STATUS_SUCCESS)
            if result.status is IngestStatus.CONFLICT:
                return _status(STATUS_DUPLICATE, result.reason)
            return _status(STATUS_CANNOT_UNDERSTAND, result.reason)

        return on_store

    def pull(
        self,
        peer: AnyPeer,
        study_uid: str,
        series_uid: str | None = None,
        *,
        method: PullMethod = "get",
        store_port: int | None = None,
        store_host: str = "127.0.0.1",
    ) -> PullReport:
        """Retrieve a study (or one of its series) from ``peer`` into the archive.

        A DICOMweb peer is read by WADO-RS. A DIMSE peer is asked by C-GET (``method="get"``) or
        by C-MOVE to this client's AE title (``"move"``; the peer must know that title's
        address). For a C-MOVE, ``store_port`` starts a storage listener of this client on
        ``store_host:store_port`` for the time of the retrieve, accepting only ``peer``'s AE
        title; without it, the instances go to the listener already running under that title
        (``carina serve``), which ingests them into the same archive.
        """
        if isinstance(peer, WebPeer):
            return self._pull_web(peer, study_uid, series_uid)
        if method == "move":
            return self._pull_move(peer, study_uid, series_uid, store_port, store_host)
        if method != "get":
            raise PacsError(f"unknown retrieve method {method!r}: get or move")
        filters = {"StudyInstanceUID": study_uid}
        if series_uid:
            filters["SeriesInstanceUID"] = series_uid
        found = self.find(peer, "IMAGE", filters, ["SOPClassUID", "SOPInstanceUID"])
        sop_classes = sorted({str(ds.SOPClassUID) for ds in found if ds.get("SOPClassUID")})
        if not sop_classes:
            raise NotFoundError(f"{peer.ae_title} has no instances of study {study_uid}")
        report = PullReport()
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
            [(evt.EVT_C_STORE, self._ingest(report, f"C-GET from {peer.ae_title}"))],
        )
        try:
            self._retrieve(assoc, model, study_uid, series_uid, report, "C-GET")
        finally:
            assoc.release()
        return report

    def _retrieve(
        self,
        assoc: Association,
        model: str,
        study_uid: str,
        series_uid: str | None,
        report: PullReport,
        what: str,
    ) -> None:
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
        identifier.StudyInstanceUID = study_uid
        if series_uid:
            identifier.SeriesInstanceUID = series_uid
        responses = (
            assoc.send_c_move(identifier, self.calling_ae, model)
            if what == "C-MOVE"
            else assoc.send_c_get(identifier, model)
        )
        for status, _ in responses:
            if not status:
                raise PacsError(f"{what}: no answer from the peer")
            report.status = int(status.Status)
            if status.Status not in _PENDING:
                report.failed_suboperations = int(status.get("NumberOfFailedSuboperations", 0) or 0)
                report.completed = int(status.get("NumberOfCompletedSuboperations", 0) or 0)
        if report.status not in (STATUS_SUCCESS, 0xB000):
            raise PacsError(f"{what} ended with status 0x{report.status or 0:04X}")

    def _pull_move(
        self,
        peer: Peer,
        study_uid: str,
        series_uid: str | None,
        store_port: int | None,
        store_host: str,
    ) -> PullReport:
        report = PullReport()
        listener = None
        if store_port is not None:
            scp = AE(ae_title=self.calling_ae)
            scp.maximum_pdu_size = MAX_PDU
            scp.acse_timeout = scp.dimse_timeout = scp.network_timeout = self.timeout
            scp.require_calling_aet = [peer.ae_title]
            for context in AllStoragePresentationContexts:
                if context.abstract_syntax is not None:
                    scp.add_supported_context(context.abstract_syntax, ACCEPTED_TRANSFER_SYNTAXES)
            handlers: list[Any] = [
                (evt.EVT_CONN_OPEN, set_nodelay),
                (evt.EVT_C_STORE, self._ingest(report, f"C-MOVE from {peer.ae_title}")),
            ]
            try:
                listener = scp.start_server(
                    (store_host, store_port), block=False, evt_handlers=handlers
                )
            except OSError as exc:
                raise PacsError(f"cannot listen on {store_host}:{store_port}: {exc}") from exc
        try:
            model = StudyRootQueryRetrieveInformationModelMove
            assoc = self._associate(
                peer, [(model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])]
            )
            try:
                self._retrieve(assoc, model, study_uid, series_uid, report, "C-MOVE")
            finally:
                assoc.release()
        finally:
            if listener is not None:
                listener.shutdown()
        if report.completed == 0 and not report.results and report.failed_suboperations == 0:
            raise NotFoundError(f"{peer.ae_title} has no instances of study {study_uid}")
        return report

    def _pull_web(self, peer: WebPeer, study_uid: str, series_uid: str | None) -> PullReport:
        report = PullReport()
        source = f"WADO-RS from {peer}"

        def ingest(data: bytes) -> None:
            report.results.append(self.archive.ingest_one(data, source))

        with DicomWebClient(peer, self.timeout) as web:
            report.completed = web.retrieve(study_uid, series_uid, ingest)
        report.status = STATUS_SUCCESS
        return report

    def push(self, peer: AnyPeer, study_uid: str, series_uid: str | None = None) -> dict[str, int]:
        """Send the stored instances of a study (or series) to ``peer`` as stored (C-STORE or
        STOW-RS). Returns a status per SOPInstanceUID: the C-STORE status, or for STOW-RS 0 when
        stored and the FailureReason otherwise."""
        instances = self.archive.instances(study_uid, series_uid)
        if isinstance(peer, WebPeer):
            return self._push_web(peer, instances)
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

    def _push_web(self, peer: WebPeer, instances: list[StoredInstance]) -> dict[str, int]:
        statuses: dict[str, int] = {}
        with DicomWebClient(peer, self.timeout) as web:
            for start in range(0, len(instances), 50):
                batch = instances[start : start + 50]
                answer = web.store([self.archive.read(i) for i in batch])
                failed = {
                    str(item.get("00081155", {}).get("Value", [""])[0]): int(
                        item.get("00081197", {}).get("Value", [0xC000])[0]
                    )
                    for item in answer.get("00081198", {}).get("Value", [])
                }
                for instance in batch:
                    statuses[instance.sop_instance_uid] = failed.get(instance.sop_instance_uid, 0)
        return statuses

    def missing(self, study: Dataset) -> bool:
        """Whether a study found on a peer (with NumberOfStudyRelatedInstances) is missing or
        incomplete here."""
        remote = int(study.get("NumberOfStudyRelatedInstances") or 0)
        try:
            local = len(self.archive.instances(str(study.StudyInstanceUID)))
        except NotFoundError:
            local = 0
        return not (remote and local >= remote)

    def sync(
        self,
        peer: AnyPeer,
        filters: dict[str, str],
        *,
        method: PullMethod = "get",
        store_port: int | None = None,
        store_host: str = "127.0.0.1",
    ) -> SyncReport:
        """Pull the studies matching ``filters`` on ``peer`` that are missing or incomplete here.

        Completeness is judged by instance count (NumberOfStudyRelatedInstances on the peer).
        """
        report = SyncReport()
        studies = self.find(
            peer, "STUDY", filters, ["StudyInstanceUID", "NumberOfStudyRelatedInstances"]
        )
        for study in studies:
            uid = str(study.StudyInstanceUID)
            report.studies[uid] = (
                self.pull(peer, uid, method=method, store_port=store_port, store_host=store_host)
                if self.missing(study)
                else None
            )
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
