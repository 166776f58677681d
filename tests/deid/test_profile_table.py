"""The Annex E table shipped as package data, and how combined actions resolve."""

from __future__ import annotations

import re

import pytest
from pydicom.datadict import dictionary_keyword

from carina.core.errors import ConfigurationError
from carina.deid import DeidOptions, annex_e, safe_private
from carina.deid.profile import OPTION_COLUMNS, choose_basic

BASIC_CODES = {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}


def test_table_is_the_2024b_edition_and_complete() -> None:
    table = annex_e()
    assert table.edition == "DICOM PS3.15 2024b Table E.1-1"
    assert len(table.rules) >= 600
    assert {r.basic for r in table.rules.values()} <= BASIC_CODES
    for rule in table.rules.values():
        assert set(rule.options) <= set(OPTION_COLUMNS)
        assert set(rule.options.values()) <= {"K", "C", "X"}


def test_keywords_agree_with_the_pydicom_dictionary() -> None:
    for tag, rule in annex_e().rules.items():
        if rule.keyword:
            assert dictionary_keyword(tag) == rule.keyword, rule.name


@pytest.mark.parametrize(
    ("tag", "basic", "options"),
    [
        (0x00100010, "Z", {}),
        (0x00100020, "Z/D", {}),
        (0x00100030, "Z", {}),
        (0x0020000D, "U", {"retain_uids": "K"}),
        (0x00080018, "U", {"retain_uids": "K"}),
        (0x00200052, "U", {"retain_uids": "K"}),
        (0x00080080, "X/Z/D", {"retain_institution_identity": "K"}),
        (0x00181000, "X/Z/D", {"retain_device_identity": "K"}),
        (0x00101010, "X", {"retain_patient_characteristics": "K"}),
        (0x00080020, "Z", {"retain_long_full_dates": "K", "retain_long_modified_dates": "C"}),
        (0x0008103E, "X", {"clean_descriptors": "C"}),
        (0x0040A730, "D", {"clean_structured_content": "C"}),
        (0x00081140, "X/Z/U*", {"retain_uids": "K"}),
        (0x00080050, "Z", {}),
    ],
)
def test_known_rows(tag: int, basic: str, options: dict[str, str]) -> None:
    rule = annex_e().rules[tag]
    assert rule.basic == basic
    assert rule.options == options


def test_repeating_groups_and_private_rows() -> None:
    table = annex_e()
    overlay = table.lookup(0x60023000)
    assert overlay is not None
    assert overlay.basic == "X"
    assert overlay.options == {"clean_graphics": "C"}
    assert table.lookup(0x60004000) is not None
    assert table.lookup(0x60000010) is None  # overlay rows/columns are not in the table
    curve = table.lookup(0x50020005)
    assert curve is not None
    assert curve.name == "Curve Data"
    private = table.lookup(0x00291010)
    assert private is not None
    assert private.options == {"retain_safe_private": "C"}
    assert table.lookup(0x00080060) is None  # Modality: kept


@pytest.mark.parametrize(
    ("code", "sequence", "expected"),
    [
        ("X/Z", False, "Z"),
        ("X/Z", True, "X"),
        ("X/D", False, "D"),
        ("X/Z/D", False, "D"),
        ("X/Z/D", True, "X"),
        ("Z/D", False, "D"),
        ("X/Z/U*", True, "U"),
        ("U", False, "U"),
        ("X", False, "X"),
    ],
)
def test_combined_codes(code: str, sequence: bool, expected: str) -> None:
    assert choose_basic(code, sequence) == expected


def test_option_beats_basic() -> None:
    rule = annex_e().rules[0x00080080]
    assert rule.action(DeidOptions()) == "D"
    assert rule.action(DeidOptions(retain_institution_identity=True)) == "K"
    dates = annex_e().rules[0x00080020]
    assert dates.action(DeidOptions(retain_long_modified_dates=True)) == "C"
    assert dates.action(DeidOptions(retain_long_full_dates=True)) == "K"


def test_options_from_cli_names() -> None:
    opts = DeidOptions.from_names(["retain-uids", "clean-pixel-data"])
    assert opts.active() == ("retain_uids", "clean_pixel_data")
    with pytest.raises(ConfigurationError, match="unknown"):
        DeidOptions.from_names(["retain-everything"])
    with pytest.raises(ConfigurationError, match="exclude"):
        DeidOptions(retain_long_full_dates=True, retain_long_modified_dates=True)


def test_safe_private_list_is_keyed_by_creator_and_offset() -> None:
    safe = safe_private()
    assert ("SIEMENS MR HEADER", 0x0019, 0x0C) in safe
    assert all(re.fullmatch(r"[0-9A-F]{4}", f"{g:04X}") and g & 1 for (_, g, _) in safe)
