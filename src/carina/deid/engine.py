"""Apply the Annex E profile to a pydicom dataset, recursively through sequences."""

from __future__ import annotations

import copy
import re
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from carina import __version__
from carina.core.errors import DeidentificationError, NotDicomError
from carina.deid.pixels import TextBox, burned_in_risk, clean_pixel_data
from carina.deid.profile import (
    PROFILE_EDITION,
    Action,
    DeidOptions,
    ProfileRule,
    ProfileTable,
    annex_e,
    safe_private,
)
from carina.deid.pseudonym import (
    MappingStore,
    PatientIdentity,
    Pseudonymizer,
    shift_date,
    shift_datetime,
)

DUMMY_TEXT = "ANONYMIZED"
DUMMY_BY_VR: dict[str, Any] = {
    "PN": "ANONYMOUS",
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "AE": "ANONYMOUS",
    "IS": "0",
    "DS": "0",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "FL": 0.0,
    "FD": 0.0,
    "OB": b"\x00\x00",
    "OW": b"\x00\x00",
    "UN": b"\x00\x00",
}

# CID 7050 De-identification Method codes (scheme DCM).
CID_7050: dict[str, tuple[str, str]] = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "clean_pixel_data": ("113101", "Clean Pixel Data Option"),
    "clean_graphics": ("113103", "Clean Graphics Option"),
    "clean_structured_content": ("113104", "Clean Structured Content Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "retain_long_full_dates": (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    "retain_long_modified_dates": (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
}

_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC", "DA", "DT", "TM", "AE"})
_UNLISTED = ProfileRule("", "unlisted attribute", "", "K", {})
# Sequences that IODs require (Type 2) though the profile allows removing them.
_SEQUENCE_OVERRIDES: dict[str, dict[str, Action]] = {
    "AcquisitionContextSequence": {"X": "Z"},
    "ReferencedPerformedProcedureStepSequence": {"X": "U"},
}


@dataclass
class DeidReport:
    """What de-identification did to one object."""

    source: str = ""
    sop_instance_uid: str = ""
    patient_pseudonym: str = ""
    date_shift_days: int | None = None
    actions: Counter[str] = field(default_factory=Counter)
    removed: list[str] = field(default_factory=list)
    burned_in_risk: list[str] = field(default_factory=list)
    pixels_cleaned: bool = False
    masked_boxes: int = 0
    boxes: list[TextBox] = field(default_factory=list)
    review: list[str] = field(default_factory=list)
    # the original identity, for the mapping table only (never printed)
    identity: PatientIdentity | None = field(default=None, repr=False)
    study_uids: tuple[str, str] | None = field(default=None, repr=False)

    def summary(self) -> str:
        """One line: counts per action and anything needing review."""
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.actions.items()))
        extra = f"; review: {'; '.join(self.review)}" if self.review else ""
        return f"{counts}{extra}"


def _raw_vr(ds: Dataset, tag: BaseTag) -> str:
    """The VR of an element without converting its value (dictionary VR for implicit data)."""
    raw = ds.get_item(tag)
    vr = getattr(raw, "VR", None)
    if vr and vr != "UN":
        return str(vr)
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _encoding_differs(ds: Dataset, implicit: bool, little: bool) -> bool:
    """Whether unparsed elements of ``ds`` were read in another encoding than it will be written."""
    if ds.original_encoding != (implicit, little):
        return True
    for tag in ds.keys():  # noqa: SIM118 - iterating a Dataset parses every element
        raw = ds.get_item(tag)
        if isinstance(raw, RawDataElement):
            return (raw.is_implicit_VR, raw.is_little_endian) != (implicit, little)
    return False


def resolve_action(rule: ProfileRule, options: DeidOptions, elem: DataElement) -> Action:
    """The one action taken on ``elem`` under ``options`` (sequences the IODs require are
    emptied or cleaned rather than removed)."""
    return resolve_tag_action(rule, options, elem.VR, elem.keyword)


def resolve_tag_action(rule: ProfileRule, options: DeidOptions, vr: str, keyword: str) -> Action:
    """The one action taken on an element of value representation ``vr`` under ``options``."""
    action = rule.action(options, vr == "SQ")
    if vr == "SQ":
        action = _SEQUENCE_OVERRIDES.get(keyword, {}).get(action, action)
    return action


#: DeidentificationMethod (0012,0063) as the server writes it.
DEIDENTIFICATION_METHOD = f"Carina {PROFILE_EDITION}"[:64]


def method_codes(options: DeidOptions) -> list[tuple[str, str]]:
    """The CID 7050 (code value, meaning) pairs written for ``options``, basic profile first."""
    used = ("basic", *[o for o in options.active() if o in CID_7050])
    return [CID_7050[key] for key in used]


def longitudinal_temporal_modified(options: DeidOptions) -> str:
    """LongitudinalTemporalInformationModified (0028,0303) as written for ``options``."""
    if options.retain_long_full_dates:
        return "UNMODIFIED"
    if options.retain_long_modified_dates:
        return "MODIFIED"
    return "REMOVED"


class _Context:
    """Per-object state: the patient's date shift and the values to scrub from free text."""

    def __init__(self, shift: int, phi_values: list[str]) -> None:
        self.shift = shift
        words = {v.strip() for v in phi_values if len(v.strip()) >= 3}
        parts: set[str] = set()
        for v in words:
            parts.update(p for p in re.split(r"[\^\s,]+", v) if len(p) >= 3)
        tokens = sorted(words | parts, key=len, reverse=True)
        self.pattern = (
            re.compile(
                r"(?<![A-Za-z0-9])(?:"
                + "|".join(re.escape(t) for t in tokens)
                + r")(?![A-Za-z0-9])",
                re.IGNORECASE,
            )
            if tokens
            else None
        )


class Deidentifier:
    """De-identify datasets with the Annex E Basic Profile and the chosen options.

    ``apply`` returns a new dataset and a :class:`DeidReport`; the input is not modified.
    The same secret gives the same UIDs, patient pseudonyms and date shifts across runs.
    """

    def __init__(
        self,
        secret: bytes,
        options: DeidOptions | None = None,
        *,
        mapping: MappingStore | None = None,
        table: ProfileTable | None = None,
        pseudonym_prefix: str = "ANON",
        pseudonymizer: Pseudonymizer | None = None,
    ) -> None:
        self.options = options or DeidOptions()
        self.table = table or annex_e()
        self.pseudo = pseudonymizer or Pseudonymizer(secret, pseudonym_prefix)
        self._settings = (secret, self.options, pseudonym_prefix)
        self.mapping = mapping
        self._safe = safe_private()

    # ----------------------------------------------------------------- public
    def apply(
        self, dataset: Dataset, source: str = "", *, inplace: bool = False
    ) -> tuple[Dataset, DeidReport]:
        """De-identify ``dataset`` (a copy of it unless ``inplace``)."""
        with warnings.catch_warnings():
            # invalid input values (over-long strings, bad VRs) are not this layer's business
            warnings.simplefilter("ignore", UserWarning)
            return self._apply(dataset, source, inplace)

    def _apply(self, dataset: Dataset, source: str, inplace: bool) -> tuple[Dataset, DeidReport]:

        original_name = str(dataset.get("PatientName", "") or "")
        ds = dataset if inplace else _copy(dataset)
        if not hasattr(ds, "file_meta"):
            ds.file_meta = FileMetaDataset()
        report = DeidReport(source=source)
        pid = str(ds.get("PatientID", "") or "")
        issuer = str(ds.get("IssuerOfPatientID", "") or "")
        key = pid or str(ds.get("PatientName", "") or "")
        shift = self.pseudo.date_shift_days(key, issuer)
        pseudonym = self.pseudo.patient_id(key, issuer)
        report.patient_pseudonym = pseudonym
        if self.options.retain_long_modified_dates:
            report.date_shift_days = shift
        ctx = _Context(shift, _identifying_values(ds))

        report.burned_in_risk = burned_in_risk(ds)
        if self.options.clean_pixel_data and report.burned_in_risk:
            clean_pixel_data(ds, report)
        elif report.burned_in_risk:
            report.review.append(
                "burned-in text risk, pixels not cleaned: " + ", ".join(report.burned_in_risk)
            )

        original_study = str(ds.get("StudyInstanceUID", "") or "")
        self._walk(ds, ctx, report)

        ds.PatientID = pseudonym
        ds.PatientName = pseudonym
        report.actions["pseudonym"] += 2
        report.identity = PatientIdentity(pseudonym, pid, original_name, issuer, shift)
        if original_study and "StudyInstanceUID" in ds:
            report.study_uids = (str(ds.StudyInstanceUID), original_study)
        if self.mapping is not None:
            self.record(report)
        self._mark(ds)
        # the file is written anew: name this implementation, not the original writer
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta.ImplementationVersionName = f"CARINA_{__version__}"[:16]
        if "SOPInstanceUID" in ds:
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            for tag in (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102):
                if tag in ds.file_meta:
                    del ds.file_meta[tag]
        report.sop_instance_uid = str(ds.get("SOPInstanceUID", ""))
        return ds, report

    def record(self, report: DeidReport) -> None:
        """Add the identity and study behind ``report`` to the mapping (if there is one)."""
        if self.mapping is None:
            return
        if report.identity is not None:
            self.mapping.record_patient(report.identity)
        if report.study_uids is not None:
            self.mapping.record_study(*report.study_uids)

    # ------------------------------------------------------------- internals
    def _walk(self, ds: Dataset, ctx: _Context, report: DeidReport, mode: str = "keep") -> None:
        """Apply the table to every element of ``ds``.

        ``mode`` says what happens to elements the table does not list: ``keep`` them, give
        free text a ``dummy`` value (inside sequences the profile marks D) or ``scrub``
        identifying words from it (inside sequences an option marks C).
        """
        keep = self._private_keep(ds) if self.options.retain_safe_private else set()
        for tag in list(ds.keys()):
            itag = int(tag)
            if tag not in ds:
                continue  # removed with its overlay group
            if itag >> 16 & 1:
                self._private(ds, tag, keep, report)
                continue
            rule = self.table.lookup(itag)
            if rule is None:
                # elements the table does not list stay raw (unparsed) unless they need work
                vr = _raw_vr(ds, tag)
                if vr == "SQ":
                    for item in ds[tag].value:
                        self._walk(item, ctx, report, mode)
                elif mode != "keep" and vr in _TEXT_VRS:
                    self._unlisted_text(ds[tag], ctx, report, mode)
                continue
            elem = ds[tag]
            self._apply_rule(
                ds, elem, rule, resolve_action(rule, self.options, elem), ctx, report, mode
            )

    def _unlisted_text(
        self, elem: DataElement, ctx: _Context, report: DeidReport, mode: str
    ) -> None:
        """Free text the table does not list, inside a sequence marked D (dummy) or C (scrub)."""
        if elem.is_empty:
            return
        if elem.VR in ("DA", "DT", "TM") and self._dates_kept():
            if self.options.retain_long_modified_dates:
                self._clean(elem, _UNLISTED, ctx, report)
        elif mode == "dummy":
            elem.value = DUMMY_BY_VR.get(elem.VR, DUMMY_TEXT)
            report.actions["D"] += 1
        else:
            self._scrub(elem, ctx, report)

    def _private_keep(self, ds: Dataset) -> set[int]:
        """Tags of the private elements on the safe list (and their creator elements)."""
        keep: set[int] = set()
        for elem in ds:
            tag = int(elem.tag)
            group, el = tag >> 16, tag & 0xFFFF
            if not group & 1 or el < 0x1000:
                continue
            block = el >> 8
            creator_tag = (group << 16) | block
            creator = ds.get(BaseTag(creator_tag))
            if creator is None:
                continue
            name = str(creator.value).strip()
            if (name, group, el & 0xFF) in self._safe:
                keep.update((tag, creator_tag))
        return keep

    def _private(self, ds: Dataset, tag: BaseTag, keep: set[int], report: DeidReport) -> None:
        if int(tag) in keep:
            report.actions["K"] += 1
            return
        del ds[tag]
        report.actions["X"] += 1
        report.removed.append(f"{tag} private")

    def _apply_rule(
        self,
        ds: Dataset,
        elem: DataElement,
        rule: ProfileRule,
        action: Action,
        ctx: _Context,
        report: DeidReport,
        mode: str,
    ) -> None:
        tag = elem.tag
        report.actions[action] += 1
        if action == "X":
            group = int(tag) >> 16
            if 0x6000 <= group <= 0x601E and int(tag) & 0xFFFF == 0x3000:
                for other in [e.tag for e in ds if int(e.tag) >> 16 == group]:
                    del ds[other]  # an overlay without its data is invalid: drop the group
            else:
                del ds[tag]
            report.removed.append(f"{tag} {rule.name}")
            return
        if elem.VR == "SQ":
            if action == "Z":
                elem.value = Sequence([])
                return
            inner = {"D": "dummy", "C": "scrub"}.get(action, mode)
            for item in elem.value:
                self._walk(item, ctx, report, inner)
            return
        if action == "K" or elem.is_empty:
            return
        if action == "Z":
            elem.value = None if elem.VR not in ("OB", "OW", "UN") else b""
        elif action == "U":
            self._replace_uid(elem)
        elif action == "D":
            self._dummy(elem)
        elif action == "C":
            self._clean(elem, rule, ctx, report)

    def _replace_uid(self, elem: DataElement) -> None:
        if elem.VR != "UI":
            self._dummy(elem)
            return
        if elem.VM > 1:
            elem.value = [self.pseudo.uid(str(v)) for v in elem.value]
        else:
            elem.value = self.pseudo.uid(str(elem.value))

    def _dummy(self, elem: DataElement) -> None:
        if elem.VR == "UI":
            self._replace_uid(elem)
            return
        elem.value = DUMMY_BY_VR.get(elem.VR, DUMMY_TEXT)

    def _clean(
        self, elem: DataElement, rule: ProfileRule, ctx: _Context, report: DeidReport
    ) -> None:
        vr = elem.VR
        if vr == "DA":
            elem.value = _map_values(elem.value, lambda v: shift_date(v, ctx.shift))
        elif vr == "DT":
            elem.value = _map_values(elem.value, lambda v: shift_datetime(v, ctx.shift))
        elif vr == "TM" or rule.keyword == "TimezoneOffsetFromUTC":
            return  # whole-day shifts leave times and offsets unchanged
        elif vr in _TEXT_VRS:
            self._scrub(elem, ctx, report)
        elif vr in ("OB", "OW", "UN"):
            report.review.append(f"{elem.tag} {rule.name} kept under a Clean option, not inspected")

    def _dates_kept(self) -> bool:
        return self.options.retain_long_full_dates or self.options.retain_long_modified_dates

    def _scrub(self, elem: DataElement, ctx: _Context, report: DeidReport) -> None:
        """Replace the identifying words of this object found in a free-text value."""
        pattern = ctx.pattern
        if pattern is None or elem.VR not in _TEXT_VRS or elem.VR in ("DA", "DT", "TM"):
            return
        before = elem.value
        elem.value = _map_values(before, lambda v: pattern.sub(DUMMY_TEXT, v))
        if elem.value != before:
            report.actions["C"] += 1

    def _mark(self, ds: Dataset) -> None:
        """Set PatientIdentityRemoved, the method description and its CID 7050 codes."""
        codes = Sequence()
        for value, meaning in method_codes(self.options):
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            codes.append(item)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
        ds.DeidentificationMethodCodeSequence = codes
        ds.LongitudinalTemporalInformationModified = longitudinal_temporal_modified(self.options)


def _map_values(value: Any, fn: Any) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        out = [fn(str(v)) for v in value]
        return [v for v in out if v is not None] or None
    return fn(str(value))


def _identifying_values(ds: Dataset) -> list[str]:
    """Header values whose text must not survive in free-text fields."""
    out: list[str] = []
    for kw in (
        "PatientName",
        "PatientID",
        "OtherPatientIDs",
        "OtherPatientNames",
        "PatientBirthName",
        "PatientMotherBirthName",
        "PatientAddress",
        "AccessionNumber",
        "InstitutionName",
        "InstitutionAddress",
        "ReferringPhysicianName",
        "PerformingPhysicianName",
        "OperatorsName",
        "NameOfPhysiciansReadingStudy",
        "PhysiciansOfRecord",
        "StationName",
    ):
        value = ds.get(kw)
        if value is None or value == "":
            continue
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            out.extend(str(v) for v in value)
        else:
            out.append(str(value))
    return out


def _copy(ds: Dataset) -> Dataset:
    return copy.deepcopy(ds)


def deidentify_file(
    src: Path,
    dst: Path,
    deidentifier: Deidentifier,
) -> DeidReport:
    """Read ``src``, de-identify it and write ``dst`` (parent folders are created)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            try:
                ds = pydicom.dcmread(src)
            except InvalidDicomError:
                ds = pydicom.dcmread(src, force=True)  # a dataset without preamble/meta
        except (InvalidDicomError, OSError, EOFError, ValueError, TypeError) as exc:
            raise DeidentificationError(f"cannot read {src}: {exc}") from exc
        if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
            raise NotDicomError(f"{src} has no SOP Class/Instance UID (not a stored object)")
        out, report = deidentifier.apply(ds, source=str(src), inplace=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if "TransferSyntaxUID" not in out.file_meta:
            implicit, little = out.original_encoding
            out.file_meta.TransferSyntaxUID = (
                ImplicitVRLittleEndian
                if implicit
                else ExplicitVRLittleEndian
                if little
                else ExplicitVRBigEndian
            )
        ts = out.file_meta.TransferSyntaxUID
        if _encoding_differs(out, ts.is_implicit_VR, ts.is_little_endian):
            for _ in out.iterall():
                pass  # raw elements read in another encoding must be parsed before writing
        if "MediaStorageSOPClassUID" not in out.file_meta:
            out.file_meta.MediaStorageSOPClassUID = out.SOPClassUID
        try:
            out.save_as(dst, enforce_file_format=True)
        except (ValueError, TypeError, OSError) as exc:
            raise DeidentificationError(f"cannot write the de-identified {src}: {exc}") from exc
    return report


@dataclass(frozen=True)
class FileResult:
    """Outcome for one file of a folder run: its report, or why it was skipped."""

    source: Path
    output: Path | None
    report: DeidReport | None
    error: str | None = None
    skipped: bool = False


def deidentify_tree(
    src: Path,
    dst: Path,
    deidentifier: Deidentifier,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> list[FileResult]:
    """De-identify one file, or every file below a folder into the same layout under ``dst``.

    Files that are not stored DICOM objects are skipped with the reason. With ``workers`` > 1
    the files are shared among that many processes; the mapping (when the deidentifier has one)
    is filled here and saved once at the end.
    """
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.is_file())
        pairs = [(p, dst / p.relative_to(src)) for p in files]
    else:
        pairs = [(src, dst / src.name if dst.is_dir() else dst)]
    results: list[FileResult] = []
    if workers > 1 and len(pairs) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(
            workers, initializer=_init_worker, initargs=deidentifier._settings
        ) as pool:
            for i, result in enumerate(pool.map(_work, pairs, chunksize=8)):
                results.append(result)
                if result.report is not None:
                    deidentifier.record(result.report)
                if progress is not None:
                    progress(i + 1, len(pairs))
    else:
        for i, pair in enumerate(pairs):
            results.append(_one(pair, deidentifier))
            if progress is not None:
                progress(i + 1, len(pairs))
    if deidentifier.mapping is not None:
        deidentifier.mapping.save()
    return results


def _one(pair: tuple[Path, Path], deidentifier: Deidentifier) -> FileResult:
    source, target = pair
    try:
        return FileResult(source, target, deidentify_file(source, target, deidentifier))
    except NotDicomError as exc:
        return FileResult(source, None, None, str(exc), skipped=True)
    except DeidentificationError as exc:
        return FileResult(source, None, None, str(exc))


_WORKER: list[Deidentifier] = []


def _init_worker(secret: bytes, options: DeidOptions, prefix: str) -> None:
    _WORKER[:] = [Deidentifier(secret, options, pseudonym_prefix=prefix)]


def _work(pair: tuple[Path, Path]) -> FileResult:
    return _one(pair, _WORKER[0])
