"""Remote nodes a Carina archive exchanges studies with: DIMSE peers and DICOMweb services."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from carina.core.errors import CarinaError


class PacsError(CarinaError):
    """A remote PACS could not be reached or refused an operation."""


@dataclass(frozen=True)
class Peer:
    """A remote DICOM node (DIMSE)."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, known: Mapping[str, str] | None = None) -> Peer:
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

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class WebPeer:
    """A remote DICOMweb service: its base URL (the one ``/studies`` is under) and credentials
    (a bearer ``token``, or ``username`` and ``password`` for HTTP Basic)."""

    url: str
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    name: str = ""

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise PacsError(f"a DICOMweb peer is an http(s) URL, got {self.url!r}")

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any] | str) -> WebPeer:
        """A peer from its settings entry: a URL, or ``{"url", "token"|"username"+"password"}``."""
        if isinstance(config, str):
            return cls(config.rstrip("/"), name=name)
        url = config.get("url")
        if not isinstance(url, str):
            raise PacsError(f"DICOMweb peer {name!r} has no url")
        return cls(
            url.rstrip("/"),
            token=config.get("token"),
            username=config.get("username"),
            password=config.get("password"),
            name=name,
        )

    def __str__(self) -> str:
        return self.name or self.url


AnyPeer = Peer | WebPeer


def parse_peer(
    text: str,
    dimse: Mapping[str, str] | None = None,
    dicomweb: Mapping[str, Mapping[str, Any] | str] | None = None,
) -> AnyPeer:
    """A peer named by ``text``: an ``http(s)://`` URL (DICOMweb), a name from ``dicomweb``
    (``CARINA_DICOMWEB_PEERS``), ``AE@host:port``, or an AE title from ``dimse``
    (``CARINA_DICOM_PEERS``)."""
    if text.startswith(("http://", "https://")):
        return WebPeer(text.rstrip("/"))
    if dicomweb and text in dicomweb:
        return WebPeer.from_config(text, dicomweb[text])
    return Peer.parse(text, dimse)


def configured(
    text: str,
    dimse: Mapping[str, str] | None = None,
    dicomweb: Mapping[str, Any] | None = None,
) -> bool:
    """Whether ``text`` names a peer of the settings (not an address given inline)."""
    return bool((dimse and text in dimse) or (dicomweb and text in dicomweb))
