"""Rendering: window/level, planes and slabs (MPR, MIP/MinIP), surface meshes of labels."""

from carina.render.mesh import Mesh, label_meshes, write_mesh
from carina.render.planes import Plane, Projection, Slice2D, reformat
from carina.render.window import PRESETS, Window, apply_window, auto_window, encode, window_for

__all__ = [
    "PRESETS",
    "Mesh",
    "Plane",
    "Projection",
    "Slice2D",
    "Window",
    "apply_window",
    "auto_window",
    "encode",
    "label_meshes",
    "reformat",
    "window_for",
    "write_mesh",
]
