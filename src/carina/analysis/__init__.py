"""Measurements on volumes and label maps: quantification, shape, classical segmentation."""

from carina.analysis.quantify import QuantResult, RegionStats, quantify
from carina.analysis.shape import ShapeStats, shape_stats

__all__ = ["QuantResult", "RegionStats", "ShapeStats", "quantify", "shape_stats"]
