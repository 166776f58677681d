"""The PS3.15 Annex E confidentiality profile as data, and the options that modify it."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from typing import Literal, cast

from carina.core.errors import ConfigurationError

PROFILE_EDITION = "DICOM PS3.15 2024b Table E.1-1"

Action = Literal["D", "Z", "X", "K", "C", "U"]

OPTION_COLUMNS: tuple[str, ...] = (
    "retain_safe_private",
    "retain_uids",
    "retain_device_identity",
    "retain_institution_identity",
    "retain_patient_characteristics",
    "retain_long_full_dates",
    "retain_long_modified_dates",
    "clean_descriptors",
    "clean_structured_content",
    "clean_graphics",
)


@dataclass(frozen=True)
class DeidOptions:
    """Options of the Basic Application Level Confidentiality Profile (PS3.15 E.3)."""

    retain_safe_private: bool = False
    retain_uids: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_patient_characteristics: bool = False
    retain_long_full_dates: bool = False
    retain_long_modified_dates: bool = False
    clean_descriptors: bool = False
    clean_structured_content: bool = False
    clean_graphics: bool = False
    clean_pixel_data: bool = False

    def __post_init__(self) -> None:
        if self.retain_long_full_dates and self.retain_long_modified_dates:
            raise ConfigurationError(
                "retain-long-full-dates and retain-long-modified-dates exclude each other"
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Option names in CLI spelling (``retain-uids``)."""
        return tuple(f.name.replace("_", "-") for f in fields(cls))

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...]) -> DeidOptions:
        """Options from CLI names; unknown names raise :class:`ConfigurationError`."""
        known = {n.replace("-", "_") for n in cls.names()}
        chosen: dict[str, bool] = {}
        for name in names:
            key = name.strip().lower().replace("-", "_")
            if key not in known:
                raise ConfigurationError(
                    f"unknown de-identification option {name!r}; known: {', '.join(cls.names())}"
                )
            chosen[key] = True
        return cls(**chosen)

    def active(self) -> tuple[str, ...]:
        """Names (field spelling) of the options that are switched on."""
        return tuple(f.name for f in fields(self) if getattr(self, f.name))


PROFILES: dict[str, DeidOptions] = {
    "basic": DeidOptions(),
    "research": DeidOptions(
        retain_long_modified_dates=True,
        retain_patient_characteristics=True,
        retain_device_identity=True,
        clean_descriptors=True,
        clean_structured_content=True,
        clean_graphics=True,
        clean_pixel_data=True,
    ),
}


def options_for(profile: str, names: list[str] | tuple[str, ...] = ()) -> DeidOptions:
    """The options of a preset profile plus extra options by CLI name (``retain-uids``)."""
    if profile not in PROFILES:
        raise ConfigurationError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    extra = DeidOptions.from_names(list(names))
    merged = dict.fromkeys((*PROFILES[profile].active(), *extra.active()), True)
    return DeidOptions(**merged)


@dataclass(frozen=True)
class ProfileRule:
    """One row of Table E.1-1: the tag pattern, the basic action and the option columns."""

    tag: str
    name: str
    keyword: str
    basic: str
    options: dict[str, str]

    def action(self, opts: DeidOptions, sequence: bool = False) -> Action:
        """The action under ``opts``: an option's K beats C beats X, which beat the basic code."""
        codes = {self.options[o] for o in opts.active() if self.options.get(o)}
        for code in ("K", "C", "X"):
            if code in codes:
                return cast(Action, code)
        return choose_basic(self.basic, sequence)


def choose_basic(basic: str, sequence: bool = False) -> Action:
    """Pick one action from a basic code such as X/Z, X/D, X/Z/D, Z/D or X/Z/U*.

    Without the IOD's attribute types at hand, the choice keeps any object valid: UIDs are
    replaced (U*), sequences that may be removed are removed (an empty Type 3 sequence is
    invalid), other attributes get a dummy value where D is allowed (Type 1 stays filled) and
    are emptied where only Z is.
    """
    parts = basic.replace("*", "").split("/")
    if "U" in parts:
        return "U"
    if sequence and "X" in parts:
        return "X"
    for code in ("D", "Z", "X", "K", "C"):
        if code in parts:
            return cast(Action, code)
    raise ConfigurationError(f"unknown profile action {basic!r}")


@dataclass(frozen=True)
class ProfileTable:
    """Table E.1-1 indexed by tag, with the repeating-group and private-attribute rows."""

    edition: str
    rules: dict[int, ProfileRule]
    curve: ProfileRule
    overlay: dict[int, ProfileRule]
    private: ProfileRule

    def lookup(self, tag: int) -> ProfileRule | None:
        """The rule for an element tag, or None when the table does not list it."""
        rule = self.rules.get(tag)
        if rule is not None:
            return rule
        group, elem = tag >> 16, tag & 0xFFFF
        if group & 1:
            return self.private
        if 0x5000 <= group <= 0x501E:
            return self.curve
        if 0x6000 <= group <= 0x601E:
            return self.overlay.get(elem)
        return None


def _read_rows(text: str) -> list[dict[str, str]]:
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


@cache
def annex_e() -> ProfileTable:
    """Load ``profiles/annex_e.csv`` (shipped with the package)."""
    text = resources.files("carina.deid").joinpath("profiles/annex_e.csv").read_text("utf-8")
    edition = text.splitlines()[0].lstrip("# ").split(" Table")[0] + " Table E.1-1"
    rules: dict[int, ProfileRule] = {}
    curve = private = None
    overlay: dict[int, ProfileRule] = {}
    for row in _read_rows(text):
        opts = {c: row[c] for c in OPTION_COLUMNS if row[c]}
        rule = ProfileRule(row["tag"], row["name"], row["keyword"], row["basic"], opts)
        tag = row["tag"]
        if tag.startswith("(gggg"):
            private = rule
        elif tag.startswith("(50xx"):
            curve = rule
        elif tag.startswith("(60xx"):
            overlay[int(tag[6:10], 16)] = rule
        else:
            rules[int(tag[1:5] + tag[6:10], 16)] = rule
    if curve is None or private is None:
        raise ConfigurationError("annex_e.csv lacks the curve or private-attribute rows")
    return ProfileTable(edition, rules, curve, overlay, private)


@dataclass(frozen=True)
class SafePrivate:
    """A private attribute kept by the Retain Safe Private Option."""

    creator: str
    group: int
    offset: int
    name: str


@cache
def safe_private() -> dict[tuple[str, int, int], SafePrivate]:
    """The safe private list, keyed by (creator, group, element offset)."""
    text = resources.files("carina.deid").joinpath("profiles/safe_private.csv").read_text("utf-8")
    out: dict[tuple[str, int, int], SafePrivate] = {}
    for row in _read_rows(text):
        item = SafePrivate(
            row["creator"], int(row["group"], 16), int(row["offset"], 16), row["name"]
        )
        out[(item.creator, item.group, item.offset)] = item
    return out
