"""Carina's core image model: typed geometry, volumes, label maps and the exception tree.

This layer depends on numpy only.
"""

from carina.core.errors import CarinaError, GeometryError, LabelError
from carina.core.geometry import Geometry
from carina.core.labels import Label, LabelSet
from carina.core.volume import LabelMap, Volume

__all__ = [
    "CarinaError",
    "Geometry",
    "GeometryError",
    "Label",
    "LabelError",
    "LabelMap",
    "LabelSet",
    "Volume",
]
