"""RT Structure Sets (RTSTRUCT) from label maps, and label maps back from RTSTRUCT contours.

Each label becomes one ROI; each slice of the label becomes closed planar contours traced at
the voxel boundaries (marching squares at the 0.5 level, :func:`skimage.measure.find_contours`)
in patient LPS millimetres, each referencing the image instance of its slice. Holes are written
as their own contours, as most planning systems do; reading back fills the contours of a slice
with the even-odd rule, so a hole inside an outline stays empty.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid
from skimage.draw import polygon as fill_polygon
from skimage.measure import find_contours

from carina.core.errors import DicomError, GeometryError, LabelError
from carina.core.geometry import Geometry
from carina.core.labels import Label, LabelSet, label_dtype
from carina.core.volume import LabelMap

#: Study Component Management SOP Class, referenced by RTReferencedStudySequence.
STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"
_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def _slice_instances(geometry: Geometry, sources: Sequence[Dataset]) -> list[Dataset]:
    """The source instance of every slice ``k`` of ``geometry`` (matched by position)."""
    by_slice: dict[int, Dataset] = {}
    inverse = np.linalg.inv(geometry.affine)
    for ds in sources:
        position = getattr(ds, "ImagePositionPatient", None)
        if position is None or len(position) != 3:
            raise DicomError("an RTSTRUCT needs source images with ImagePositionPatient")
        index = inverse @ np.array([*map(float, position), 1.0])
        k = round(float(index[2]))
        if abs(index[2] - k) > 0.05 or abs(index[0]) > 0.05 or abs(index[1]) > 0.05:
            raise GeometryError(
                f"instance {ds.SOPInstanceUID} is not a slice of the label map grid "
                f"(voxel position {np.round(index[:3], 3).tolist()})"
            )
        by_slice[k] = ds
    missing = [k for k in range(geometry.shape[2]) if k not in by_slice]
    if missing:
        raise GeometryError(f"no source instance for slices {missing[:5]} of the label map")
    return [by_slice[k] for k in range(geometry.shape[2])]


def _contours(mask: npt.NDArray[np.bool_]) -> list[npt.NDArray[np.float64]]:
    """Closed outlines (and hole outlines) of a 2-D mask in (i, j) voxel coordinates."""
    padded = np.pad(mask, 1).astype(np.float32)
    out = []
    for c in find_contours(padded, 0.5):
        if len(c) > 1 and np.array_equal(c[0], c[-1]):
            c = c[:-1]
        c = _drop_collinear(c) - 1.0
        if len(c) >= 3:
            out.append(c)
    return out


def _drop_collinear(points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The vertices of a closed polygon where its direction changes (the same outline)."""
    before = points - np.roll(points, 1, axis=0)
    after = np.roll(points, -1, axis=0) - points
    cross = before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]
    return points[np.abs(cross) > 1e-9]


def _image_ref(ds: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    return item


def _ds_values(points: npt.NDArray[np.float64]) -> list[float]:
    """Coordinates rounded to 1 um: short decimal strings that pydicom need not re-check."""
    values: list[float] = (np.round(points.ravel(), 3) + 0.0).tolist()
    return values


def build_rtstruct(
    labels: LabelMap,
    sources: Sequence[Dataset],
    *,
    structure_set_label: str = "Carina",
    algorithm: str | None = None,
    series_description: str = "Structure set",
    series_number: int = 301,
    manufacturer: str = "Carina",
    software_version: str = "0",
) -> Dataset:
    """An RTSTRUCT dataset for ``labels``, which must lie on the grid of the ``sources`` series
    (one image per slice, slices along the grid's third axis)."""
    if not sources:
        raise DicomError("an RTSTRUCT needs the source images it outlines")
    for src in sources:
        for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            if not str(getattr(src, keyword, "") or ""):
                raise DicomError(
                    f"source image has an empty {keyword}; an RTSTRUCT cannot reference it"
                )
    present = labels.present_values()
    if not present:
        raise LabelError("the label map is empty; there is nothing to export")
    first = sources[0]
    frame_uid = str(getattr(first, "FrameOfReferenceUID", "") or "")
    if not frame_uid:
        raise DicomError("the source images have no FrameOfReferenceUID")
    if labels.geometry.frame_of_reference_uid not in (None, "", frame_uid):
        raise GeometryError(
            "label map and source images are in different frames of reference "
            f"({labels.geometry.frame_of_reference_uid} vs {frame_uid})"
        )
    instances = _slice_instances(labels.geometry, sources)
    affine = labels.geometry.affine
    now = _dt.datetime.now()

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = generate_uid()
    for keyword in _PATIENT_STUDY:
        setattr(ds, keyword, getattr(first, keyword, "") or "")
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description[:64]
    ds.OperatorsName = ""
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = "Carina"
    ds.SoftwareVersions = software_version
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.InstanceNumber = 1
    ds.StructureSetLabel = structure_set_label[:16]
    ds.StructureSetDate = now.strftime("%Y%m%d")
    ds.StructureSetTime = now.strftime("%H%M%S")

    series_ref = Dataset()
    series_ref.SeriesInstanceUID = first.SeriesInstanceUID
    series_ref.ContourImageSequence = [_image_ref(s) for s in instances]
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = STUDY_COMPONENT_SOP_CLASS
    study_ref.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = [series_ref]
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = frame_uid
    frame_ref.RTReferencedStudySequence = [study_ref]
    ds.ReferencedFrameOfReferenceSequence = [frame_ref]

    rois, roi_contours, observations = [], [], []
    array = np.asarray(labels.array)
    for number, value in enumerate(present, start=1):
        label = labels.labels[value] if value in labels.labels else Label(value, f"label_{value}")
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = frame_uid
        roi.ROIName = label.name[:64]
        roi.ROIGenerationAlgorithm = "AUTOMATIC" if algorithm else "MANUAL"
        if algorithm:
            roi.ROIGenerationDescription = algorithm[:64]
        rois.append(roi)
        contours: list[Dataset] = []
        mask = array == value
        for k in np.flatnonzero(mask.any(axis=(0, 1))):
            for c in _contours(mask[:, :, k]):
                index = np.column_stack([c, np.full(len(c), float(k)), np.ones(len(c))])
                world = (affine @ index.T).T[:, :3]
                item = Dataset()
                item.ContourImageSequence = [_image_ref(instances[int(k)])]
                item.ContourGeometricType = "CLOSED_PLANAR"
                item.NumberOfContourPoints = len(c)
                item.ContourNumber = len(contours) + 1
                item.ContourData = _ds_values(world)
                contours.append(item)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = number
        roi_contour.ROIDisplayColor = list(label.color)
        roi_contour.ContourSequence = contours
        roi_contours.append(roi_contour)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = "ORGAN"
        observation.ROIInterpreter = ""
        observations.append(observation)
    ds.StructureSetROISequence = rois
    ds.ROIContourSequence = roi_contours
    ds.RTROIObservationsSequence = observations
    ds.ApprovalStatus = "UNAPPROVED"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def write_rtstruct(
    labels: LabelMap,
    sources: Sequence[Dataset],
    path: str | Path,
    *,
    algorithm: str | None = None,
    series_description: str = "Structure set",
) -> Path:
    """Build an RTSTRUCT (see :func:`build_rtstruct`) and write it atomically to ``path``."""
    p = Path(path)
    ds = build_rtstruct(labels, sources, algorithm=algorithm, series_description=series_description)
    tmp = p.with_name(f".{p.name}.partial")
    try:
        ds.save_as(tmp, enforce_file_format=True)
        tmp.replace(p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DicomError(f"cannot write {p}: {exc}") from exc
    return p


def _contour_points(contour: Dataset) -> npt.NDArray[np.float64]:
    """ContourData as an (n, 3) array, parsed from the raw bytes when still unparsed (fast)."""
    elem = contour.get_item("ContourData")
    if elem is not None and elem.is_raw and isinstance(elem.value, bytes):
        text = elem.value.decode("ascii").strip(" \x00")
        values = np.asarray(text.split("\\"), dtype=np.float64)
    else:
        values = np.asarray(contour.ContourData, dtype=np.float64)
    return values.reshape(-1, 3)


def read_rtstruct(source: str | Path | Dataset, geometry: Geometry) -> LabelMap:
    """Rasterize the closed planar contours of an RTSTRUCT onto ``geometry``.

    ROIs get label values 1, 2... in StructureSetROISequence order (named by ROIName). A contour
    fills the voxels whose centres lie inside it; the contours of one ROI on one slice combine
    by the even-odd rule. Contours off the grid's slices raise :class:`GeometryError`.
    """
    if isinstance(source, Dataset):
        ds = source
    else:
        try:
            ds = pydicom.dcmread(source)
        except (InvalidDicomError, OSError) as exc:
            raise DicomError(f"{source}: not a readable DICOM file ({exc})") from exc
    if str(getattr(ds, "Modality", "")) != "RTSTRUCT":
        raise DicomError("not an RT Structure Set (Modality is not RTSTRUCT)")
    numbers = {int(r.ROINumber): str(r.ROIName) for r in ds.get("StructureSetROISequence", [])}
    values = {number: value for value, number in enumerate(numbers, start=1)}
    out = np.zeros(geometry.shape, dtype=label_dtype(len(values)))
    inverse = np.linalg.inv(geometry.affine)
    colours: dict[int, tuple[int, int, int]] = {}
    for roi in ds.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        if number not in values:
            continue
        value = values[number]
        colour = roi.get("ROIDisplayColor")
        if colour is not None and len(colour) == 3:
            colours[value] = (int(colour[0]), int(colour[1]), int(colour[2]))
        layers: dict[int, npt.NDArray[np.bool_]] = {}
        for contour in roi.get("ContourSequence", []):
            if str(contour.get("ContourGeometricType", "")) != "CLOSED_PLANAR":
                continue
            points = _contour_points(contour)
            index = (inverse @ np.column_stack([points, np.ones(len(points))]).T).T[:, :3]
            k = round(float(index[:, 2].mean()))
            if np.abs(index[:, 2] - k).max() > 0.05 or not 0 <= k < geometry.shape[2]:
                raise GeometryError(f"a contour of ROI {number} does not lie on a grid slice")
            rr, cc = fill_polygon(index[:, 0], index[:, 1], shape=geometry.shape[:2])
            layer = layers.setdefault(k, np.zeros(geometry.shape[:2], dtype=bool))
            layer[rr, cc] ^= True  # (rr, cc) are distinct pixels: even-odd rule
        for k, layer in layers.items():
            out[:, :, k][layer] = value
    label_set = LabelSet(
        [Label(v, numbers[n], colours.get(v, (255, 0, 0))) for n, v in values.items()]
    )
    return LabelMap(out, geometry, labels=label_set)
