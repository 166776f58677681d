"""Geometric annotations as DICOM SR measurement reports (TID 1500), via highdicom.

Each shape is one planar ROI measurement group whose region is a 2-D SCOORD on the instance it
was drawn on (so the SR references that instance). Carina stores shapes in patient coordinates
(LPS mm); the SR holds image coordinates (column, row) with (0, 0) the top left corner of the top
left pixel, as PS3.3 defines them, so points are projected onto the image plane on export and
lifted back on import. Graphic Data is 32-bit float: a round trip keeps points to float32
precision. The kind travels in the tracking identifier (``carina:box:label``); SRs from elsewhere
are read by graphic type (POINT, CIRCLE and ELLIPSE, open or closed POLYLINE).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes

from carina.annotation.store import ShapeInfo, ShapeKind
from carina.core.errors import DicomError, GeometryError
from carina.dicom import SeriesInfo
from carina.dicom.files import open_dataset

_PREFIX = "carina"
_PROCEDURE = hd.sr.CodedConcept("363679005", "SCT", "Imaging procedure")


@dataclass(frozen=True)
class ImagePlane:
    """Where a single-frame image lies: centre of its first pixel, row and column direction
    cosines, and (row spacing, column spacing) in mm."""

    origin: npt.NDArray[np.float64]
    row_direction: npt.NDArray[np.float64]  # along a row: increasing column index
    column_direction: npt.NDArray[np.float64]  # along a column: increasing row index
    spacing: tuple[float, float]

    @classmethod
    def of(cls, ds: Dataset) -> ImagePlane:
        try:
            ipp = np.array([float(v) for v in ds.ImagePositionPatient])
            iop = np.array([float(v) for v in ds.ImageOrientationPatient])
            ps = [float(v) for v in ds.PixelSpacing]
        except (AttributeError, TypeError, ValueError) as exc:
            raise GeometryError(
                f"image {getattr(ds, 'SOPInstanceUID', '?')} has no plane geometry"
            ) from exc
        return cls(ipp, iop[:3], iop[3:], (ps[0], ps[1]))

    def to_image(self, points: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """(column, row) image coordinates of LPS points (projected onto the plane)."""
        d = np.asarray(points, dtype=np.float64) - self.origin
        col = d @ self.row_direction / self.spacing[1] + 0.5
        row = d @ self.column_direction / self.spacing[0] + 0.5
        return np.stack([col, row], axis=-1)

    def to_patient(self, image: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """LPS points of (column, row) image coordinates."""
        cr = np.asarray(image, dtype=np.float64)
        col = (cr[:, 0] - 0.5) * self.spacing[1]
        row = (cr[:, 1] - 0.5) * self.spacing[0]
        out: npt.NDArray[np.float64] = (
            self.origin + np.outer(col, self.row_direction) + np.outer(row, self.column_direction)
        )
        return out


@dataclass(frozen=True)
class SRShape:
    """A shape read from an SR, in patient coordinates, with the instance it references."""

    study_uid: str
    series_uid: str
    sop_uid: str
    frame_of_reference_uid: str
    kind: ShapeKind
    points: list[list[float]]
    label: str


def _graphic(kind: ShapeKind, image: npt.NDArray[np.float64]) -> tuple[Any, Any]:
    gt = hd.sr.GraphicTypeValues
    if kind is ShapeKind.POINT:
        return gt.POINT, image
    if kind is ShapeKind.ELLIPSE:
        return gt.ELLIPSE, image
    if kind in (ShapeKind.BOX, ShapeKind.POLYGON):
        return gt.POLYLINE, np.vstack([image, image[:1]])  # closed: the first point repeated
    return gt.POLYLINE, image  # line, angle: open


def shapes_to_sr(
    shapes: Sequence[ShapeInfo],
    series: SeriesInfo,
    *,
    author: str = "",
    series_number: int = 400,
) -> Dataset:
    """A Comprehensive 3D SR (TID 1500) with one planar ROI group per shape of ``series``."""
    sources = {ref.sop_instance_uid: open_dataset(ref)[0] for ref in series.sources}
    if not sources:
        raise DicomError("an SR needs the images its regions lie on")
    groups = []
    for shape in shapes:
        source = sources.get(shape.sop_uid)
        if source is None:
            raise DicomError(f"shape {shape.id} references {shape.sop_uid}, not in the series")
        image = ImagePlane.of(source).to_image(shape.points)
        graphic_type, data = _graphic(shape.kind, image)
        region = hd.sr.ImageRegion(
            graphic_type=graphic_type,
            graphic_data=data,
            source_image=hd.sr.SourceImageForRegion(
                referenced_sop_class_uid=source.SOPClassUID,
                referenced_sop_instance_uid=source.SOPInstanceUID,
            ),
        )
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=hd.UID(),
                    identifier=f"{_PREFIX}:{shape.kind.value}:{shape.label}"[:64],
                ),
                referenced_region=region,
                finding_type=codes.DCM.ImageRegion,
            )
        )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=f"Carina ({author})"[:64] if author else "Carina"
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=_PROCEDURE,
        imaging_measurements=groups or None,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person")
        try:
            sr = hd.sr.Comprehensive3DSR(
                evidence=list(sources.values()),
                content=report,
                series_instance_uid=hd.UID(),
                series_number=series_number,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer="Carina",
                is_complete=True,
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise DicomError(f"cannot build the SR: {exc}") from exc
    result: Dataset = sr
    return result


def _evidence(ds: Dataset) -> dict[str, tuple[str, str]]:
    """SOP instance UID -> (study, series) from the evidence sequences of an SR."""
    out: dict[str, tuple[str, str]] = {}
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in ds.get(keyword, []):
            for series in study.get("ReferencedSeriesSequence", []):
                for sop in series.get("ReferencedSOPSequence", []):
                    out[str(sop.ReferencedSOPInstanceUID)] = (
                        str(study.StudyInstanceUID),
                        str(series.SeriesInstanceUID),
                    )
    return out


def _kind(identifier: str, graphic_type: str, image: npt.NDArray[Any]) -> tuple[ShapeKind, str]:
    parts = identifier.split(":", 2)
    if len(parts) == 3 and parts[0] == _PREFIX and parts[1] in ShapeKind.__members__.values():
        return ShapeKind(parts[1]), parts[2]
    closed = len(image) > 2 and np.allclose(image[0], image[-1])
    if graphic_type == "POINT":
        return ShapeKind.POINT, identifier
    if graphic_type in ("ELLIPSE", "CIRCLE"):
        return ShapeKind.ELLIPSE, identifier
    if graphic_type == "POLYLINE" and not closed and len(image) == 2:
        return ShapeKind.LINE, identifier
    if graphic_type == "POLYLINE" and not closed and len(image) == 3:
        return ShapeKind.ANGLE, identifier
    return ShapeKind.POLYGON, identifier


def _circle_to_ellipse(image: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A CIRCLE (centre, point on the circle) as ELLIPSE axis end points."""
    centre, edge = image[0], image[1]
    r = float(np.hypot(*(edge - centre)))
    offsets = np.array([[-r, 0.0], [r, 0.0], [0.0, -r], [0.0, r]])
    out: npt.NDArray[Any] = centre[np.newaxis, :] + offsets
    return out


def read_sr(
    data: bytes | Dataset, plane_of: Callable[[str], tuple[ImagePlane, str]]
) -> list[SRShape]:
    """The planar ROIs of a TID 1500 SR as shapes in patient coordinates.

    ``plane_of(sop_instance_uid)`` gives the plane and frame of reference of a referenced image.
    """
    try:
        ds = data if isinstance(data, Dataset) else pydicom.dcmread(io.BytesIO(data))
        sr = hd.sr.Comprehensive3DSR.from_dataset(ds, copy=False)
        groups = sr.content.get_planar_roi_measurement_groups()
    except (InvalidDicomError, OSError, ValueError, AttributeError, TypeError, KeyError) as exc:
        raise DicomError(f"not a readable TID 1500 measurement report: {exc}") from exc
    evidence = _evidence(ds)
    out = []
    for group in groups:
        roi = group.roi
        if roi is None:
            continue
        graphic_type = str(roi.GraphicType)
        image = np.asarray(roi.value, dtype=np.float64)
        if image.ndim != 2 or image.shape[1] != 2:
            raise DicomError("only 2-D image regions (SCOORD) referencing an image are read")
        refs = [
            str(ref.ReferencedSOPInstanceUID)
            for item in roi.get("ContentSequence", [])
            for ref in item.get("ReferencedSOPSequence", [])
        ]
        if not refs:
            raise DicomError("an image region references no image")
        sop = refs[0]
        if sop not in evidence:
            raise DicomError(f"the referenced image {sop} is not in the SR's evidence")
        kind, label = _kind(str(group.tracking_identifier or ""), graphic_type, image)
        if graphic_type == "CIRCLE":
            image = _circle_to_ellipse(image)
        closed = len(image) > 3 and np.allclose(image[0], image[-1])
        if graphic_type == "POLYLINE" and kind in (ShapeKind.BOX, ShapeKind.POLYGON) and closed:
            image = image[:-1]
        plane, frame = plane_of(sop)
        points = plane.to_patient(image)
        study, series = evidence[sop]
        out.append(SRShape(study, series, sop, frame, kind, points.tolist(), label[:64]))
    return out
