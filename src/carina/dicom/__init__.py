"""DICOM input: finding series in folders and ZIP files, decoding pixels, assembling volumes.

Depends on :mod:`carina.core`, pydicom and numpy only.
"""

from carina.dicom.files import InstanceRef, Rejected, ScanResult, SeriesInfo, scan
from carina.dicom.pixels import read_pixels
from carina.dicom.series import LoadedSeries, load_series, read_volume

__all__ = [
    "InstanceRef",
    "LoadedSeries",
    "Rejected",
    "ScanResult",
    "SeriesInfo",
    "load_series",
    "read_pixels",
    "read_volume",
    "scan",
]
