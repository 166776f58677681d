"""Run a segmentation tool on an image file or a DICOM series and write the result.

The output is a label-map NIfTI (or NRRD/MHA) on the input geometry, a 3D Slicer segmentation
with the tool's label names, colours and codes when the name ends in ``.seg.nrrd``, a DICOM SEG
when it ends in ``.dcm`` (only for DICOM input, which the SEG references), or an RT Structure Set
of contours when it ends in ``.rtstruct.dcm``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carina.core.errors import ModelError, SeriesError, UnsupportedFormatError
from carina.core.volume import Volume
from carina.dicom import SeriesInfo, load_series, scan
from carina.dicom.files import open_dataset
from carina.dicom.rtstruct import write_rtstruct
from carina.dicom.seg import Provenance, SegType, write_segmentation
from carina.imaging import is_image_file, read_image, write_image
from carina.models import ToolSpec, default_registry, run_tool

#: progress(stage, done, total)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SegmentOutcome:
    """What was written, by which tool, with the stage timings and per-label volumes."""

    output: Path
    tool: str
    version: str
    timings: Mapping[str, float]
    volumes_ml: Mapping[str, float]
    findings: Mapping[str, Any] = field(default_factory=dict)


def list_tools(models_dir: str | Path | None = None) -> list[ToolSpec]:
    """Specs of every registered tool and installed model (those under ``models_dir`` too)."""
    return [runner.spec for runner in default_registry(models_dir)]


def _is_seg_output(path: Path) -> bool:
    return path.name.lower().endswith(".dcm")


def _load(source: Path, series_uid: str | None) -> tuple[Volume, SeriesInfo | None]:
    if source.is_file() and is_image_file(source):
        return read_image(source), None
    found = scan(source)
    candidates = [
        s
        for s in found.series
        if s.has_pixels and (series_uid is None or s.series_instance_uid.startswith(series_uid))
    ]
    if len(candidates) != 1:
        listing = ", ".join(s.series_instance_uid or "(no UID)" for s in candidates) or "none"
        raise SeriesError(
            f"{source} must hold exactly one image series (or choose one with --series): "
            f"found {listing}"
        )
    return load_series(candidates[0]).volume, candidates[0]


def segment(
    source: str | Path,
    output: str | Path,
    tool: str,
    *,
    largest_component: bool = False,
    fill_holes: bool = False,
    min_size_ml: float = 0.0,
    series_uid: str | None = None,
    params: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    models_dir: str | Path | None = None,
) -> SegmentOutcome:
    """Segment ``source`` with ``tool`` and write ``output`` (see the module docstring)."""
    src = Path(source)
    out = Path(output)
    runner = default_registry(models_dir).get(tool)
    to_seg = _is_seg_output(out)
    if not to_seg and not is_image_file(out):
        raise UnsupportedFormatError(
            f"{out}: the output must be a label-map image (.nii.gz, .nii, .nrrd, .mha), "
            "a Slicer segmentation (.seg.nrrd) or a DICOM SEG (.dcm)"
        )
    if to_seg and src.is_file() and is_image_file(src):
        raise ModelError(
            f"a DICOM SEG references the DICOM images it segments; {src.name} is not DICOM. "
            "Write a label-map image (.nii.gz) instead, or segment the DICOM series"
        )
    if progress:
        progress("load", 0, 1)
    volume, info = _load(src, series_uid)
    if progress:
        progress("load", 1, 1)
        progress("segment", 0, 1)
    run = run_tool(
        tool,
        volume,
        params,
        largest_component=largest_component,
        fill_holes=fill_holes,
        min_size_ml=min_size_ml,
        models_dir=models_dir,
    )
    labels = run.labels
    if progress:
        progress("segment", 1, 1)
        progress("write", 0, 1)
    if to_seg:
        assert info is not None
        sources = [open_dataset(ref)[0] for ref in info.sources]
        if not labels.present_values():
            raise ModelError(f"tool {tool!r} found nothing in {src}; no SEG written")
        if out.name.lower().endswith(".rtstruct.dcm"):
            written = write_rtstruct(
                labels,
                sources,
                out,
                algorithm=runner.spec.id,
                series_description=f"Carina {runner.spec.id}",
            )
        else:
            written = write_segmentation(
                labels,
                sources,
                out,
                seg_type=SegType.LABELMAP,
                provenance=Provenance(runner.spec.id, runner.spec.version),
                series_description=f"Carina {runner.spec.id}",
            )
    else:
        written = write_image(labels, out)
    if progress:
        progress("write", 1, 1)
    return SegmentOutcome(
        written, runner.spec.id, runner.spec.version, run.timings, run.volumes_ml, run.findings
    )
