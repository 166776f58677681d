"""Test helpers: multipart bodies written and split independently of the code under test."""

from __future__ import annotations

import os
import re
import socket
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: each stays bound until all are chosen (free ports chosen one
    at a time may repeat before the first is listened on)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def multipart_body(
    parts: list[bytes], content_type: str = "application/dicom"
) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b""
    for part in parts:
        body += f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode() + part + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="{content_type}"; boundary={boundary}'


def split_multipart(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    match = re.search(r"boundary=\"?([^\";]+)\"?", content_type)
    assert match, content_type
    delimiter = b"--" + match.group(1).encode()
    chunks = body.split(b"\r\n" + delimiter)
    assert chunks[0].startswith(delimiter + b"\r\n")
    chunks[0] = chunks[0][len(delimiter) :]
    assert chunks[-1].startswith(b"--")
    parts = []
    for chunk in chunks[:-1]:
        head, _, content = chunk[2:].partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if ": " in line)
        parts.append((headers.get("Content-Type", ""), content))
    return parts


ADMIN_PASSWORD = "archive-admin-password"


def admin_headers(app: Any) -> dict[str, str]:
    """A bearer header of a site administrator of ``app`` (created on first use)."""
    store = app.state.auth
    if not any(u.name == "admin" for u in store.users()):
        store.create_user("admin", ADMIN_PASSWORD, is_admin=True)
    principal = store.authenticate("admin", ADMIN_PASSWORD)
    token = store.issue_token(principal.user_id, "access", timedelta(hours=1))
    return {"Authorization": f"Bearer {token.token}"}


def orthanc_peer() -> Path:
    """The shared tool that starts an Orthanc peer (next to the shared data)."""
    env = os.environ.get("CARINA_SHARED_DATA")
    data = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    return data.parent / "tools" / "orthanc-peer"
