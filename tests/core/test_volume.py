"""Volumes, label maps and label sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from carina.core import Geometry, Label, LabelError, LabelMap, LabelSet, Volume
from carina.core.errors import GeometryError


def _geometry(shape: tuple[int, int, int] = (4, 5, 6)) -> Geometry:
    return Geometry.from_components(shape=shape, spacing=(1, 2, 3), origin=(10, 20, 30))


def test_volume_is_immutable_and_operations_return_new_volumes() -> None:
    data = np.arange(120, dtype=np.int16).reshape(4, 5, 6)
    v = Volume(data, _geometry(), modality="CT")
    with pytest.raises(ValueError, match="read-only"):
        v.array[0, 0, 0] = 1
    data[0, 0, 0] = 99  # the caller's array stays writable
    c = v.crop((1, 1, 1), (3, 4, 5))
    assert c.shape == (2, 3, 4)
    assert c.array[0, 0, 0] == v.array[1, 1, 1]
    np.testing.assert_allclose(
        c.geometry.index_to_world([0, 0, 0]), v.geometry.index_to_world([1, 1, 1])
    )
    assert c.modality == "CT"


def test_reorient_keeps_each_voxel_at_its_world_position() -> None:
    rng = np.random.default_rng(0)
    v = Volume(rng.integers(0, 1000, size=(4, 5, 6)), _geometry())
    for code in ("RAS", "SAL", "IRP"):
        r = v.reorient(code)
        assert r.geometry.orientation == code
        for idx in [(0, 0, 0), (1, 2, 3), (3, 1, 5)]:
            world = v.geometry.index_to_world(idx)
            new_idx = np.rint(r.geometry.world_to_index(world)).astype(int)
            assert r.array[tuple(new_idx)] == v.array[idx]
        back = r.reorient("LPS")
        np.testing.assert_array_equal(back.array, v.array)
        assert back.geometry.same_grid(v.geometry)


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(GeometryError, match="does not match"):
        Volume(np.zeros((4, 5)), _geometry())


def test_labelmap_validates_values_and_dtype() -> None:
    labels = LabelSet([Label(1, "liver"), Label(2, "spleen")])
    arr = np.zeros((4, 5, 6), dtype=np.uint8)
    arr[1, 1, 1] = 1
    arr[2, 2, 2:4] = 2
    lm = LabelMap(arr, _geometry(), labels=labels)
    assert lm.present_values() == [1, 2]
    assert lm.voxel_counts() == {1: 1, 2: 2}
    assert lm.volumes_ml()[2] == pytest.approx(2 * 6 / 1000)
    assert lm.mask("spleen").sum() == 2
    arr[0, 0, 0] = 7
    with pytest.raises(LabelError, match="not in its label set: 7"):
        LabelMap(arr, _geometry(), labels=labels)
    with pytest.raises(LabelError, match="integers"):
        LabelMap(arr.astype(np.float32), _geometry(), labels=labels)
    unnamed = LabelMap(arr, _geometry())
    assert [lab.name for lab in unnamed.labels] == ["label_1", "label_2", "label_7"]


def test_label_set_rules(shared_data: Path) -> None:
    with pytest.raises(LabelError, match="appears twice"):
        LabelSet([Label(1, "a"), Label(1, "b")])
    with pytest.raises(LabelError, match="start at 1"):
        Label(0, "background")
    total = LabelSet.from_json(shared_data / "totalsegmentator_ref" / "label_map_total.json")
    assert len(total) == 117
    assert total[5].name == "liver"
    assert total.by_name("spleen").value == 1
    assert LabelSet.from_names({lab["value"]: lab["name"] for lab in total.to_list()}) == total
