"""SUVbw from PET headers (decay correction) and PET lesion measures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from carina.analysis.pet import pet_stats
from carina.core import Geometry, Volume
from carina.dicom.pet import SuvError, suv_scale


def _pet_header(shared_data: Path) -> Dataset:
    """A real image header turned into a PET header with a known injection."""
    ds = pydicom.dcmread(shared_data / "dicom_variants" / "pydicom" / "CT_small.dcm")
    ds.Modality = "PT"
    ds.Units = "BQML"
    ds.CorrectedImage = ["ATTN", "DECY"]
    ds.DecayCorrection = "START"
    ds.PatientWeight = 72.5
    ds.SeriesDate, ds.SeriesTime = "20240310", "101500"
    ds.AcquisitionDate, ds.AcquisitionTime = "20240310", "101500"
    item = Dataset()
    item.RadionuclideTotalDose = 350e6
    item.RadionuclideHalfLife = 6586.2
    item.RadiopharmaceuticalStartDateTime = "20240310091000.000000"
    ds.RadiopharmaceuticalInformationSequence = [item]
    return ds


def test_suv_factor_by_hand(shared_data: Path) -> None:
    ds = _pet_header(shared_data)
    scale = suv_scale(ds)
    elapsed = 65 * 60  # 09:10 -> 10:15
    decayed = 350e6 * math.exp(-math.log(2) * elapsed / 6586.2)
    assert scale.elapsed_s == elapsed
    assert scale.decayed_dose_bq == pytest.approx(decayed)
    assert scale.factor == pytest.approx(72.5 * 1000 / decayed)
    # 5 kBq/mL in a 72.5 kg patient one hour after 350 MBq: an SUV of about 1.6
    assert 5000 * scale.factor == pytest.approx(1.6, abs=0.1)
    # ADMIN: the image is already decay-corrected to the injection
    ds.DecayCorrection = "ADMIN"
    assert suv_scale(ds).factor == pytest.approx(72.5 * 1000 / 350e6)
    # only a start time: the series date is used
    del ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime
    ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartTime = "091000"
    ds.DecayCorrection = "START"
    assert suv_scale(ds).elapsed_s == elapsed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: setattr(d, "Modality", "CT"), "needs a PET image"),
        (lambda d: setattr(d, "Units", "CNTS"), "BQML is needed"),
        (lambda d: setattr(d, "CorrectedImage", ["ATTN"]), "decay- and attenuation-corrected"),
        (lambda d: delattr(d, "PatientWeight"), "PatientWeight is missing"),
        (lambda d: delattr(d, "RadiopharmaceuticalInformationSequence"), "Sequence is missing"),
        (lambda d: setattr(d, "SeriesTime", "080000"), "after the decay reference time"),
    ],
)
def test_missing_or_inconsistent_headers(shared_data: Path, change: object, message: str) -> None:
    ds = _pet_header(shared_data)
    change(ds)  # type: ignore[operator]
    if message == "after the decay reference time":
        ds.AcquisitionTime = "080000"
    with pytest.raises(SuvError, match=message):
        suv_scale(ds)


def test_lesion_measures_by_hand() -> None:
    g = Geometry.from_components(shape=(40, 40, 40), spacing=(2.0, 2.0, 2.0))
    arr = np.full((40, 40, 40), 1.0)
    zz, yy, xx = np.indices(arr.shape)
    r = np.sqrt((zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2) * 2.0  # mm
    arr[r <= 10] = 8.0  # a 10 mm radius sphere of SUV 8
    arr[20, 20, 20] = 20.0  # one hot voxel
    region = r <= 14
    stats = pet_stats(Volume(arr, g), region)
    assert stats.suv_max == 20.0
    assert stats.threshold == pytest.approx(0.41 * 20)
    # with a 41 % threshold (8.2) only the hot voxel remains
    assert stats.metabolic_volume_ml == pytest.approx(0.008)
    fixed = pet_stats(Volume(arr, g), region, threshold=2.5)
    sphere = r <= 10
    assert fixed.metabolic_volume_ml == pytest.approx(sphere.sum() * 8 / 1000)
    assert fixed.suv_mean == pytest.approx(arr[sphere].mean())
    assert fixed.total_lesion_glycolysis == pytest.approx(
        arr[sphere].mean() * sphere.sum() * 8 / 1000
    )
    # the 1 mL peak sphere (radius 6.2 mm) lies inside the SUV-8 sphere, plus the hot voxel
    assert 8.0 < fixed.suv_peak < 8.0 + 12.0 / 30
