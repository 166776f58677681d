"""Every file under dicom_variants either loads with pydicom's own pixel values or fails cleanly.

Failures must be :class:`CarinaError` subclasses whose message names the cause; the files that
are expected to fail are listed here with the reason, so a new failure is a test failure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from carina.core.errors import CarinaError, DicomDecodeError, DicomError
from tests.conftest import shared_data_dir
from tests.dicom.conformance import check_file

VARIANTS = shared_data_dir() / "dicom_variants"
FILES = sorted(p for p in VARIANTS.rglob("*") if p.is_file()) if VARIANTS.is_dir() else []

#: DICOM files that cannot be read or decoded, with the error and a fragment of its message.
FAILURES: dict[str, tuple[type[CarinaError], str]] = {
    # 12-bit lossy JPEG with invalid SOS parameters (README: only GDCM reads it, with errors).
    "pydicom/JPEG-lossy.dcm": (DicomDecodeError, "JPEG Extended"),
    # JPEG 2000 codestream deliberately corrupted with an embedded sequence delimiter.
    "pydicom/JPEG2000-embedded-sequence-delimiter.dcm": (DicomDecodeError, "JPEG 2000"),
    # The file ends inside the pixel data element.
    "pydicom/MR_truncated.dcm": (DicomError, "truncated"),
    # The file ends inside a sequence of the RT plan.
    "pydicom/rtplan_truncated.dcm": (DicomError, "truncated"),
    # Header value '1A' in an IS element that the pixel decoder needs.
    "pydicom/badVR.dcm": (DicomDecodeError, "'1A'"),
    # No Bits Allocated / Rows: pixel data without the Image Pixel module.
    "pydicom/meta_missing_tsyntax.dcm": (DicomDecodeError, "Missing required element"),
    "pydicom/nested_priv_SQ.dcm": (DicomDecodeError, "Missing required element"),
}

#: Malformed files that are not readable as DICOM at all.
NOT_DICOM = {
    # CT_small.dcm without file meta, but with a stray leading byte: no element parses.
    "pydicom/no_meta.dcm",
}


def _rel(path: Path) -> str:
    return path.relative_to(VARIANTS).as_posix()


def test_variants_folder_is_complete() -> None:
    # 249 files listed by the data README; every one is parametrised below.
    assert len(FILES) >= 240


@pytest.mark.parametrize("path", FILES, ids=[_rel(p) for p in FILES])
def test_variant(path: Path) -> None:
    rel = _rel(path)
    check_file(path, not_dicom=rel in NOT_DICOM, failure=FAILURES.get(rel))
