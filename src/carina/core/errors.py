"""The one exception tree of Carina.

Every error that Carina raises on purpose derives from :class:`CarinaError`. Layers raise the most
specific subclass; only the API layer maps them to HTTP status codes.
"""

from __future__ import annotations


class CarinaError(Exception):
    """Base class of every error Carina raises on purpose."""


class ConfigurationError(CarinaError):
    """A setting is missing, malformed or unsafe."""


class DependencyMissingError(CarinaError):
    """An optional dependency needed by a feature is not installed."""

    def __init__(self, package: str, feature: str, extra: str | None = None) -> None:
        hint = f"pip install 'carina[{extra}]'" if extra else f"pip install {package}"
        super().__init__(
            f"{feature} needs the package {package!r}, which is not installed ({hint})"
        )
        self.package = package
        self.feature = feature


class GeometryError(CarinaError):
    """An affine, shape or spacing is invalid, or two geometries do not fit together."""


class LabelError(CarinaError):
    """A label map or label set is inconsistent."""


class ImageIOError(CarinaError):
    """An image file could not be read or written."""


class UnsupportedFormatError(ImageIOError):
    """The file format or extension is not one Carina reads or writes."""


class DicomError(ImageIOError):
    """A DICOM object is unreadable or does not describe a usable image."""


class NotDicomError(DicomError):
    """The file is not a DICOM object."""


class DicomDecodeError(DicomError):
    """The pixel data of a DICOM object could not be decoded."""


class NoPixelDataError(DicomError):
    """The DICOM object carries no image pixels (e.g. SR, RT plan, presentation state)."""


class UnsupportedDicomError(DicomError):
    """A valid DICOM object of a kind that is not read as an image volume (e.g. SEG, tiled WSI)."""


class SeriesError(DicomError):
    """The instances of a series do not form one consistent volume."""


class GantryTiltError(SeriesError):
    """The slices are sheared (gantry tilt) and resampling was not requested."""


class IrregularSpacingError(SeriesError):
    """Slices are unevenly spaced (including missing slices) and resampling was not requested."""


class DeidentificationError(CarinaError):
    """De-identification could not be applied safely."""


class MappingError(DeidentificationError):
    """The pseudonym mapping cannot be read (wrong secret, damaged file) or is inconsistent."""


class PixelCleaningError(DeidentificationError):
    """Burned-in text could not be detected or masked (OCR missing, undecodable pixels)."""


class PermissionDeniedError(CarinaError):
    """The caller is not allowed to do this."""


class NotFoundError(CarinaError):
    """The requested object does not exist (or is not visible to the caller)."""


class ModelError(CarinaError):
    """A model could not be loaded or run."""


class JobError(CarinaError):
    """A job could not be submitted, run or controlled."""


class StorageError(CarinaError):
    """The archive could not write or read its files or its catalog."""


class InstanceRejected(CarinaError):  # noqa: N818 - reads as the outcome it reports
    """A DICOM instance was refused at ingest (unreadable, or missing what the archive needs)."""

    def __init__(self, reason: str, sop_instance_uid: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sop_instance_uid = sop_instance_uid


class ConflictError(CarinaError):
    """The object already exists with different content."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
