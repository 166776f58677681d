"""Damaged copies of real files: every failure is a CarinaError, scan never raises."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carina.core.errors import CarinaError
from carina.dicom import load_series, read_pixels, scan
from tests.conftest import shared_data_dir

SOURCES = {
    "native": shared_data_dir() / "dicom_variants" / "pydicom" / "CT_small.dcm",
    "jpeg2000": shared_data_dir() / "dicom_variants" / "pydicom" / "MR_small_jp2klossless.dcm",
    "implicit_multiframe": shared_data_dir() / "dicom_variants" / "pydicom" / "rtdose.dcm",
}


def _message(fn: Callable[[], object]) -> str | None:
    """None when ``fn`` succeeds, the message of the CarinaError it raises otherwise."""
    try:
        fn()
    except CarinaError as exc:
        return str(exc)
    return None


def _exercise(path: Path) -> None:
    result = scan(path)
    for rejected in result.rejected:
        assert rejected.reason
    for info in result.series:
        assert _message(partial(load_series, info, resample_irregular=True)) != ""
    assert _message(partial(read_pixels, path)) != ""


@pytest.mark.parametrize("name", sorted(SOURCES))
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_truncated_or_flipped_bytes_fail_cleanly(
    name: str, data: st.DataObject, tmp_path: Path
) -> None:
    raw = bytearray(SOURCES[name].read_bytes())
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)), label="cut")
    flips = data.draw(
        st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=4),
        label="flips",
    )
    for offset, value in flips:
        raw[offset] = value
    path = tmp_path / f"{name}.dcm"
    path.write_bytes(bytes(raw[:cut]) if data.draw(st.booleans(), label="truncate") else raw)
    _exercise(path)
