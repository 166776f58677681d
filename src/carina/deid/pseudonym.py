"""Deterministic pseudonyms from a project secret, and the encrypted mapping table.

UIDs become ``2.25.<int>`` where the integer is the first 128 bits of HMAC-SHA256(secret, uid);
patient identifiers become ``<prefix>-<hex>`` from HMAC-SHA256(secret, issuer|id); the date shift
of a patient is a whole number of days in [-3650, -1], also from the HMAC.  The mapping from
pseudonym to original identity is stored AES-GCM encrypted with a key derived by HKDF-SHA256.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from carina.core.errors import ConfigurationError, DependencyMissingError, MappingError

MIN_SECRET_BYTES = 16
MAX_SHIFT_DAYS = 3650
_MAGIC = b"CARINA-DEID-MAP1"


def load_secret(path: Path) -> bytes:
    """Read a project secret from a file (surrounding whitespace is ignored)."""
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read secret file {path}: {exc}") from exc
    check_secret(secret)
    return secret


def check_secret(secret: bytes) -> None:
    """Refuse secrets too short to resist guessing."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(f"the project secret needs at least {MIN_SECRET_BYTES} bytes")


@dataclass(frozen=True)
class PatientIdentity:
    """The original identity behind a patient pseudonym."""

    pseudonym: str
    patient_id: str
    patient_name: str
    issuer: str
    date_shift_days: int


class Pseudonymizer:
    """Keyed, deterministic replacements for UIDs, patient identifiers and dates."""

    def __init__(self, secret: bytes, prefix: str = "ANON") -> None:
        check_secret(secret)
        self._secret = secret
        self.prefix = prefix
        self._uid_cache: dict[str, str] = {}

    def _mac(self, domain: str, value: str) -> bytes:
        msg = domain.encode() + b"\x00" + value.encode("utf-8", "surrogateescape")
        return hmac.new(self._secret, msg, hashlib.sha256).digest()

    def uid(self, uid: str) -> str:
        """The replacement of a UID: ``2.25.`` and a 128-bit integer (at most 44 characters)."""
        uid = uid.strip().rstrip("\x00")
        cached = self._uid_cache.get(uid)
        if cached is None:
            cached = "2.25." + str(int.from_bytes(self._mac("uid", uid)[:16], "big"))
            self._uid_cache[uid] = cached
        return cached

    def patient_id(self, patient_id: str, issuer: str = "") -> str:
        """The pseudonym of a patient (same for every study of that patient)."""
        return f"{self.prefix}-{self._mac('patient', issuer + '|' + patient_id)[:8].hex().upper()}"

    def date_shift_days(self, patient_id: str, issuer: str = "") -> int:
        """Days added to every date of a patient, in [-MAX_SHIFT_DAYS, -1]."""
        n = int.from_bytes(self._mac("date-shift", issuer + "|" + patient_id)[:8], "big")
        return -(1 + n % MAX_SHIFT_DAYS)

    def text_token(self, value: str) -> str:
        """A short keyed token standing for a free-text value."""
        return self._mac("text", value)[:6].hex().upper()


def shift_date(value: str, days: int) -> str | None:
    """Shift a DA value (``YYYYMMDD``) by ``days``; None when it is not a full date."""
    value = value.strip()
    if len(value) != 8 or not value.isdigit():
        return None
    try:
        day = dt.date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None
    return (day + dt.timedelta(days=days)).strftime("%Y%m%d")


def shift_datetime(value: str, days: int) -> str | None:
    """Shift the date part of a DT value, keeping time, fraction and UTC offset."""
    value = value.strip()
    if len(value) < 8:
        return None
    head = shift_date(value[:8], days)
    return None if head is None else head + value[8:]


class MappingStore:
    """Pseudonym ↔ identity table kept in one AES-GCM encrypted file.

    The key is HKDF-SHA256(secret, salt, info="carina-deid-mapping"); the file is
    ``magic | salt(16) | nonce(12) | ciphertext``. A wrong secret or a modified file raises
    :class:`MappingError`.
    """

    def __init__(self, path: Path, secret: bytes) -> None:
        check_secret(secret)
        self.path = path
        self._secret = secret
        self.patients: dict[str, PatientIdentity] = {}
        self.studies: dict[str, str] = {}
        if path.exists():
            self._load()

    @staticmethod
    def _key(secret: bytes, salt: bytes) -> bytes:
        try:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise DependencyMissingError("cryptography", "the pseudonym mapping", "deid") from exc
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"carina-deid-mapping")
        return hkdf.derive(secret)

    def _load(self) -> None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        blob = self.path.read_bytes()
        if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 28:
            raise MappingError(f"{self.path} is not a Carina pseudonym mapping file")
        salt = blob[len(_MAGIC) : len(_MAGIC) + 16]
        nonce = blob[len(_MAGIC) + 16 : len(_MAGIC) + 28]
        try:
            plain = AESGCM(self._key(self._secret, salt)).decrypt(
                nonce, blob[len(_MAGIC) + 28 :], _MAGIC
            )
        except InvalidTag as exc:
            raise MappingError(
                f"cannot decrypt {self.path}: wrong project secret or damaged file"
            ) from exc
        data = json.loads(plain)
        self.patients = {k: PatientIdentity(**v) for k, v in data["patients"].items()}
        self.studies = dict(data["studies"])

    def save(self) -> None:
        """Encrypt and write the table (atomically: temporary file, then rename)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        salt, nonce = os.urandom(16), os.urandom(12)
        plain = json.dumps(
            {
                "patients": {k: asdict(v) for k, v in sorted(self.patients.items())},
                "studies": dict(sorted(self.studies.items())),
            }
        ).encode()
        blob = (
            _MAGIC
            + salt
            + nonce
            + AESGCM(self._key(self._secret, salt)).encrypt(nonce, plain, _MAGIC)
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(blob)
        tmp.replace(self.path)

    def record_patient(self, identity: PatientIdentity) -> None:
        """Remember one patient; a pseudonym already mapped to someone else is an error."""
        known = self.patients.get(identity.pseudonym)
        if known is not None and (known.patient_id, known.issuer) != (
            identity.patient_id,
            identity.issuer,
        ):
            raise MappingError(f"pseudonym {identity.pseudonym} already maps to another patient")
        self.patients[identity.pseudonym] = identity

    def record_study(self, pseudonym_uid: str, original_uid: str) -> None:
        """Remember the original Study Instance UID behind a replaced one."""
        self.studies[pseudonym_uid] = original_uid


def reidentify(pseudonym: str, mapping_file: Path, secret: bytes) -> PatientIdentity:
    """The original identity behind a patient pseudonym; needs the project secret."""
    store = MappingStore(mapping_file, secret)
    try:
        return store.patients[pseudonym]
    except KeyError as exc:
        raise MappingError(f"pseudonym {pseudonym!r} is not in {mapping_file}") from exc


def reidentify_study(study_uid: str, mapping_file: Path, secret: bytes) -> str:
    """The original Study Instance UID behind a replaced one; needs the project secret."""
    store = MappingStore(mapping_file, secret)
    try:
        return store.studies[study_uid]
    except KeyError as exc:
        raise MappingError(f"study {study_uid!r} is not in {mapping_file}") from exc
