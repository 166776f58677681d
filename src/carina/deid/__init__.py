"""De-identification of DICOM objects (DICOM PS3.15 Annex E).

The profile table is data (``profiles/annex_e.csv``); :class:`Deidentifier` applies it with the
chosen :class:`DeidOptions`, replacing UIDs and patient identifiers with keyed pseudonyms.
"""

from __future__ import annotations

from carina.deid.check import Finding, find_residual_phi
from carina.deid.engine import (
    CID_7050,
    Deidentifier,
    DeidReport,
    FileResult,
    deidentify_file,
    deidentify_tree,
)
from carina.deid.pixels import TextBox, burned_in_risk, clean_pixel_data, find_text
from carina.deid.profile import (
    PROFILE_EDITION,
    PROFILES,
    DeidOptions,
    ProfileRule,
    ProfileTable,
    annex_e,
    options_for,
    safe_private,
)
from carina.deid.pseudonym import (
    MappingStore,
    PatientIdentity,
    Pseudonymizer,
    load_secret,
    reidentify,
    reidentify_study,
)

__all__ = [
    "CID_7050",
    "PROFILES",
    "PROFILE_EDITION",
    "DeidOptions",
    "DeidReport",
    "Deidentifier",
    "FileResult",
    "Finding",
    "MappingStore",
    "PatientIdentity",
    "ProfileRule",
    "ProfileTable",
    "Pseudonymizer",
    "TextBox",
    "annex_e",
    "burned_in_risk",
    "clean_pixel_data",
    "deidentify_file",
    "deidentify_tree",
    "find_residual_phi",
    "find_text",
    "load_secret",
    "options_for",
    "reidentify",
    "reidentify_study",
    "safe_private",
]
