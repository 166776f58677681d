"""Carina: a self-hosted research platform for AI in medical imaging."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("carina")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
