"""Per-label and per-connected-component statistics of an image inside a label map."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from carina.analysis.pet import peak_means
from carina.core.errors import GeometryError
from carina.core.volume import LabelMap, Volume
from carina.imaging.resample import resample_to_geometry

#: Percentiles reported for every region (numpy's linear interpolation, as pyradiomics).
PERCENTILES = (5, 10, 25, 50, 75, 90, 95)


@dataclass(frozen=True)
class RegionStats:
    """Statistics of the image inside one label, or one connected component of a label."""

    label: int
    name: str
    component: int  # 0 = the whole label, 1.. = connected components by decreasing size
    voxel_count: int
    volume_ml: float
    mean: float
    std: float  # population standard deviation
    minimum: float
    maximum: float
    median: float
    p5: float
    p10: float
    p25: float
    p75: float
    p90: float
    p95: float
    centroid_lps: tuple[float, float, float]
    units: str
    # PET on an SUV image only: SUVpeak (1 cm^3 sphere centred in the region), and the metabolic
    # volume (the region's voxels at or above ``mtv_threshold``) with its SUVmean and TLG.
    suv_peak: float | None = None
    mtv_threshold: float | None = None
    metabolic_volume_ml: float | None = None
    suv_mean: float | None = None
    total_lesion_glycolysis: float | None = None

    @property
    def interquartile_range(self) -> float:
        return self.p75 - self.p25


@dataclass(frozen=True)
class QuantResult:
    """All regions measured in one image."""

    image: str
    rows: tuple[RegionStats, ...]

    def for_label(self, label: int | str, component: int = 0) -> RegionStats:
        for row in self.rows:
            if (row.label == label or row.name == label) and row.component == component:
                return row
        raise KeyError(f"no measurement for label {label!r} component {component}")

    def to_csv(self, path: str | Path | None = None) -> str:
        """CSV with one row per region (centroid split into three columns)."""
        names = [f.name for f in fields(RegionStats) if f.name != "centroid_lps"]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["image", *names, "centroid_x_mm", "centroid_y_mm", "centroid_z_mm"])
        for row in self.rows:
            d = asdict(row)
            writer.writerow([self.image, *(d[n] for n in names), *row.centroid_lps])
        text = buffer.getvalue()
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def to_json(self) -> dict[str, Any]:
        return {"image": self.image, "regions": [asdict(r) for r in self.rows]}

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2), encoding="utf-8")


def _units(image: Volume) -> str:
    return image.metadata.get("units") or ("HU" if image.modality == "CT" else "")


@dataclass(frozen=True)
class _Pet:
    """PET measures to add: the per-voxel SUVpeak sphere means and the MTV threshold rule."""

    peaks: npt.NDArray[np.float64]  # flat
    threshold: float | None
    relative: float

    def of(
        self, values: npt.NDArray[np.float64], group: npt.NDArray[np.intp], voxel_ml: float
    ) -> dict[str, float]:
        suv_max = float(values.max())
        cut = self.threshold if self.threshold is not None else self.relative * suv_max
        metabolic = values[values >= cut]
        volume = metabolic.size * voxel_ml
        mean = float(metabolic.mean()) if metabolic.size else 0.0
        return {
            "suv_peak": float(self.peaks[group].max()),
            "mtv_threshold": float(cut),
            "metabolic_volume_ml": volume,
            "suv_mean": mean,
            "total_lesion_glycolysis": mean * volume,
        }


def _stats(
    values: npt.NDArray[np.float64],
    coords: npt.NDArray[np.float64],
    image: Volume,
    label: int,
    name: str,
    component: int,
    pet: _Pet | None = None,
    group: npt.NDArray[np.intp] | None = None,
) -> RegionStats:
    pct = np.percentile(values, PERCENTILES)
    centroid = image.geometry.index_to_world(coords.mean(axis=0))
    voxel_ml = image.geometry.voxel_volume_mm3 / 1000.0
    extra = pet.of(values, group, voxel_ml) if pet is not None and group is not None else {}
    return RegionStats(
        label=label,
        name=name,
        component=component,
        voxel_count=int(values.size),
        volume_ml=values.size * image.geometry.voxel_volume_mm3 / 1000.0,
        mean=float(values.mean()),
        std=float(values.std()),
        minimum=float(values.min()),
        maximum=float(values.max()),
        median=float(pct[3]),
        p5=float(pct[0]),
        p10=float(pct[1]),
        p25=float(pct[2]),
        p75=float(pct[4]),
        p90=float(pct[5]),
        p95=float(pct[6]),
        centroid_lps=(float(centroid[0]), float(centroid[1]), float(centroid[2])),
        units=_units(image),
        **extra,
    )


def quantify(
    image: Volume,
    labels: LabelMap,
    *,
    components: bool = False,
    min_component_voxels: int = 1,
    connectivity: int = 26,
    pet: bool = False,
    mtv_threshold: float | None = None,
    mtv_relative: float = 0.41,
) -> QuantResult:
    """Measure ``image`` inside every present label of ``labels``.

    The label map is resampled nearest-neighbour onto the image grid when the grids differ (in
    patient space, never by array index). With ``components``, each label's connected components
    (``connectivity`` 6, 18 or 26) of at least ``min_component_voxels`` are measured too.

    With ``pet`` (``image`` in SUV), every region also gets SUVpeak and its metabolic volume:
    the voxels at or above ``mtv_threshold`` (an absolute SUV) or, when that is None,
    ``mtv_relative`` x the region's SUVmax (41 % by default), with their SUVmean and TLG.
    """
    if image.channels != 1:
        raise GeometryError("quantification needs a single-channel image")
    if connectivity not in (6, 18, 26):
        raise ValueError("connectivity must be 6, 18 or 26")
    if not labels.geometry.same_grid(image.geometry, atol=1e-3):
        resampled = resample_to_geometry(labels, image.geometry)
        assert isinstance(resampled, LabelMap)
        labels = resampled
    lab = np.asarray(labels.array)
    values = np.asarray(image.array, dtype=np.float64)
    pet_rule = _Pet(peak_means(image).ravel(), mtv_threshold, mtv_relative) if pet else None
    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    nz = np.flatnonzero(lab)
    order = np.argsort(lab.ravel()[nz], kind="stable")
    flat_idx = nz[order]
    sorted_labels = lab.ravel()[flat_idx]
    bounds = np.flatnonzero(np.diff(sorted_labels)) + 1
    rows: list[RegionStats] = []
    for group in np.split(flat_idx, bounds):
        if group.size == 0:
            continue
        value = int(lab.ravel()[group[0]])
        name = labels.labels[value].name if value in labels.labels else f"label_{value}"
        coords = np.column_stack(np.unravel_index(group, lab.shape)).astype(np.float64)
        rows.append(_stats(values.ravel()[group], coords, image, value, name, 0, pet_rule, group))
        if components:
            mask = lab == value
            comp, n = ndimage.label(mask, structure=structure)
            if n == 0:
                continue
            comp_ids = comp.ravel()[group]
            sizes = np.bincount(comp_ids, minlength=n + 1)
            ranked = list(np.argsort(-sizes[1:], kind="stable") + 1)
            for rank, cid in enumerate(ranked, start=1):
                if sizes[cid] < min_component_voxels:
                    break
                sel = group[comp_ids == cid]
                c_coords = np.column_stack(np.unravel_index(sel, lab.shape)).astype(np.float64)
                rows.append(
                    _stats(values.ravel()[sel], c_coords, image, value, name, rank, pet_rule, sel)
                )
    return QuantResult(image.description or image.modality or "image", tuple(rows))
