"""Image files and resampling: the SimpleITK and nibabel bridge of Carina's core types.

NIfTI (RAS) is converted to and from LPS here, at the edge; everything above sees LPS geometry.
3D Slicer segmentations (``.seg.nrrd``) carry a label map with its names, colours and codes.
"""

from carina.imaging.formats import (
    SUPPORTED_SUFFIXES,
    check_nifti_bytes,
    from_nifti,
    is_image_file,
    read_image,
    read_labelmap,
    to_nifti,
    write_image,
)
from carina.imaging.resample import Interpolator, resample_to_geometry, resample_to_spacing
from carina.imaging.segnrrd import (
    SEG_NRRD_SUFFIX,
    check_seg_nrrd_bytes,
    read_seg_nrrd,
    read_segments,
    write_seg_nrrd,
)
from carina.imaging.sitk import from_sitk, to_sitk

__all__ = [
    "SEG_NRRD_SUFFIX",
    "SUPPORTED_SUFFIXES",
    "Interpolator",
    "check_nifti_bytes",
    "check_seg_nrrd_bytes",
    "from_nifti",
    "from_sitk",
    "is_image_file",
    "read_image",
    "read_labelmap",
    "read_seg_nrrd",
    "read_segments",
    "resample_to_geometry",
    "resample_to_spacing",
    "to_nifti",
    "to_sitk",
    "write_image",
    "write_seg_nrrd",
]
