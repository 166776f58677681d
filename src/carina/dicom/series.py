"""Assembling the instances of one series into a :class:`~carina.core.volume.Volume`.

Slices are sorted by the projection of ImagePositionPatient on the slice normal. Array axes are
``[i, j, k]``: i along the DICOM row direction (columns of the image), j along the column
direction (rows of the image), k along the normal. Values are stored values after the modality
LUT (HU for CT).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut

from carina.core.errors import (
    CarinaError,
    DicomError,
    GantryTiltError,
    IrregularSpacingError,
    NoPixelDataError,
    SeriesError,
    UnsupportedDicomError,
)
from carina.core.geometry import Geometry
from carina.core.volume import Volume
from carina.dicom.files import Archives, SeriesInfo, open_dataset, scan, uid_name
from carina.dicom.pet import SuvError, suv_scale
from carina.dicom.pixels import decode

FloatArray = npt.NDArray[np.float64]

#: SOP classes whose frames are not image slices of a volume.
_UNSUPPORTED_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "a DICOM SEG (segmentation)",
    "1.2.840.10008.5.1.4.1.1.66.7": "a DICOM label-map SEG (segmentation)",
    "1.2.840.10008.5.1.4.1.1.77.1.6": "a tiled whole-slide microscopy image",
}

#: Two slices closer than this along the normal (mm) are at the same position.
DUPLICATE_TOLERANCE_MM = 0.01
#: A step is irregular when it deviates from the median step by more than this fraction of it
#: and by more than the absolute tolerance.
SPACING_RELATIVE_TOLERANCE = 0.01
SPACING_ABSOLUTE_TOLERANCE_MM = 0.01
#: Direction cosines differing by more than this are different orientations.
ORIENTATION_TOLERANCE = 1e-3


@dataclass(frozen=True)
class LoadedSeries:
    """A volume assembled from a series and the problems noticed while assembling it."""

    volume: Volume
    problems: tuple[str, ...]


@dataclass
class _Frame:
    pixels: npt.NDArray[Any]  # (rows, cols[, samples]): stored values, then rescaled
    label: str
    order: tuple[int, int]  # (instance number, frame index): order when there is no geometry
    position: FloatArray | None
    orientation: FloatArray | None  # 6 direction cosines
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns)
    slice_thickness: float | None
    spacing_between_slices: float | None
    slope: float
    intercept: float


_RELEASED: npt.NDArray[Any] = np.empty(0)


class _Notes:
    """Problem notes, with repeated per-file messages summarised."""

    def __init__(self) -> None:
        self.general: list[str] = []
        self.per_file: dict[str, list[str]] = {}

    def add(self, message: str) -> None:
        if message not in self.general:
            self.general.append(message)

    def add_file(self, label: str, message: str) -> None:
        self.per_file.setdefault(message, []).append(label)

    def result(self) -> tuple[str, ...]:
        out = list(self.general)
        for message, labels in self.per_file.items():
            if len(labels) == 1:
                out.append(f"{labels[0]}: {message}")
            else:
                out.append(f"{message} ({len(labels)} files, e.g. {labels[0]})")
        return tuple(out)


# -- header helpers ------------------------------------------------------------------------------
def _floats(value: Any, n: int) -> FloatArray | None:
    if value is None:
        return None
    try:
        vals = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if vals.shape != (n,) or not np.all(np.isfinite(vals)):
        return None
    return vals


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _group_value(
    groups: Sequence[Dataset | None], sequence: str, keyword: str, top: Dataset
) -> Any:
    """Value from a functional group (per-frame first, then shared), else from the top level."""
    for group in groups:
        if group is None:
            continue
        seq = group.get(sequence)
        if seq:
            value = seq[0].get(keyword)
            if value is not None and value != "":
                return value
    return top.get(keyword)


def _frames_of(ds: Dataset, pixels: npt.NDArray[Any], label: str, notes: _Notes) -> list[_Frame]:
    n = pixels.shape[0]
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared: Dataset | None = shared_seq[0] if shared_seq else None
    per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence")
    per_frame: list[Dataset | None]
    if per_frame_seq is not None and len(per_frame_seq) == n:
        per_frame = list(per_frame_seq)
    else:
        if per_frame_seq is not None:
            notes.add_file(label, "per-frame functional groups do not match the number of frames")
        per_frame = [None] * n
    try:
        instance_number = int(ds.get("InstanceNumber") or 0)
    except (TypeError, ValueError):
        instance_number = 0

    top_position = _floats(ds.get("ImagePositionPatient"), 3)
    offsets = _floats(ds.get("GridFrameOffsetVector"), n) if n > 1 else None
    is_dose = str(ds.get("Modality", "")) == "RTDOSE"
    dose_scaling = _float(ds.get("DoseGridScaling")) if is_dose else None

    frames: list[_Frame] = []
    for f in range(n):
        groups = (per_frame[f], shared)
        position = _floats(
            _group_value(groups, "PlanePositionSequence", "ImagePositionPatient", ds), 3
        )
        orientation = _floats(
            _group_value(groups, "PlaneOrientationSequence", "ImageOrientationPatient", ds), 6
        )
        if n > 1 and position is not None and per_frame[f] is None and shared is None:
            # Classic multi-frame: one position for the whole object.
            if offsets is not None and top_position is not None and orientation is not None:
                normal = np.cross(orientation[:3], orientation[3:])
                # Relative offsets start at 0; absolute ones at the first frame's position.
                position = top_position + (offsets[f] - offsets[0]) * normal
            else:
                position = None
        spacing = _floats(_group_value(groups, "PixelMeasuresSequence", "PixelSpacing", ds), 2)
        if spacing is None:
            spacing = _floats(ds.get("ImagerPixelSpacing"), 2)
        if spacing is not None and np.any(spacing <= 0):
            spacing = None
        slope = _float(_group_value(groups, "PixelValueTransformationSequence", "RescaleSlope", ds))
        intercept = _float(
            _group_value(groups, "PixelValueTransformationSequence", "RescaleIntercept", ds)
        )
        if dose_scaling is not None:
            slope = dose_scaling
        frames.append(
            _Frame(
                pixels=pixels[f],
                label=label if n == 1 else f"{label} frame {f + 1}",
                order=(instance_number, f),
                position=position,
                orientation=orientation,
                pixel_spacing=(float(spacing[0]), float(spacing[1]))
                if spacing is not None
                else None,
                slice_thickness=_float(
                    _group_value(groups, "PixelMeasuresSequence", "SliceThickness", ds)
                ),
                spacing_between_slices=_float(
                    _group_value(groups, "PixelMeasuresSequence", "SpacingBetweenSlices", ds)
                ),
                slope=1.0 if slope is None else slope,
                intercept=0.0 if intercept is None else intercept,
            )
        )
    return frames


def _colour_pixels(ds: Dataset, pixels: npt.NDArray[Any], notes: _Notes) -> npt.NDArray[Any]:
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric == "PALETTE COLOR":
        rgb = np.asarray(apply_color_lut(pixels, ds))
        notes.add("palette colour image converted to RGB with its lookup table")
        return rgb
    return pixels


# -- rescale -------------------------------------------------------------------------------------
def _rescaled(frames: list[_Frame], notes: _Notes) -> list[npt.NDArray[Any]]:
    """Apply each frame's RescaleSlope/Intercept; integer output when exact, else float32."""
    raw = [f.pixels for f in frames]
    if raw[0].ndim == 3:  # colour: no modality LUT
        return raw
    slopes = np.array([f.slope for f in frames])
    intercepts = np.array([f.intercept for f in frames])
    if np.ptp(slopes) > 0 or np.ptp(intercepts) > 0:
        notes.add(
            "rescale slope/intercept differ per slice "
            f"(slope {slopes.min():g}..{slopes.max():g}, "
            f"intercept {intercepts.min():g}..{intercepts.max():g}); applied per slice"
        )
    if np.all(slopes == 1.0) and np.all(intercepts == 0.0):
        return raw
    integer = (
        all(np.issubdtype(r.dtype, np.integer) for r in raw)
        and np.all(slopes == np.round(slopes))
        and np.all(intercepts == np.round(intercepts))
    )
    if not integer:
        return [
            (r.astype(np.float64) * s + b).astype(np.float32)
            for r, s, b in zip(raw, slopes, intercepts, strict=True)
        ]
    lo, hi = 0, 0
    for r, s, b in zip(raw, slopes, intercepts, strict=True):
        if r.size == 0:
            continue
        ends = (int(r.min()) * int(s) + int(b), int(r.max()) * int(s) + int(b))
        lo, hi = min(lo, *ends), max(hi, *ends)
    dtype: type[np.signedinteger[Any]] = np.int64
    for candidate in (np.int16, np.int32):
        info = np.iinfo(candidate)
        if info.min <= lo and hi <= info.max:
            dtype = candidate
            break
    return [
        (r.astype(np.int64) * int(s) + int(b)).astype(dtype)
        for r, s, b in zip(raw, slopes, intercepts, strict=True)
    ]


# -- resampling helpers --------------------------------------------------------------------------
def _shift_axis(arr: FloatArray, shift: float, axis: int, fill: float) -> FloatArray:
    """``out[x] = arr[x - shift]`` along ``axis`` with linear interpolation and constant fill."""
    whole = math.floor(shift)
    frac = shift - whole
    n = arr.shape[axis]
    pad = abs(whole) + 2
    widths = [(0, 0)] * arr.ndim
    widths[axis] = (pad, pad)
    padded = np.pad(arr, widths, mode="constant", constant_values=fill)
    start = pad - whole
    a = np.take(padded, np.arange(start, start + n), axis=axis)
    b = np.take(padded, np.arange(start - 1, start - 1 + n), axis=axis)
    out: FloatArray = (1.0 - frac) * a + frac * b
    return out


def _interpolate_slices(
    slices: npt.NDArray[Any], positions: FloatArray, targets: FloatArray
) -> npt.NDArray[np.float32]:
    """Linear interpolation (float32) of slices stacked on axis 0 at positions along the normal."""
    out = np.empty((len(targets), *slices.shape[1:]), dtype=np.float32)
    for t, target in enumerate(targets):
        lo = int(
            np.clip(np.searchsorted(positions, target, side="right") - 1, 0, len(positions) - 2)
        )
        w = float(np.clip((target - positions[lo]) / (positions[lo + 1] - positions[lo]), 0.0, 1.0))
        out[t] = (1.0 - w) * slices[lo].astype(np.float32) + w * slices[lo + 1].astype(np.float32)
    return out


def _z_label(normal: FloatArray) -> str:
    return "z" if abs(normal[2]) > 0.9 else "position"


# -- assembly ------------------------------------------------------------------------------------
def _release_pixels(frames: list[_Frame]) -> None:
    """Drop the per-slice arrays once they are stacked (the caller's list shares the frames)."""
    for f in frames:
        f.pixels = _RELEASED


def _check_sizes(frames: list[_Frame]) -> None:
    shapes = Counter(f.pixels.shape for f in frames)
    if len(shapes) > 1:
        listed = ", ".join(
            f"{'x'.join(str(s) for s in shape)} ({n} slices)" for shape, n in shapes.most_common()
        )
        raise SeriesError(f"the series mixes image sizes: {listed}; load them as separate stacks")


def _pixel_spacing(frames: list[_Frame], notes: _Notes) -> tuple[float, float]:
    spacings = {f.pixel_spacing for f in frames}
    known = [s for s in spacings if s is not None]
    if not known:
        return (1.0, 1.0)
    ref = known[0]
    for s in known[1:]:
        if abs(s[0] - ref[0]) > 1e-4 or abs(s[1] - ref[1]) > 1e-4:
            raise SeriesError(f"the series mixes pixel spacings: {sorted(known)}")
    if None in spacings:
        notes.add("PixelSpacing missing on some slices; taken from the others")
    return ref


def _no_geometry(frames: list[_Frame], notes: _Notes) -> tuple[npt.NDArray[Any], Geometry]:
    order = sorted(range(len(frames)), key=lambda i: frames[i].order)
    spacing = _pixel_spacing(frames, notes)
    if all(f.pixel_spacing is None for f in frames):
        notes.add("no pixel spacing in the header; 1 mm assumed")
    notes.add("no patient geometry; pixel grid only")
    thickness = frames[0].spacing_between_slices or frames[0].slice_thickness or 1.0
    stacked = np.stack([frames[i].pixels for i in order], axis=0)
    _release_pixels(frames)
    geometry = Geometry.from_components(
        shape=(stacked.shape[2], stacked.shape[1], stacked.shape[0]),
        spacing=(spacing[1], spacing[0], thickness if thickness > 0 else 1.0),
    )
    return stacked, geometry


def _assemble(
    frames: list[_Frame],
    frame_of_reference_uid: str | None,
    resample: bool,
    notes: _Notes,
) -> tuple[npt.NDArray[Any], Geometry]:
    """Stack of slices (k, rows, cols[, samples]) and the geometry of the volume."""
    _check_sizes(frames)
    with_geometry = [f.position is not None and f.orientation is not None for f in frames]
    if not any(with_geometry):
        return _no_geometry(frames, notes)
    if not all(with_geometry):
        missing = [f.label for f, ok in zip(frames, with_geometry, strict=True) if not ok]
        raise SeriesError(
            f"{len(missing)} of {len(frames)} slices have no ImagePositionPatient/"
            f"ImageOrientationPatient (e.g. {missing[0]})"
        )
    orientations = np.array([f.orientation for f in frames], dtype=np.float64)
    if np.max(np.abs(orientations - orientations[0])) > ORIENTATION_TOLERANCE:
        distinct = {tuple(np.round(o, 3)) for o in orientations}
        raise SeriesError(
            f"the series mixes {len(distinct)} orientations "
            f"({', '.join(str(list(o)) for o in sorted(distinct)[:4])}); "
            "load them as separate stacks"
        )
    row_dir, col_dir = orientations[0][:3], orientations[0][3:]
    if np.linalg.norm(row_dir) < 0.5 or np.linalg.norm(col_dir) < 0.5:
        raise SeriesError(f"ImageOrientationPatient is degenerate: {orientations[0].tolist()}")
    row_dir = row_dir / np.linalg.norm(row_dir)
    col_dir = col_dir / np.linalg.norm(col_dir)
    dot = float(row_dir @ col_dir)
    if abs(dot) > ORIENTATION_TOLERANCE:
        raise SeriesError(
            f"ImageOrientationPatient row and column directions are not orthogonal "
            f"(cosine {dot:.4f})"
        )
    col_dir = col_dir - dot * row_dir
    col_dir = col_dir / np.linalg.norm(col_dir)
    normal = np.cross(row_dir, col_dir)
    row_spacing, col_spacing = _pixel_spacing(frames, notes)
    if all(f.pixel_spacing is None for f in frames):
        notes.add("PixelSpacing missing; 1 mm assumed")
    zname = _z_label(normal)

    positions = np.array([f.position for f in frames], dtype=np.float64)
    along = positions @ normal
    order = sorted(range(len(frames)), key=lambda i: (round(float(along[i]), 6), frames[i].order))
    positions, along = positions[order], along[order]
    frames = [frames[i] for i in order]

    # Duplicate positions.
    keep = [0]
    for i in range(1, len(frames)):
        prev = keep[-1]
        same = abs(along[i] - along[prev]) < DUPLICATE_TOLERANCE_MM and np.allclose(
            positions[i], positions[prev], atol=DUPLICATE_TOLERANCE_MM
        )
        if not same:
            keep.append(i)
            continue
        here, there = frames[i].pixels, frames[prev].pixels
        if here.shape == there.shape and np.array_equal(here, there):
            notes.add(
                f"duplicate slice position {zname}={along[i]:.2f} ({frames[prev].label} and "
                f"{frames[i].label}): identical pixel data, one dropped"
            )
        else:
            raise SeriesError(
                f"two slices at the same position {zname}={along[i]:.2f} with different pixel "
                f"data ({frames[prev].label}, {frames[i].label}); the series holds several "
                "acquisitions, echoes or time points"
            )
    frames = [frames[i] for i in keep]
    positions, along = positions[keep], along[keep]
    stacked: npt.NDArray[Any] = np.stack([f.pixels for f in frames], axis=0)
    _release_pixels(frames)
    n = len(frames)

    # In-plane offsets of each slice relative to the first (gantry tilt / shear).
    rel = positions - positions[0]
    in_plane = rel - np.outer(rel @ normal, normal)
    shift_tolerance = max(0.05 * min(row_spacing, col_spacing), 0.01)
    if n > 1 and float(np.max(np.linalg.norm(in_plane, axis=1))) > shift_tolerance:
        extent = float(along[-1] - along[0])
        angle = math.degrees(math.atan2(float(np.linalg.norm(in_plane[-1])), extent))
        if not resample:
            raise GantryTiltError(
                f"slices are sheared (gantry tilt of {angle:.2f} degrees): positions move "
                f"{np.linalg.norm(in_plane[-1]):.2f} mm in-plane over {extent:.2f} mm; "
                "load with resample_irregular=True to resample onto an orthogonal grid"
            )
        fill = float(np.min(stacked))
        out = np.empty(stacked.shape, dtype=np.float32)
        for k in range(n):
            shift_i = float(in_plane[k] @ row_dir) / col_spacing  # along image columns
            shift_j = float(in_plane[k] @ col_dir) / row_spacing  # along image rows
            plane = stacked[k].astype(np.float64)
            plane = _shift_axis(plane, shift_i, 1, fill)
            plane = _shift_axis(plane, shift_j, 0, fill)
            out[k] = plane
        stacked = out
        positions = positions[0] + np.outer(along - along[0], normal)
        notes.add(
            f"gantry tilt of {angle:.2f} degrees corrected: slices shifted in-plane onto an "
            "orthogonal grid (linear interpolation, voxels from outside the scan filled with "
            f"{fill:g})"
        )

    # Slice spacing.
    if n == 1:
        f0 = frames[0]
        step = f0.spacing_between_slices or f0.slice_thickness or 1.0
        if step <= 0:
            step = 1.0
    else:
        steps = np.diff(along)
        step = float(np.median(steps))
        tolerance = max(SPACING_RELATIVE_TOLERANCE * step, SPACING_ABSOLUTE_TOLERANCE_MM)
        irregular = np.nonzero(np.abs(steps - step) > tolerance)[0]
        if irregular.size:
            gaps = []
            for g in irregular:
                a, b = float(along[g]), float(along[g + 1])
                ratio = (b - a) / step
                if ratio > 1.5 and abs(ratio - round(ratio)) < 0.1:
                    gaps.append(
                        f"{round(ratio) - 1} missing slice(s) between {zname}={a:.2f} and "
                        f"{zname}={b:.2f}"
                    )
                else:
                    gaps.append(
                        f"step of {b - a:.3f} mm between {zname}={a:.2f} and {zname}={b:.2f}"
                    )
            summary = "; ".join(gaps[:10]) + ("; ..." if len(gaps) > 10 else "")
            if not resample:
                raise IrregularSpacingError(
                    f"slices are unevenly spaced (usual step {step:.3f} mm): {summary}; "
                    "load with resample_irregular=True to interpolate onto a uniform grid"
                )
            count = int(np.rint((along[-1] - along[0]) / step)) + 1
            targets = along[0] + step * np.arange(count)
            stacked = _interpolate_slices(stacked, along, targets)
            notes.add(
                f"uneven slice spacing ({summary}): {n} slices linearly interpolated onto "
                f"{count} slices with a uniform step of {step:.3f} mm"
            )

    affine = np.eye(4)
    affine[:3, 0] = row_dir * col_spacing
    affine[:3, 1] = col_dir * row_spacing
    affine[:3, 2] = normal * step
    affine[:3, 3] = positions[0]
    geometry = Geometry(
        affine, (stacked.shape[2], stacked.shape[1], stacked.shape[0]), frame_of_reference_uid
    )
    return stacked, geometry


def _units(ds: Dataset) -> str:
    modality = str(ds.get("Modality", ""))
    rescale_type = str(ds.get("RescaleType", "") or "")
    if rescale_type == "US":  # "unspecified"
        return ""
    if rescale_type:
        return rescale_type
    if modality == "CT":
        return "HU"
    if modality == "RTDOSE":
        return str(ds.get("DoseUnits", "")) or "GY"
    if modality == "PT":
        return str(ds.get("Units", ""))
    return ""


def _metadata(ds: Dataset, info: SeriesInfo) -> dict[str, str]:
    meta = {
        "StudyInstanceUID": info.study_instance_uid,
        "SeriesInstanceUID": info.series_instance_uid,
        "SOPClassUID": info.sop_class_uid,
        "Modality": info.modality,
        "units": _units(ds),
        "PhotometricInterpretation": str(ds.get("PhotometricInterpretation", "")),
    }
    if info.series_number is not None:
        meta["SeriesNumber"] = str(info.series_number)
    if info.modality == "PT":
        try:
            meta["suv_factor"] = repr(suv_scale(ds).factor)
        except SuvError as exc:
            meta["suv_unavailable"] = str(exc)
        except (ValueError, TypeError, AttributeError, IndexError) as exc:  # malformed values
            meta["suv_unavailable"] = f"unreadable PET header value ({exc})"
    for keyword in ("WindowCenter", "WindowWidth"):
        value = ds.get(keyword)
        if value is not None and value != "":
            first = value[0] if not isinstance(value, str | float | int) and len(value) else value
            meta[keyword] = str(first)
    return meta


def _sop_class_name(uid: str) -> str:
    return uid_name(uid) if uid else "unknown SOP class"


def load_series(info: SeriesInfo, *, resample_irregular: bool = False) -> LoadedSeries:
    """Read and assemble the instances of one series into a volume.

    Raises :class:`NoPixelDataError` for series without images, :class:`GantryTiltError` or
    :class:`IrregularSpacingError` for sheared or unevenly spaced slices unless
    ``resample_irregular`` is set, and :class:`SeriesError` for inconsistent series.
    """
    if not info.has_pixels:
        raise NoPixelDataError(
            f"series {info.series_instance_uid} ({info.modality or 'no modality'}, "
            f"{_sop_class_name(info.sop_class_uid)}) holds no image pixels"
        )
    if info.sop_class_uid in _UNSUPPORTED_SOP_CLASSES:
        raise UnsupportedDicomError(
            f"series {info.series_instance_uid} is "
            f"{_UNSUPPORTED_SOP_CLASSES[info.sop_class_uid]}, not an image volume"
        )
    if not info.sources:
        raise SeriesError(f"series {info.series_instance_uid} has no instances")
    notes = _Notes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        array, geometry, metadata = _load(info, resample_irregular, notes)
    for w in caught:
        notes.add(f"pydicom: {w.message}")
    problems = notes.result()
    if problems:
        metadata["problems"] = "; ".join(problems)
    volume = Volume(
        array,
        geometry,
        modality=info.modality or None,
        description=info.series_description,
        metadata=metadata,
    )
    return LoadedSeries(volume=volume, problems=problems)


def _instance_frames(ds: Dataset, label: str, info: SeriesInfo, notes: _Notes) -> list[_Frame]:
    """The frames of one instance with their geometry; empty when it has no pixel data."""
    if str(ds.get("SeriesInstanceUID", "")) != info.series_instance_uid:
        raise SeriesError(f"{label}: no longer belongs to series {info.series_instance_uid}")
    try:
        pixels, decode_notes = decode(ds, label)
    except NoPixelDataError:
        notes.add_file(label, "no pixel data; instance skipped")
        return []
    for note in decode_notes:
        notes.add_file(label, note)
    pixels = _colour_pixels(ds, pixels, notes)
    if "ModalityLUTSequence" in ds and pixels.ndim == 3:
        pixels = np.asarray(apply_modality_lut(pixels, ds))
        notes.add_file(label, "modality LUT sequence applied")
    return _frames_of(ds, pixels, label, notes)


def _load(
    info: SeriesInfo, resample: bool, notes: _Notes
) -> tuple[npt.NDArray[Any], Geometry, dict[str, str]]:
    if not info.series_instance_uid:
        notes.add(
            "SeriesInstanceUID is empty; instances grouped by folder, series number, "
            "description, modality and frame of reference"
        )
    frames: list[_Frame] = []
    first: tuple[dict[str, str], str | None] | None = None
    with Archives() as archives:
        for ref in info.sources:
            ds, read_notes = open_dataset(ref, archives)
            for note in read_notes:
                notes.add_file(ref.label, note)
            try:
                instance_frames = _instance_frames(ds, ref.label, info, notes)
                if instance_frames and first is None:
                    frame_of_reference = str(ds.get("FrameOfReferenceUID", "") or "") or None
                    first = (_metadata(ds, info), frame_of_reference)
            except CarinaError:
                raise
            except Exception as exc:  # header values that pydicom cannot convert
                raise DicomError(
                    f"{ref.label}: damaged DICOM header ({type(exc).__name__}: {exc})"
                ) from exc
            frames.extend(instance_frames)
    if first is None or not frames:
        raise NoPixelDataError(f"series {info.series_instance_uid}: no instance holds pixel data")
    metadata, frame_of_reference = first
    if metadata["PhotometricInterpretation"] == "MONOCHROME1":
        notes.add("MONOCHROME1: higher values are displayed darker")
    for frame, value in zip(frames, _rescaled(frames, notes), strict=True):
        frame.pixels = value
    stacked, geometry = _assemble(frames, frame_of_reference, resample, notes)
    axes = (2, 1, 0, 3) if stacked.ndim == 4 else (2, 1, 0)
    array = np.ascontiguousarray(np.transpose(stacked, axes))
    if array.ndim == 4:  # YBR is converted by pydicom, palette colour above
        metadata["PhotometricInterpretation"] = "RGB"
    return array, geometry, metadata


def read_volume(path: str | Path) -> Volume:
    """The volume of the one image series under ``path`` (folder, file or ZIP).

    Raises :class:`SeriesError` listing the series when there is none or more than one.
    """
    result = scan(path)
    images = [s for s in result.series if s.has_pixels]
    if len(images) == 1:
        return load_series(images[0]).volume
    if not images:
        raise SeriesError(
            f"{path}: no image series found ({len(result.series)} series without pixels, "
            f"{len(result.rejected)} files rejected)"
        )
    listed = "; ".join(
        f"{s.series_instance_uid} ({s.modality}, {s.series_description!r}, "
        f"{s.n_instances} instances)"
        for s in images
    )
    raise SeriesError(
        f"{path} holds {len(images)} image series: {listed}; use scan() and load_series()"
    )
