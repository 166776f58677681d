"""DIMSE service class provider: C-ECHO, C-STORE and C-FIND (pynetdicom) over the archive."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

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
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from carina.archive.archive import Archive, IngestStatus
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


class DimseServer:
    """A DICOM listener storing into and answering queries from ``archive``.

    Accepts every storage SOP class in any transfer syntax, Verification, and Study/Patient Root
    C-FIND. ``port`` 0 binds a free port; :attr:`port` tells which.
    """

    def __init__(self, archive: Archive, ae_title: str, host: str, port: int) -> None:
        self.archive = archive
        self.ae_title = ae_title
        self.host = host
        self._port = port
        self._server: ThreadedAssociationServer | None = None
        self.ae = AE(ae_title=ae_title)
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                self.ae.add_supported_context(context.abstract_syntax, ACCEPTED_TRANSFER_SYNTAXES)
        self.ae.add_supported_context(Verification)
        self.ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        self.ae.add_supported_context(PatientRootQueryRetrieveInformationModelFind)

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

    def _on_store(self, event: Event) -> Dataset:
        data = event.encoded_dataset(include_meta=True)
        try:
            result = self.archive.ingest_one(data, f"C-STORE from {event.assoc.requestor.ae_title}")
        except CarinaError as exc:
            log.error("C-STORE failed: %s", exc)
            return _status(STATUS_OUT_OF_RESOURCES, str(exc))
        if result.status.ok:
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
        query = Query(level, filters, includefield=requested)
        try:
            with self.archive.session() as session:
                matches = search(session, query)
        except QueryError as exc:
            log.warning("C-FIND refused: %s", exc)
            yield STATUS_IDENTIFIER_MISMATCH, None
            return
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
                keep = set(requested)
            answer = Dataset()
            answer.SpecificCharacterSet = "ISO_IR 192"
            answer.QueryRetrieveLevel = level_name
            answer.RetrieveAETitle = self.ae_title
            for keyword in sorted(keep):
                answer[keyword] = response[keyword] if keyword in response else _empty(keyword)
            yield STATUS_PENDING, answer
        yield STATUS_SUCCESS, None


def _empty(keyword: str) -> DataElement:
    tag = tag_for_keyword(keyword)
    assert tag is not None
    return DataElement(tag, dictionary_VR(tag), None)
