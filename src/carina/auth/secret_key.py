"""The server secret: validated when configured, otherwise generated once in the data directory."""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

from carina.core.errors import ConfigurationError

SECRET_FILE = "secret_key"
MIN_SECRET_LENGTH = 32
PLACEHOLDERS = frozenset(
    {
        "changethis",
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "secretkey",
        "secret_key",
        "password",
        "default",
        "test",
        "insecure",
        "development",
        "your-secret-key",
        "supersecret",
    }
)


def check_secret(value: str) -> str:
    """``value`` if it is usable as the server secret; :class:`ConfigurationError` otherwise."""
    letters = re.sub(r"[^a-z0-9]", "", value.lower())
    known = {re.sub(r"[^a-z0-9]", "", p) for p in PLACEHOLDERS}
    repeated = any(letters and letters == p * (len(letters) // len(p)) for p in known)
    if letters in known or repeated or len(set(value)) < 8:
        raise ConfigurationError("the configured secret key is a placeholder; set a random one")
    if len(value) < MIN_SECRET_LENGTH:
        raise ConfigurationError(
            f"the configured secret key is shorter than {MIN_SECRET_LENGTH} characters"
        )
    return value


def load_or_create_secret(data_dir: Path, configured: str | None = None) -> str:
    """The configured secret (checked), or the one in ``data_dir/secret_key``, created at first use.

    The file is created with mode 0600; an existing file readable by group or others is refused.
    """
    if configured is not None:
        return check_secret(configured)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigurationError(
                f"{path} is accessible to group or others (mode {mode:o}); chmod 600 it"
            ) from None
        return check_secret(path.read_text().strip())
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path.read_text().strip()
