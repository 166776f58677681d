"""DICOM JSON (PS3.18 F.2) of stored instances, bulk data replaced by BulkDataURI references."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
BULK_THRESHOLD = 1024
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
BULK_PLACEHOLDER = "carina:bulk/"


def bulk_path(study_uid: str, series_uid: str, sop_uid: str, tag: int) -> str:
    """The DICOMweb path (below the service root) of a top-level bulk data element."""
    return f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/bulkdata/{tag:08X}"


def instance_json(ds: Dataset, study_uid: str, series_uid: str, sop_uid: str) -> dict[str, Any]:
    """The DICOM JSON of ``ds`` without bulk data.

    Pixel data and top-level binary elements over 1 KiB become ``BulkDataURI`` entries holding
    ``carina:bulk/<path>``; the server replaces the prefix by its base URL when it answers.
    Group lengths are left out. Raises ``ValueError`` when an element value cannot be converted.
    """
    out: dict[str, Any] = {}
    for elem in ds:
        if elem.tag.element == 0:
            continue
        key = f"{int(elem.tag):08X}"
        try:
            if int(elem.tag) in PIXEL_TAGS or (
                elem.VR in BULK_VRS and not elem.is_empty and len(elem.value) > BULK_THRESHOLD
            ):
                uri = BULK_PLACEHOLDER + bulk_path(study_uid, series_uid, sop_uid, int(elem.tag))
                out[key] = {"vr": elem.VR, "BulkDataURI": uri}
            else:
                out[key] = elem.to_json_dict(None, 2**62)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"invalid value in {elem.tag} {elem.keyword or ''}: {exc}") from exc
    return out


def resolve_bulk_uris(text: str, base_url: str) -> str:
    """Replace the bulk data placeholders of cached DICOM JSON by URLs below ``base_url``."""
    return text.replace(BULK_PLACEHOLDER, base_url.rstrip("/") + "/")
