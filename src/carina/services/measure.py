"""Quantify an image inside a segmentation, from files or DICOM."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from carina.analysis import QuantResult, quantify
from carina.core.labels import LabelSet
from carina.core.volume import Volume
from carina.dicom.pet import SuvError
from carina.imaging import read_labelmap
from carina.services.images import Progress, load_image

SUV_UNITS = "SUVbw"


def _to_suv(volume: Volume, *, required: bool) -> Volume:
    factor = volume.metadata.get("suv_factor")
    if factor is None:
        if required:
            reason = volume.metadata.get("suv_unavailable", "the PET header was not read")
            raise SuvError(f"no SUV for this series: {reason}")
        return volume
    metadata = {**volume.metadata, "units": SUV_UNITS}
    suv = np.asarray(volume.array, dtype=np.float64) * float(factor)
    return replace(volume, array=suv, metadata=metadata)


def quantify_files(
    image: str | Path,
    labels: str | Path,
    *,
    label_names: str | Path | None = None,
    components: bool = False,
    min_component_voxels: int = 1,
    series_uid: str | None = None,
    progress: Progress | None = None,
    suv: bool | None = None,
    mtv_threshold: float | None = None,
    mtv_relative: float = 0.41,
) -> QuantResult:
    """Measure the image at ``image`` (file or DICOM) inside the label map file ``labels``.

    ``label_names`` is a JSON label set (``{"1": "spleen", ...}`` or a list of label objects).
    A DICOM PET series is converted to body-weight SUV (decay-corrected, from its header) and
    measured with SUVpeak, metabolic volume and TLG; ``suv`` None does so when the header
    allows it, True requires it (raising :class:`SuvError` with the reason), False keeps Bq/mL.
    """
    volume = load_image(image, series_uid=series_uid, progress=progress)
    if suv is not False and volume.modality == "PT":
        volume = _to_suv(volume, required=suv is True)
    elif suv:
        raise SuvError(f"SUV needs a DICOM PET series; {image} is {volume.modality or 'no PET'}")
    names = LabelSet.from_json(label_names) if label_names else None
    label_map = read_labelmap(labels, names)
    result = quantify(
        volume,
        label_map,
        components=components,
        min_component_voxels=min_component_voxels,
        pet=volume.metadata.get("units") == SUV_UNITS,
        mtv_threshold=mtv_threshold,
        mtv_relative=mtv_relative,
    )
    return QuantResult(str(image), result.rows)
