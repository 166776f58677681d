"""The optional pydicom-data test files (Enhanced CT/MR, palette, modality LUT, large J2K).

Installed with the ``dev`` extra; skipped when the package is absent.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from carina.core.errors import CarinaError, DicomError
from carina.dicom import load_series, scan
from tests.dicom.conformance import check_file

_SPEC = importlib.util.find_spec("data_store")
DATA = (
    Path(next(iter(_SPEC.submodule_search_locations))) / "data"
    if _SPEC and _SPEC.submodule_search_locations
    else None
)
FILES = sorted(p for p in DATA.iterdir() if p.is_file()) if DATA and DATA.is_dir() else []

pytestmark = pytest.mark.skipif(
    not FILES, reason="pydicom-data is not installed (pip install 'carina[dev]')"
)

FAILURES: dict[str, tuple[type[CarinaError], str]] = {
    # Encapsulated pixel data cut before the sequence delimiter.
    "emri_small_jpeg_2k_lossless_too_short.dcm": (DicomError, "truncated"),
}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_pydicom_data_file(path: Path) -> None:
    check_file(path, failure=FAILURES.get(path.name))


def test_enhanced_ct_uses_per_frame_functional_groups() -> None:
    assert DATA is not None
    path = DATA / "eCT_Supplemental.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
    (info,) = scan(path).series
    vol = load_series(info).volume
    assert vol.shape == (512, 512, 2)
    shared = ds.SharedFunctionalGroupsSequence[0]
    per_frame = ds.PerFrameFunctionalGroupsSequence
    iop = np.array(
        [
            float(v)
            for v in (
                per_frame[0].get("PlaneOrientationSequence") or shared.PlaneOrientationSequence
            )[0].ImageOrientationPatient
        ]
    )
    np.testing.assert_allclose(vol.geometry.direction[:, 0], iop[:3], atol=1e-6)
    np.testing.assert_allclose(vol.geometry.direction[:, 1], iop[3:], atol=1e-6)
    normal = np.cross(iop[:3], iop[3:])
    positions = [
        np.array([float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient])
        for fg in per_frame
    ]
    first = min(range(2), key=lambda f: float(positions[f] @ normal))
    np.testing.assert_allclose(vol.geometry.origin, positions[first], atol=1e-4)
    measures = (per_frame[0].get("PixelMeasuresSequence") or shared.PixelMeasuresSequence)[0]
    row_spacing, col_spacing = (float(v) for v in measures.PixelSpacing)
    assert vol.geometry.spacing[0] == pytest.approx(col_spacing)
    assert vol.geometry.spacing[1] == pytest.approx(row_spacing)
    assert vol.metadata["units"] == "HU"
