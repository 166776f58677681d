"""Standard views: the same anatomy shows the same way whatever the storage order of the volume,
and the resampled path (oblique volumes) agrees with the direct one."""

from __future__ import annotations

import numpy as np
import pytest

from carina.core import Volume
from carina.core.errors import GeometryError
from carina.core.geometry import Geometry
from carina.render import plane_count, resize_to_spacing, view


def _phantom() -> Volume:
    """A smooth blob plus markers on an (i, j, k) = (L, P, S) grid of 2 x 2 x 3 mm voxels."""
    i, j, k = np.meshgrid(np.arange(24), np.arange(20), np.arange(16), indexing="ij")
    array = 100 * np.exp(-((i - 12) ** 2 + (j - 10) ** 2 + (k - 8) ** 2) / 40.0)
    array[18:22, 2:5, 6:10] = 400.0  # patient left, anterior
    array[2:5, 14:18, 12:15] = 250.0  # patient right, posterior, superior
    g = Geometry.from_components(shape=(24, 20, 16), spacing=(2.0, 2.0, 3.0), origin=(5, -7, 11))
    return Volume(array.astype(np.float32), g)


def _stored_otherwise(volume: Volume) -> Volume:
    """The same voxels in patient space, stored (S, -L, -P) along the array axes."""
    array = np.asarray(volume.array).transpose(2, 0, 1)[:, ::-1, ::-1]
    a = np.asarray(volume.geometry.affine)
    n = np.array(volume.geometry.shape)
    affine = np.eye(4)
    affine[:3, 0] = a[:3, 2]
    affine[:3, 1] = -a[:3, 0]
    affine[:3, 2] = -a[:3, 1]
    affine[:3, 3] = a[:3, 3] + a[:3, 0] * (n[0] - 1) + a[:3, 1] * (n[1] - 1)
    return Volume(np.ascontiguousarray(array), Geometry(affine, array.shape))


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_storage_order_does_not_change_the_view(plane: str) -> None:
    volume = _phantom()
    other = _stored_otherwise(volume)
    assert plane_count(volume.geometry, plane) == plane_count(other.geometry, plane)
    for index in (0, 5, plane_count(volume.geometry, plane) - 1):
        a = view(volume, plane, index, slab_mm=7, projection="max")
        b = view(other, plane, index, slab_mm=7, projection="max")
        assert np.array_equal(a.array, b.array)
        assert (a.row_spacing, a.column_spacing) == (b.row_spacing, b.column_spacing)


def test_orientation_and_index_direction() -> None:
    volume = _phantom()
    axial = view(volume, "axial", 8)  # k = 8: through both the blob and the left marker
    assert axial.array.shape == (20, 24)  # rows posterior (j), columns to the left (i)
    rows, cols = np.nonzero(axial.array == 400)
    assert cols.min() == 18  # patient left on the image right
    assert rows.max() == 4  # anterior up
    top = view(volume, "axial", 13)
    assert (top.array == 250).any()  # index counts towards superior
    sagittal = view(volume, "sagittal", 3)  # i = 3: the right-hand marker
    rows, cols = np.nonzero(sagittal.array == 250)
    assert sagittal.array.shape == (16, 20)
    assert rows.max() == 15 - 12  # superior up
    assert cols.min() == 14  # posterior on the image right
    coronal = view(volume, "coronal", 3)  # j = 3
    rows, cols = np.nonzero(coronal.array == 400)
    assert cols.min() == 18
    assert (coronal.row_spacing, coronal.column_spacing) == (3.0, 2.0)
    squared = resize_to_spacing(coronal.array.astype(np.uint8), 3.0, 2.0)
    assert squared.shape == (24, 24)  # 16 slices x 3 mm at 2 mm per pixel
    with pytest.raises(GeometryError):
        view(volume, "axial", 16)


def test_oblique_volumes_are_resampled_the_same_way() -> None:
    i, j, k = np.meshgrid(np.arange(24), np.arange(20), np.arange(16), indexing="ij")
    blob = 100 * np.exp(-((i - 15) ** 2 + (j - 6) ** 2 + (k - 8) ** 2) / 20.0)
    geometry = Geometry.from_components(shape=(24, 20, 16), spacing=(2.0, 2.0, 3.0))
    volume = Volume(blob.astype(np.float32), geometry)
    angle = 0.03  # radians about the z axis: not aligned, the resampled path is taken
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.array(geometry.affine)
    centre = geometry.corners().mean(axis=0)
    affine[:3, :3] = rot @ affine[:3, :3]
    affine[:3, 3] = centre + rot @ (affine[:3, 3] - centre)
    tilted = Volume(volume.array, Geometry(affine, geometry.shape))
    straight = view(volume, "axial", 8)
    turned = view(tilted, "axial", 8)
    assert turned.row_spacing == turned.column_spacing == 2.0
    assert turned.index == 8

    def peak_from_centre(a: np.ndarray) -> np.ndarray:
        """Where the blob's maximum is, in mm from the image centre (both views are centred)."""
        at = np.array(np.unravel_index(np.argmax(a), a.shape), dtype=float)
        return (at - (np.array(a.shape) - 1) / 2) * 2.0

    # the blob sits right of centre and anterior; turned by 0.03 rad about the volume centre
    expected = rot[:2, :2] @ (np.array([15 * 2.0, 6 * 2.0]) - centre[:2])
    assert peak_from_centre(straight.array)[::-1] == pytest.approx(
        np.array([15 * 2.0, 6 * 2.0]) - centre[:2]
    )
    assert np.abs(peak_from_centre(turned.array)[::-1] - expected).max() <= 2.0
    assert turned.array.max() == pytest.approx(100, abs=15)
