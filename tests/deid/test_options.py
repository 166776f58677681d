"""Each profile option keeps exactly what its column of Table E.1-1 promises and nothing else:
compared with the Basic Profile output, only attributes with an entry in the option's column
(or inside such a sequence) may differ, K entries equal the input, C entries are cleaned."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

from carina.deid import Deidentifier, DeidOptions, annex_e
from carina.deid.pseudonym import shift_date

from .conftest import SECRET, flatten, read

OPTIONS = [f.name for f in fields(DeidOptions) if f.name != "clean_pixel_data"]
MARKERS = {0x00120062, 0x00120063, 0x00120064, 0x00280303}
DATE_OPTIONS = {"retain_long_full_dates", "retain_long_modified_dates"}


def _affected(chain: tuple[int, ...], option: str, vr_is_date: bool) -> str | None:
    """The option's code for the first tag in the chain that has one (None: unaffected)."""
    table = annex_e()
    if option in DATE_OPTIONS and vr_is_date:
        return "date"
    if option == "clean_graphics" and any(0x6000 <= t >> 16 <= 0x601E for t in chain):
        return "C"  # the overlay group stays with its data
    kept_sequence = False
    for i, tag in enumerate(chain):
        rule = table.lookup(tag)
        leaf = i == len(chain) - 1
        code = rule.options.get(option) if rule is not None else None
        if code == "K" and not leaf:
            kept_sequence = True  # K on a sequence: kept, its items cleaned by their own rows
            continue
        if code:
            return code
        if leaf and kept_sequence:
            return "K" if rule is None else "own"
    return None


def _identifying(ds: Dataset) -> list[str]:
    out = []
    for kw in ("PatientName", "PatientID", "InstitutionName", "ReferringPhysicianName"):
        value = str(ds.get(kw, "") or "")
        out += [p for p in re.split(r"[\^\s]+", value) if len(p) >= 4]
    return out


@pytest.fixture(scope="module")
def sample(corpus: list[Path]) -> list[tuple[Path, Dataset, dict[str, Any], dict[str, Any]]]:
    """Every object of the corpus: input, flattened input, flattened Basic Profile output."""
    basic = Deidentifier(SECRET)
    out = []
    for src in corpus:
        ds = read(src)
        out.append((src, ds, flatten(ds), flatten(basic.apply(ds)[0])))
    return out


@pytest.mark.parametrize("option", OPTIONS)
def test_option_changes_only_its_column(
    option: str, sample: list[tuple[Path, Dataset, dict[str, Any], dict[str, Any]]]
) -> None:
    opted = Deidentifier(SECRET, DeidOptions(**{option: True}))
    kept_by_k = cleaned = 0
    for src, ds, flat_in, flat_b in sample:
        out, report = opted.apply(ds)
        flat_o = flatten(out)
        ident = _identifying(ds)
        for path in set(flat_b) | set(flat_o):
            chain: tuple[int, ...] = (flat_o[path] if path in flat_o else flat_b[path])[0]
            if chain[0] in MARKERS:
                continue
            value_o = flat_o[path][1] if path in flat_o else None
            value_b = flat_b[path][1] if path in flat_b else None
            elem_vr = out[chain[0]].VR if len(chain) == 1 and chain[0] in out else ""
            is_date = isinstance(value_o or value_b, str) and _looks_temporal(
                path, flat_in, elem_vr
            )
            code = _affected(chain, option, is_date)
            if code is None:
                assert value_o == value_b, f"{src.name} {path} changed by {option}"
                continue
            original = flat_in[path][1] if path in flat_in else None
            if code == "own":
                continue  # inside a kept sequence, its own row applies
            if code == "K":
                assert value_o == original, f"{src.name} {path} not kept by {option}"
                kept_by_k += 1
            elif code in {"C", "date"} and option == "retain_long_modified_dates":
                _check_shift(original, value_o, report.date_shift_days, path)
                cleaned += original != value_o
            elif code == "date":
                assert value_o == original
                kept_by_k += 1
            elif code == "C" and isinstance(value_o, str):
                found = [t for t in ident if re.search(rf"\b{re.escape(t)}\b", value_o, re.I)]
                assert found == [], (src.name, path, value_o)
                cleaned += 1
    assert kept_by_k + cleaned > 0, f"{option} had nothing to act on in the corpus"


def _looks_temporal(path: str, flat_in: dict[str, Any], vr: str) -> bool:
    from pydicom.datadict import dictionary_VR

    tag = int(path.rsplit(".", 1)[-1][:8], 16)
    try:
        return dictionary_VR(tag) in {"DA", "DT", "TM"}
    except KeyError:
        return vr in {"DA", "DT", "TM"}


def _check_shift(original: Any, value: Any, shift: int | None, path: str) -> None:
    assert shift is not None
    if original is None or value is None or not isinstance(original, str):
        return
    if len(original) == 8 and original.isdigit():
        assert value == shift_date(original, shift), path
    elif len(original) > 8 and shift_date(original[:8], shift) is not None and len(value) >= 8:
        assert value[:8] == shift_date(original[:8], shift), path


def test_retain_safe_private_keeps_only_listed_elements(shared_data: Path) -> None:
    ds = read(shared_data / "deid_fake_phi/ultrasounds/GREYSCALE_IMAGE.dcm")
    block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0C, "IS", "1000")  # B value: on the safe list
    block.add_new(0x08, "CS", "IMAGE NUM 4")  # not on the list
    out, _ = Deidentifier(SECRET, DeidOptions(retain_safe_private=True)).apply(ds)
    kept = {int(e.tag) for e in out if e.tag.is_private}
    assert kept == {0x00190010, 0x0019100C}
    assert out[0x0019100C].value == 1000
    basic, _ = Deidentifier(SECRET).apply(ds)
    assert not [e for e in basic if e.tag.is_private]


def test_clean_graphics_keeps_overlays_for_review(shared_data: Path) -> None:
    ds = read(shared_data / "dicom_variants/pydicom/examples_overlay.dcm")
    assert 0x60003000 in ds
    basic, _ = Deidentifier(SECRET).apply(ds)
    assert not [e for e in basic if 0x6000 <= e.tag.group <= 0x601E]
    out, report = Deidentifier(SECRET, DeidOptions(clean_graphics=True)).apply(ds)
    assert out[0x60003000].value == ds[0x60003000].value
    assert any("Overlay Data" in r for r in report.review)


def test_clean_structured_content_keeps_the_sr_tree(shared_data: Path) -> None:
    ds = read(shared_data / "dicom_variants/pydicom/reportsi.dcm")
    basic, _ = Deidentifier(SECRET).apply(ds)
    clean, _ = Deidentifier(SECRET, DeidOptions(clean_structured_content=True)).apply(ds)

    def codes(d: Dataset) -> list[str]:
        tree = d.ContentSequence
        return [str(e.value) for i in tree for e in i.iterall() if e.keyword == "CodeValue"]

    assert codes(clean) == codes(ds)
    assert len(codes(ds)) > 5
    assert set(codes(basic)) == {"ANONYMIZED"}
    names = [str(e.value) for e in ds.iterall() if e.keyword == "PersonName"]
    assert names
    clean_names = [str(e.value) for e in clean.iterall() if e.keyword == "PersonName"]
    assert not set(names) & set(clean_names)
