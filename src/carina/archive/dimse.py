"""DIMSE service class provider (pynetdicom): C-ECHO, C-STORE, C-FIND, C-GET and C-MOVE."""

from __future__ import annotations

import io
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from carina.archive.archive import Archive, IngestStatus, StoredInstance
from carina.archive.query import ATTRIBUTES, Level, Query, QueryError, search
from carina.core.errors import CarinaError

log = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_PENDING = 0xFF00
STATUS_CANCEL = 0xFE00
STATUS_DUPLICATE = 0x0111
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_IDENTIFIER_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000
MAX_SUBOPERATIONS = 65535
MAX_PDU = 4 * 1024 * 1024
# the unique keys of a level and those above are always returned (PS3.4 C.4.1.2.1)
_UNIQUE_KEYS = {
    Level.STUDY: ("StudyInstanceUID",),
    Level.SERIES: ("StudyInstanceUID", "SeriesInstanceUID"),
    Level.IMAGE: ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}
_RETRIEVE_KEYS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_RETRIEVE_LEVELS = {"PATIENT": 0, "STUDY": 1, "SERIES": 2, "IMAGE": 3}

_LEVELS = {"STUDY": Level.STUDY, "SERIES": Level.SERIES, "IMAGE": Level.IMAGE}
_RANK = {Level.STUDY: 0, Level.SERIES: 1, Level.IMAGE: 2}
_PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
_SKIPPED = {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle"}
_UNCOMPRESSED = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]
# pynetdicom accepts the first of these that the requestor proposes: compressed syntaxes come
# first, so instances arrive as the sender holds them instead of being transcoded on the way.
ACCEPTED_TRANSFER_SYNTAXES = [
    *(ts for ts in ALL_TRANSFER_SYNTAXES if ts not in _UNCOMPRESSED),
    *_UNCOMPRESSED,
]


def set_nodelay(event: Event) -> None:
    """Turn off Nagle's algorithm on an association's socket (``EVT_CONN_OPEN`` handler)."""
    sock = event.assoc.dul.socket
    if sock is not None and sock.socket is not None:
        sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _status(code: int, comment: str | None = None) -> Dataset:
    status = Dataset()
    status.Status = code
    if comment:
        status.ErrorComment = comment[:64]
    return status


def parse_peer(address: str) -> tuple[str, int]:
    """``host:port`` of a DICOM peer."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"a DICOM peer is host:port, got {address!r}")
    return host, int(port)


@dataclass(frozen=True)
class DimseActivity:
    """What one DICOM peer did: reported to ``on_activity`` for the audit log.

    C-STORE is reported once per association (when it ends), with the studies written and the
    number of instances; C-FIND, C-GET and C-MOVE once per request; refused associations too.
    """

    operation: str  # "C-STORE", "C-FIND", "C-GET", "C-MOVE" or "ASSOCIATE"
    calling_ae: str
    address: str
    outcome: str  # "allowed", "denied" or "failed"
    studies: tuple[str, ...] = ()
    count: int = 0
    detail: str = ""


class DimseServer:
    """A DICOM listener storing into and answering queries from ``archive``.

    Accepts every storage SOP class in any transfer syntax, Verification, and Study/Patient Root
    C-FIND, C-GET and C-MOVE. C-MOVE sends to the AE titles in ``peers`` (title -> ``host:port``).
    Retrieved instances go out in their stored transfer syntax. ``port`` 0 binds a free port;
    :attr:`port` tells which.
    """

    def __init__(
        self,
        archive: Archive,
        ae_title: str,
        host: str,
        port: int,
        peers: dict[str, str] | None = None,
        *,
        allowed_callers: list[str] | None = None,
        on_activity: Callable[[DimseActivity], None] | None = None,
    ) -> None:
        self.archive = archive
        self.on_activity = on_activity
        self._stores: dict[int, dict[str, int]] = {}
        self._stores_lock = threading.Lock()
        self.ae_title = ae_title
        self.host = host
        self._port = port
        self.peers = {
            title.strip(): parse_peer(address) for title, address in (peers or {}).items()
        }
        self._server: ThreadedAssociationServer | None = None
        self.ae = AE(ae_title=ae_title)
        # large PDUs: fewer P-DATA fragments to assemble per instance (the default is 16 KiB)
        self.ae.maximum_pdu_size = MAX_PDU
        if allowed_callers:
            # associations from other calling AE titles are rejected (and reported)
            self.ae.require_calling_aet = [title.strip() for title in allowed_callers]
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                self.ae.add_supported_context(
                    context.abstract_syntax,
                    ACCEPTED_TRANSFER_SYNTAXES,
                    scu_role=True,
                    scp_role=True,
                )
        self.ae.add_supported_context(Verification)
        for model in (
            StudyRootQueryRetrieveInformationModelFind,
            PatientRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelGet,
            PatientRootQueryRetrieveInformationModelGet,
            StudyRootQueryRetrieveInformationModelMove,
            PatientRootQueryRetrieveInformationModelMove,
        ):
            self.ae.add_supported_context(model)

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            return self._port
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start listening in background threads."""
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, set_nodelay),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_GET, self._on_get),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_RELEASED, self._on_end),
            (evt.EVT_ABORTED, self._on_end),
            (evt.EVT_REJECTED, self._on_rejected),
        ]
        self._server = self.ae.start_server(
            (self.host, self._port), block=False, evt_handlers=handlers
        )
        log.info("DIMSE %s listening on %s:%d", self.ae_title, self.host, self.port)

    def stop(self) -> None:
        """Stop listening and close open associations."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _report(
        self,
        event: Event,
        operation: str,
        outcome: str,
        studies: tuple[str, ...] = (),
        count: int = 0,
        detail: str = "",
    ) -> None:
        if self.on_activity is None:
            return
        requestor = event.assoc.requestor
        activity = DimseActivity(
            operation=operation,
            calling_ae=str(requestor.ae_title).strip(),
            address=str(requestor.address),
            outcome=outcome,
            studies=studies,
            count=count,
            detail=detail,
        )
        try:
            self.on_activity(activity)
        except Exception:  # the audit must not break the DICOM service; it is logged
            log.exception("cannot record DIMSE activity %s", activity)

    def _on_end(self, event: Event) -> None:
        with self._stores_lock:
            stored = self._stores.pop(id(event.assoc), None)
        if stored:
            self._report(
                event,
                "C-STORE",
                "allowed",
                tuple(sorted(stored)),
                sum(stored.values()),
                "instances stored" if event.event is evt.EVT_RELEASED else "association aborted",
            )

    def _on_rejected(self, event: Event) -> None:
        self._report(event, "ASSOCIATE", "denied", detail="calling AE title not allowed")

    def _on_store(self, event: Event) -> Dataset:
        data = event.encoded_dataset(include_meta=True)
        try:
            result = self.archive.ingest_one(data, f"C-STORE from {event.assoc.requestor.ae_title}")
        except CarinaError as exc:
            log.error("C-STORE failed: %s", exc)
            return _status(STATUS_OUT_OF_RESOURCES, str(exc))
        if result.status.ok:
            if result.study_instance_uid:
                with self._stores_lock:
                    counts = self._stores.setdefault(id(event.assoc), {})
                    counts[result.study_instance_uid] = counts.get(result.study_instance_uid, 0) + 1
            return _status(STATUS_SUCCESS)
        if result.status is IngestStatus.CONFLICT:
            return _status(STATUS_DUPLICATE, result.reason)
        return _status(STATUS_CANNOT_UNDERSTAND, result.reason)

    def _on_find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        identifier: Dataset = event.identifier
        level_name = str(identifier.get("QueryRetrieveLevel", "")).upper()
        patient_level = level_name == "PATIENT"
        level = Level.STUDY if patient_level else _LEVELS.get(level_name)
        if level is None:
            yield STATUS_IDENTIFIER_MISMATCH, None
            return
        requested: list[str] = []
        filters: dict[str, str] = {}
        for element in identifier:
            keyword = element.keyword
            if not keyword or keyword in _SKIPPED or element.VR == "SQ":
                continue
            requested.append(keyword)
            attribute = ATTRIBUTES.get(keyword)
            value = "" if element.value is None else str(element.value)
            if attribute is not None and _RANK[attribute.level] <= _RANK[level] and value:
                filters[keyword] = value
        query = Query(level, filters, includefield=[*requested, *_UNIQUE_KEYS[level]])
        try:
            with self.archive.session() as session:
                matches = search(session, query)
        except QueryError as exc:
            log.warning("C-FIND refused: %s", exc)
            yield STATUS_IDENTIFIER_MISMATCH, None
            return
        studies = tuple(
            sorted({str(m["0020000D"]["Value"][0]) for m in matches if "0020000D" in m})
        )
        summary = ", ".join(f"{k}={v}" for k, v in sorted(filters.items()))
        self._report(event, "C-FIND", "allowed", studies, len(matches), f"{level_name} {summary}")
        seen: set[str] = set()
        for match in matches:
            if event.is_cancelled:
                yield STATUS_CANCEL, None
                return
            response = Dataset.from_json(match)
            if patient_level:
                if response.get("PatientID", "") in seen:
                    continue
                seen.add(str(response.get("PatientID", "")))
                keep = set(requested) & set(_PATIENT_KEYS) | {"PatientID"}
            else:
                keep = set(requested) | set(_UNIQUE_KEYS[level])
            answer = Dataset()
            answer.SpecificCharacterSet = "ISO_IR 192"
            answer.QueryRetrieveLevel = level_name
            answer.RetrieveAETitle = self.ae_title
            for keyword in sorted(keep):
                answer[keyword] = response[keyword] if keyword in response else _empty(keyword)
            yield STATUS_PENDING, answer
        yield STATUS_SUCCESS, None

    def _retrieve_targets(self, identifier: Dataset) -> list[StoredInstance] | None:
        """Instances a C-GET/C-MOVE identifier asks for; ``None`` when it is not valid."""
        level = _RETRIEVE_LEVELS.get(str(identifier.get("QueryRetrieveLevel", "")).upper())
        if level is None:
            return None
        filters: dict[str, str] = {}
        for rank, keyword in enumerate(_RETRIEVE_KEYS):
            value = str(identifier.get(keyword, "") or "").strip()
            if value and value != "*":
                filters[keyword] = value
            elif rank == level:
                return None  # the unique key of the level is required
        return self.archive.find_instances(filters)

    def _datasets(
        self, event: Event, instances: list[StoredInstance]
    ) -> Iterator[tuple[int, Dataset | None]]:
        for instance in instances:
            if event.is_cancelled:
                yield STATUS_CANCEL, None
                return
            yield STATUS_PENDING, pydicom.dcmread(io.BytesIO(self.archive.read(instance)))

    def _on_get(self, event: Event) -> Iterator[Any]:
        instances = self._retrieve_targets(event.identifier)
        if instances is None:
            yield 0
            return
        if len(instances) > MAX_SUBOPERATIONS:
            instances = instances[:MAX_SUBOPERATIONS]
        studies = tuple(sorted({i.study_instance_uid for i in instances}))
        self._report(event, "C-GET", "allowed", studies, len(instances), "instances sent")
        yield len(instances)
        yield from self._datasets(event, instances)

    def _on_move(self, event: Event) -> Iterator[Any]:
        destination = event.move_destination
        title = (
            destination.decode("ascii", "replace")
            if isinstance(destination, bytes)
            else str(destination)
        ).strip()
        peer = self.peers.get(title)
        if peer is None:
            log.warning("C-MOVE to unknown destination %r", title)
            self._report(event, "C-MOVE", "denied", detail=f"unknown destination {title}")
            yield None, None
            return
        instances = self._retrieve_targets(event.identifier) or []
        instances = instances[:MAX_SUBOPERATIONS]
        studies = tuple(sorted({i.study_instance_uid for i in instances}))
        self._report(event, "C-MOVE", "allowed", studies, len(instances), f"sent to {title}")
        contexts = _contexts_for(instances)
        yield (
            peer[0],
            peer[1],
            {
                "contexts": contexts,
                "evt_handlers": [(evt.EVT_CONN_OPEN, set_nodelay)],
            },
        )
        yield len(instances)
        yield from self._datasets(event, instances)


def _contexts_for(instances: list[StoredInstance]) -> list[PresentationContext]:
    """Presentation contexts to propose for sending ``instances`` as stored (at most 128)."""
    syntaxes: dict[str, list[str]] = {}
    for instance in instances:
        wanted = syntaxes.setdefault(instance.sop_class_uid, [])
        if instance.transfer_syntax_uid not in wanted:
            wanted.append(instance.transfer_syntax_uid)
    contexts = [build_context(sop_class, ts) for sop_class, ts in syntaxes.items()]
    return contexts[:128]


def _empty(keyword: str) -> DataElement:
    tag = tag_for_keyword(keyword)
    assert tag is not None
    return DataElement(tag, dictionary_VR(tag), None)
