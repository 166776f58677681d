"""Export label maps in standard forms: DICOM SEG on their source series, surface meshes."""

from __future__ import annotations

from pathlib import Path

from carina.core.errors import SeriesError
from carina.core.labels import LabelSet
from carina.core.volume import LabelMap
from carina.dicom import load_series, scan
from carina.dicom.files import open_dataset
from carina.dicom.seg import Provenance, SegType, write_segmentation
from carina.imaging import read_labelmap, resample_to_geometry
from carina.render import label_meshes, write_mesh


def _labels(path: str | Path, names: str | Path | None) -> LabelMap:
    return read_labelmap(path, LabelSet.from_json(names) if names else None)


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
    sources = [open_dataset(ref)[0] for ref in info.sources]
    provenance = Provenance(algorithm, algorithm_version, manual=algorithm is None)
    return write_segmentation(label_map, sources, output, seg_type=seg_type, provenance=provenance)


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
