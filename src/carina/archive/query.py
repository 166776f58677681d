"""Attribute matching over the catalog, shared by QIDO-RS and C-FIND (PS3.4 C.2.2.2, PS3.18 8.3.4).

Supported: single value, universal (empty or ``*``), wildcard (``*`` and ``?``), date and time
ranges (``A-B``, ``A-``, ``-B``) and UID lists (``,`` or ``\\`` separated). Person names match
case-insensitively; with fuzzy matching, every word of the query must begin a word of the name, in
any order, ignoring case and diacritics (``"joh doe"`` matches ``DOE^JOHN``, ``muller`` matches
``Müller^Hans``). Results are DICOM JSON objects (``dict``).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from carina.core.errors import CarinaError
from carina.db import Instance, Patient, Series, Study
from carina.db.names import name_words


class QueryError(CarinaError):
    """A query parameter is malformed or not supported."""


class Level(enum.Enum):
    """Query/retrieve level."""

    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


_RANK = {Level.STUDY: 0, Level.SERIES: 1, Level.IMAGE: 2}


@dataclass(frozen=True)
class Attribute:
    """A queryable attribute: its tag, VR, level and catalog column (``None`` when computed)."""

    keyword: str
    tag: str
    vr: str
    level: Level
    column: InstrumentedAttribute[Any] | None


def _a(keyword: str, vr: str, level: Level, column: InstrumentedAttribute[Any] | None) -> Attribute:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return Attribute(keyword, f"{tag:08X}", vr, level, column)


S, SE, I = Level.STUDY, Level.SERIES, Level.IMAGE  # noqa: E741
ATTRIBUTES: dict[str, Attribute] = {
    a.keyword: a
    for a in (
        _a("StudyInstanceUID", "UI", S, Study.study_instance_uid),
        _a("StudyDate", "DA", S, Study.study_date),
        _a("StudyTime", "TM", S, Study.study_time),
        _a("AccessionNumber", "SH", S, Study.accession_number),
        _a("ModalitiesInStudy", "CS", S, None),
        _a("ReferringPhysicianName", "PN", S, Study.referring_physician_name),
        _a("StudyDescription", "LO", S, Study.study_description),
        _a("StudyID", "SH", S, Study.study_id),
        _a("PatientName", "PN", S, Patient.patient_name),
        _a("PatientID", "LO", S, Patient.patient_id),
        _a("PatientBirthDate", "DA", S, Patient.birth_date),
        _a("PatientSex", "CS", S, Patient.sex),
        _a("NumberOfStudyRelatedSeries", "IS", S, None),
        _a("NumberOfStudyRelatedInstances", "IS", S, None),
        _a("SeriesInstanceUID", "UI", SE, Series.series_instance_uid),
        _a("Modality", "CS", SE, Series.modality),
        _a("SeriesNumber", "IS", SE, Series.series_number),
        _a("SeriesDescription", "LO", SE, Series.series_description),
        _a("NumberOfSeriesRelatedInstances", "IS", SE, None),
        _a("SOPInstanceUID", "UI", I, Instance.sop_instance_uid),
        _a("SOPClassUID", "UI", I, Instance.sop_class_uid),
        _a("InstanceNumber", "IS", I, Instance.instance_number),
        _a("Rows", "US", I, Instance.rows),
        _a("Columns", "US", I, Instance.columns),
        _a("NumberOfFrames", "IS", I, Instance.number_of_frames),
    )
}
BY_TAG = {a.tag: a for a in ATTRIBUTES.values()}

DEFAULT_FIELDS: dict[Level, tuple[str, ...]] = {
    S: (
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "StudyDescription",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    SE: (
        "StudyInstanceUID",
        "Modality",
        "SeriesInstanceUID",
        "SeriesNumber",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
    ),
    I: (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceNumber",
        "Rows",
        "Columns",
        "NumberOfFrames",
    ),
}


def resolve_key(key: str) -> str:
    """The keyword of a query key given as keyword or ``ggggeeee`` tag; raises QueryError."""
    if key in ATTRIBUTES:
        return key
    upper = key.upper()
    if len(upper) == 8 and all(c in "0123456789ABCDEF" for c in upper):
        if upper in BY_TAG:
            return BY_TAG[upper].keyword
        keyword = keyword_for_tag(int(upper, 16))
        if keyword:
            return keyword
        return upper
    if tag_for_keyword(key) is not None:
        return key
    raise QueryError(f"unknown attribute {key!r}")


def _like_pattern(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _text_match(column: Any, value: str, vr: str) -> ColumnElement[bool]:
    wildcard = "*" in value or "?" in value
    if vr == "PN":
        if wildcard:
            return func.lower(column).like(_like_pattern(value.lower()), escape="\\")
        return func.lower(column) == value.lower()
    if wildcard:
        return column.like(_like_pattern(value), escape="\\")  # type: ignore[no-any-return]
    return column == value  # type: ignore[no-any-return]


# search forms of person names (carina.db.names), used by fuzzy matching
_FUZZY_COLUMNS: dict[str, Any] = {
    "PatientName": Patient.patient_name_words,
    "ReferringPhysicianName": Study.referring_physician_words,
}


def _fuzzy_match(column: Any, value: str) -> ColumnElement[bool]:
    """Every query word (wildcards allowed) begins a word of the stored search form."""
    conditions = [
        column.like("% " + _like_pattern(word) + "%", escape="\\")
        for word in name_words(value)
        if word.strip("*")
    ]
    return and_(true(), *conditions)


def _range_match(column: Any, value: str, vr: str) -> ColumnElement[bool]:
    if "-" not in value:
        if vr == "TM":
            return column.like(_like_pattern(value) + "%", escape="\\")  # type: ignore[no-any-return]
        return column == value  # type: ignore[no-any-return]
    low, _, high = value.partition("-")
    conditions = [column != ""]
    if low:
        conditions.append(column >= low)
    if high:
        conditions.append(column <= (high + "~" if vr == "TM" else high))
    return and_(*conditions)


def _int_value(keyword: str, value: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise QueryError(f"{keyword} needs an integer, got {value!r}") from exc


def _condition(attribute: Attribute, value: str, fuzzy: bool = False) -> ColumnElement[bool] | None:
    if value in ("", "*"):
        return None
    if fuzzy and attribute.keyword in _FUZZY_COLUMNS:
        return _fuzzy_match(_FUZZY_COLUMNS[attribute.keyword], value)
    if attribute.keyword == "ModalitiesInStudy":
        wanted = [v for v in value.replace(",", "\\").split("\\") if v]
        inner = select(Series.id).where(Series.study_pk == Study.id)
        inner = inner.where(or_(*(_text_match(Series.modality, m, "CS") for m in wanted)))
        return exists(inner)
    column = attribute.column
    if column is None:
        raise QueryError(f"{attribute.keyword} cannot be used for matching")
    if attribute.vr == "UI":
        uids = [v.strip() for v in value.replace("\\", ",").split(",") if v.strip()]
        return column.in_(uids)
    if attribute.vr in ("DA", "TM"):
        return _range_match(column, value, attribute.vr)
    if attribute.vr in ("IS", "US"):
        return column == _int_value(attribute.keyword, value)
    return _text_match(column, value, attribute.vr)


def _element(vr: str, value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": value}]}
    if vr in ("IS", "US"):
        return {"vr": vr, "Value": [int(value)]}
    if vr == "CS" and "\\" in str(value):
        return {"vr": vr, "Value": str(value).split("\\")}
    return {"vr": vr, "Value": [value]}


@dataclass(frozen=True)
class Query:
    """A search at ``level``; ``study_uid``/``series_uid`` scope it to a study or series.

    ``study_scope``, a selectable of StudyInstanceUIDs, restricts it to those studies; ``fuzzy``
    turns on fuzzy matching of person names.
    """

    level: Level
    filters: Mapping[str, str]
    study_uid: str | None = None
    series_uid: str | None = None
    includefield: Sequence[str] = ()
    include_all: bool = False
    limit: int | None = None
    offset: int = 0
    study_scope: Any = None
    fuzzy: bool = False


def build_statement(query: Query) -> Select[Any]:
    """The catalog SELECT of ``query``; rows carry the models of its level and those above."""
    level = query.level
    columns: list[Any] = [Study, Patient]
    if level is S:
        columns += [
            select(func.count(Series.id)).where(Series.study_pk == Study.id).scalar_subquery(),
            select(func.count(Instance.id))
            .join(Series, Instance.series_pk == Series.id)
            .where(Series.study_pk == Study.id)
            .scalar_subquery(),
        ]
        stmt = select(*columns).join(Patient, Study.patient_pk == Patient.id)
        order: list[Any] = [Study.id]
    elif level is SE:
        columns = [Series, *columns]
        columns.append(
            select(func.count(Instance.id)).where(Instance.series_pk == Series.id).scalar_subquery()
        )
        stmt = (
            select(*columns)
            .join(Study, Series.study_pk == Study.id)
            .join(Patient, Study.patient_pk == Patient.id)
        )
        order = [Series.id]
    else:
        columns = [Instance, Series, *columns]
        stmt = (
            select(*columns)
            .join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
            .join(Patient, Study.patient_pk == Patient.id)
        )
        order = [Series.id, Instance.instance_number, Instance.id]
    if query.study_uid is not None:
        stmt = stmt.where(Study.study_instance_uid == query.study_uid)
    if query.series_uid is not None:
        stmt = stmt.where(Series.series_instance_uid == query.series_uid)
    if query.study_scope is not None:
        stmt = stmt.where(Study.study_instance_uid.in_(query.study_scope))
    for keyword, value in query.filters.items():
        attribute = ATTRIBUTES.get(keyword)
        if attribute is None:
            raise QueryError(f"matching on {keyword} is not supported")
        if _RANK[attribute.level] > _RANK[level]:
            raise QueryError(f"{keyword} is below the {level.value.lower()} level")
        condition = _condition(attribute, value, query.fuzzy)
        if condition is not None:
            stmt = stmt.where(condition)
    stmt = stmt.order_by(*order).offset(query.offset)
    if query.limit is not None:
        stmt = stmt.limit(query.limit)
    return stmt


def _fields(query: Query) -> tuple[list[str], list[str]]:
    """Catalog keywords and other keywords (answered from cached metadata) to return."""
    rank = _RANK[query.level]
    wanted = list(DEFAULT_FIELDS[query.level])
    if query.include_all:
        wanted += [k for k, a in ATTRIBUTES.items() if _RANK[a.level] <= rank]
    wanted += list(query.filters) + list(query.includefield)
    catalog: list[str] = []
    other: list[str] = []
    for keyword in dict.fromkeys(wanted):
        attribute = ATTRIBUTES.get(keyword)
        if attribute is None:
            other.append(keyword)
        elif _RANK[attribute.level] <= rank:
            catalog.append(keyword)
    return catalog, other


def _value(keyword: str, row: Any, level: Level) -> Any:
    study: Study = row.Study
    patient: Patient = row.Patient
    values: dict[str, Any] = {
        "StudyInstanceUID": study.study_instance_uid,
        "StudyDate": study.study_date,
        "StudyTime": study.study_time,
        "AccessionNumber": study.accession_number,
        "ModalitiesInStudy": study.modalities_in_study,
        "ReferringPhysicianName": study.referring_physician_name,
        "StudyDescription": study.study_description,
        "StudyID": study.study_id,
        "PatientName": patient.patient_name,
        "PatientID": patient.patient_id,
        "PatientBirthDate": patient.birth_date,
        "PatientSex": patient.sex,
    }
    if keyword in values:
        return values[keyword]
    if level is S and keyword == "NumberOfStudyRelatedSeries":
        return row[2]
    if level is S and keyword == "NumberOfStudyRelatedInstances":
        return row[3]
    if level is SE and keyword == "NumberOfSeriesRelatedInstances":
        return row[3]
    series: Series = row.Series
    if keyword in ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription"):
        return {
            "SeriesInstanceUID": series.series_instance_uid,
            "Modality": series.modality,
            "SeriesNumber": series.series_number,
            "SeriesDescription": series.series_description,
        }[keyword]
    instance: Instance = row.Instance
    return {
        "SOPInstanceUID": instance.sop_instance_uid,
        "SOPClassUID": instance.sop_class_uid,
        "InstanceNumber": instance.instance_number,
        "Rows": instance.rows,
        "Columns": instance.columns,
        "NumberOfFrames": instance.number_of_frames,
    }[keyword]


def _representative_metadata(session: Session, row: Any, level: Level) -> dict[str, Any]:
    if level is I:
        text = row.Instance.metadata_json
    else:
        stmt = select(Instance.metadata_json).join(Series, Instance.series_pk == Series.id)
        if level is SE:
            stmt = stmt.where(Series.id == row.Series.id)
        else:
            stmt = stmt.where(Series.study_pk == row.Study.id)
        text = session.scalar(stmt.order_by(Instance.id).limit(1)) or "{}"
    result: dict[str, Any] = json.loads(text)
    return result


def search(session: Session, query: Query) -> list[dict[str, Any]]:
    """Matches of ``query`` as DICOM JSON objects, ordered by catalog insertion."""
    catalog, other = _fields(query)
    results: list[dict[str, Any]] = []
    for row in session.execute(build_statement(query)):
        item: dict[str, Any] = {}
        for keyword in catalog:
            attribute = ATTRIBUTES[keyword]
            item[attribute.tag] = _element(attribute.vr, _value(keyword, row, query.level))
        if other:
            metadata = _representative_metadata(session, row, query.level)
            for keyword in other:
                tag = tag_for_keyword(keyword)
                key = f"{tag:08X}" if tag is not None else keyword
                if key in metadata:
                    item[key] = metadata[key]
        results.append(dict(sorted(item.items())))
    return results
