"""Inspect and convert images: DICOM folders, files and ZIPs, NIfTI, NRRD, MetaImage."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from carina.core.errors import CarinaError, ImageIOError, SeriesError, UnsupportedFormatError
from carina.core.volume import Volume
from carina.dicom import Rejected, SeriesInfo, load_series, scan
from carina.imaging import SUPPORTED_SUFFIXES, is_image_file, read_image, write_image

#: progress(stage, done, total)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SeriesReport:
    """What ``carina info`` shows of one series or image file."""

    source: str
    series_instance_uid: str | None = None
    modality: str | None = None
    description: str = ""
    n_instances: int = 0
    shape: tuple[int, ...] | None = None
    spacing: tuple[float, float, float] | None = None
    origin: tuple[float, float, float] | None = None
    orientation: str | None = None
    dtype: str | None = None
    value_range: tuple[float, float] | None = None
    problems: tuple[str, ...] = ()
    error: str | None = None

    @property
    def loaded(self) -> bool:
        return self.error is None and self.shape is not None


@dataclass(frozen=True)
class InspectResult:
    series: list[SeriesReport] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def _report(
    source: str,
    *,
    volume: Volume | None = None,
    info: SeriesInfo | None = None,
    problems: tuple[str, ...] = (),
    error: str | None = None,
) -> SeriesReport:
    g = volume.geometry if volume is not None else None
    return SeriesReport(
        source=source,
        series_instance_uid=info.series_instance_uid if info else None,
        modality=(volume.modality if volume is not None else None)
        or (info.modality if info else None),
        description=(info.series_description or "") if info else "",
        n_instances=info.n_instances if info else 0,
        shape=tuple(volume.array.shape) if volume is not None else None,
        spacing=g.spacing if g else None,
        origin=g.origin if g else None,
        orientation=g.orientation if g else None,
        dtype=str(volume.array.dtype) if volume is not None else None,
        value_range=volume.value_range() if volume is not None else None,
        problems=problems,
        error=error,
    )


def _series_label(info: SeriesInfo) -> str:
    return f"{info.modality or '?'} {info.series_description or ''}".strip()


def inspect(path: str | Path, progress: Progress | None = None) -> InspectResult:
    """Describe every series (or the image file) found at ``path``; problems are reported."""
    p = Path(path)
    if not p.exists():
        raise ImageIOError(f"{p}: no such file or folder")
    if p.is_file() and is_image_file(p):
        return InspectResult([_report(str(p), volume=read_image(p))])
    found = scan(p, progress=(lambda d, t: progress("scan", d, t)) if progress else None)
    reports: list[SeriesReport] = []
    for n, info in enumerate(found.series, start=1):
        if not info.has_pixels:
            reports.append(_report(str(p), info=info, error="no image pixels (non-image object)"))
        else:
            try:
                loaded = load_series(info)
            except CarinaError as exc:
                reports.append(_report(str(p), info=info, error=str(exc)))
            else:
                problems = tuple(loaded.problems)
                reports.append(_report(str(p), volume=loaded.volume, info=info, problems=problems))
        if progress:
            progress("load", n, len(found.series))
    return InspectResult(reports, list(found.rejected))


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "series"


def _output_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in SUPPORTED_SUFFIXES if name.endswith(s)), None)


def load_image(
    source: str | Path,
    *,
    series_uid: str | None = None,
    resample_irregular: bool = False,
    progress: Progress | None = None,
) -> Volume:
    """One volume from an image file, or from the single (or chosen) image series of DICOM."""
    src = Path(source)
    if not src.exists():
        raise ImageIOError(f"{src}: no such file or folder")
    if src.is_file() and is_image_file(src):
        return read_image(src)
    found = scan(src, progress=(lambda d, t: progress("scan", d, t)) if progress else None)
    candidates = _select_series(src, found.series, found.rejected, series_uid)
    if len(candidates) > 1:
        listing = ", ".join(f"{s.series_instance_uid} ({_series_label(s)})" for s in candidates)
        raise SeriesError(
            f"{src} holds {len(candidates)} image series; choose one with --series: {listing}"
        )
    return load_series(candidates[0], resample_irregular=resample_irregular).volume


def _select_series(
    src: Path, series: list[SeriesInfo], rejected: list[Rejected], series_uid: str | None
) -> list[SeriesInfo]:
    candidates = [s for s in series if s.has_pixels]
    if series_uid:
        candidates = [s for s in candidates if s.series_instance_uid.startswith(series_uid)]
    if not candidates:
        reasons = "; ".join(f"{r.source}: {r.reason}" for r in rejected[:5])
        raise SeriesError(
            f"no image series found in {src}" + (f" (rejected: {reasons})" if reasons else "")
        )
    return candidates


@dataclass(frozen=True)
class ConvertResult:
    """Files written, and series of the source that could not be converted (with the reason)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def convert(
    source: str | Path,
    output: str | Path,
    *,
    series_uid: str | None = None,
    resample_irregular: bool = False,
    fmt: str = ".nii.gz",
    progress: Progress | None = None,
) -> ConvertResult:
    """Convert ``source`` to NIfTI/NRRD/MHA.

    ``output`` is a file (its suffix picks the format; the source must then hold one image series
    or ``series_uid`` must choose one, and any failure is raised) or a folder (one file per image
    series, format ``fmt``; series that cannot be loaded are skipped and reported).
    """
    src, out = Path(source), Path(output)
    if not src.exists():
        raise ImageIOError(f"{src}: no such file or folder")
    if fmt not in SUPPORTED_SUFFIXES:
        raise ImageIOError(f"unknown output format {fmt!r}; use one of {SUPPORTED_SUFFIXES}")
    to_folder = _output_suffix(out) is None
    if to_folder and out.suffix and not out.is_dir():
        raise UnsupportedFormatError(
            f"{out.name}: unsupported output format {out.suffix}; use a file ending in "
            f"{', '.join(SUPPORTED_SUFFIXES)} or a folder"
        )
    if src.is_file() and is_image_file(src):
        volume = read_image(src)
        if to_folder:
            out.mkdir(parents=True, exist_ok=True)
        target = out / (_safe_name(src.name.split(".")[0]) + fmt) if to_folder else out
        return ConvertResult([write_image(volume, target)])

    found = scan(src, progress=(lambda d, t: progress("scan", d, t)) if progress else None)
    candidates = _select_series(src, list(found.series), list(found.rejected), series_uid)
    if not to_folder:
        if len(candidates) > 1:
            listing = ", ".join(f"{s.series_instance_uid} ({_series_label(s)})" for s in candidates)
            raise SeriesError(
                f"{src} holds {len(candidates)} image series; choose one with --series "
                f"or give an output folder: {listing}"
            )
        volume = load_series(candidates[0], resample_irregular=resample_irregular).volume
        return ConvertResult([write_image(volume, out)])
    out.mkdir(parents=True, exist_ok=True)
    result = ConvertResult()
    for n, info in enumerate(candidates, start=1):
        try:
            volume = load_series(info, resample_irregular=resample_irregular).volume
        except CarinaError as exc:
            result.skipped.append((info.series_instance_uid, str(exc)))
        else:
            name = _safe_name(f"{n:03d}_{_series_label(info)}_{info.series_instance_uid[-8:]}")
            result.written.append(write_image(volume, out / (name + fmt)))
        if progress:
            progress("convert", n, len(candidates))
    if not result.written:
        reasons = "; ".join(f"{uid}: {why}" for uid, why in result.skipped[:5])
        raise SeriesError(f"no series of {src} could be converted: {reasons}")
    return result
