"""De-identification done in a web browser: the resolved rules it applies, and its derivations.

A browser cannot hold the project secret (it keys the pseudonym mapping), so it is given a
*salt* derived from that secret and derives replacements with plain SHA-256, which WebCrypto
offers: a UID becomes ``2.25.`` and the integer of the first 16 bytes of SHA-256(salt + UID),
a patient is represented by the key SHA-256(salt + PatientID) and receives its pseudonym and
date shift from the server, which derives them from the key with the project secret.

The rules are resolved from the same Annex E table and option logic as :class:`Deidentifier`
(:func:`carina.deid.engine.resolve_tag_action`), so there is one table.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR

from carina.core.errors import ConfigurationError
from carina.deid.engine import (
    DEIDENTIFICATION_METHOD,
    DUMMY_BY_VR,
    DUMMY_TEXT,
    longitudinal_temporal_modified,
    method_codes,
    resolve_tag_action,
)
from carina.deid.profile import DeidOptions, ProfileTable, annex_e, safe_private
from carina.deid.pseudonym import MAX_SHIFT_DAYS, Pseudonymizer, check_secret

UID_ROOT = "2.25"
PATIENT_KEY = re.compile(r"^[0-9a-f]{64}$")


def browser_salt(secret: bytes) -> str:
    """The salt given to browsers (64 hex digits): a keyed hash of the project secret, which
    it does not reveal."""
    check_secret(secret)
    return hmac.new(secret, b"carina-browser-salt", hashlib.sha256).hexdigest()


def browser_uid(salt: str, uid: str) -> str:
    """The replacement of ``uid`` as a browser derives it."""
    uid = uid.strip().rstrip("\x00").strip()
    digest = hashlib.sha256((salt + uid).encode("utf-8")).digest()
    return f"{UID_ROOT}.{int.from_bytes(digest[:16], 'big')}"


def patient_key(salt: str, patient_id: str) -> str:
    """The key a browser sends for a patient instead of the PatientID."""
    patient_id = patient_id.rstrip("\x00").strip()
    return hashlib.sha256((salt + patient_id).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyPseudonym:
    """The pseudonym and date shift of a patient key in one project."""

    patient_id: str
    date_shift_days: int


def key_pseudonym(secret: bytes, key: str, prefix: str = "ANON") -> KeyPseudonym:
    """The pseudonym of a patient key (see :func:`patient_key`), keyed by the project secret."""
    check_secret(secret)
    if not PATIENT_KEY.match(key):
        raise ConfigurationError("a patient key is 64 lowercase hex digits (SHA-256)")
    mac = hmac.new(secret, b"browser-patient\x00" + key.encode(), hashlib.sha256).digest()
    shift = -(1 + int.from_bytes(mac[8:16], "big") % MAX_SHIFT_DAYS)
    return KeyPseudonym(f"{prefix}-{mac[:8].hex().upper()}", shift)


def _vr_of(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def resolved_rules(options: DeidOptions, table: ProfileTable | None = None) -> dict[str, Any]:
    """Every rule of the table with its one action under ``options``, and the profile's flags."""
    table = table or annex_e()
    rules = []
    for tag, rule in sorted(table.rules.items()):
        vr = _vr_of(tag)
        rules.append(
            {
                "tag": f"{tag:08X}",
                "keyword": rule.keyword,
                "name": rule.name,
                "vr": vr,
                "action": resolve_tag_action(rule, options, vr, rule.keyword),
            }
        )
    overlay_data = table.overlay.get(0x3000)
    overlay_action = overlay_data.action(options) if overlay_data is not None else "X"
    return {
        "rules": rules,
        "remove_private": table.private.action(options) == "X",
        "remove_curves": table.curve.action(options) == "X",
        "remove_overlays": overlay_action == "X",
        "safe_private": (
            [
                {"creator": s.creator, "group": f"{s.group:04X}", "offset": f"{s.offset:02X}"}
                for s in safe_private().values()
            ]
            if options.retain_safe_private
            else []
        ),
        "pseudonym_tags": ["00100010", "00100020"],
        "dummy": {vr: v for vr, v in DUMMY_BY_VR.items() if not isinstance(v, bytes)},
        "dummy_text": DUMMY_TEXT,
        "uid_root": UID_ROOT,
        "patient_identity_removed": "YES",
        "deidentification_method": DEIDENTIFICATION_METHOD,
        "deidentification_codes": [
            {"value": value, "scheme": "DCM", "meaning": meaning}
            for value, meaning in method_codes(options)
        ],
        "longitudinal_temporal_information_modified": longitudinal_temporal_modified(options),
    }


class BrowserPseudonymizer(Pseudonymizer):
    """Replacements derived the way a browser derives them (UIDs from the salt, patients from
    their key), so that what the server de-identifies at ingest agrees with what a browser of
    the project de-identified before. The issuer of patient IDs is not part of the key."""

    def __init__(self, secret: bytes, prefix: str = "ANON") -> None:
        super().__init__(secret, prefix)
        self.salt = browser_salt(secret)
        self._patients: dict[str, KeyPseudonym] = {}

    def uid(self, uid: str) -> str:
        cached = self._uid_cache.get(uid)
        if cached is None:
            cached = browser_uid(self.salt, uid)
            self._uid_cache[uid] = cached
        return cached

    def _patient(self, patient_id: str) -> KeyPseudonym:
        found = self._patients.get(patient_id)
        if found is None:
            key = patient_key(self.salt, patient_id)
            found = key_pseudonym(self._secret, key, self.prefix)
            self._patients[patient_id] = found
        return found

    def patient_id(self, patient_id: str, issuer: str = "") -> str:
        return self._patient(patient_id).patient_id

    def date_shift_days(self, patient_id: str, issuer: str = "") -> int:
        return self._patient(patient_id).date_shift_days
