"""Rendering: surface meshes of labels (and, later, windowing, MPR, MIP/MinIP, thumbnails)."""

from carina.render.mesh import Mesh, label_meshes, write_mesh

__all__ = ["Mesh", "label_meshes", "write_mesh"]
