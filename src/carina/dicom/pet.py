"""Standardised uptake values (SUV) from the PET header: body-weight SUV with decay correction.

SUVbw = activity concentration [Bq/mL] x body weight [g] / injected dose decayed to the start of
the acquisition [Bq], following the vendor-neutral recipe of the QIBA FDG-PET profile: the dose
is decayed from RadiopharmaceuticalStartDateTime (or StartTime on the series date) to the decay
correction reference — SeriesDateTime for ``DecayCorrection = START`` (or AcquisitionDateTime
when the series time is after it, as some scanners rewrite it), the injection itself for ``ADMIN``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.valuerep import DA, DT, TM

from carina.core.errors import DicomError


class SuvError(DicomError):
    """The PET header lacks what SUV needs, or its values are inconsistent."""


@dataclass(frozen=True)
class SuvScale:
    """Multiply Bq/mL by ``factor`` to get SUVbw (g/mL)."""

    factor: float
    weight_kg: float
    injected_dose_bq: float
    decayed_dose_bq: float
    half_life_s: float
    elapsed_s: float


def _dt(date: str, time: str) -> datetime:
    try:
        return datetime.combine(DA(date), TM(time)).replace(tzinfo=None)
    except (TypeError, ValueError) as exc:
        raise SuvError(f"unreadable date/time {date!r} {time!r}") from exc


def _datetime(value: str) -> datetime:
    try:
        return DT(value).replace(tzinfo=None)
    except (TypeError, ValueError) as exc:
        raise SuvError(f"unreadable date-time {value!r}") from exc


def suv_scale(ds: Dataset) -> SuvScale:
    """The SUVbw factor of one PET image (raises :class:`SuvError` naming what is missing)."""
    if str(ds.get("Modality", "")) != "PT":
        raise SuvError(f"SUV needs a PET image, this is {ds.get('Modality', 'unknown')}")
    units = str(ds.get("Units", ""))
    if units != "BQML":
        raise SuvError(f"SUV from Units {units or '(empty)'} is not supported; BQML is needed")
    corrected = [str(v) for v in (ds.get("CorrectedImage") or [])]
    if "DECY" not in corrected or "ATTN" not in corrected:
        raise SuvError("the image is not decay- and attenuation-corrected (CorrectedImage)")
    weight = float(ds.get("PatientWeight") or 0)
    if weight <= 0:
        raise SuvError("PatientWeight is missing; body-weight SUV cannot be computed")
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    if not seq:
        raise SuvError("RadiopharmaceuticalInformationSequence is missing")
    info = seq[0]
    dose = float(info.get("RadionuclideTotalDose") or 0)
    half_life = float(info.get("RadionuclideHalfLife") or 0)
    if dose <= 0 or half_life <= 0:
        raise SuvError("RadionuclideTotalDose or RadionuclideHalfLife is missing")
    if info.get("RadiopharmaceuticalStartDateTime"):
        injected = _datetime(str(info.RadiopharmaceuticalStartDateTime))
    elif info.get("RadiopharmaceuticalStartTime") and ds.get("SeriesDate"):
        injected = _dt(str(ds.SeriesDate), str(info.RadiopharmaceuticalStartTime))
    else:
        raise SuvError("the injection time (RadiopharmaceuticalStartDateTime) is missing")
    decay_correction = str(ds.get("DecayCorrection", "START"))
    if decay_correction == "ADMIN":
        reference = injected
    elif decay_correction == "START":
        if not (ds.get("SeriesDate") and ds.get("SeriesTime")):
            raise SuvError("SeriesDate/SeriesTime are missing")
        reference = _dt(str(ds.SeriesDate), str(ds.SeriesTime))
        if ds.get("AcquisitionDate") and ds.get("AcquisitionTime"):
            acquired = _dt(str(ds.AcquisitionDate), str(ds.AcquisitionTime))
            reference = min(reference, acquired)
    else:
        raise SuvError(f"DecayCorrection {decay_correction!r} is not supported")
    elapsed = (reference - injected).total_seconds()
    if elapsed < 0:
        raise SuvError(
            f"the injection is {-elapsed:.0f} s after the decay reference time; check the "
            "radiopharmaceutical and series dates and times"
        )
    decayed = dose * math.pow(2.0, -elapsed / half_life)
    return SuvScale(
        factor=weight * 1000.0 / decayed,
        weight_kg=weight,
        injected_dose_bq=dose,
        decayed_dose_bq=decayed,
        half_life_s=half_life,
        elapsed_s=elapsed,
    )
