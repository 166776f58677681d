"""The HTTP API: a FastAPI application with DICOMweb under ``/dicom-web``."""

from carina.api.app import create_app

__all__ = ["create_app"]
