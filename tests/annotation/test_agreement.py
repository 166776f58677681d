"""Agreement figures and consensus: hand-computable cases, then two real segmentations of one CT."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from carina.annotation import agreement
from carina.imaging import read_labelmap


def test_dice_by_hand() -> None:
    a = np.zeros((4, 4, 1), dtype=bool)
    b = np.zeros_like(a)
    a[0, 0:4, 0] = True  # 4 voxels
    b[0, 2:4, 0] = True  # 2 voxels, both inside a
    assert agreement.dice(a, b) == pytest.approx(2 * 2 / (4 + 2))
    assert agreement.dice(a, a) == 1.0
    assert agreement.dice(a, np.zeros_like(a)) == 0.0
    assert agreement.dice(np.zeros_like(a), np.zeros_like(a)) is None


def test_hausdorff95_by_hand() -> None:
    # two single voxels three slices apart at 2 mm per slice: 6 mm both ways
    a = np.zeros((1, 1, 5), dtype=bool)
    b = np.zeros_like(a)
    a[0, 0, 0] = True
    b[0, 0, 3] = True
    assert agreement.hausdorff95(a, b, (1.0, 1.0, 2.0)) == pytest.approx(6.0)
    # 20 common voxels and one outlier 20 voxels away: the maximum is 20 voxels, but the 95th
    # percentile of the 21 distances (20 zeros, one 20) is 0
    line = np.zeros((40, 1, 1), dtype=bool)
    line[:20] = True
    with_outlier = line.copy()
    with_outlier[39] = True
    assert agreement.hausdorff95(line, with_outlier, (1.5, 1.0, 1.0)) == 0.0
    # with 4 outliers of 21 voxels' distance (4 of 24 = 17% > 5%) the outliers count
    many = line.copy()
    many[36:40] = True
    distances = sorted([0.0] * 20 + [17.0 * 1.5, 18.0 * 1.5, 19.0 * 1.5, 20.0 * 1.5])
    expected = float(np.percentile(distances, 95))
    assert agreement.hausdorff95(line, many, (1.5, 1.0, 1.0)) == pytest.approx(expected)
    assert agreement.hausdorff95(line, np.zeros_like(line), (1.0, 1.0, 1.0)) is None


def test_surface_dice_by_hand() -> None:
    # a 4 x 4 x 4 cube (56 surface voxels) and the same cube shifted one 2 mm slice
    a = np.zeros((6, 6, 14), dtype=bool)
    a[1:5, 1:5, 1:5] = True
    b = np.roll(a, 1, axis=2)
    spacing = (1.0, 1.0, 2.0)
    assert agreement.surface_dice(a, a, spacing, 0.0) == 1.0
    # surface of the cube: 64 - 8 interior = 56 voxels; at 0 mm the shared ones count: the
    # side walls of the 3 overlapping slices (12 each) = 36 per cube
    assert agreement.surface_dice(a, b, spacing, 0.0) == pytest.approx((36 + 36) / 112)
    # within 1 mm in-plane: the 2 x 2 centre of a's top face (inside b) to b's side walls, and
    # the same of b's bottom face; the faces one slice apart are 2 mm from the other's surface
    assert agreement.surface_dice(a, b, spacing, 1.0) == pytest.approx((36 + 4 + 36 + 4) / 112)
    assert agreement.surface_dice(a, b, spacing, 1.9) == pytest.approx(80 / 112)
    assert agreement.surface_dice(a, b, spacing, 2.0) == 1.0
    # a structure far away, missing from b: its surface voxels count against
    c = a.copy()
    c[:, :, 10:12] = True  # a 6 x 6 x 2 slab: 72 voxels, all on its surface, 10 mm from b
    assert agreement.surface_dice(c, b, spacing, 2.0) == pytest.approx((56 + 56) / (56 + 72 + 56))
    assert agreement.surface_dice(a, np.zeros_like(a), spacing, 3.0) == 0.0
    assert agreement.surface_dice(np.zeros_like(a), np.zeros_like(a), spacing, 3.0) is None
    with pytest.raises(ValueError, match="tolerance"):
        agreement.surface_dice(a, b, spacing, -1.0)


def test_pairwise_volumes_and_csv() -> None:
    a = np.zeros((2, 2, 2), dtype=np.uint8)
    b = np.zeros_like(a)
    a[0, 0, 0] = a[0, 0, 1] = 1
    b[0, 0, 0] = 1
    b[1, 1, 1] = 2
    rows = agreement.pairwise({"ann": a, "bob": b}, {1: "lesion", 2: "cyst"}, (2.0, 2.0, 2.5))
    voxel_ml = 2 * 2 * 2.5 / 1000
    lesion, cyst = rows
    assert (lesion.rater_a, lesion.rater_b, lesion.name) == ("ann", "bob", "lesion")
    assert lesion.dice == pytest.approx(2 / 3)
    assert lesion.volume_a_ml == pytest.approx(2 * voxel_ml)
    assert lesion.volume_diff_ml == pytest.approx(-voxel_ml)
    # ann -> bob: distances 0 and 2.5 mm (the extra voxel is one 2.5 mm step away); the 95th
    # percentile interpolates between them: 0 + 0.95 * 2.5; bob -> ann: 0
    assert lesion.hd95_mm == pytest.approx(0.95 * 2.5)
    assert cyst.dice == 0.0
    assert cyst.hd95_mm is None
    table = list(csv.DictReader(io.StringIO(agreement.to_csv(rows))))
    assert [r["name"] for r in table] == ["lesion", "cyst"]
    assert float(table[0]["dice"]) == pytest.approx(lesion.dice)
    assert table[1]["hd95_mm"] == ""


def test_majority_vote_by_hand() -> None:
    r1 = np.array([1, 1, 0, 2], dtype=np.uint8).reshape(4, 1, 1)
    r2 = np.array([1, 0, 0, 2], dtype=np.uint8).reshape(4, 1, 1)
    r3 = np.array([0, 1, 2, 2], dtype=np.uint8).reshape(4, 1, 1)
    out = agreement.majority_vote([r1, r2, r3], [1, 2])
    assert out.ravel().tolist() == [1, 1, 0, 2]
    # two raters: a label needs both
    assert agreement.majority_vote([r1, r2], [1, 2]).ravel().tolist() == [1, 0, 0, 2]


def test_staple_of_agreeing_and_outvoted_raters() -> None:
    base = np.zeros((6, 6, 6), dtype=np.uint8)
    base[1:5, 1:5, 1:5] = 1
    base[0, 0, 0:3] = 2
    same = agreement.staple([base, base, base], [1, 2])
    assert np.array_equal(same.array, base)
    assert all(s == pytest.approx(1.0) for s in same.sensitivity[1])
    # one rater adds a voxel the two others leave out: outvoted
    extra = base.copy()
    extra[5, 5, 5] = 1
    result = agreement.staple([base, base, extra], [1, 2])
    assert result.array[5, 5, 5] == 0
    assert np.array_equal(result.array, base)


@pytest.fixture(scope="module")
def total_segs(shared_data: Path) -> tuple[np.ndarray, np.ndarray, dict[int, str], tuple]:
    folder = shared_data / "totalsegmentator_ref" / "ct_3mm_30sl"
    names = {
        int(k): v
        for k, v in json.loads(
            (shared_data / "totalsegmentator_ref" / "label_map_total.json").read_text()
        ).items()
    }
    normal = read_labelmap(folder / "seg_total.nii.gz")
    fast = read_labelmap(folder / "seg_total_fast.nii.gz")
    assert normal.geometry.same_grid(fast.geometry)
    return np.asarray(normal.array), np.asarray(fast.array), names, normal.geometry.spacing


def test_real_label_numbering_is_shared(shared_data: Path, total_segs: tuple) -> None:
    """The fast seg's values mean what label_map_total.json says: each per-class binary mask
    (file named after the class) is exactly the voxels of that value."""
    _, fast, names, _ = total_segs
    masks = shared_data / "totalsegmentator_ref" / "ct_3mm_30sl" / "seg_total_fast_binary_masks"
    checked = 0
    for value, name in names.items():
        path = masks / f"{name}.nii.gz"
        if path.exists():
            mask = np.asarray(read_labelmap(path).array) > 0
            assert np.array_equal(mask, fast == value), name
            checked += mask.any()
    assert checked >= 30
    # both segs use values of that map only
    normal = total_segs[0]
    assert set(np.unique(normal)) - {0} <= set(names)


def test_real_agreement_of_two_models(total_segs: tuple) -> None:
    normal, fast, names, spacing = total_segs
    organs = {v: names[v] for v in (1, 2, 3, 5)}
    assert organs == {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver"}
    rows = agreement.pairwise({"total": normal, "fast": fast}, organs, spacing)
    # Dice and Hausdorff by SimpleITK, independently
    img_a = sitk.GetImageFromArray(normal.transpose(2, 1, 0).astype(np.uint8))
    img_b = sitk.GetImageFromArray(fast.transpose(2, 1, 0).astype(np.uint8))
    for img in (img_a, img_b):
        img.SetSpacing(spacing)
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(img_a, img_b)
    voxel_ml = np.prod(spacing) / 1000
    for row in rows:
        assert row.dice == pytest.approx(overlap.GetDiceCoefficient(row.label), abs=1e-9)
        assert 0.95 < row.dice < 1.0  # two models of one CT agree closely on these organs
        hausdorff = sitk.HausdorffDistanceImageFilter()
        hausdorff.Execute(img_a == row.label, img_b == row.label)
        assert 0.0 <= row.hd95_mm <= hausdorff.GetHausdorffDistance() + 1e-6
        assert row.volume_a_ml == pytest.approx((normal == row.label).sum() * voxel_ml)
        assert row.volume_diff_ml == pytest.approx(
            ((fast == row.label).sum() - (normal == row.label).sum()) * voxel_ml
        )
    print({r.name: round(r.dice, 4) for r in rows}, {r.name: r.hd95_mm for r in rows})


def test_real_consensus_of_two_models(total_segs: tuple) -> None:
    normal, fast, _, _ = total_segs
    values = [1, 2, 3, 5]
    majority = agreement.majority_vote([normal, fast], values)
    for v in values:
        assert np.array_equal(majority == v, (normal == v) & (fast == v))
    assert set(np.unique(majority)) == {0, *values}
    result = agreement.staple([normal, fast], values)
    for v in values:
        union = (normal == v) | (fast == v)
        inter = (normal == v) & (fast == v)
        got = result.array == v
        assert not (got & ~union).any()  # STAPLE adds nothing no rater drew
        assert (got & inter).sum() == inter.sum()  # and keeps what both drew


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI's own deprecation notice
def test_real_surface_dice_equals_monai(total_segs: tuple) -> None:
    """Surface Dice of the two models' organs equals MONAI's compute_surface_dice."""
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("monai.metrics")
    normal, fast, _names, spacing = total_segs

    def onehot(mask: np.ndarray) -> object:
        return torch.from_numpy(np.stack([~mask, mask])[None].astype(np.float32))

    for value in (1, 2, 3, 5):
        a, b = normal == value, fast == value
        for tolerance in (0.0, 3.0):
            ours = agreement.surface_dice(a, b, spacing, tolerance)
            theirs = metrics.compute_surface_dice(
                onehot(a), onehot(b), [tolerance], spacing=list(spacing)
            )
            assert ours == pytest.approx(float(theirs), abs=1e-6)
        # the boundary disagreement of two 3 mm models is about one voxel
        assert agreement.surface_dice(a, b, spacing, 0.0) < 0.9
        assert agreement.surface_dice(a, b, spacing, 3.0) > 0.98
