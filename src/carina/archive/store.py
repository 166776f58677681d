"""Instance files under the data directory, written atomically at paths derived from UIDs."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from carina.core.errors import StorageError

TEMP_SUFFIX = ".part"
_INSTANCES = "instances"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore:
    """Files of stored instances: ``instances/ab/cd/<sha256 of SOPInstanceUID>.dcm``.

    Writes go to a temporary file in the target directory, are fsynced, renamed over the final name
    with :func:`os.replace` and the directory is fsynced: a file at a final path is always whole.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.instances_dir = root / _INSTANCES
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        self.journal_dir = root / "journal"

    @staticmethod
    def relative_path(sop_instance_uid: str) -> str:
        """The path of an instance, relative to the store root, derived from its UID."""
        digest = hashlib.sha256(sop_instance_uid.encode("ascii", "replace")).hexdigest()
        return f"{_INSTANCES}/{digest[:2]}/{digest[2:4]}/{digest}.dcm"

    def absolute(self, relative: str) -> Path:
        """The absolute path of a path relative to the store root."""
        return self.root / relative

    def write(self, relative: str, data: bytes) -> Path:
        """Write ``data`` atomically at ``relative``; returns the final path."""
        final = self.root / relative
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            temp = final.parent / f".{final.name}.{secrets.token_hex(8)}{TEMP_SUFFIX}"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            with contextlib.suppress(OSError, UnboundLocalError):
                temp.unlink(missing_ok=True)
            raise StorageError(f"cannot write {final}: {exc}") from exc
        return final

    def read(self, relative: str) -> bytes:
        """The bytes of a stored file."""
        try:
            return (self.root / relative).read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read {relative}: {exc}") from exc

    def remove(self, relative: str) -> None:
        """Remove a stored file (no error when it is already gone)."""
        path = self.root / relative
        try:
            path.unlink(missing_ok=True)
            _fsync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"cannot remove {relative}: {exc}") from exc

    def iter_files(self) -> Iterator[str]:
        """Relative paths of every final instance file in the store."""
        for path in self.instances_dir.rglob("*.dcm"):
            yield path.relative_to(self.root).as_posix()

    # -- journal of batches in progress ------------------------------------------------------------

    def begin(self, relatives: list[str]) -> Path:
        """Record that files at ``relatives`` are about to be written; returns the journal entry.

        The entry is removed by :meth:`end` once the batch is committed or cleaned up; entries left
        by a process that died name the only places where leftovers can be.
        """
        self.journal_dir.mkdir(exist_ok=True)
        entry = self.journal_dir / f"{os.getpid()}-{secrets.token_hex(8)}.json"
        entry.write_text(json.dumps(relatives))
        return entry

    def end(self, entry: Path) -> None:
        """Remove a journal entry."""
        entry.unlink(missing_ok=True)

    def pending(self) -> list[tuple[Path, list[str]]]:
        """Journal entries left behind, with the paths each names (unreadable entries name none)."""
        entries: list[tuple[Path, list[str]]] = []
        for entry in sorted(self.journal_dir.glob("*.json")):
            try:
                relatives = [str(r) for r in json.loads(entry.read_text())]
            except (OSError, ValueError, TypeError):
                relatives = []
            entries.append((entry, relatives))
        return entries

    def remove_temp_files_of(self, relative: str) -> int:
        """Delete temporary files left by interrupted writes of ``relative``."""
        final = self.root / relative
        removed = 0
        for path in final.parent.glob(f".{final.name}.*{TEMP_SUFFIX}"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def remove_temp_files(self) -> int:
        """Delete temporary files left by interrupted writes; returns how many were removed."""
        removed = 0
        for path in self.instances_dir.rglob(f"*{TEMP_SUFFIX}"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """An exclusive lock, across processes, around file writes plus their catalog commit."""
        fd = os.open(self.root / "ingest.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
