"""Reading and writing NIfTI, NRRD and MetaImage files, and 3D Slicer segmentations.

NIfTI goes through nibabel so that the RAS→LPS conversion is explicit: the file's affine (sform, or
qform when no sform is set, as nibabel chooses) is multiplied by diag(-1, -1, 1, 1);
:func:`to_nifti` and :func:`from_nifti` do the same for nibabel images in memory. NRRD and
MetaImage go through SimpleITK, which already works in LPS. A name ending in ``.seg.nrrd`` is a
Slicer segmentation (:mod:`carina.imaging.segnrrd`): label maps only, with their label set.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from nibabel.filebasedimages import ImageFileError

from carina.core.errors import GeometryError, ImageIOError, UnsupportedFormatError
from carina.core.geometry import Geometry
from carina.core.labels import LabelSet
from carina.core.volume import LabelMap, Volume
from carina.imaging.segnrrd import SEG_NRRD_SUFFIX, read_seg_nrrd, write_seg_nrrd
from carina.imaging.sitk import from_sitk, to_sitk

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
#: Listed before ``.nrrd`` so that the longer ending is recognised first.
SUPPORTED_SUFFIXES = (*NIFTI_SUFFIXES, SEG_NRRD_SUFFIX, *ITK_SUFFIXES)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in SUPPORTED_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def is_image_file(path: str | Path) -> bool:
    """True when the name ends in a suffix Carina reads as an image file (not DICOM)."""
    return _suffix(Path(path)) in SUPPORTED_SUFFIXES


def _check_suffix(path: Path) -> str:
    suffix = _suffix(path)
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnsupportedFormatError(
            f"{path.name}: unsupported image format {suffix or '(no suffix)'}; "
            f"use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    return suffix


def _nifti_array(img: Any, path: Path) -> npt.NDArray[Any]:
    data = np.asanyarray(img.dataobj)
    if data.dtype.names is not None and set(data.dtype.names) >= {"R", "G", "B"}:
        data = np.stack([data["R"], data["G"], data["B"]], axis=-1)  # RGB24 NIfTI
        if data.ndim == 5 and data.shape[3] == 1:
            data = data[:, :, :, 0, :]
        return np.asarray(data)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
    if data.ndim != 3:
        raise UnsupportedFormatError(
            f"{path.name}: {data.ndim}-D NIfTI images (shape {data.shape}) are not supported; "
            "split time series or components into 3-D files"
        )
    return np.asarray(data)


def check_nifti_bytes(data: bytes, max_values: int) -> None:
    """Refuse NIfTI bytes (gzipped or not) whose header declares more than ``max_values`` voxel
    values, or that hold no NIfTI header (:class:`ImageIOError`).

    For files that arrive from elsewhere (an upload): only the header is unpacked, so a small
    gzip body that would unpack into gigabytes is refused before it is read.
    """
    head = data[:540]
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
                head = stream.read(540)
        except (OSError, EOFError, zlib.error) as exc:
            raise ImageIOError(f"not a readable NIfTI file: {exc}") from exc
    header: Any = None
    for kind in (nib.Nifti1Header, nib.Nifti2Header):
        try:
            candidate = kind.from_fileobj(io.BytesIO(head), check=False)
        except Exception:  # nibabel raises assorted errors on short or foreign headers
            continue
        if int(candidate["sizeof_hdr"]) == candidate.sizeof_hdr:
            header = candidate
            break
    if header is None:
        raise ImageIOError("not a NIfTI file (no NIfTI-1 or NIfTI-2 header)")
    shape = header.get_data_shape()
    if any(int(n) < 0 for n in shape):
        raise ImageIOError(f"the NIfTI header declares a negative size: {tuple(shape)}")
    count = math.prod(int(n) for n in shape)
    if count > max_values:
        raise ImageIOError(
            f"the NIfTI holds {count} voxel values (shape {tuple(int(n) for n in shape)}); "
            f"at most {max_values} are accepted here"
        )


def from_nifti(img: Any, name: str = "") -> Volume:
    """A :class:`Volume` (LPS geometry) from a nibabel NIfTI image in memory (RAS affine)."""
    path = Path(name or "image.nii")
    array = _nifti_array(img, path)
    try:
        geometry = Geometry.from_ras_affine(
            np.asarray(img.affine, dtype=np.float64), array.shape[:3]
        )
    except GeometryError as exc:
        raise ImageIOError(f"{path.name}: invalid geometry: {exc}") from exc
    return Volume(array, geometry, description=name)


def _read_nifti(path: Path) -> Volume:
    try:
        img = nib.load(str(path))
        volume = from_nifti(img, path.name)
    except (OSError, EOFError, ValueError, ImageFileError) as exc:
        raise ImageIOError(f"{path.name}: cannot read NIfTI: {exc}") from exc
    return volume


def to_nifti(volume: Volume) -> Any:
    """The nibabel NIfTI image (RAS affine, in memory) that :func:`write_image` writes for
    ``volume``: the array in its voxel order, the LPS affine turned to RAS in sform and qform."""
    array: npt.NDArray[Any] = np.asarray(volume.array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype == np.int64 and array.size:
        lo, hi = int(array.min()), int(array.max())
        if np.iinfo(np.int32).min <= lo and hi <= np.iinfo(np.int32).max:
            array = array.astype(np.int32)
    if array.ndim == 4:
        if array.shape[3] != 3 or array.dtype != np.uint8:
            raise UnsupportedFormatError("NIfTI writes multi-channel images as 8-bit RGB only")
        rgb = np.zeros(array.shape[:3], dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        rgb["R"], rgb["G"], rgb["B"] = array[..., 0], array[..., 1], array[..., 2]
        array = rgb
    img = nib.Nifti1Image(np.ascontiguousarray(array), volume.geometry.ras_affine)
    img.set_sform(volume.geometry.ras_affine, code=1)
    img.set_qform(volume.geometry.ras_affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    return img


def _write_nifti(volume: Volume, path: Path) -> None:
    nib.save(to_nifti(volume), str(path))


def read_image(path: str | Path) -> Volume:
    """Read a NIfTI, NRRD or MetaImage file into a :class:`Volume` with LPS geometry.

    A Slicer segmentation (``.seg.nrrd``) comes back as a :class:`LabelMap` with its label set.
    """
    p = Path(path)
    suffix = _check_suffix(p)
    if not p.is_file():
        raise ImageIOError(f"{p}: no such file")
    if suffix in NIFTI_SUFFIXES:
        return _read_nifti(p)
    if suffix == SEG_NRRD_SUFFIX:
        return read_seg_nrrd(p)
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise ImageIOError(f"{p.name}: cannot read: {str(exc).strip().splitlines()[-1]}") from exc
    if image.GetDimension() == 2:
        image = sitk.JoinSeries([image])
    if image.GetDimension() != 3:
        raise UnsupportedFormatError(f"{p.name}: {image.GetDimension()}-D images are not supported")
    try:
        volume = from_sitk(image)
    except GeometryError as exc:
        raise ImageIOError(f"{p.name}: invalid geometry: {exc}") from exc
    return Volume(volume.array, volume.geometry, description=p.name)


def read_labelmap(path: str | Path, labels: LabelSet | None = None) -> LabelMap:
    """Read a segmentation file as a :class:`LabelMap` (integer values; ``labels`` names them).

    A Slicer segmentation (``.seg.nrrd``) names its own labels; ``labels``, when given, replaces
    them.
    """
    volume = read_image(path)
    if isinstance(volume, LabelMap) and labels is None:
        return volume
    array = volume.array
    if not np.issubdtype(array.dtype, np.integer):
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise ImageIOError(f"{Path(path).name}: label map holds non-integer values")
        array = rounded.astype(np.int32)
    return LabelMap(
        array, volume.geometry, description=volume.description, labels=labels or LabelSet()
    )


def write_image(volume: Volume, path: str | Path) -> Path:
    """Write ``volume`` to NIfTI (RAS on disk), NRRD or MetaImage; the suffix picks the format.

    ``.seg.nrrd`` writes a :class:`LabelMap` as a 3D Slicer segmentation with its label names,
    colours and codes (other volumes are refused there). The file is written to a temporary name
    first and renamed, so a failure leaves no partial file.
    """
    p = Path(path)
    suffix = _check_suffix(p)
    if suffix == SEG_NRRD_SUFFIX and not isinstance(volume, LabelMap):
        raise UnsupportedFormatError(
            f"{p.name}: a Slicer segmentation (.seg.nrrd) holds a label map, not an image; "
            "read the labels with read_labelmap (or write the image as .nrrd)"
        )
    tmp = p.with_name(f".{p.name}.partial{suffix}")
    try:
        if suffix in NIFTI_SUFFIXES:
            _write_nifti(volume, tmp)
        elif isinstance(volume, LabelMap) and suffix == SEG_NRRD_SUFFIX:
            write_seg_nrrd(volume, tmp)
        else:
            sitk.WriteImage(to_sitk(volume), str(tmp), useCompression=True)
        tmp.replace(p)
    except ImageIOError:
        tmp.unlink(missing_ok=True)
        raise
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        raise ImageIOError(f"cannot write {p}: {exc}") from exc
    return p
