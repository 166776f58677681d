"""3D Slicer segmentation files (``.seg.nrrd``): label maps with segment names, colours and codes.

A ``.seg.nrrd`` is an ordinary NRRD (``space: left-posterior-superior``, ``space directions`` and
``space origin`` from the geometry, gzip encoding) whose custom ``key:=value`` fields describe the
segments: ``SegmentN_ID``, ``_Name``, ``_Color`` (red, green, blue in 0-1), ``_LabelValue``,
``_Layer``, ``_Extent`` (bounding box in voxel indices) and ``_Tags`` (``key:value|`` pairs, the
DICOM terminology of the segment under ``TerminologyEntry``), plus ``Segmentation_*`` fields.
SimpleITK's NRRD writer stores every string entry of an image's metadata dictionary as such a
field, and its reader returns them, so no other NRRD library is needed.

Carina's label values never overlap, so it writes one layer (a 3-D file). Slicer writes segments
that overlap into several layers (a 4-D file, ``kinds: list domain domain domain``); reading merges
the layers into one label map when no voxel belongs to two segments, and refuses otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage as ndi

from carina.core.errors import GeometryError, ImageIOError, LabelError
from carina.core.geometry import Geometry
from carina.core.labels import Code, Label, LabelSet, default_color, label_dtype
from carina.core.volume import LabelMap
from carina.imaging.sitk import apply_geometry, geometry_of

#: The file name ending Slicer gives segmentations stored as labelmaps.
SEG_NRRD_SUFFIX = ".seg.nrrd"

#: Slicer's name of the labelmap representation.
BINARY_LABELMAP = "Binary labelmap"

#: The terminology context and category Carina's codes are stated in (the category is the one
#: its DICOM SEG writer uses for every segment: SCT 123037004 "Anatomical Structure").
TERMINOLOGY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
CATEGORY = Code("123037004", "SCT", "Anatomical Structure")

#: Extent Slicer writes for a segment without voxels.
EMPTY_EXTENT = (0, -1, 0, -1, 0, -1)

_TERMINOLOGY_KEY = "TerminologyEntry"


@dataclass(frozen=True)
class Segment:
    """The fields of one segment as they stand in the file."""

    index: int
    id: str
    name: str
    color: tuple[float, float, float] | None
    label_value: int
    layer: int
    extent: tuple[int, int, int, int, int, int] | None
    tags: dict[str, str]

    @property
    def code(self) -> Code | None:
        """The segment's type from its ``TerminologyEntry`` tag, when it has one."""
        return parse_terminology(self.tags.get(_TERMINOLOGY_KEY, ""))


# -- terminology ------------------------------------------------------------------------------
def _clean(text: str) -> str:
    """A value safe inside a tag: no separators of the tag, terminology or header syntax."""
    for ch in "|~^\r\n":
        text = text.replace(ch, " ")
    return text.strip()


def _one_line(text: str) -> str:
    """A header value: one line (the NRRD header ends each field at a line break)."""
    return " ".join(text.splitlines()).strip()


def _triplet(code: Code | None) -> str:
    if code is None:
        return "^^"
    return f"{_clean(code.scheme)}^{_clean(code.value)}^{_clean(code.meaning)}"


def terminology_entry(code: Code) -> str:
    """Slicer's ``TerminologyEntry`` value for a segment of type ``code``.

    Seven ``~``-separated parts: context, category, type, type modifier, anatomic context,
    anatomic region, region modifier; each coded part is ``scheme^value^meaning``.
    """
    return "~".join(
        [
            TERMINOLOGY_CONTEXT,
            _triplet(CATEGORY),
            _triplet(code),
            _triplet(None),
            ANATOMIC_CONTEXT,
            _triplet(None),
            _triplet(None),
        ]
    )


def parse_terminology(entry: str) -> Code | None:
    """The type code of a ``TerminologyEntry`` value (None when it names no type)."""
    parts = entry.split("~")
    if len(parts) < 3:
        return None
    fields = parts[2].split("^")
    if len(fields) != 3 or not fields[0].strip() or not fields[1].strip():
        return None
    scheme, value, meaning = (f.strip() for f in fields)
    return Code(value, scheme, meaning or value)


def _format_tags(tags: Mapping[str, str]) -> str:
    return "".join(f"{key}:{value}|" for key, value in tags.items())


def _parse_tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in text.split("|"):
        if not item:
            continue
        key, _, value = item.partition(":")
        tags[key] = value
    return tags


# -- writing ----------------------------------------------------------------------------------
def _extents(array: npt.NDArray[Any]) -> dict[int, tuple[int, ...]]:
    """Inclusive voxel bounding box (i0, i1, j0, j1, k0, k1) of each positive value present."""
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    if not array.size or int(array.max()) <= 0:
        return {}
    boxes = ndi.find_objects(np.where(array > 0, array, 0) if int(array.min()) < 0 else array)
    return {
        value: tuple(x for sl in box for x in (int(sl.start), int(sl.stop) - 1))
        for value, box in enumerate(boxes, start=1)
        if box is not None
    }


def _format_floats(values: tuple[float, ...]) -> str:
    return " ".join(f"{v:.6g}" for v in values)


def segment_fields(label_map: LabelMap) -> dict[str, str]:
    """The ``Segmentation_*`` and ``SegmentN_*`` fields describing ``label_map`` in one layer."""
    fields = {
        "Segmentation_MasterRepresentation": BINARY_LABELMAP,
        "Segmentation_ContainedRepresentationNames": f"{BINARY_LABELMAP}|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    array = np.asarray(label_map.array)
    extents = _extents(array)
    for n, label in enumerate(label_map.labels):
        prefix = f"Segment{n}_"
        tags = {_TERMINOLOGY_KEY: terminology_entry(label.code)} if label.code else {}
        fields.update(
            {
                prefix + "ID": f"Segment_{label.value}",
                prefix + "Name": _one_line(label.name) or f"Segment_{label.value}",
                prefix + "NameAutoGenerated": "0",
                prefix + "Color": _format_floats(tuple(c / 255.0 for c in label.color)),
                prefix + "ColorAutoGenerated": "0",
                prefix + "LabelValue": str(label.value),
                prefix + "Layer": "0",
                prefix + "Extent": " ".join(str(x) for x in extents.get(label.value, EMPTY_EXTENT)),
                prefix + "Tags": _format_tags(tags),
            }
        )
    return fields


def write_seg_nrrd(label_map: LabelMap, path: str | Path) -> Path:
    """Write ``label_map`` as a Slicer segmentation: one layer, one segment per label of its set.

    Labels of the set without voxels are written as empty segments (extent ``0 -1 0 -1 0 -1``),
    so that every name survives. The caller chooses the name (Slicer expects ``.seg.nrrd``).
    """
    p = Path(path)
    array = np.asarray(label_map.array)
    top = max([0, *label_map.labels.values, *label_map.present_values()])
    data = np.ascontiguousarray(array.astype(label_dtype(top), copy=False).transpose(2, 1, 0))
    image = sitk.GetImageFromArray(data)
    apply_geometry(image, label_map.geometry)
    for key, value in segment_fields(label_map).items():
        image.SetMetaData(key, value)
    try:
        sitk.WriteImage(image, str(p), useCompression=True)
    except RuntimeError as exc:
        raise ImageIOError(f"cannot write {p}: {str(exc).strip().splitlines()[-1]}") from exc
    return p


# -- reading ----------------------------------------------------------------------------------
def _ints(text: str, n: int, what: str, path: Path) -> tuple[int, ...]:
    try:
        values = tuple(int(float(x)) for x in text.split())
    except ValueError:
        values = ()
    if len(values) != n:
        raise ImageIOError(f"{path.name}: malformed {what} {text!r}")
    return values


def _segments(fields: Mapping[str, str], path: Path, n_layers: int) -> list[Segment]:
    """The segments described by ``fields``. Files of Slicer before layers existed keep one
    segment per component, value 1, without ``Layer``/``LabelValue``: read as such."""
    indices = sorted(
        {
            int(key[len("Segment") : key.index("_")])
            for key in fields
            if key.startswith("Segment")
            and "_" in key
            and key[len("Segment") : key.index("_")].isdigit()
        }
    )
    legacy = (
        n_layers == len(indices) > 1
        and not any(f"Segment{n}_Layer" in fields for n in indices)
        and not any(f"Segment{n}_LabelValue" in fields for n in indices)
    )
    segments = []
    for position, n in enumerate(indices):
        prefix = f"Segment{n}_"

        def get(name: str, prefix: str = prefix) -> str | None:
            return fields.get(prefix + name)

        seg_id = (get("ID") or "").strip() or f"Segment_{n}"
        label_text = get("LabelValue")
        label_value = _ints(label_text, 1, f"Segment{n}_LabelValue", path)[0] if label_text else 1
        layer_text = get("Layer")
        layer = _ints(layer_text, 1, f"Segment{n}_Layer", path)[0] if layer_text else 0
        if legacy:
            layer = position
        extent_text = get("Extent")
        extent = _ints(extent_text, 6, f"Segment{n}_Extent", path) if extent_text else None
        color_text = get("Color")
        color = None
        if color_text:
            try:
                rgb = tuple(float(x) for x in color_text.split())
            except ValueError:
                rgb = ()
            if len(rgb) != 3:
                raise ImageIOError(f"{path.name}: malformed Segment{n}_Color {color_text!r}")
            color = (rgb[0], rgb[1], rgb[2])
        segments.append(
            Segment(
                index=n,
                id=seg_id,
                name=(get("Name") or "").strip() or seg_id,
                color=color,
                label_value=label_value,
                layer=layer,
                extent=(
                    (extent[0], extent[1], extent[2], extent[3], extent[4], extent[5])
                    if extent
                    else None
                ),
                tags=_parse_tags(get("Tags") or ""),
            )
        )
    return segments


def _header_fields(data: bytes) -> dict[str, str]:
    """The ``field: value`` lines of the header at the start of ``data`` (keys lower-case and
    without spaces, as the NRRD reader compares them; ``key:=value`` pairs and comments left out).
    """
    fields: dict[str, str] = {}
    pos = data.find(b"\n") + 1  # after the magic line
    while 0 < pos < len(data):
        end = data.find(b"\n", pos)
        line = data[pos : end if end >= 0 else len(data)].rstrip(b"\r")
        if not line:
            break
        text = line.decode("latin-1")
        if not text.startswith("#") and ":=" not in text:
            key, sep, value = text.partition(":")
            if sep:
                fields["".join(key.split()).lower()] = value.strip()
        if end < 0:
            break
        pos = end + 1
    return fields


def check_seg_nrrd_bytes(data: bytes, max_values: int | None = None) -> None:
    """Refuse bytes that are not one self-contained NRRD file (:class:`ImageIOError`): another
    magic number, a header naming a ``data file`` (a detached header, whose voxels the reader would
    take from whatever file it names), or more than ``max_values`` voxel values by its ``sizes``.

    For files that arrive from elsewhere (an upload), before they are written anywhere and read.
    """
    if not data.startswith(b"NRRD000"):
        raise ImageIOError("not a NRRD file (a .seg.nrrd starts with 'NRRD000')")
    fields = _header_fields(data)
    if "datafile" in fields:
        raise ImageIOError(
            "the NRRD header names a separate data file; a segmentation must carry its voxels"
        )
    sizes = fields.get("sizes", "").split()
    if max_values is not None and sizes and all(x.isdigit() for x in sizes):
        count = math.prod(int(x) for x in sizes)
        if count > max_values:
            raise ImageIOError(
                f"the NRRD holds {count} voxel values (sizes {' '.join(sizes)}); "
                f"at most {max_values} are accepted here"
            )


def read_segments(path: str | Path) -> list[Segment]:
    """The segment fields of a ``.seg.nrrd`` file (header only; voxels are not read)."""
    p = Path(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ImageIOError(f"{p.name}: cannot read: {str(exc).strip().splitlines()[-1]}") from exc
    fields = {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}
    return _segments(fields, p, reader.GetNumberOfComponents())


def _layers(image: sitk.Image, path: Path) -> list[npt.NDArray[Any]]:
    """The 3-D arrays (i, j, k) of each layer of the file."""
    if image.GetDimension() != 3:
        raise ImageIOError(
            f"{path.name}: a segmentation has three spatial axes (and optionally one list axis), "
            f"got a {image.GetDimension()}-D image"
        )
    arr = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() == 1:
        return [np.ascontiguousarray(arr.transpose(2, 1, 0))]
    return [
        np.ascontiguousarray(arr[..., c].transpose(2, 1, 0))
        for c in range(image.GetNumberOfComponentsPerPixel())
    ]


def _rgb(color: tuple[float, float, float] | None, value: int) -> tuple[int, int, int]:
    if color is None:
        return default_color(value)
    r, g, b = (min(255, max(0, round(c * 255.0))) for c in color)
    return (r, g, b)


def read_seg_nrrd(path: str | Path, labels: LabelSet | None = None) -> LabelMap:
    """Read a Slicer segmentation into one :class:`LabelMap` (layers merged, names and colours
    and terminology codes kept).

    A segment keeps its label value when the values of all segments are distinct; when segments of
    different layers share a value (Slicer numbers each layer from 1), they are numbered 1..n in
    file order instead. Segments that overlap cannot be one label map: :class:`LabelError` names
    them. A file without segment fields is read as a plain label map.

    With ``labels``, segments are matched to that label set by name instead: each takes the value
    of the label of its name (segments of one name become one label), the result carries those
    labels, and a segment whose name is not in the set, or a file without segment fields, is
    refused (:class:`LabelError` naming the segments and the set's names).
    """
    p = Path(path)
    if not p.is_file():
        raise ImageIOError(f"{p}: no such file")
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise ImageIOError(f"{p.name}: cannot read: {str(exc).strip().splitlines()[-1]}") from exc
    layers = _layers(image, p)
    try:
        geometry = geometry_of(image)
    except GeometryError as exc:
        raise ImageIOError(f"{p.name}: invalid geometry: {exc}") from exc
    fields = {k: image.GetMetaData(k) for k in image.GetMetaDataKeys()}
    segments = _segments(fields, p, len(layers))
    if labels is not None:
        return _read_named(p, layers, geometry, segments, labels)
    if not segments:
        if len(layers) != 1:
            raise ImageIOError(f"{p.name}: {len(layers)} layers but no segment fields")
        data = layers[0]
        if not np.issubdtype(data.dtype, np.integer):
            raise ImageIOError(f"{p.name}: label map holds non-integer values")
        return LabelMap(data, geometry, description=p.name)

    values = [s.label_value for s in segments]
    keep = len(set(values)) == len(values) and min(values) > 0
    new_values = values if keep else list(range(1, len(segments) + 1))
    out = _merged(layers, geometry, segments, new_values, p)
    found = LabelSet(
        Label(value, name, _rgb(segment.color, value), segment.code)
        for segment, value, name in zip(segments, new_values, _names(segments), strict=True)
    )
    return LabelMap(out, geometry, description=p.name, labels=found)


def _read_named(
    path: Path,
    layers: list[npt.NDArray[Any]],
    geometry: Geometry,
    segments: list[Segment],
    labels: LabelSet,
) -> LabelMap:
    """The layers merged with each segment's voxels set to the value its name has in ``labels``."""
    if not segments:
        raise LabelError(
            f"{path.name} names no segments, so none can be matched to the labels by name"
        )
    by_name = {label.name: label.value for label in labels}
    unknown = [s.name for s in segments if s.name not in by_name]
    if unknown:
        raise LabelError(
            f"{path.name}: segment(s) {', '.join(repr(n) for n in unknown)} not in the label set "
            f"(its names: {', '.join(repr(n) for n in by_name)})"
        )
    new_values = [by_name[s.name] for s in segments]
    out = _merged(layers, geometry, segments, new_values, path)
    return LabelMap(
        out, geometry, description=path.name, labels=labels.subset(sorted(set(new_values)))
    )


def _merged(
    layers: list[npt.NDArray[Any]],
    geometry: Geometry,
    segments: list[Segment],
    new_values: list[int],
    path: Path,
) -> npt.NDArray[Any]:
    """One label map of the layers, segment ``n`` holding ``new_values[n]``."""
    out = np.zeros(geometry.shape, dtype=label_dtype(max(new_values)))
    owner: dict[int, list[Segment]] = {}
    for segment, value in zip(segments, new_values, strict=True):
        if not 0 <= segment.layer < len(layers):
            raise ImageIOError(
                f"{path.name}: segment {segment.name!r} is in layer {segment.layer}, "
                f"but the file has {len(layers)}"
            )
        owner.setdefault(value, []).append(segment)
    for layer, arr in enumerate(layers):
        out = _merge_layer(out, arr, layer, segments, new_values, owner, path)
    return out


def _names(segments: list[Segment]) -> list[str]:
    """Segment names, made unique (Slicer allows two segments of one name; a label set does not)."""
    seen: set[str] = set()
    names = []
    for segment in segments:
        name = segment.name
        if name in seen:
            name = f"{segment.name} ({segment.id})"
        while name in seen:
            name = f"{name} {segment.index}"
        seen.add(name)
        names.append(name)
    return names


def _merge_layer(
    out: npt.NDArray[Any],
    arr: npt.NDArray[Any],
    layer: int,
    segments: list[Segment],
    new_values: list[int],
    owner: Mapping[int, list[Segment]],
    path: Path,
) -> npt.NDArray[Any]:
    """``out`` with the segments of one layer added (their file values mapped to ``new_values``)."""
    if not np.issubdtype(arr.dtype, np.integer):
        raise ImageIOError(f"{path.name}: layer {layer} holds non-integer values")
    mapping = {
        s.label_value: v for s, v in zip(segments, new_values, strict=True) if s.layer == layer
    }
    present, inverse = np.unique(arr, return_inverse=True)
    stray = [int(v) for v in present if v != 0 and int(v) not in mapping]
    if stray:
        raise ImageIOError(
            f"{path.name}: layer {layer} holds values {stray[:10]} that no segment declares"
        )
    table = np.array([mapping.get(int(v), 0) for v in present], dtype=out.dtype)
    mapped = table[inverse.reshape(arr.shape)]
    both = (out != 0) & (mapped != 0)
    if both.any():
        first = tuple(int(x) for x in np.argwhere(both)[0])
        # the segment already placed there is of an earlier layer; the other is of this one
        a = next(s for s in owner[int(out[first])] if s.layer < layer)
        b = next(s for s in owner[int(mapped[first])] if s.layer == layer)
        raise LabelError(
            f"{path.name}: segments {a.name!r} (layer {a.layer}) and {b.name!r} "
            f"(layer {b.layer}) overlap (voxel {list(first)}; {int(np.count_nonzero(both))} "
            "voxels in all); a label map holds one label per voxel, so this segmentation "
            "cannot be read as one"
        )
    return np.where(mapped != 0, mapped, out)
