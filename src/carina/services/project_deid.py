"""De-identification policies of research projects, applied at ingest.

A project whose policy is enabled never stores identified data: every instance sent to it
(STOW-RS under ``/projects/{project}/dicom-web``) is de-identified with the project's profile and
secret before it reaches the archive, and a study shared into it from the archive is copied as a
de-identified study. Pseudonyms are keyed by the project secret, so a later study of the same
patient gets the same pseudonym, and another project sees other pseudonyms for the same patient.

Per project, under ``data_dir/projects/<name>/``: ``deid-policy.json`` (enabled, profile,
options), ``deid.secret`` (32 random bytes, mode 0600, created when the policy is first set) and
``pseudonyms.map`` (the encrypted mapping, see :class:`carina.deid.MappingStore`), updated under
an exclusive file lock so that concurrent ingests do not lose entries.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from carina.archive import Archive, IngestResult
from carina.core.errors import CarinaError, ConfigurationError, DeidentificationError
from carina.deid import (
    PROFILE_EDITION,
    Deidentifier,
    MappingStore,
    PatientIdentity,
    burned_in_risk,
    options_for,
)
from carina.deid.browser import BrowserPseudonymizer

POLICY_FILE = "deid-policy.json"
SECRET_FILE = "deid.secret"
MAPPING_FILE = "pseudonyms.map"
LOCK_FILE = ".deid.lock"
DERIVATIONS = ("browser", "keyed")


@dataclass(frozen=True)
class DeidPolicy:
    """Whether a project de-identifies at ingest, and with which profile and options."""

    enabled: bool = False
    profile: str = "basic"
    options: tuple[str, ...] = ()
    edition: str = PROFILE_EDITION
    # how replacements are derived: "browser" (the derivations a browser of the project uses,
    # see carina.deid.browser) or "keyed" (HMAC of the secret; policies set before "browser")
    derivation: str = "browser"


def project_dir(data_dir: Path, project: str) -> Path:
    return Path(data_dir) / "projects" / project


def load_policy(data_dir: Path, project: str) -> DeidPolicy:
    """The project's policy (disabled when none was ever set)."""
    path = project_dir(data_dir, project) / POLICY_FILE
    if not path.exists():
        return DeidPolicy()
    data = json.loads(path.read_text(encoding="utf-8"))
    return DeidPolicy(
        enabled=bool(data["enabled"]),
        profile=str(data["profile"]),
        options=tuple(data.get("options", ())),
        edition=PROFILE_EDITION,
        derivation=str(data.get("derivation", "keyed")),
    )


def save_policy(data_dir: Path, project: str, policy: DeidPolicy) -> DeidPolicy:
    """Validate and store a policy; the project secret is created on first use."""
    options_for(policy.profile, policy.options)  # raises ConfigurationError when unknown
    if policy.derivation not in DERIVATIONS:
        raise ConfigurationError(f"unknown derivation {policy.derivation!r}")
    if (project_dir(data_dir, project) / POLICY_FILE).exists():
        # pseudonyms already given out stay valid: a project keeps its derivation
        policy = replace(policy, derivation=load_policy(data_dir, project).derivation)
    folder = project_dir(data_dir, project)
    ensure_secret(data_dir, project)
    path = folder / POLICY_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(policy), indent=2), encoding="utf-8")
    tmp.replace(path)
    return load_policy(data_dir, project)


def ensure_secret(data_dir: Path, project: str) -> bytes:
    """The project's secret, created (32 random bytes, mode 0600) when it has none yet."""
    folder = project_dir(data_dir, project)
    folder.mkdir(parents=True, exist_ok=True)
    secret = folder / SECRET_FILE
    try:
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return secret.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        value = secrets.token_bytes(32)
        fh.write(value)
    return value


def _secret(data_dir: Path, project: str) -> bytes:
    path = project_dir(data_dir, project) / SECRET_FILE
    if not path.exists():
        raise ConfigurationError(f"project {project!r} has no de-identification secret")
    return path.read_bytes()


@contextmanager
def _locked_mapping(data_dir: Path, project: str) -> Iterator[MappingStore]:
    folder = project_dir(data_dir, project)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            store = MappingStore(folder / MAPPING_FILE, _secret(data_dir, project))
            yield store
            store.save()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def deidentify_items(
    data_dir: Path, project: str, items: list[tuple[str | None, bytes]]
) -> tuple[list[tuple[str | None, bytes]], list[tuple[str | None, str]]]:
    """De-identify encoded instances with the project's policy.

    Returns the de-identified instances and, for those that could not be de-identified, the
    reason; those are never passed on (nothing identified enters a de-identifying project).
    """
    policy = load_policy(data_dir, project)
    if not policy.enabled:
        return items, []
    options = options_for(policy.profile, policy.options)
    done: list[tuple[str | None, bytes]] = []
    failed: list[tuple[str | None, str]] = []
    with _locked_mapping(data_dir, project) as mapping:
        secret = _secret(data_dir, project)
        pseudonymizer = BrowserPseudonymizer(secret) if policy.derivation == "browser" else None
        deidentifier = Deidentifier(secret, options, mapping=mapping, pseudonymizer=pseudonymizer)
        for source, data in items:
            try:
                ds = pydicom.dcmread(io.BytesIO(data), force=True)
                if "SOPInstanceUID" not in ds:
                    raise DeidentificationError("not a DICOM instance (no SOPInstanceUID)")
                if not options.clean_pixel_data and (risk := burned_in_risk(ds)):
                    raise DeidentificationError(
                        f"burned-in text risk ({', '.join(risk)}) and the project's policy does "
                        "not clean pixel data (option clean-pixel-data)"
                    )
                clean, _report = deidentifier.apply(ds, source or "", inplace=True)
                out = io.BytesIO()
                clean.save_as(out, enforce_file_format=True)
            except (CarinaError, InvalidDicomError, ValueError, TypeError, KeyError) as exc:
                failed.append((source, f"cannot be de-identified: {exc}"))
            else:
                done.append((source, out.getvalue()))
    return done, failed


def copy_studies(
    archive: Archive, data_dir: Path, project: str, study_uids: list[str]
) -> tuple[list[str], list[IngestResult]]:
    """De-identified copies of stored studies for a de-identifying project.

    Returns the pseudonymous StudyInstanceUIDs stored, and the ingest results of every copy.
    """
    items: list[tuple[str | None, bytes]] = []
    for uid in study_uids:
        for instance in archive.instances(uid):
            items.append((instance.sop_instance_uid, archive.read(instance)))
    clean, failed = deidentify_items(data_dir, project, items)
    if failed:
        raise DeidentificationError(
            f"{len(failed)} instance(s) could not be de-identified; nothing was copied "
            f"(first: {failed[0][1]})"
        )
    results = archive.ingest(clean)
    studies = sorted(
        {r.study_instance_uid for r in results if r.status.ok and r.study_instance_uid}
    )
    return studies, results


def reidentify(
    data_dir: Path, project: str, *, pseudonym: str | None = None, study_uid: str | None = None
) -> tuple[PatientIdentity | None, str | None]:
    """The identity behind a patient pseudonym and/or the original UID behind a study UID."""
    if pseudonym is None and study_uid is None:
        raise ConfigurationError("give a patient pseudonym or a StudyInstanceUID")
    with _locked_mapping(data_dir, project) as mapping:
        identity = mapping.patients.get(pseudonym) if pseudonym else None
        original = mapping.studies.get(study_uid) if study_uid else None
    if (pseudonym and identity is None) or (study_uid and original is None):
        raise DeidentificationError("no such pseudonym or study in this project's mapping")
    return identity, original
