"""The archive: DICOM instance storage, catalog, ingest and query."""

from carina.archive.archive import (
    Archive,
    IngestResult,
    IngestStatus,
    RecoveryReport,
    StoredInstance,
)
from carina.archive.parse import ParsedInstance, parse_instance

__all__ = [
    "Archive",
    "IngestResult",
    "IngestStatus",
    "ParsedInstance",
    "RecoveryReport",
    "StoredInstance",
    "parse_instance",
]
