"""Weight-free CT segmentation methods on HU arrays in LPS order (``[i, j, k]``: left, posterior,
superior) with voxel spacing in mm.

Each function documents its method; the thresholds are standard HU ranges. The tools in
:mod:`carina.models.tools` wrap these with geometry handling, labels and timings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from scipy import ndimage as ndi

from carina.models.morphology import (
    BoolArray,
    bounding_box,
    ellipsoid,
    fill_holes_per_slice,
    holes_per_plane,
    plane_holes,
    remove_small,
)

FloatArray = npt.NDArray[np.float32]
Spacing = Sequence[float]

BODY_HU = -500.0
AIR_HU = -400.0
BONE_HU = 200.0
FAT_HU = (-190.0, -30.0)
MUSCLE_HU = (-29.0, 150.0)
_FULL = np.ones((3, 3, 3), dtype=bool)


def _ml_to_voxels(ml: float, spacing: Spacing) -> int:
    return max(round(ml * 1000.0 / float(np.prod(spacing))), 1)


# --------------------------------------------------------------------------------------- body


def body_mask(hu: FloatArray, spacing: Spacing) -> BoolArray:
    """Body outline without table, cushions or cables.

    Method: threshold at -500 HU; an in-plane opening with a 5 mm disk cuts thin attachments (table
    top, straps, cables); 26-connected components are kept when they are thick (largest inscribed
    radius >= 12 mm, which the table top and cables never reach) and hold at least 5 % of the
    largest component (trunk, and arms lying beside it); the opening is undone by a dilation with
    the same disk restricted to the threshold mask; holes (lungs, bowel gas) are filled per axial
    slice.
    """
    dense = hu > BODY_HU
    disk = ellipsoid(5.0, spacing, in_plane=True)
    opened = ndi.binary_opening(dense, structure=disk)
    lab, count = ndi.label(opened, structure=_FULL)
    if count == 0:
        return np.zeros(hu.shape, dtype=bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    keep = np.zeros(count + 1, dtype=bool)
    largest = int(sizes.max())
    in_plane = float(min(spacing[0], spacing[1]))
    objects = ndi.find_objects(lab)
    biggest = int(np.argmax(sizes))
    keep[biggest] = True
    for value in np.nonzero(sizes >= 0.05 * largest)[0]:
        sl = objects[value - 1]
        if sl is None or value == biggest:
            continue
        comp = lab[sl] == value
        # thickness: in-plane distance transform (slices may be thick)
        depth = ndi.distance_transform_edt(comp, sampling=(spacing[0], spacing[1], 1e6))
        if float(depth.max()) >= max(12.0, 2 * in_plane):
            keep[value] = True
    body = keep[lab]
    body = ndi.binary_dilation(body, structure=disk) & dense
    return fill_holes_per_slice(body)


# -------------------------------------------------------------------------------------- lungs


def _interior_median(hu: FloatArray, comp: BoolArray, spacing: Spacing) -> float:
    """Median HU of a component without its 2 mm rim (partial volume at the edges)."""
    inner = ndi.binary_erosion(comp, structure=ellipsoid(2.0, spacing, in_plane=True))
    sel = inner if int(inner.sum()) >= 20 else comp
    return float(np.median(hu[sel]))


#: ``density(box, component) -> median interior HU`` of a component given on the working grid.
DensityProbe = Callable[[tuple[slice, ...], BoolArray], float]


def lung_mask(
    hu: FloatArray,
    spacing: Spacing,
    body: BoolArray | None = None,
    *,
    min_ml: float = 5.0,
    min_depth_mm: float = 6.0,
    parenchyma_median_hu: float = -940.0,
    density: DensityProbe | None = None,
) -> BoolArray:
    """Both lungs (with the airways still attached).

    Method: air (< -400 HU) inside the body outline, 6-connected components of at least
    ``min_ml`` and thick somewhere (in-plane inscribed radius >= ``min_depth_mm``, which thin air
    gaps between an arm and the trunk never reach). Lung parenchyma is told from bowel and
    stomach gas by its density: the median HU of a component's interior (2 mm rim removed,
    measured at full resolution when ``density`` is given) is above ``parenchyma_median_hu`` for
    aerated lung (about -850 HU) and near -1000 HU for gas. Holes left by vessels are filled per
    axial slice.
    """
    if body is None:
        body = body_mask(hu, spacing)
    air = (hu < AIR_HU) & body
    lab, count = ndi.label(air)
    if count == 0:
        return np.zeros(hu.shape, dtype=bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    min_vox = _ml_to_voxels(min_ml, spacing)
    out = np.zeros(hu.shape, dtype=bool)
    objects = ndi.find_objects(lab)
    for value in np.nonzero(sizes >= min_vox)[0]:
        sl = objects[value - 1]
        if sl is None:
            continue
        comp = lab[sl] == value
        depth = ndi.distance_transform_edt(
            np.pad(comp, ((1, 1), (1, 1), (0, 0))), sampling=(spacing[0], spacing[1], 1e6)
        )
        if float(depth.max()) < min_depth_mm:
            continue
        median = density(sl, comp) if density else _interior_median(hu[sl], comp, spacing)
        if median > parenchyma_median_hu:
            out[sl] |= comp
    # vessels and small nodules inside the lungs belong to the lung region
    return fill_holes_per_slice(out) & body


def split_left_right(lungs: BoolArray, spacing: Spacing) -> tuple[BoolArray, BoolArray]:
    """(right, left) lungs.

    Method: if the two largest components each lie on one side they are the two lungs; otherwise
    (lungs joined at the anterior junction or through the airways) the split plane is the sagittal
    plane with the fewest lung voxels in the middle 40 % of the lungs' left-right extent. In LPS,
    increasing ``i`` points to the patient's left.
    """
    if not lungs.any():
        empty = np.zeros(lungs.shape, dtype=bool)
        return empty, empty.copy()
    lab, count = ndi.label(lungs)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    order = np.argsort(sizes)[::-1]
    profile = lungs.sum(axis=(1, 2))
    idx = np.nonzero(profile)[0]
    lo, hi = int(idx[0]), int(idx[-1])
    if count >= 2 and sizes[order[1]] >= 0.1 * sizes[order[0]]:
        a, b = lab == order[0], lab == order[1]
        ca = ndi.center_of_mass(a)[0]
        cb = ndi.center_of_mass(b)[0]
        amax, amin = np.nonzero(a.any(axis=(1, 2)))[0][[-1, 0]]
        bmax, bmin = np.nonzero(b.any(axis=(1, 2)))[0][[-1, 0]]
        separated = (ca < cb and amax < bmin + 0.1 * (hi - lo)) or (
            cb < ca and bmax < amin + 0.1 * (hi - lo)
        )
        if separated:
            right, left = (a, b) if ca < cb else (b, a)
            # remaining small pieces join the nearer lung
            rest = lungs & ~a & ~b
            if rest.any():
                cut = round((ca + cb) / 2)
                ii = np.arange(lungs.shape[0])[:, None, None]
                right = right | (rest & (ii < cut))
                left = left | (rest & (ii >= cut))
            return right, left
    span = hi - lo
    centre_lo, centre_hi = lo + int(0.3 * span), lo + int(0.7 * span) + 1
    cut = centre_lo + int(np.argmin(profile[centre_lo:centre_hi]))
    ii = np.arange(lungs.shape[0])[:, None, None]
    return lungs & (ii < cut), lungs & (ii >= cut)


# ------------------------------------------------------------------------------------ airways


@dataclass(frozen=True)
class TracheaSeed:
    index: tuple[int, int, int]
    area_mm2: float


def find_trachea(
    hu: FloatArray, spacing: Spacing, body: BoolArray, *, top_mm: float = 40.0
) -> TracheaSeed | None:
    """The trachea in the most superior slices: a round, air-filled (< -850 HU) region inside the
    body, 0.8-7 cm² in area and round (area >= 70 % of its bounding ellipse), away from the body
    outline, within 25 mm of the left-right midline (lung apices lie further out) and with bone
    (the spine, > 200 HU) within 60 mm behind it (stomach gas lies far in front of the spine);
    the candidate closest to the midline wins.

    Returns ``None`` when no slice in the top ``top_mm`` holds one (an abdominal scan).
    """
    nk = hu.shape[2]
    n_top = max(1, min(nk, round(top_mm / float(spacing[2]))))
    pix = float(spacing[0] * spacing[1])
    for k in range(nk - 1, nk - 1 - n_top, -1):
        body_k = body[:, :, k]
        if not body_k.any():
            continue
        inside = ndi.binary_erosion(body_k, iterations=max(1, int(10.0 / spacing[0])))
        air = (hu[:, :, k] < -850.0) & inside
        lab, count = ndi.label(air)
        if count == 0:
            continue
        ci = ndi.center_of_mass(body_k)[0]
        best: tuple[float, tuple[int, int, int], float] | None = None
        for value, sl in enumerate(ndi.find_objects(lab), start=1):
            if sl is None:
                continue
            comp = lab[sl] == value
            area = float(comp.sum()) * pix
            if not 80.0 <= area <= 700.0:
                continue
            h = (sl[0].stop - sl[0].start) * spacing[0]
            w = (sl[1].stop - sl[1].start) * spacing[1]
            if max(h, w) > 2.0 * min(h, w) or area < 0.7 * np.pi / 4 * h * w:  # not round
                continue
            c = ndi.center_of_mass(comp)
            centre = (round(c[0]) + sl[0].start, round(c[1]) + sl[1].start, k)
            offset = abs(centre[0] - ci) * spacing[0]
            if offset > 25.0:
                continue
            # the spine lies just behind the trachea (stomach or bowel gas is far in front)
            reach = round(60.0 / spacing[1])
            behind = hu[centre[0], sl[1].stop : sl[1].stop + reach, k]
            if not bool((behind > 200.0).any()):
                continue
            if best is None or offset < best[0]:
                best = (offset, centre, area)
        if best is not None:
            return TracheaSeed(best[1], best[2])
    return None


def airway_mask(
    hu: FloatArray,
    spacing: Spacing,
    body: BoolArray | None = None,
    *,
    max_ml: float = 250.0,
) -> BoolArray:
    """Trachea and bronchi by region growing from the trachea found in the top slices.

    Method: a seed from :func:`find_trachea`; connected threshold growing (26-connected) with an
    upper limit raised from -1000 HU in steps of 20 HU; the last result before the grown volume
    explodes (more than doubles in one step, or passes ``max_ml``: leakage into the parenchyma)
    is kept, then closed with a 1.5 mm ball. Empty when no trachea is found or the grown tree does
    not reach the top two slices (a trachea always leaves the scan upwards; esophageal or stomach
    gas does not).
    """
    if body is None:
        body = body_mask(hu, spacing)
    seed = find_trachea(hu, spacing, body)
    if seed is None:
        return np.zeros(hu.shape, dtype=bool)
    image = sitk.GetImageFromArray(np.ascontiguousarray(hu.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    sitk_seed = [(int(seed.index[0]), int(seed.index[1]), int(seed.index[2]))]
    max_vox = _ml_to_voxels(max_ml, spacing)
    best: npt.NDArray[np.uint8] | None = None
    best_count = 0
    for upper in np.arange(-1000.0, -780.0, 20.0):
        grown = sitk.ConnectedThreshold(
            image, seedList=sitk_seed, lower=-2000.0, upper=float(upper), replaceValue=1
        )
        arr = sitk.GetArrayViewFromImage(grown)
        count = int(arr.sum())
        if count > max_vox or (best_count > 0 and count > 2 * best_count and count > 200):
            break
        best, best_count = arr.copy(), count
    if best is None:
        return np.zeros(hu.shape, dtype=bool)
    mask = best.transpose(2, 1, 0).astype(bool)
    if not mask[:, :, -2:].any():  # the trachea leaves the scan at the top; gas pockets do not
        return np.zeros(hu.shape, dtype=bool)
    closed: BoolArray = ndi.binary_closing(mask, structure=ellipsoid(1.5, spacing)) | mask
    return closed


def lungs_labels(
    hu: FloatArray,
    spacing: Spacing,
    density: DensityProbe | None = None,
    airways: BoolArray | None = None,
) -> npt.NDArray[np.uint8]:
    """Label map 1 = right lung, 2 = left lung, airways (given, or grown here) removed."""
    body = body_mask(hu, spacing)
    lungs = lung_mask(hu, spacing, body, density=density)
    if airways is None:
        airways = airway_mask(hu, spacing, body)
    if airways.any():
        # remove trachea and main bronchi: the airway tree outside the lung parenchyma mass
        lungs = lungs & ~ndi.binary_dilation(airways, structure=ellipsoid(2.0, spacing))
        lungs = remove_small(lungs, _ml_to_voxels(5.0, spacing))
    right, left = split_left_right(lungs, spacing)
    out = np.zeros(hu.shape, dtype=np.uint8)
    out[right] = 1
    out[left] = 2
    return out


# -------------------------------------------------------------------------------------- bones


def spinal_canal(
    hu: FloatArray,
    spacing: Spacing,
    body: BoolArray,
    axial_only: BoolArray,
    canal_hu: float = 40.0,
    *,
    midline_mm: float = 20.0,
) -> BoolArray:
    """The spinal canal among holes of a bone mask enclosed only in axial slices.

    The vertebral arch encloses the canal in the axial slices through pedicles and laminae; in
    sagittal and coronal slices the canal runs on, open between the laminae and past the discs,
    so it is never enclosed there (a vertebral body's marrow is). A 6-connected component of
    ``axial_only`` hole voxels is canal when its centroid lies within ``midline_mm`` of the
    body's left-right centre, behind the body's antero-posterior centre (the sternum lies in
    front), and its median is at most ``canal_hu`` (CSF about 5 HU, cord about 35 HU; cancellous
    bone of the vertebral body stays above it; yellow marrow of long bones is as light but lies
    away from the midline).
    """
    if not axial_only.any() or not body.any():
        return np.zeros(hu.shape, dtype=bool)
    lab, count = ndi.label(axial_only)
    index = np.arange(1, count + 1)
    centre = np.asarray(ndi.center_of_mass(axial_only, lab, index=index)).reshape(-1, 3)
    body_i, body_j, _k = ndi.center_of_mass(body)
    placed = index[
        (np.abs(centre[:, 0] - body_i) * float(spacing[0]) <= midline_mm) & (centre[:, 1] > body_j)
    ]
    keep = np.zeros(count + 1, dtype=bool)
    if placed.size:
        near = np.isin(lab, placed)
        box = bounding_box(near)
        assert box is not None
        median = np.asarray(ndi.median(hu[box], np.where(near[box], lab[box], 0), index=placed))
        keep[placed] = median <= canal_hu
    canal: BoolArray = keep[lab]
    return canal


def contrast_lumens(
    hu: FloatArray,
    spacing: Spacing,
    mask: BoolArray,
    seed_hu: float,
    core_mm: float = 7.5,
    min_core_ml: float = 2.0,
) -> BoolArray:
    """The parts of a dense ``mask`` that are contrast-filled lumens (vessels, heart chambers).

    Method: the thick parts of the mask are found by their cores, the voxels deeper than
    ``core_mm`` inside it (a contact between the aorta and a vertebra is thinner, so touching
    structures get separate cores). Every mask voxel within ``core_mm`` plus two voxels of a core
    belongs to the part of its nearest core; the part's rim is its voxels on the mask's surface.
    A bone's surface is cortex, denser than the marrow inside; a lumen's surface is its wall and
    partial volume with fat, lighter than the enhanced blood inside. A part is a lumen when its
    core median exceeds its rim median and the seed level ``seed_hu`` (blood dense enough to
    seed the bone growth; marrow below it, as in osteoporotic vertebrae beside the lung bases
    whose rim partial volume darkens, is never taken) and its core holds at least
    ``min_core_ml`` (the aorta, heart chambers and caval veins over a few centimetres; the small
    cores of compact bone cut by thick slices can look brighter inside than on their surface).
    """
    out = np.zeros(hu.shape, dtype=bool)
    box = bounding_box(mask, margin=(1, 1, 1))
    if box is None:
        return out
    sub, hsub = mask[box], hu[box]
    depth = ndi.distance_transform_edt(sub, sampling=spacing)
    core = depth > core_mm
    cores, count = ndi.label(core, structure=_FULL)
    big = np.bincount(cores.ravel(), minlength=count + 1) >= _ml_to_voxels(min_core_ml, spacing)
    big[0] = False
    if not big.any():
        return out
    # the parts around the large cores only
    step = float(max(spacing))
    reach = core_mm + 2 * step
    part_box = bounding_box(big[cores], margin=[int(np.ceil(reach / s)) + 1 for s in spacing])
    assert part_box is not None
    cores = np.where(big[cores], cores, 0)[part_box]
    to_core, nearest = ndi.distance_transform_edt(cores == 0, sampling=spacing, return_indices=True)
    owner = np.where(sub[part_box] & (to_core <= reach), cores[tuple(nearest)], 0)
    rim = owner * (depth[part_box] <= step * 1.01)
    index = np.nonzero(big)[0]
    core_median = np.asarray(ndi.median(hsub[part_box], cores, index=index))
    rim_median = np.asarray(ndi.median(hsub[part_box], rim, index=index))
    lumen = np.zeros(count + 1, dtype=bool)
    lumen[index] = (core_median > np.nan_to_num(rim_median, nan=np.inf)) & (core_median > seed_hu)
    out[box][part_box] = lumen[owner]
    return out


def bone_labels(
    hu: FloatArray,
    spacing: Spacing,
    *,
    seed_margin_hu: float = 100.0,
    growth_mm: float = 6.0,
    min_ml: float = 0.5,
    cortical_hu: float = 400.0,
    rib_radius_mm: float = 7.5,
    marrow_close_mm: float = 6.0,
    marrow_hu: float = 100.0,
    canal_hu: float = 40.0,
    marrow_max_cm2: float = 30.0,
) -> tuple[npt.NDArray[np.uint8], float]:
    """Label map 1 = bone, 2 = contrast-filled structure; and the low threshold used.

    Method: hysteresis thresholding. The low threshold is ``max(100, p75 + 60)`` HU, where p75
    is the 75th percentile of soft tissue (-29..300 HU) in the body: about 110 HU without
    contrast and higher with it, so enhancing liver and vessels are not taken. Seeds are voxels
    ``seed_margin_hu`` above the low threshold inside the body (about 210 HU without contrast,
    higher with it): on a 3 mm grid the cortex of osteoporotic vertebrae, the sacrum and the
    lower ribs is averaged with marrow and soft tissue and often stays below a fixed 250 HU,
    while portal-phase blood stays below the raised seed level (arterial blood does not: see
    the lumens below). Seeds grow by at most
    ``growth_mm`` through voxels above the low threshold. A 2 mm closing joins cortex and
    trabecular bone; holes enclosed in an axial, coronal or sagittal slice are filled (marrow)
    when no larger than ``marrow_max_cm2`` in their slice (a vertebral body, the sacrum or a
    femoral head stay under it; a ring of bone closed around the pelvic or thoracic cavity
    encloses far more), except the spinal canal (:func:`spinal_canal`, at most ``canal_hu``);
    components under ``min_ml`` are dropped. Thick parts denser inside than on their surface
    and denser than the seeds are contrast-filled lumens (:func:`contrast_lumens`; label 2),
    also where they touch a bone. Of the rest, a component with fewer than 1 % of its voxels
    above ``cortical_hu`` and thick somewhere (largest inscribed radius above
    ``rib_radius_mm``, about half the height of the largest rib) is a contrast-filled vessel or
    organ (label 2); thin components without cortical voxels are bone whose cortex partial
    volume has averaged away (ribs on a 3 mm grid). Last, voxels above ``marrow_hu`` that a
    ``marrow_close_mm`` closing of the bone bridges or encloses in an axial slice (marrow and
    partial-volume cortex) become bone.
    """
    body = body_mask(hu, spacing)
    soft = hu[body & (hu > MUSCLE_HU[0]) & (hu < 300.0)]
    low = max(100.0, float(np.percentile(soft, 75)) + 60.0) if soft.size else 150.0
    seeds = (hu > low + seed_margin_hu) & body
    grown = ndi.binary_dilation(seeds, structure=ellipsoid(growth_mm, spacing)) & (hu > low) & body
    closed = ndi.binary_closing(grown, structure=ellipsoid(2.0, spacing)) | grown
    max_hole = marrow_max_cm2 * 100.0
    axial, sagittal, coronal = holes_per_plane(closed, spacing, max_hole)
    holes = axial | sagittal | coronal
    canal = spinal_canal(hu, spacing, body, axial & ~sagittal & ~coronal, canal_hu)
    holes &= ~canal
    filled = remove_small(closed | holes, _ml_to_voxels(min_ml, spacing))
    lumen = contrast_lumens(hu, spacing, filled, low + seed_margin_hu, rib_radius_mm)
    lab, count = ndi.label(filled & ~lumen, structure=_FULL)
    out = np.zeros(hu.shape, dtype=np.uint8)
    out[lumen] = 2
    if count == 0:
        return out, low
    index = np.arange(count + 1)
    n_cort = ndi.sum_labels(hu > cortical_hu, lab, index=index)
    sizes = np.bincount(lab.ravel(), minlength=count + 1)
    is_bone = n_cort >= 0.01 * sizes
    is_bone[0] = False
    # components without cortex: thick ones hold contrast, thin ones are ribs
    candidates = (lab > 0) & ~is_bone[lab]
    if candidates.any():
        box = bounding_box(candidates, margin=(1, 1, 1))
        assert box is not None
        depth = ndi.distance_transform_edt(candidates[box], sampling=spacing)
        radius = ndi.maximum(depth, lab[box], index=index)
        is_bone |= (np.asarray(radius) <= rib_radius_mm) & (sizes > 0)
        is_bone[0] = False
    out[is_bone[lab]] = 1
    out[(lab > 0) & ~is_bone[lab]] = 2
    # marrow and thin cortex missed by the threshold: gaps a closing bridges and what they
    # enclose in an axial slice, denser than muscle
    bone = out == 1
    bridged = ndi.binary_closing(bone, structure=ellipsoid(marrow_close_mm, spacing)) | bone
    enclosed = plane_holes(bridged, 2, spacing, max_hole)
    gaps = (bridged | enclosed) & ~bone & ~canal
    out[gaps & (out == 0) & (hu > marrow_hu) & body] = 1
    return out, low


# -------------------------------------------------------------------------------- vesselness


def thick_slices(spacing: Spacing) -> bool:
    """Slices so thick (> 3 mm and > 2.5 x the pixel size) that vessels are analysed in-plane."""
    return float(spacing[2]) > 3.0 and float(spacing[2]) > 2.5 * float(min(spacing[0], spacing[1]))


def _hessian_eigenvalues(
    sub: FloatArray, spacing: Spacing, sigma: float, roi: tuple[npt.NDArray[np.intp], ...]
) -> npt.NDArray[np.float64]:
    """Eigenvalues (sorted by magnitude) of the scale-normalised Hessian at ``roi`` voxels.

    Second derivatives of a Gaussian with ``sigma`` mm on each axis (so anisotropic grids are
    handled), in HU/mm², times ``sigma²`` (Lindeberg's normalisation).
    """
    sig = [sigma / float(s) for s in spacing]
    dims = 3
    if thick_slices(spacing):
        sig[2] = 0.0
        dims = 2
    comps = {}
    for a in range(dims):
        for b in range(a, dims):
            order = [0, 0, 0]
            order[a] += 1
            order[b] += 1
            d = ndi.gaussian_filter(sub, sigma=sig, order=order, mode="nearest")
            comps[(a, b)] = d[roi] * (sigma**2 / (float(spacing[a]) * float(spacing[b])))
    n = roi[0].size
    mats = np.empty((n, dims, dims))
    for (a, b), v in comps.items():
        mats[:, a, b] = v
        mats[:, b, a] = v
    eig: npt.NDArray[np.float64] = np.linalg.eigvalsh(mats).astype(np.float64)
    order_idx = np.argsort(np.abs(eig), axis=1)
    out: npt.NDArray[np.float64] = np.take_along_axis(eig, order_idx, axis=1)
    return out


def vesselness(
    hu: FloatArray,
    spacing: Spacing,
    mask: BoolArray,
    *,
    sigmas_mm: Sequence[float] = (1.0, 2.0, 3.0),
    alpha: float = 0.5,
    beta: float = 0.5,
    c: float = 100.0,
) -> npt.NDArray[np.float32]:
    """Frangi vesselness for bright tubes, maximum over scales, evaluated inside ``mask``.

    Method (Frangi et al. 1998): Hessian by Gaussian derivatives at each scale (in mm, so
    anisotropic grids are handled), normalised across scales; with eigenvalues
    ``|l1| <= |l2| <= |l3|`` and ``l2, l3 < 0``:
    ``V = (1 - exp(-Ra²/2 alpha²)) · exp(-Rb²/2 beta²) · (1 - exp(-S²/2c²))`` where
    ``Ra = |l2|/|l3|``, ``Rb = |l1|/sqrt(|l2 l3|)``, ``S`` the Frobenius
    norm; ``c`` is in HU/mm² after normalisation. On thick slices (:func:`thick_slices`) the
    through-plane derivatives are meaningless: the in-plane 2-D Hessian is used and any bright
    line or dot of the scale counts (``V = 1 - exp(-S²/2c²)`` where the stronger eigenvalue is
    negative).
    """
    out = np.zeros(hu.shape, dtype=np.float32)
    roi = np.nonzero(mask)
    if roi[0].size == 0:
        return out
    box = bounding_box(mask, margin=(8, 8, 3))
    assert box is not None
    sub = np.asarray(hu[box], dtype=np.float32)
    local = tuple(np.asarray(r - b.start, dtype=np.intp) for r, b in zip(roi, box, strict=True))
    best = np.zeros(roi[0].size, dtype=np.float64)
    for sigma in sigmas_mm:
        eig = _hessian_eigenvalues(sub, spacing, float(sigma), local)
        if eig.shape[1] == 2:  # thick slices: bright in-plane lines and dots
            lb = eig[:, 1]
            v = 1 - np.exp(-(eig[:, 0] ** 2 + lb**2) / (2 * c**2))
            v[lb >= 0] = 0.0
            best = np.maximum(best, v)
            continue
        l1, l2, l3 = eig[:, 0], eig[:, 1], eig[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            ra = np.abs(l2) / np.abs(l3)
            rb = np.abs(l1) / np.sqrt(np.abs(l2 * l3))
        s2 = l1**2 + l2**2 + l3**2
        v = (
            (1 - np.exp(-(ra**2) / (2 * alpha**2)))
            * np.exp(-(rb**2) / (2 * beta**2))
            * (1 - np.exp(-s2 / (2 * c**2)))
        )
        v[(l2 >= 0) | (l3 >= 0) | ~np.isfinite(v)] = 0.0
        best = np.maximum(best, v)
    out[roi] = best.astype(np.float32)
    return out


def lung_vessel_labels(
    hu: FloatArray,
    spacing: Spacing,
    lungs: BoolArray,
    *,
    threshold: float = 0.05,
    min_hu: float = -600.0,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    """Label map 1 = lung vessel, and the vesselness map.

    Method: Frangi vesselness (:func:`vesselness`, scales 1-3 mm) inside the lungs; voxels with
    vesselness above ``threshold`` and density above ``min_hu`` HU are vessels (the density
    condition removes airway walls' dark side and noise in aerated parenchyma).
    """
    inner = ndi.binary_erosion(lungs, structure=ellipsoid(2.0, spacing))
    v = vesselness(hu, spacing, inner)
    vessels = (v > threshold) & (hu > min_hu) & inner
    vessels = remove_small(vessels, 3)
    out = np.zeros(hu.shape, dtype=np.uint8)
    out[vessels] = 1
    return out, v


# --------------------------------------------------------------------------- nodule candidates


@dataclass(frozen=True)
class Candidate:
    index: tuple[int, int, int]
    radius_mm: float
    score: float


def nodule_candidates(
    hu: FloatArray,
    spacing: Spacing,
    lungs: BoolArray,
    body: BoolArray,
    *,
    radii_mm: Sequence[float] = (3.0, 5.0, 8.0, 12.0, 18.0),
    min_score: float = 150.0,
    max_candidates: int = 30,
) -> tuple[list[Candidate], BoolArray]:
    """Blob candidates inside the lungs, best first, and the search region.

    Method: the search region is the lung mask closed per slice with a 15 mm disk and hole-filled
    (so that solid tumours, juxtapleural ones included, lie inside it). At each radius ``r`` the
    scale-normalised Laplacian of Gaussian (``sigma = r / sqrt(3)``, in mm) is computed; bright
    blobs give strongly negative responses. A voxel is a candidate where ``-LoG`` (max over scales)
    is a local maximum over a neighbourhood of the smallest radius, exceeds ``min_score`` (HU)
    and the voxel is denser than -300 HU. Candidates closer than the larger radius to a better one
    are suppressed.
    """
    region = ndi.binary_closing(lungs, structure=ellipsoid(15.0, spacing, in_plane=True))
    region = fill_holes_per_slice(region | lungs) & body
    if not region.any():
        return [], region
    box = bounding_box(region, margin=(4, 4, 2))
    assert box is not None
    sub = hu[box]
    image = sitk.GetImageFromArray(np.ascontiguousarray(sub.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    best = np.full(sub.shape, -np.inf, dtype=np.float32)
    best_r = np.zeros(sub.shape, dtype=np.float32)
    for r in radii_mm:
        sigma = float(r) / np.sqrt(3.0)
        log = sitk.LaplacianRecursiveGaussian(image, sigma=sigma, normalizeAcrossScale=True)
        resp = -sitk.GetArrayFromImage(log).transpose(2, 1, 0).astype(np.float32)
        better = resp > best
        best[better] = resp[better]
        best_r[better] = r
    size = [max(3, 2 * round(min(radii_mm) / s) + 1) for s in spacing]
    peaks = (best == ndi.maximum_filter(best, size=size)) & (best > min_score)
    peaks &= region[box] & (sub > -300.0)
    pi, pj, pk = np.nonzero(peaks)
    order = np.argsort(-best[pi, pj, pk])
    chosen: list[Candidate] = []
    sp = np.asarray(spacing, dtype=np.float64)
    for n in order:
        idx = (int(pi[n]) + box[0].start, int(pj[n]) + box[1].start, int(pk[n]) + box[2].start)
        r = float(best_r[pi[n], pj[n], pk[n]])
        pos = np.asarray(idx) * sp
        if any(
            np.linalg.norm(pos - np.asarray(c.index) * sp) < max(r, c.radius_mm) for c in chosen
        ):
            continue
        chosen.append(Candidate(idx, r, float(best[pi[n], pj[n], pk[n]])))
        if len(chosen) >= max_candidates:
            break
    return chosen, region


def spheres(shape: tuple[int, ...], spacing: Spacing, cands: Sequence[Candidate]) -> BoolArray:
    """Balls of each candidate's radius."""
    out = np.zeros(shape, dtype=bool)
    for c in cands:
        ball = ellipsoid(c.radius_mm, spacing)
        half = [s // 2 for s in ball.shape]
        lo = [c.index[a] - half[a] for a in range(3)]
        src = tuple(
            slice(max(0, -lo[a]), ball.shape[a] - max(0, lo[a] + ball.shape[a] - shape[a]))
            for a in range(3)
        )
        dst = tuple(slice(max(lo[a], 0), min(lo[a] + ball.shape[a], shape[a])) for a in range(3))
        out[dst] |= ball[src]
    return out


# ------------------------------------------------------------------------------------- tissue


def tissue_labels(
    hu: FloatArray,
    spacing: Spacing,
    *,
    skin_mm: float = 4.0,
    wall_closing_mm: float = 4.5,
    muscle_band_mm: float = 20.0,
) -> npt.NDArray[np.uint8]:
    """Label map 1 = subcutaneous fat, 2 = skeletal muscle, 3 = visceral (internal) fat.

    Method, per axial slice inside the body: fat is -190..-30 HU, soft tissue -29..150 HU. The
    non-fat tissue under the skin (``skin_mm``) is closed with a ``wall_closing_mm`` disk, which
    bridges the gaps of the muscle wall, and hole-filled: the region inside the muscle wall.
    Subcutaneous fat is the fat outside it, visceral fat the fat inside it; skeletal muscle is
    soft tissue inside it within ``muscle_band_mm`` of its border (abdominal wall, back and flank
    muscles form that shell; organs lie deeper). Approximate: psoas and organ margins touching the
    wall are misclassified, and intermuscular fat counts as visceral.
    """
    body = body_mask(hu, spacing)
    fat = (hu >= FAT_HU[0]) & (hu <= FAT_HU[1]) & body
    soft = (hu >= MUSCLE_HU[0]) & (hu <= MUSCLE_HU[1]) & body
    skin = body & ~ndi.binary_erosion(body, structure=ellipsoid(skin_mm, spacing, in_plane=True))
    nonfat = body & (hu > FAT_HU[1]) & ~skin
    wall = ndi.binary_closing(nonfat, structure=ellipsoid(wall_closing_mm, spacing, in_plane=True))
    inner = fill_holes_per_slice(wall) & body
    core = ndi.binary_erosion(inner, structure=ellipsoid(muscle_band_mm, spacing, in_plane=True))
    out = np.zeros(hu.shape, dtype=np.uint8)
    out[fat & ~inner] = 1
    out[soft & inner & ~core] = 2
    out[fat & inner] = 3
    return out
