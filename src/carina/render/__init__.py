"""Rendering: window/level, planes and slabs (MPR, MIP/MinIP), surface meshes of labels."""

from carina.render.mesh import Mesh, label_meshes, write_mesh
from carina.render.planes import Plane, Projection, Slice2D, View, plane_count, reformat, view
from carina.render.window import (
    PRESETS,
    Window,
    apply_window,
    auto_window,
    encode,
    resize_to_spacing,
    window_for,
)

__all__ = [
    "PRESETS",
    "Mesh",
    "Plane",
    "Projection",
    "Slice2D",
    "View",
    "Window",
    "apply_window",
    "auto_window",
    "encode",
    "label_meshes",
    "plane_count",
    "reformat",
    "resize_to_spacing",
    "view",
    "window_for",
    "write_mesh",
]
