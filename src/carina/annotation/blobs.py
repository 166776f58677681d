"""Label map voxels as content-addressed, compressed, atomically written files.

A blob holds one label map in the HTTP order (slice k, row j, column i), uint8 or uint16. Its name
is the sha256 of ``dtype;shape;`` followed by the raw bytes, so equal label maps share one file
and a file can be verified against its name. Files are written to a temporary name, fsynced and
renamed: a blob at its final path is always whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from carina.core.errors import LabelError, StorageError

_MAGIC = b"CARINALM1\n"
DTYPES: dict[str, type[Any]] = {"uint8": np.uint8, "uint16": np.uint16}


def content_digest(array: npt.NDArray[Any]) -> str:
    """The sha256 naming a label map: over its dtype, shape and C-order bytes."""
    arr = np.ascontiguousarray(array)
    head = f"{arr.dtype.name};{','.join(str(s) for s in arr.shape)};".encode()
    digest = hashlib.sha256(head)
    digest.update(arr.tobytes())
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """``<root>/ab/cd/<sha256>.lm``: header (dtype, shape) and zlib-compressed voxels."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise StorageError(f"not a blob name: {digest!r}")
        return self.root / digest[:2] / digest[2:4] / f"{digest}.lm"

    def put(self, array: npt.NDArray[Any]) -> str:
        """Store ``array`` (uint8/uint16, 3 axes); returns its digest. Idempotent."""
        if array.dtype.name not in DTYPES or array.ndim != 3:
            raise LabelError("a label map blob is a 3-axis uint8 or uint16 array")
        arr = np.ascontiguousarray(array)
        digest = content_digest(arr)
        final = self.path(digest)
        if final.exists():
            return digest
        header = json.dumps({"dtype": arr.dtype.name, "shape": list(arr.shape)}).encode()
        payload = _MAGIC + struct.pack(">I", len(header)) + header + zlib.compress(arr.tobytes(), 6)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            temp = final.parent / f".{final.name}.{secrets.token_hex(8)}.part"
            with temp.open("xb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            raise StorageError(f"cannot write label map blob {digest}: {exc}") from exc
        return digest

    def get(self, digest: str) -> npt.NDArray[Any]:
        """The array stored under ``digest``, verified against it."""
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StorageError(f"label map blob {digest} is missing: {exc}") from exc
        try:
            if not data.startswith(_MAGIC):
                raise ValueError("bad magic")
            offset = len(_MAGIC)
            (size,) = struct.unpack(">I", data[offset : offset + 4])
            header = json.loads(data[offset + 4 : offset + 4 + size])
            raw = zlib.decompress(data[offset + 4 + size :])
            arr: npt.NDArray[Any] = np.frombuffer(raw, dtype=DTYPES[header["dtype"]])
            arr = arr.reshape([int(s) for s in header["shape"]])
        except (ValueError, KeyError, zlib.error, struct.error) as exc:
            raise StorageError(f"label map blob {digest} is damaged: {exc}") from exc
        if content_digest(arr) != digest:
            raise StorageError(f"label map blob {digest} does not match its name")
        return arr
