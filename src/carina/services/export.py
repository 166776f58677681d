"""Export label maps in standard forms: DICOM SEG or RTSTRUCT on their source series, meshes,
3D Slicer segmentations."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from carina.core.errors import SeriesError, UnsupportedFormatError
from carina.core.labels import LabelSet
from carina.core.volume import LabelMap
from carina.dicom import load_series, scan
from carina.dicom.files import open_dataset
from carina.dicom.rtstruct import write_rtstruct
from carina.dicom.seg import Provenance, SegType, write_segmentation
from carina.imaging import SEG_NRRD_SUFFIX, read_labelmap, resample_to_geometry, write_image
from carina.render import label_meshes, write_mesh


def _labels(path: str | Path, names: str | Path | None) -> LabelMap:
    return read_labelmap(path, LabelSet.from_json(names) if names else None)


def _on_series(
    labels: str | Path, series: str | Path, names: str | Path | None, series_uid: str | None
) -> tuple[LabelMap, list[Dataset]]:
    """The label map on the grid of the one image series under ``series``, and its instances."""
    found = scan(series)
    candidates = [
        s
        for s in found.series
        if s.has_pixels and (series_uid is None or s.series_instance_uid.startswith(series_uid))
    ]
    if len(candidates) != 1:
        listing = ", ".join(s.series_instance_uid for s in candidates) or "none"
        raise SeriesError(
            f"{series} must hold exactly one image series (or choose one): found {listing}"
        )
    info = candidates[0]
    volume = load_series(info).volume
    label_map = _labels(labels, names)
    if not label_map.geometry.same_grid(volume.geometry, atol=1e-3):
        resampled = resample_to_geometry(label_map, volume.geometry)
        assert isinstance(resampled, LabelMap)
        label_map = resampled
    return label_map, [open_dataset(ref)[0] for ref in info.sources]


def export_seg(
    labels: str | Path,
    series: str | Path,
    output: str | Path,
    *,
    names: str | Path | None = None,
    seg_type: SegType | str = SegType.LABELMAP,
    algorithm: str | None = None,
    algorithm_version: str = "1",
    series_uid: str | None = None,
) -> Path:
    """Write the label map file ``labels`` as a DICOM SEG referencing the DICOM ``series``.

    The label map is resampled (nearest-neighbour, in patient space) onto the series grid when
    it lies on another grid, e.g. a NIfTI written in another axis order.
    """
    label_map, sources = _on_series(labels, series, names, series_uid)
    provenance = Provenance(algorithm, algorithm_version, manual=algorithm is None)
    return write_segmentation(label_map, sources, output, seg_type=seg_type, provenance=provenance)


def export_rtstruct(
    labels: str | Path,
    series: str | Path,
    output: str | Path,
    *,
    names: str | Path | None = None,
    algorithm: str | None = None,
    series_uid: str | None = None,
) -> Path:
    """Write the label map file ``labels`` as an RTSTRUCT of contours on the DICOM ``series``
    (resampled onto the series grid first when it lies on another grid)."""
    label_map, sources = _on_series(labels, series, names, series_uid)
    return write_rtstruct(label_map, sources, output, algorithm=algorithm)


def export_mesh(
    labels: str | Path,
    output: str | Path,
    *,
    names: str | Path | None = None,
    select: list[str] | None = None,
    smoothing: int = 0,
    max_faces: int | None = None,
) -> Path:
    """Write surface meshes of the labels (all present, or ``select`` by name or value)."""
    label_map = _labels(labels, names)
    values: list[int | str] | None = None
    if select:
        values = [int(v) if v.isdigit() else v for v in select]
    meshes = label_meshes(label_map, values, smoothing=smoothing, max_faces=max_faces)
    return write_mesh(meshes, output)


def export_slicer(
    labels: str | Path, output: str | Path, *, names: str | Path | None = None
) -> Path:
    """Write the label map file ``labels`` as a 3D Slicer segmentation (``.seg.nrrd``): one
    segment per label with its name, colour and code (``names`` names the values of a file that
    does not name them itself)."""
    out = Path(output)
    if not out.name.lower().endswith(SEG_NRRD_SUFFIX):
        raise UnsupportedFormatError(
            f"{out.name}: a Slicer segmentation is written to a name ending in {SEG_NRRD_SUFFIX}"
        )
    return write_image(_labels(labels, names), out)
