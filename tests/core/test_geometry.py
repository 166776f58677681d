"""Geometry: validation, coordinate transforms, derived grids (property tests)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carina.core import Geometry, GeometryError
from carina.core.geometry import parse_orientation

ORIENTATIONS = [a + b + c for a in "LR" for b in "PA" for c in "SI"] + ["PLS", "SAL", "IRA", "ASL"]


@st.composite
def geometries(draw: st.DrawFn) -> Geometry:
    shape = draw(st.tuples(*[st.integers(1, 40)] * 3))
    spacing = draw(st.tuples(*[st.floats(0.05, 10.0)] * 3))
    origin = draw(st.tuples(*[st.floats(-1000, 1000)] * 3))
    seed = draw(st.integers(0, 2**32 - 1))
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return Geometry.from_components(shape=shape, spacing=spacing, origin=origin, direction=q)


@given(geometries(), st.integers(0, 2**32 - 1))
def test_index_world_index_is_identity(geometry: Geometry, seed: int) -> None:
    idx = np.random.default_rng(seed).uniform(-5, 50, size=(16, 3))
    back = geometry.world_to_index(geometry.index_to_world(idx))
    np.testing.assert_allclose(back, idx, atol=1e-6)


@given(geometries(), st.sampled_from(ORIENTATIONS))
def test_reorientation_preserves_world_positions(geometry: Geometry, code: str) -> None:
    new = geometry.reoriented(code)
    assert new.orientation == code
    np.testing.assert_allclose(
        np.sort(new.corners(), axis=0), np.sort(geometry.corners(), axis=0), atol=1e-9
    )
    assert sorted(new.spacing) == pytest.approx(sorted(geometry.spacing))
    assert new.voxel_volume_mm3 == pytest.approx(geometry.voxel_volume_mm3)


def test_spacing_origin_direction_and_orientation() -> None:
    g = Geometry.from_components(
        shape=(512, 512, 20), spacing=(0.8, 0.8, 2.5), origin=(-200, -180, -700)
    )
    assert g.spacing == pytest.approx((0.8, 0.8, 2.5))
    assert g.origin == pytest.approx((-200, -180, -700))
    assert g.orientation == "LPS"
    assert g.ras_affine[0, 0] == pytest.approx(-0.8)
    assert g.index_to_world([1, 2, 3]) == pytest.approx([-199.2, -178.4, -692.5])
    assert g.voxel_volume_mm3 == pytest.approx(1.6)
    assert not g.is_oblique


@pytest.mark.parametrize(
    ("affine", "message"),
    [
        (np.diag([1.0, 1.0, 0.0, 1.0]), "spacing must be positive"),
        (np.array([[1, 0.3, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), "orthonormal"),
        (np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1.0]]), "last row"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.eye(3), "4x4"),
    ],
)
def test_invalid_affines_are_refused(affine: np.ndarray, message: str) -> None:
    with pytest.raises(GeometryError, match=message):
        Geometry(affine, (2, 2, 2))


def test_invalid_shape_and_orientation_codes() -> None:
    with pytest.raises(GeometryError, match="three positive integers"):
        Geometry(np.eye(4), (2, 0, 2))
    with pytest.raises(GeometryError, match="names one anatomical axis twice"):
        parse_orientation("LRS")
    with pytest.raises(GeometryError, match="three of"):
        parse_orientation("XYZ")


def test_affine_is_read_only() -> None:
    g = Geometry(np.eye(4), (2, 2, 2))
    with pytest.raises(ValueError, match="read-only"):
        g.affine[0, 0] = 5.0


def test_crop_and_spacing_change() -> None:
    g = Geometry.from_components(shape=(10, 20, 30), spacing=(1, 2, 3), origin=(5, 6, 7))
    c = g.cropped((2, 4, 6), (5, 10, 30))
    assert c.shape == (3, 6, 24)
    np.testing.assert_allclose(c.index_to_world([0, 0, 0]), g.index_to_world([2, 4, 6]))
    with pytest.raises(GeometryError, match="outside"):
        g.cropped((0, 0, 0), (11, 1, 1))
    s = g.with_spacing((2, 2, 2))
    assert s.shape == (5, 20, 45)
    assert s.origin == g.origin


@settings(max_examples=50)
@given(geometries())
def test_ras_round_trip(geometry: Geometry) -> None:
    back = Geometry.from_ras_affine(geometry.ras_affine, geometry.shape)
    assert back.same_grid(geometry, atol=1e-9)
