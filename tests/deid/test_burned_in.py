"""Burned-in text: risk flags, OCR before and after cleaning, pixels outside the boxes intact."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from carina.deid import (
    Deidentifier,
    DeidOptions,
    burned_in_risk,
    deidentify_file,
    find_residual_phi,
    find_text,
)
from carina.deid.pixels import MASK_PAD, ocr_boxes, to_gray8

from .conftest import SECRET, dciodvfy_errors, read

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs tesseract-ocr")

GREY = "deid_fake_phi/ultrasounds/GREYSCALE_IMAGE.dcm"
RGB = "deid_fake_phi/ultrasounds/RGB_IMAGE.dcm"


def _words(path: Path) -> str:
    return " ".join(b.text for b in find_text(read(path))).upper()


def test_risk_flags(shared_data: Path) -> None:
    assert burned_in_risk(read(shared_data / GREY)) == ["BurnedInAnnotation=YES", "Modality=US"]
    assert burned_in_risk(read(shared_data / RGB)) == ["Modality=US"]
    cookie = burned_in_risk(read(shared_data / "deid_fake_phi/dicom-cookies/image1.dcm"))
    assert "ConversionType=WSD" in cookie
    assert "secondary capture SOP class" in cookie
    assert burned_in_risk(read(shared_data / "dicom_variants/pydicom/CT_small.dcm")) == []


@pytest.mark.parametrize(
    ("rel", "name_parts"),
    [(GREY, ["ZZZ", "TEST", "PATIENTFI", "08/29/1951"]), (RGB, ["ZZZDOWNTIME"])],
)
def test_burned_in_name_is_masked(
    rel: str, name_parts: list[str], shared_data: Path, tmp_path: Path
) -> None:
    src = shared_data / rel
    before_words = _words(src)
    assert all(p in before_words for p in name_parts)  # the name is readable in the original

    dst = tmp_path / "clean.dcm"
    report = deidentify_file(src, dst, Deidentifier(SECRET, DeidOptions(clean_pixel_data=True)))
    assert report.pixels_cleaned
    assert report.masked_boxes >= len(name_parts)

    out = read(dst)
    assert out.BurnedInAnnotation == "NO"
    assert out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    after_words = _words(dst)
    assert not [p for p in name_parts if p in after_words]
    assert not [b for b in find_text(out) if b.conf >= 60]

    original = read(src).pixel_array
    cleaned = out.pixel_array
    assert cleaned.shape == original.shape
    inside = np.zeros(original.shape[:2], dtype=bool)
    for box in report.boxes:
        r0, r1, c0, c1 = box.padded(*original.shape[:2])
        inside[r0:r1, c0:c1] = True
    assert np.array_equal(cleaned[~inside], original[~inside])
    assert not cleaned[inside].any()
    assert inside.sum() < 0.2 * inside.size  # the text, not the image, was blacked out
    assert report.boxes[0].padded(*original.shape[:2])[0] == max(0, report.boxes[0].top - MASK_PAD)
    if shutil.which("dciodvfy"):
        assert (dciodvfy_errors(dst) or set()) <= (dciodvfy_errors(src) or set())


def test_low_confidence_words_go_to_the_review_list(shared_data: Path) -> None:
    ds = read(shared_data / GREY)
    _, report = Deidentifier(SECRET, DeidOptions(clean_pixel_data=True)).apply(ds)
    low = [b for b in report.boxes if b.conf < 60]
    assert low
    assert sum("low-confidence" in r for r in report.review) == len(low)


def test_without_clean_pixel_data_the_risk_is_reported_and_pixels_untouched(
    shared_data: Path,
) -> None:
    ds = read(shared_data / GREY)
    out, report = Deidentifier(SECRET).apply(ds)
    assert out.BurnedInAnnotation == "YES"
    assert np.array_equal(out.pixel_array, ds.pixel_array)
    assert any("burned-in" in r for r in report.review)
    assert any(f.reason == "burned-in text risk" for f in find_residual_phi(out))


def test_jpeg_secondary_capture_is_reencoded_uncompressed(shared_data: Path) -> None:
    src = read(shared_data / "deid_fake_phi/humans/ctbrain1.dcm")
    assert src.file_meta.TransferSyntaxUID.is_compressed
    out, report = Deidentifier(SECRET, DeidOptions(clean_pixel_data=True)).apply(src)
    assert out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert out.PhotometricInterpretation == "RGB"
    assert out.BurnedInAnnotation == "NO"
    assert report.pixels_cleaned
    assert out.pixel_array.shape == src.pixel_array.shape


def test_ocr_sees_nothing_in_a_blank_frame() -> None:
    assert ocr_boxes(to_gray8(np.zeros((64, 256), dtype=np.uint16))) == []
