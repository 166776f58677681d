"""Opaque tokens: random values handed out once, stored as HMAC-SHA256 digests (server secret)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIXES = {"access": "cat_", "session": "cas_", "personal": "cap_"}


def new_token(kind: str) -> str:
    """A fresh token of ``kind`` (256 random bits, prefixed so leaked tokens are recognisable)."""
    return PREFIXES[kind] + secrets.token_urlsafe(32)


def token_digest(secret: str, token: str) -> str:
    """The stored form of ``token``: useless without the server secret."""
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()


def csrf_token(secret: str, session_token: str) -> str:
    """The CSRF token bound to a session (sent as a readable cookie and echoed in a header)."""
    return hmac.new(secret.encode(), b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()
