"""Residual PHI candidates in a dataset, judged against the profile and its options."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.dataset import Dataset

from carina.deid.engine import DUMMY_BY_VR, DUMMY_TEXT, resolve_action
from carina.deid.pixels import burned_in_risk
from carina.deid.profile import DeidOptions, ProfileTable, annex_e, safe_private

_PSEUDONYM = re.compile(r"^[A-Z0-9]+-[0-9A-F]{16}$")
_DUMMIES = {DUMMY_TEXT, *(str(v) for v in DUMMY_BY_VR.values())}


@dataclass(frozen=True)
class Finding:
    """One residual PHI candidate: where it is, why it is listed, and a value preview."""

    path: str
    name: str
    reason: str
    value: str


def _is_placeholder(value: str) -> bool:
    return value in _DUMMIES or bool(_PSEUDONYM.match(value))


def _preview(value: object) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def find_residual_phi(
    ds: Dataset, options: DeidOptions | None = None, table: ProfileTable | None = None
) -> list[Finding]:
    """Attributes the profile would remove or replace that still hold a value, private
    attributes (other than safe-listed ones under Retain Safe Private), person names, and
    burned-in text risk flags."""
    options = options or DeidOptions()
    table = table or annex_e()
    findings: list[Finding] = []
    _scan(ds, options, table, "", findings)
    if str(ds.get("BurnedInAnnotation", "") or "").upper() != "NO":
        for reason in burned_in_risk(ds):
            findings.append(Finding("pixels", "Pixel Data", "burned-in text risk", reason))
    return findings


def _scan(
    ds: Dataset, options: DeidOptions, table: ProfileTable, prefix: str, out: list[Finding]
) -> None:
    safe = safe_private()
    for elem in ds:
        tag = int(elem.tag)
        path = f"{prefix}{elem.tag}"
        group, el = tag >> 16, tag & 0xFFFF
        if group & 1:
            if el < 0x1000:
                continue  # creator elements are listed with their block
            creator = ds.get((group << 16) | (el >> 8))
            name = str(creator.value).strip() if creator is not None else ""
            if options.retain_safe_private and (name, group, el & 0xFF) in safe:
                continue
            out.append(
                Finding(path, f"private [{name}]", "private attribute", _preview(elem.value))
            )
            continue
        if elem.VR == "SQ":
            rule = table.lookup(tag)
            action = resolve_action(rule, options, elem) if rule else "K"
            if action == "X" and rule is not None and len(elem.value):
                out.append(Finding(path, rule.name, "sequence to be removed", "items present"))
            for i, item in enumerate(elem.value):
                _scan(item, options, table, f"{path}[{i}].", out)
            continue
        if elem.is_empty:
            continue
        rule = table.lookup(tag)
        values = elem.value if elem.VM > 1 else [elem.value]
        text = [str(v) for v in values]
        if rule is None:
            if elem.VR == "PN" and not all(_is_placeholder(t) for t in text):
                out.append(Finding(path, elem.name, "person name", _preview(elem.value)))
            continue
        action = resolve_action(rule, options, elem)
        if action in ("K", "C"):
            continue
        if action == "U" or (action == "D" and elem.VR == "UI"):
            if not all(t.startswith("2.25.") for t in text):
                out.append(Finding(path, rule.name, "UID not replaced", _preview(elem.value)))
            continue
        if action == "X":
            out.append(Finding(path, rule.name, "attribute to be removed", _preview(elem.value)))
            continue
        if not all(_is_placeholder(t) for t in text):
            reason = "value to be emptied" if action == "Z" else "value to be replaced"
            out.append(Finding(path, rule.name, reason, _preview(elem.value)))
