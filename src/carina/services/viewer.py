"""The web viewer's server side: stored series as volumes (cached), rendered planes, and the
segmentations of a series as label maps and meshes on its grid.

Stored series are loaded with :func:`carina.dicom.load_series` (slices sorted along their
normal) and kept in a least-recently-used cache bounded by bytes, so that paging through the
planes of a large series loads it once.
"""

from __future__ import annotations

import io
import json
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from sqlalchemy import func, select

from carina.archive import Archive
from carina.archive.archive import StoredInstance
from carina.archive.dicomjson import PIXEL_TAGS
from carina.archive.pixels import frame_bytes, frame_count, read_dataset
from carina.core.errors import ConfigurationError, ModelError, NotFoundError
from carina.core.labels import label_dtype
from carina.core.volume import LabelMap, Volume
from carina.db import Instance, Series, Study
from carina.dicom import InstanceRef, SeriesInfo, load_series
from carina.dicom.seg import (
    SEG_SOP_CLASSES,
    read_segmentation,
    referenced_series,
    segment_labels,
)
from carina.imaging import resample_to_geometry
from carina.models.base import SegmentationResult
from carina.models.click_guided import ClickGuidedRunner
from carina.models.installed import check_id
from carina.models.installed import models_dir as installed_models_dir
from carina.models.interactive import click_grow, grow_from_seeds
from carina.models.spec import SPEC_FILE, ModelSpec
from carina.render import (
    Plane,
    Projection,
    apply_window,
    auto_window,
    encode,
    label_meshes,
    plane_count,
    resize_to_spacing,
    view,
    window_for,
)
from carina.render.window import Window

DEFAULT_CACHE_BYTES = 2 * 1024**3
MODES: dict[str, Projection] = {
    "mip": Projection.MAX,
    "minip": Projection.MIN,
    "avg": Projection.MEAN,
}
FORMATS = ("png", "jpeg")


class ByteLRU:
    """A least-recently-used cache of values with a size, bounded by their total size.

    A value larger than the bound is returned but not kept. Loading is done once per key even
    when several threads ask at the same time.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Any, threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    @property
    def size(self) -> int:
        with self._lock:
            return sum(n for _, n in self._items.values())

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def _get(self, key: Any) -> tuple[bool, Any]:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return True, self._items[key][0]
            return False, None

    def get(self, key: Any, load: Callable[[], tuple[Any, int]]) -> Any:
        """The cached value of ``key``, or ``load()`` (value, size in bytes) kept for next time."""
        found, value = self._get(key)
        if found:
            return value
        with self._lock:
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            found, value = self._get(key)
            if found:
                return value
            value, size = load()
            with self._lock:
                self.misses += 1
                self._loading.pop(key, None)
                if size <= self.max_bytes:
                    self._items[key] = (value, size)
                    total = sum(n for _, n in self._items.values())
                    while total > self.max_bytes:
                        _, (_, dropped) = self._items.popitem(last=False)
                        total -= dropped
            return value


def _json_value(item: dict[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def series_info(archive: Archive, study: str, series: str) -> SeriesInfo:
    """What :func:`carina.dicom.load_series` needs of a stored series, from the catalog and the
    cached DICOM JSON of its first instance (no file is read: the archive validated them)."""
    instances = archive.instances(study, series)
    first = json.loads(archive.metadata(study, series, instances[0].sop_instance_uid)[0])
    number = _json_value(first, "00200011")
    return SeriesInfo(
        series_instance_uid=series,
        study_instance_uid=study,
        modality=_json_value(first, "00080060"),
        series_description=_json_value(first, "0008103E"),
        sop_class_uid=instances[0].sop_class_uid,
        patient_id=_json_value(first, "00100020"),
        n_instances=len(instances),
        sources=tuple(
            InstanceRef(str(archive.store.absolute(i.path)), None, i.sop_instance_uid)
            for i in instances
        ),
        has_pixels=any(f"{tag:08X}" in first for tag in PIXEL_TAGS),
        series_number=int(number) if number.lstrip("-").isdigit() else None,
    )


def stored_series(archive: Archive, study: str, series: str) -> Volume:
    """The volume of a stored image series (NotFoundError when the archive lacks it)."""
    return load_series(series_info(archive, study, series)).volume


def instance_count(archive: Archive, study: str, series: str) -> int:
    """How many instances the archive holds of a series (NotFoundError when none)."""
    query = (
        select(func.count(Instance.id))
        .join(Series, Instance.series_pk == Series.id)
        .join(Study, Series.study_pk == Study.id)
        .where(Study.study_instance_uid == study, Series.series_instance_uid == series)
    )
    with archive.session() as session:
        count = int(session.scalar(query) or 0)
    if count == 0:
        raise NotFoundError("no such study, series or instance")
    return count


def cached_series(cache: ByteLRU, archive: Archive, study: str, series: str) -> Volume:
    """:func:`stored_series` through ``cache`` (keyed by the series and its instance count, so
    that instances added later are seen)."""
    count = instance_count(archive, study, series)

    def load() -> tuple[Volume, int]:
        volume = stored_series(archive, study, series)
        return volume, int(volume.array.nbytes)

    volume: Volume = cache.get(("volume", study, series, count), load)
    return volume


FRAME_RECORD_HEAD = struct.Struct("<I")
FRAME_CHUNK_BYTES = 8 << 20


def series_frames(archive: Archive, study: str, series: str) -> Iterator[bytes]:
    """Every frame of a stored series, uncompressed, as WADO-RS would give them one by one.

    One record per frame, in the archive's order: the length of a JSON header (4 bytes, little
    endian), the header ``{"sop": uid, "frame": n, "length": bytes}``, then the frame's pixel
    values (little endian, as ``application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1``).
    The instances are listed before the first record (NotFoundError when none); a frame that
    cannot be decoded ends the stream early, and the client fetches what is missing frame by frame.
    """
    instances = archive.instances(study, series)

    def records() -> Iterator[bytes]:
        for instance in instances:
            ds = read_dataset(archive.read(instance))
            for number in range(1, frame_count(ds) + 1):
                data = frame_bytes(ds, number)
                head = json.dumps(
                    {"sop": instance.sop_instance_uid, "frame": number, "length": len(data)}
                ).encode()
                yield FRAME_RECORD_HEAD.pack(len(head)) + head + data

    def chunks() -> Iterator[bytes]:
        # several records per chunk: each chunk costs the server a thread hand-over and a send
        pending: list[bytes] = []
        size = 0
        for record in records():
            pending.append(record)
            size += len(record)
            if size >= FRAME_CHUNK_BYTES:
                yield b"".join(pending)
                pending, size = [], 0
        if pending:
            yield b"".join(pending)

    return chunks()


def default_window(volume: Volume) -> Window:
    """The window a viewer opens a volume with: abdomen for CT, else the 1-99th percentile."""
    if volume.modality == "CT":
        return window_for("abdomen")
    array = np.asarray(volume.array)
    step = max(1, array.size // 1_000_000)
    return auto_window(array.reshape(-1)[::step])


def volume_info(volume: Volume) -> dict[str, Any]:
    """Shape, spacing and affine of a volume in (slice k, row j, column i) order."""
    g = volume.geometry
    window = default_window(volume)
    return {
        "shape": list(reversed(g.shape)),
        "spacing": [float(s) for s in reversed(g.spacing)],
        "affine": np.asarray(g.affine)[:, [2, 1, 0, 3]].tolist(),
        "modality": volume.modality or "",
        "bytes": int(volume.array.nbytes),
        "window": [window.center, window.width],
        "planes": {p.value: plane_count(g, p) for p in Plane},
        "orientation": "LPS",
    }


@dataclass(frozen=True)
class RenderRequest:
    """Parameters of a rendered plane, checked (ConfigurationError when invalid)."""

    plane: Plane = Plane.AXIAL
    index: int | None = None
    slab_mm: float = 0.0
    mode: Projection = Projection.MEAN
    window: Window | None = None
    fmt: str = "png"
    size: int | None = None

    @classmethod
    def parse(
        cls,
        plane: str | None = None,
        index: str | None = None,
        slab: str | None = None,
        mode: str | None = None,
        window: str | None = None,
        fmt: str | None = None,
        size: str | None = None,
    ) -> RenderRequest:
        try:
            chosen_plane = Plane(plane or "axial")
        except ValueError:
            raise ConfigurationError("plane must be axial, coronal or sagittal") from None
        if (mode or "avg") not in MODES:
            raise ConfigurationError("mode must be mip, minip or avg")
        fmt = (fmt or "png").lower()
        fmt = "jpeg" if fmt == "jpg" else fmt
        if fmt not in FORMATS:
            raise ConfigurationError("format must be png or jpeg")
        try:
            at = int(index) if index is not None else None
            thickness = float(slab) if slab is not None else 0.0
            edge = int(size) if size is not None else None
            chosen_window = None
            if window is not None:
                center, width = (float(v) for v in window.split(","))
                if not (np.isfinite(center) and np.isfinite(width) and width >= 1):
                    raise ConfigurationError("window center must be finite, width at least 1")
                chosen_window = Window(center, width)
        except ValueError:
            raise ConfigurationError(
                "index and size are integers, slab a number of mm, window is center,width"
            ) from None
        if not (np.isfinite(thickness) and 0 <= thickness <= 1000):
            raise ConfigurationError("slab must be between 0 and 1000 mm")
        if edge is not None and not 16 <= edge <= 8192:
            raise ConfigurationError("size must be between 16 and 8192 pixels")
        return cls(chosen_plane, at, thickness, MODES[mode or "avg"], chosen_window, fmt, edge)


def render(volume: Volume, request: RenderRequest) -> bytes:
    """The encoded picture of a plane or slab, square pixels, radiological orientation."""
    shown = view(
        volume, request.plane, request.index, slab_mm=request.slab_mm, projection=request.mode
    )
    grey = apply_window(shown.array, request.window or default_window(volume))
    image = resize_to_spacing(grey, shown.row_spacing, shown.column_spacing, request.size)
    return encode(image, request.fmt)


# -- segmentations -------------------------------------------------------------------------------


def _header(archive: Archive, instance: StoredInstance, pixels: bool = False) -> Dataset:
    return pydicom.dcmread(io.BytesIO(archive.read(instance)), stop_before_pixels=not pixels)


def segmentations(archive: Archive, study: str, series: str) -> list[dict[str, Any]]:
    """The SEG series of ``study`` that segment the image series ``series`` (first instance of
    each SEG series), with their labels."""
    archive.instances(study, series)  # NotFoundError for an unknown series
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for instance in archive.instances(study):
        if instance.sop_class_uid not in SEG_SOP_CLASSES or instance.series_instance_uid in seen:
            continue
        ds = _header(archive, instance)
        if series not in referenced_series(ds):
            continue
        seen.add(instance.series_instance_uid)
        labels = [
            {
                "value": label.value,
                "name": label.name,
                "color": list(label.color),
                "code": (
                    {
                        "value": label.code.value,
                        "scheme": label.code.scheme,
                        "meaning": label.code.meaning,
                    }
                    if label.code
                    else None
                ),
            }
            for label in segment_labels(ds)
        ]
        out.append(
            {
                "series": instance.series_instance_uid,
                "sop_instance_uid": instance.sop_instance_uid,
                "description": str(ds.get("SeriesDescription", "") or ""),
                "labels": labels,
            }
        )
    return out


def labelmap(
    cache: ByteLRU, archive: Archive, study: str, series: str, seg_series: str
) -> LabelMap:
    """The label map of a SEG series on the grid of the image series it segments."""
    instances = archive.instances(study, seg_series)
    first = instances[0]
    if first.sop_class_uid not in SEG_SOP_CLASSES:
        raise NotFoundError(f"series {seg_series} is not a segmentation")
    if series not in referenced_series(_header(archive, first)):
        raise NotFoundError(f"segmentation {seg_series} does not segment series {series}")
    image = cached_series(cache, archive, study, series)

    def load() -> tuple[LabelMap, int]:
        seg = read_segmentation(_header(archive, first, pixels=True))
        if not seg.geometry.same_grid(image.geometry, atol=1e-3):
            resampled = resample_to_geometry(seg, image.geometry)
            assert isinstance(resampled, LabelMap)
            seg = resampled
        return seg, int(seg.array.nbytes)

    result: LabelMap = cache.get(
        ("labelmap", study, series, seg_series, first.sop_instance_uid), load
    )
    return result


def labelmap_bytes(labels: LabelMap) -> tuple[bytes, str]:
    """The label values in C order (slice k, row j, column i) and their dtype name."""
    array = np.asarray(labels.array)
    dtype = label_dtype(int(array.max(initial=0)))
    ordered = np.ascontiguousarray(array.transpose(2, 1, 0), dtype=dtype)
    return ordered.tobytes(), np.dtype(dtype).name


def kji_affine(labels: Volume) -> list[float]:
    """The 16 numbers (row-major) of the index (k, j, i) to LPS affine of a volume."""
    return [float(v) for v in np.asarray(labels.geometry.affine)[:, [2, 1, 0, 3]].reshape(-1)]


def mesh_stl(
    cache: ByteLRU, archive: Archive, study: str, series: str, seg_series: str, value: int
) -> bytes:
    """A binary STL of one label of a segmentation, in LPS millimetres (cached)."""
    labels = labelmap(cache, archive, study, series, seg_series)
    if value not in labels.present_values():
        raise NotFoundError(f"label {value} is not in segmentation {seg_series}")

    def load() -> tuple[bytes, int]:
        (mesh,) = label_meshes(labels, [value])
        data = mesh.as_trimesh().export(file_type="stl")
        assert isinstance(data, bytes)
        return data, len(data)

    stl: bytes = cache.get(("mesh", study, series, seg_series, value), load)
    return stl


# -- interactive segmentation ----------------------------------------------------------------------


@dataclass(frozen=True)
class GrownRegion:
    """A region grown from clicks, as the block of the series grid that holds it: ``offset`` and
    ``block`` in (k, j, i) order, ``block`` uint8 with 1 inside the region."""

    offset: tuple[int, int, int]
    block: npt.NDArray[np.uint8]
    voxels: int
    volume_ml: float
    seconds: dict[str, float]


class InteractiveModels:
    """The interactive models installed under ``models_dir``, each loaded at its first use and
    kept warm (reloaded when its ``model.json`` changes), one loader at a time."""

    def __init__(self, models_dir: str | Path, device: str | None = None) -> None:
        self.models_dir = Path(models_dir)
        self.device = device
        self._runners: dict[str, tuple[float, ClickGuidedRunner]] = {}
        self._lock = threading.Lock()

    @classmethod
    def in_data_dir(cls, data_dir: str | Path) -> InteractiveModels:
        """The models installed in ``data_dir``'s models folder (``carina models add``)."""
        return cls(installed_models_dir(data_dir))

    def get(self, model_id: str) -> ClickGuidedRunner:
        """The loaded runner of model ``model_id``; :class:`ModelError` when it is not installed
        or not an interactive model."""
        try:
            folder = self.models_dir / check_id(model_id)
        except ModelError:
            raise ModelError(f"no installed model {model_id!r}") from None
        spec_file = folder / SPEC_FILE
        with self._lock:
            try:
                stamp = spec_file.stat().st_mtime
            except OSError:
                self._runners.pop(model_id, None)
                raise ModelError(f"no installed model {model_id!r}") from None
            held = self._runners.get(model_id)
            if held is not None and held[0] == stamp:
                return held[1]
            spec = ModelSpec.load(folder)
            if not spec.interactive:
                raise ModelError(
                    f"model {model_id!r} is a {spec.kind} model, not an interactive model "
                    "(kind 'interactive': image and clicks in)"
                )
            runner = ClickGuidedRunner(spec, folder, device=self.device)
            runner.ensure_loaded()
            self._runners[model_id] = (stamp, runner)
            return runner


def grow_region(
    volume: Volume,
    method: str,
    points: list[list[float]],
    background: list[list[float]],
    tolerance_hu: float | None,
    model: ClickGuidedRunner | None = None,
) -> GrownRegion:
    """Run click region growing (``click``), grow-from-seeds (``seeds``) or the interactive
    ``model`` (``model``: ``points`` are its foreground clicks) on ``volume``."""
    result: SegmentationResult
    if method == "click":
        result = click_grow(volume, points, tolerance_hu=tolerance_hu)
    elif method == "seeds":
        if not background:
            raise ConfigurationError("grow-from-seeds needs background points too")
        result = grow_from_seeds(volume, points, background)
    elif method == "model":
        if model is None:
            raise ConfigurationError("method model needs an interactive model")
        result = model.run(volume, foreground=points, background=background)
    else:
        raise ConfigurationError(f"unknown method {method!r}: click, seeds or model")
    mask = np.asarray(result.labels.array) > 0  # (i, j, k)
    voxels = int(mask.sum())
    if voxels == 0:
        raise ConfigurationError("nothing grew from these points")
    found = np.nonzero(mask)
    lo = [int(a.min()) for a in found]
    hi = [int(a.max()) + 1 for a in found]
    block = mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].transpose(2, 1, 0)
    spacing = volume.geometry.spacing
    return GrownRegion(
        offset=(lo[2], lo[1], lo[0]),
        block=np.ascontiguousarray(block, dtype=np.uint8),
        voxels=voxels,
        volume_ml=voxels * float(np.prod(spacing)) / 1000.0,
        seconds=dict(result.timings),
    )
