"""Quantify an image inside a segmentation, from files or DICOM."""

from __future__ import annotations

from pathlib import Path

from carina.analysis import QuantResult, quantify
from carina.core.labels import LabelSet
from carina.imaging import read_labelmap
from carina.services.images import Progress, load_image


def quantify_files(
    image: str | Path,
    labels: str | Path,
    *,
    label_names: str | Path | None = None,
    components: bool = False,
    min_component_voxels: int = 1,
    series_uid: str | None = None,
    progress: Progress | None = None,
) -> QuantResult:
    """Measure the image at ``image`` (file or DICOM) inside the label map file ``labels``.

    ``label_names`` is a JSON label set (``{"1": "spleen", ...}`` or a list of label objects).
    """
    volume = load_image(image, series_uid=series_uid, progress=progress)
    names = LabelSet.from_json(label_names) if label_names else None
    label_map = read_labelmap(labels, names)
    result = quantify(
        volume, label_map, components=components, min_component_voxels=min_component_voxels
    )
    return QuantResult(str(image), result.rows)
