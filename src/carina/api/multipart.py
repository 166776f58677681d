"""multipart/related bodies (RFC 2387), as DICOMweb uses them."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser


@dataclass
class Part:
    """One body part: lower-cased headers and content."""

    headers: dict[str, str] = field(default_factory=dict)
    content: bytearray = field(default_factory=bytearray)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def media_type_params(header: str) -> tuple[str, dict[str, str]]:
    """The media type (lower case) and parameters of a Content-Type or Accept entry."""
    kind, *rest = header.split(";")
    params: dict[str, str] = {}
    for item in rest:
        name, _, value = item.strip().partition("=")
        if name:
            params[name.strip().lower()] = value.strip().strip('"')
    return kind.strip().lower(), params


async def parse_multipart(boundary: str, chunks: AsyncIterator[bytes]) -> list[Part]:
    """The parts of a multipart body read from ``chunks``."""
    parts: list[Part] = []
    field_name = bytearray()
    field_value = bytearray()

    def on_part_begin() -> None:
        parts.append(Part())

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].content += data[start:end]

    def on_header_field(data: bytes, start: int, end: int) -> None:
        field_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        field_value.extend(data[start:end])

    def on_header_end() -> None:
        name = field_name.decode("latin-1").strip().lower()
        parts[-1].headers[name] = field_value.decode("latin-1").strip()
        field_name.clear()
        field_value.clear()

    parser = MultipartParser(
        boundary.encode("latin-1"),
        callbacks={
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
        },
    )
    async for chunk in chunks:
        parser.write(chunk)
    parser.finalize()
    return parts


def new_boundary() -> str:
    """A random boundary."""
    return f"carina-{secrets.token_hex(16)}"


def multipart_stream(boundary: str, parts: Iterable[tuple[str, bytes]]) -> Iterator[bytes]:
    """The chunks of a multipart body made of ``(content type, content)`` parts."""
    delimiter = f"--{boundary}\r\n".encode("latin-1")
    for content_type, content in parts:
        yield delimiter + f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
        yield content
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("latin-1")
