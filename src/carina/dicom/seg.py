"""DICOM Segmentation (SEG) objects from label maps, and label maps from SEG, via highdicom.

A label map on the grid of a DICOM series becomes one SEG instance that references the series'
images: a label-map SEG (one frame per slice, the values are segment numbers) or a binary SEG
(one frame per slice and segment, overlapping segments allowed). Label values are renumbered to
consecutive segment numbers as the standard requires; segment labels carry the names, so a
label set maps them back.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes

from carina.core.errors import DicomError, GeometryError, LabelError
from carina.core.geometry import Geometry
from carina.core.labels import Code, Label, LabelSet, label_dtype
from carina.core.volume import LabelMap

#: Coding scheme for structures that carry no standard code (a private scheme, as PS3.16 allows).
LOCAL_SCHEME = "99CARINA"


class SegType(StrEnum):
    LABELMAP = "LABELMAP"
    BINARY = "BINARY"


@dataclass(frozen=True)
class Provenance:
    """What produced the segmentation: a named algorithm (model or tool) or a person."""

    algorithm: str | None = None
    algorithm_version: str = "1"
    manual: bool = False


def _coded(code: Code | None, label: Label) -> hd.sr.CodedConcept:
    if code is not None:
        return hd.sr.CodedConcept(code.value, code.scheme, code.meaning)
    return hd.sr.CodedConcept(f"L{label.value}", LOCAL_SCHEME, label.name[:64])


def _check_sources(sources: Sequence[Dataset]) -> None:
    if not sources:
        raise DicomError("a SEG needs the source images it segments")
    for ds in sources:
        for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            if not str(getattr(ds, keyword, "") or ""):
                raise DicomError(
                    f"source image has an empty {keyword}; store the series in the archive "
                    "(which requires valid UIDs) before exporting a SEG"
                )


def _descriptions(
    labels: LabelMap, present: list[int], provenance: Provenance
) -> list[hd.seg.SegmentDescription]:
    if provenance.manual or not provenance.algorithm:
        algo_type = hd.seg.SegmentAlgorithmTypeValues.MANUAL
        algo_id = None
    else:
        algo_type = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        algo_id = hd.AlgorithmIdentificationSequence(
            name=provenance.algorithm,
            family=codes.DCM.ArtificialIntelligence,
            version=provenance.algorithm_version,
        )
    out = []
    for number, value in enumerate(present, start=1):
        label = labels.labels[value]
        r, g, b = label.color
        out.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=label.name[:64],
                segmented_property_category=codes.SCT.AnatomicalStructure,
                segmented_property_type=_coded(label.code, label),
                algorithm_type=algo_type,
                algorithm_identification=algo_id,
                tracking_id=f"{label.name[:56]}#{value}",
                tracking_uid=hd.UID(),
                display_color=hd.color.CIELabColor.from_rgb(r, g, b),
            )
        )
    return out


def build_segmentation(
    labels: LabelMap,
    sources: Sequence[Dataset],
    *,
    seg_type: SegType | str = SegType.LABELMAP,
    provenance: Provenance | None = None,
    series_description: str = "Segmentation",
    series_number: int = 300,
    manufacturer: str = "Carina",
    software_version: str = "0",
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> Dataset:
    """A SEG dataset for ``labels``, which must lie on the grid of the ``sources`` series
    (``series_instance_uid``/``sop_instance_uid``: chosen UIDs, new ones by default)."""
    kind = SegType(seg_type)
    provenance = provenance or Provenance()
    _check_sources(sources)
    present = labels.present_values()
    if not present:
        raise LabelError("the label map is empty; there is nothing to export")
    frame_uid = str(getattr(sources[0], "FrameOfReferenceUID", "") or "")
    if (
        labels.geometry.frame_of_reference_uid
        and frame_uid
        and labels.geometry.frame_of_reference_uid != frame_uid
    ):
        raise GeometryError(
            "label map and source images are in different frames of reference "
            f"({labels.geometry.frame_of_reference_uid} vs {frame_uid})"
        )
    lut = np.zeros(int(labels.array.max()) + 1, dtype=np.uint16)
    for number, value in enumerate(present, start=1):
        lut[value] = number
    segment_numbers = lut[np.asarray(labels.array)]
    dtype = label_dtype(len(present))  # segment numbers 1..n
    # highdicom encodes frames along the first array axis, rows along the second and columns
    # along the third: (k, j, i) for Carina's (i, j, k) arrays, with the affine's columns swapped.
    volume = hd.Volume(
        np.ascontiguousarray(segment_numbers.astype(dtype).transpose(2, 1, 0)),
        labels.geometry.affine[:, [2, 1, 0, 3]],
        coordinate_system="PATIENT",
        frame_of_reference_uid=frame_uid or labels.geometry.frame_of_reference_uid,
    )
    options: dict[str, Any] = {
        "source_images": list(sources),
        "pixel_array": volume,
        "segmentation_type": (
            hd.seg.SegmentationTypeValues.LABELMAP
            if kind is SegType.LABELMAP
            else hd.seg.SegmentationTypeValues.BINARY
        ),
        "segment_descriptions": _descriptions(labels, present, provenance),
        "series_instance_uid": series_instance_uid or hd.UID(),
        "series_number": series_number,
        "sop_instance_uid": sop_instance_uid or hd.UID(),
        "instance_number": 1,
        "manufacturer": manufacturer,
        "manufacturer_model_name": "Carina",
        "software_versions": software_version,
        "device_serial_number": "0",
        "series_description": series_description[:64],
        "omit_empty_frames": kind is SegType.BINARY,
    }
    with warnings.catch_warnings():
        # highdicom re-validates person names copied from the sources; a single-component
        # name there (common after de-identification) is the source's, not an export error.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person")
        try:
            seg = hd.seg.Segmentation(**options)
        except (ValueError, TypeError, KeyError) as exc:
            raise DicomError(f"cannot build the SEG: {exc}") from exc
    result: Dataset = seg
    return result


def write_segmentation(
    labels: LabelMap, sources: Sequence[Dataset], path: str | Path, **options: Any
) -> Path:
    """Build a SEG (see :func:`build_segmentation`) and write it atomically to ``path``."""
    p = Path(path)
    seg = build_segmentation(labels, sources, **options)
    tmp = p.with_name(f".{p.name}.partial")
    try:
        seg.save_as(tmp, enforce_file_format=True)
        tmp.replace(p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DicomError(f"cannot write {p}: {exc}") from exc
    return p


def _label_of(desc: Any, number: int) -> tuple[int, str]:
    """Original label value and name stored in a segment's tracking ID (``name#value``)."""
    name = str(desc.SegmentLabel)
    tracking = str(getattr(desc, "TrackingID", "") or "")
    if "#" in tracking:
        _head, _, tail = tracking.rpartition("#")
        if tail.isdigit():
            return int(tail), name
    return number, name


def read_segmentation(path: str | Path | Dataset, labels: LabelSet | None = None) -> LabelMap:
    """A label map from a SEG file: segments become label values (by name through ``labels``,
    else the values recorded at export, else the segment numbers). Overlaps: later segments win.
    """
    try:
        seg = (
            hd.seg.segread(path)
            if not isinstance(path, Dataset)
            else hd.seg.Segmentation.from_dataset(path)
        )
    except (OSError, ValueError, AttributeError, KeyError, InvalidDicomError) as exc:
        raise DicomError(f"cannot read SEG {path}: {exc}") from exc
    # Segment 0 is the background of a label-map SEG; it is not a structure.
    numbers = [int(d.SegmentNumber) for d in seg.SegmentSequence if int(d.SegmentNumber) > 0]
    if not numbers:
        raise DicomError(f"SEG {path} has no segments")
    try:
        volume = seg.get_volume(combine_segments=False, segment_numbers=numbers, dtype=np.uint8)
    except (ValueError, RuntimeError) as exc:
        raise DicomError(f"SEG {path} does not describe a regular volume: {exc}") from exc
    arr: npt.NDArray[Any] = np.asarray(volume.array)
    if arr.ndim == 3:
        arr = arr[..., np.newaxis]
    # back from highdicom's (frame, row, column) order to Carina's (i, j, k)
    arr = arr.transpose(2, 1, 0, 3)
    affine = np.asarray(volume.affine, dtype=np.float64)[:, [2, 1, 0, 3]]
    mapping: dict[int, tuple[int, str]] = {}
    for desc in seg.SegmentSequence:
        number = int(desc.SegmentNumber)
        if number == 0:
            continue
        value, name = _label_of(desc, number)
        if labels is not None:
            with contextlib.suppress(LabelError):
                value = labels.by_name(name).value
        mapping[number] = (value, name)
    out_dtype = label_dtype(max(v for v, _ in mapping.values()))
    geometry = Geometry(affine, arr.shape[:3], seg.FrameOfReferenceUID)
    result = np.zeros(arr.shape[:3], dtype=out_dtype)
    for channel, number in enumerate(numbers):
        result[arr[..., channel] > 0] = mapping[number][0]
    if labels is not None:
        label_set = labels.subset(v for v, _ in mapping.values())
        missing = {v for v, _ in mapping.values()} - set(label_set.values)
        if missing:
            extra = [Label(v, n) for v, n in mapping.values() if v in missing]
            label_set = LabelSet([*label_set, *extra])
    else:
        label_set = LabelSet(Label(v, n) for v, n in mapping.values())
    return LabelMap(result, geometry, modality="SEG", labels=label_set)


#: SOP classes of segmentations: binary/fractional SEG and label-map SEG.
SEG_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"})


def referenced_series(ds: Dataset) -> set[str]:
    """The image series a SEG segments (ReferencedSeriesSequence, else its source images)."""
    found = {
        str(item.SeriesInstanceUID)
        for item in ds.get("ReferencedSeriesSequence", [])
        if "SeriesInstanceUID" in item
    }
    if not found:
        for item in ds.get("SourceImageSequence", []):
            if "SeriesInstanceUID" in item:
                found.add(str(item.SeriesInstanceUID))
    return found


def segment_labels(ds: Dataset) -> LabelSet:
    """The labels of a SEG's segments as :func:`read_segmentation` numbers them, with their
    recommended display colours and property type codes (from the header alone)."""
    labels: dict[int, Label] = {}
    for desc in ds.get("SegmentSequence", []):
        number = int(desc.SegmentNumber)
        if number == 0:
            continue
        value, name = _label_of(desc, number)
        color = (255, 0, 0)
        lab = desc.get("RecommendedDisplayCIELabValue")
        if lab is not None:
            rgb = hd.color.CIELabColor.from_dicom_value(tuple(int(v) for v in lab)).to_rgb()
            color = (int(rgb[0]), int(rgb[1]), int(rgb[2]))
        code = None
        types = desc.get("SegmentedPropertyTypeCodeSequence")
        if types:
            item = types[0]
            code = Code(
                str(item.CodeValue), str(item.CodingSchemeDesignator), str(item.CodeMeaning)
            )
        labels[value] = Label(value, name.strip() or f"segment {number}", color, code)
    return LabelSet(labels.values())
