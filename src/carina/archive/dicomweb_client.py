"""A client of a remote DICOMweb service: QIDO-RS searches and WADO-RS retrieval.

Retrieval asks for ``multipart/related; type="application/dicom"; transfer-syntax=*`` so that the
service sends each instance as it holds it (no transcoding), and hands every part to the caller
as soon as it has arrived, so that a study is never held in memory whole.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from python_multipart.multipart import MultipartParser

from carina.archive.peers import PacsError, WebPeer

DICOM_JSON = "application/dicom+json"
RETRIEVE_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
PAGE = 500
_PATHS = {"STUDY": "/studies", "SERIES": "/series", "IMAGE": "/instances"}


def _boundary(content_type: str) -> str:
    kind, *params = content_type.split(";")
    if kind.strip().lower() != "multipart/related":
        raise PacsError(f"WADO-RS answered {content_type!r}, not multipart/related")
    for param in params:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary" and value:
            return value.strip().strip('"')
    raise PacsError("WADO-RS answer has no multipart boundary")


def _include(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    return f"{tag:08X}" if tag is not None else keyword


class DicomWebClient:
    """QIDO-RS and WADO-RS against one :class:`WebPeer`."""

    def __init__(self, peer: WebPeer, timeout: float = 60) -> None:
        self.peer = peer
        headers = {"Authorization": f"Bearer {peer.token}"} if peer.token else {}
        auth = (
            httpx.BasicAuth(peer.username, peer.password or "")
            if peer.username is not None
            else None
        )
        self.http = httpx.Client(
            base_url=peer.url, headers=headers, auth=auth, timeout=timeout, follow_redirects=False
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DicomWebClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code >= 400:
            raise PacsError(
                f"{what} at {self.peer}: HTTP {response.status_code} {response.text[:200]}"
            )

    def search(
        self, level: str, filters: Mapping[str, str], keys: Sequence[str] = ()
    ) -> list[Dataset]:
        """QIDO-RS at ``level`` (STUDY, SERIES, IMAGE) with attribute ``filters`` (keywords, DICOM
        matching as in C-FIND); ``keys`` are extra attributes to return. Pages through results."""
        try:
            path = _PATHS[level]
        except KeyError:
            raise PacsError(f"no QIDO-RS resource for level {level!r}") from None
        params: list[tuple[str, str | int | float | bool | None]] = [
            (k, v) for k, v in filters.items() if v != ""
        ]
        params += [("includefield", _include(k)) for k in keys]
        found: list[Dataset] = []
        try:
            while True:
                page = [*params, ("limit", PAGE), ("offset", len(found))]
                response = self.http.get(path, params=page, headers={"Accept": DICOM_JSON})
                self._check(response, "QIDO-RS")
                if response.status_code == 204 or not response.content:
                    break
                items = response.json()
                found.extend(Dataset.from_json(json.dumps(item)) for item in items)
                if len(items) < PAGE:
                    break
        except httpx.HTTPError as exc:
            raise PacsError(f"QIDO-RS at {self.peer}: {exc}") from exc
        return found

    def retrieve(
        self, study_uid: str, series_uid: str | None, on_instance: Callable[[bytes], None]
    ) -> int:
        """WADO-RS of a study (or one series): ``on_instance`` gets each instance's bytes as
        sent; the number of instances received."""
        path = f"/studies/{study_uid}" + (f"/series/{series_uid}" if series_uid else "")
        received = 0
        try:
            with self.http.stream("GET", path, headers={"Accept": RETRIEVE_ACCEPT}) as response:
                if response.status_code == 404:
                    raise PacsError(f"{self.peer} has no study {study_uid}")
                if response.status_code >= 400:
                    response.read()
                    self._check(response, "WADO-RS")
                boundary = _boundary(response.headers.get("content-type", ""))
                part = bytearray()
                headers: dict[str, str] = {}
                field_name = bytearray()
                field_value = bytearray()
                done: list[bytes] = []

                def on_part_begin() -> None:
                    part.clear()
                    headers.clear()

                def on_part_data(data: bytes, start: int, end: int) -> None:
                    part.extend(data[start:end])

                def on_header_field(data: bytes, start: int, end: int) -> None:
                    field_name.extend(data[start:end])

                def on_header_value(data: bytes, start: int, end: int) -> None:
                    field_value.extend(data[start:end])

                def on_header_end() -> None:
                    headers[field_name.decode("latin-1").lower()] = field_value.decode("latin-1")
                    field_name.clear()
                    field_value.clear()

                def on_part_end() -> None:
                    kind = headers.get("content-type", "application/dicom").split(";")[0]
                    if kind.strip().lower() != "application/dicom":
                        raise PacsError(f"WADO-RS sent a part of type {kind!r}")
                    done.append(bytes(part))

                callbacks: Any = {
                    "on_part_begin": on_part_begin,
                    "on_part_data": on_part_data,
                    "on_header_field": on_header_field,
                    "on_header_value": on_header_value,
                    "on_header_end": on_header_end,
                    "on_part_end": on_part_end,
                }
                parser = MultipartParser(boundary, callbacks)
                for chunk in response.iter_bytes():
                    parser.write(chunk)
                    while done:
                        on_instance(done.pop(0))
                        received += 1
                parser.finalize()
                while done:
                    on_instance(done.pop(0))
                    received += 1
        except httpx.HTTPError as exc:
            raise PacsError(f"WADO-RS at {self.peer}: {exc}") from exc
        return received

    def store(self, instances: Sequence[bytes]) -> dict[str, Any]:
        """STOW-RS of ``instances`` (each a DICOM file); the service's answer (DICOM JSON)."""
        boundary = "carina-stow-" + secrets.token_hex(12)
        body = bytearray()
        for data in instances:
            body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            body += data + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
        try:
            response = self.http.post(
                "/studies",
                content=bytes(body),
                headers={"Content-Type": content_type, "Accept": DICOM_JSON},
            )
        except httpx.HTTPError as exc:
            raise PacsError(f"STOW-RS at {self.peer}: {exc}") from exc
        self._check(response, "STOW-RS")
        answer: dict[str, Any] = response.json() if response.content else {}
        return answer
