"""A tiny click-guided CT model trained in seconds on CPU: the recipe behind the
interactive tests.

The model answers "the structure under these clicks": its input is a CT region at 4 mm with a
[-300, 400] HU window plus a foreground and a background guidance map
(:func:`carina.models.click_guided.network_input`), its output that structure. It is trained on
one CT and its label map (by default the liver, spleen, kidneys and stomach of TotalSegmentator's
``total`` classes) with the clicks simulated as DeepEdit does (Diaz-Pinto et al., 2022):

- each sample picks a structure, puts 1-3 foreground clicks in its interior (voxels at least
  half its greatest depth from its border) and 0-3 background clicks just outside it (a 3-15 mm
  shell, where a user corrects a leak), and crops a 32³ patch around the first click;
- a tenth of the samples has no foreground click and an empty target (no click, no answer);
- the soft tissue of each patch is enhanced by -20 to 120 HU (as by intravenous contrast) and
  all values scaled by 0.9-1.1, and two in five patches are cut to a slab of 6-16 slices (the
  series the model meets may be a thin one);
- in the second half, three in ten samples get one more click from the network's own error, as
  an annotator would add it: at the deepest voxel of the larger of the missed (foreground click)
  and the leaked (background click) regions.

A small MONAI U-Net learns from a fixed number of Adam steps (300, batch 4) with a fixed seed.
:func:`save_click_model` writes an installable model folder (``model.json`` with
``kind="interactive"`` + state dict).

``python -m carina.models.train_click CT LABELS OUT`` (CT: an image file or a DICOM series
folder; LABELS: a label-map file with names, e.g. NIfTI + ``--names label_map.json``) writes
``OUT``, ready for ``carina models add``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage as ndi

from carina.core.errors import ModelError
from carina.core.labels import Label, LabelSet
from carina.core.volume import LabelMap, Volume
from carina.imaging.resample import resample_to_geometry
from carina.models.click_guided import antialias, network_input
from carina.models.spec import Guidance, Intensity, ModelSpec
from carina.models.template import model_grid, scale_intensity

NETWORK: dict[str, Any] = {
    "name": "UNet",
    "args": {
        "spatial_dims": 3,
        "in_channels": 3,
        "out_channels": 2,
        "channels": [8, 16, 32, 64],
        "strides": [2, 2, 2],
        "num_res_units": 0,
    },
}
STRUCTURE_LABELS = LabelSet([Label(1, "structure", color=(241, 214, 145))])
PATCH = (32, 32, 32)
#: The structures clicked in training (names of the label map given to the recipe).
STRUCTURES = ("liver", "spleen", "kidney_left", "kidney_right", "stomach")


def click_spec(model_id: str = "tiny-click") -> ModelSpec:
    return ModelSpec(
        id=model_id,
        version="0.1",
        task="the structure under foreground clicks (not under background clicks) on CT",
        modalities=("CT",),
        labels=STRUCTURE_LABELS,
        method="click-guided 3-D U-Net (MONAI), DeepEdit-style input (image + foreground and "
        "background Gaussian click maps), trained on CPU in seconds on one CT's labelled "
        "structures with simulated clicks; 4 mm, [-300, 400] HU window",
        citation="Diaz-Pinto et al., DeepEdit (MONAI Label), 2022; carina.models.train_click",
        requires_weights=True,
        framework="torch",
        format="torch",
        weights="model.pt",
        spacing=(4.0, 4.0, 4.0),
        orientation="LPS",
        intensity=Intensity("window", -300.0, 400.0),
        roi_size=PATCH,
        overlap=0.0,
        network=NETWORK,
        licence="Apache-2.0 (trained on TotalSegmentator test data)",
        kind="interactive",
        guidance=Guidance(sigma_mm=9.0, margin_mm=90.0),
    )


@dataclass
class _Structure:
    value: int
    interior: npt.NDArray[np.intp]  # voxel indices for foreground clicks
    shell: npt.NDArray[np.intp]  # voxel indices for background clicks


def _structures(
    label: npt.NDArray[np.integer[Any]], values: Sequence[int], spacing: float, min_voxels: int
) -> list[_Structure]:
    out = []
    counts = [int((label == v).sum()) for v in values]
    near = int(np.ceil(15.0 / spacing))
    gap = max(int(np.ceil(3.0 / spacing)), 1)
    for value, count in zip(values, counts, strict=True):
        if count < min_voxels:
            continue
        mask = label == value
        depth = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1, 1:-1]
        interior = np.argwhere(depth >= max(0.5 * float(depth.max()), 1.0))
        outer = ndi.binary_dilation(mask, iterations=near)
        inner = ndi.binary_dilation(mask, iterations=gap)
        out.append(_Structure(int(value), interior, np.argwhere(outer & ~inner)))
    return out


def _pick(rng: np.random.Generator, points: npt.NDArray[np.intp], n: int) -> npt.NDArray[np.intp]:
    if n <= 0 or len(points) == 0:
        return np.zeros((0, 3), dtype=np.intp)
    return points[rng.integers(0, len(points), size=n)]


def _contrast(
    rng: np.random.Generator, hu: npt.NDArray[np.float32], intensity: Intensity
) -> npt.NDArray[np.float32]:
    """Network input from a patch's HU as another scan might show it: soft tissue (-50 to 300
    HU) enhanced by -20 to 120 HU as by intravenous contrast, then all values scaled by 0.9 to
    1.1 around 0 HU."""
    soft = (hu > -50.0) & (hu < 300.0)
    out = hu + soft * np.float32(rng.uniform(-20.0, 120.0))
    out = out * np.float32(rng.uniform(0.9, 1.1))
    return scale_intensity(out, intensity)


def _thin_slab(
    rng: np.random.Generator,
    image: npt.NDArray[np.float32],
    target: npt.NDArray[np.bool_],
    fg: npt.NDArray[np.intp],
    bg: npt.NDArray[np.intp],
) -> tuple[
    npt.NDArray[np.float32], npt.NDArray[np.bool_], npt.NDArray[np.intp], npt.NDArray[np.intp]
]:
    """The patch as a series of a few slices shows it: a slab of 6 to 16 slices holding the
    first foreground click, at the start of the last axis, the rest repeating its last slice
    (as the runner pads a thin region)."""
    depth = image.shape[2]
    n = int(rng.integers(6, 17))
    z = int(fg[0, 2])
    lo = int(np.clip(z - int(rng.integers(0, n)), 0, depth - n))
    index = np.minimum(np.arange(depth), n - 1) + lo

    def keep(p: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        kept: npt.NDArray[np.intp] = p[(p[:, 2] >= lo) & (p[:, 2] < lo + n)] - np.array([0, 0, lo])
        return kept

    return image[:, :, index], target[:, :, index], keep(fg), keep(bg)


def largest_error(
    pred: npt.NDArray[np.bool_], target: npt.NDArray[np.bool_]
) -> tuple[bool, npt.NDArray[np.bool_]] | None:
    """The region an annotator corrects next: the largest connected region of the missed
    (``True``, a foreground click) or the leaked (``False``, a background click) voxels;
    ``None`` when the prediction is right."""
    best: tuple[bool, npt.NDArray[np.bool_]] | None = None
    size = 0
    for is_fg, err in ((True, target & ~pred), (False, pred & ~target)):
        lab, n = ndi.label(err)
        if n == 0:
            continue
        counts = np.bincount(lab.ravel())[1:]
        k = int(np.argmax(counts)) + 1
        if counts[k - 1] > size:
            size, best = int(counts[k - 1]), (is_fg, lab == k)
    return best


def _error_click(
    pred: npt.NDArray[np.bool_], target: npt.NDArray[np.bool_]
) -> tuple[bool, npt.NDArray[np.intp]] | None:
    """(is_foreground, voxel) of the click an annotator adds: the deepest voxel (in voxels) of
    :func:`largest_error`; ``None`` when the prediction is right."""
    error = largest_error(pred, target)
    if error is None:
        return None
    depth = ndi.distance_transform_edt(error[1])
    return error[0], np.array(np.unravel_index(int(np.argmax(depth)), depth.shape))


def train_click_unet(
    volume: Volume,
    labels: LabelMap,
    *,
    steps: int = 300,
    batch: int = 4,
    seed: int = 0,
    structures: Sequence[str | int] = STRUCTURES,
    min_voxels: int = 200,
    lr: float = 5e-3,
) -> tuple[Any, ModelSpec]:
    """Train the tiny click-guided U-Net on ``volume`` and the ``structures`` of its ``labels``
    (names or values; those of at least ``min_voxels`` voxels on the 4 mm grid); (net, spec).

    PyTorch runs on one thread meanwhile: the network's convolutions are too small to gain from
    more, and on a shared machine the threads' synchronisation made each step twenty times
    slower (0.02 s against 0.5 s per step measured on two busy cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(volume, labels, steps, batch, seed, structures, min_voxels, lr)
    finally:
        torch.set_num_threads(threads)


def _train(
    volume: Volume,
    labels: LabelMap,
    steps: int,
    batch: int,
    seed: int,
    structures: Sequence[str | int],
    min_voxels: int,
    lr: float,
) -> tuple[Any, ModelSpec]:
    import torch
    from monai.losses.dice import DiceCELoss

    from carina.models.torch_runner import build_network

    spec = click_spec()
    assert spec.guidance is not None
    assert spec.spacing is not None
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    grid = model_grid(antialias(volume.reorient(spec.orientation), spec.spacing), spec)
    hu = np.asarray(grid.array, dtype=np.float32)
    label = np.asarray(resample_to_geometry(labels, grid.geometry).array)
    half = np.asarray(PATCH) // 2
    pad = [(int(h), int(h)) for h in half]
    hu = np.pad(hu, pad, mode="edge")
    label = np.pad(label, pad)
    values = [labels.labels.by_name(s).value if isinstance(s, str) else int(s) for s in structures]
    found = _structures(label, values, spec.spacing[0], min_voxels)
    if not found:
        raise ModelError(f"none of the structures {list(structures)} is in the label map")
    spacing = grid.geometry.spacing
    net = build_network(NETWORK)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    shape = np.asarray(hu.shape)
    patch = np.asarray(PATCH)

    def sample() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_], list[Any]]:
        s = found[int(rng.integers(len(found)))]
        fg = _pick(rng, s.interior, int(rng.integers(1, 4)))
        centre = fg[0] + rng.integers(-patch // 4, patch // 4 + 1)
        start = np.clip(centre - half, 0, shape - patch)
        box = tuple(slice(int(a), int(a + p)) for a, p in zip(start, patch, strict=True))
        target = label[box] == s.value
        bg = _pick(rng, s.shell, int(rng.integers(0, 4))) - start
        bg = bg[np.all((bg >= 0) & (bg < patch), axis=1)]
        fg = fg - start
        img = _contrast(rng, hu[box], spec.intensity)
        if rng.random() < 0.1:
            fg, target = fg[:0], np.zeros_like(target)
        elif rng.random() < 0.4:
            img, target, fg, bg = _thin_slab(rng, img, target, fg, bg)
        return img, target, [fg, bg]

    for step in range(steps):
        xs, ys = [], []
        for _b in range(batch):
            img, target, (fg, bg) = sample()
            if step >= steps // 2 and len(fg) and rng.random() < 0.3:
                x = network_input(img, spacing, fg, bg, spec.guidance)
                net.eval()
                with torch.inference_mode():
                    pred = net(torch.from_numpy(x)[None]).argmax(1)[0].numpy() > 0
                net.train()
                extra = _error_click(pred, target)
                if extra is not None:
                    if extra[0]:
                        fg = np.vstack([fg, extra[1][None]])
                    else:
                        bg = np.vstack([bg, extra[1][None]])
            xs.append(network_input(img, spacing, fg, bg, spec.guidance))
            ys.append(target[None].astype(np.int64))
        opt.zero_grad()
        loss = loss_fn(net(torch.from_numpy(np.stack(xs))), torch.from_numpy(np.stack(ys)))
        loss.backward()
        opt.step()
    net.eval()
    return net, spec


def save_click_model(net: Any, spec: ModelSpec, folder: str | Path) -> ModelSpec:
    """Write ``net`` as an installable interactive model folder (``model.json`` + state dict)."""
    import torch

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / "model.pt")
    saved = replace(spec, weights="model.pt", network=NETWORK)
    saved.save(out)
    return saved


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Train the tiny click-guided U-Net and save it.")
    parser.add_argument("ct", type=Path, help="CT: DICOM series folder or image file")
    parser.add_argument("labels", type=Path, help="label map of the CT's structures (image file)")
    parser.add_argument("out", type=Path, help="output model folder")
    parser.add_argument("--names", type=Path, help="JSON of label value -> name for LABELS")
    parser.add_argument(
        "--structure",
        action="append",
        help=f"a structure to click (name or value; repeat; default {', '.join(STRUCTURES)})",
    )
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    from carina.dicom import read_volume
    from carina.imaging import read_labelmap
    from carina.imaging.formats import is_image_file, read_image

    ct = read_image(args.ct) if is_image_file(args.ct) else read_volume(args.ct)
    labels = read_labelmap(args.labels, LabelSet.from_json(args.names) if args.names else None)
    wanted = [int(s) if s.isdigit() else s for s in args.structure or STRUCTURES]
    start = time.perf_counter()
    net, spec = train_click_unet(ct, labels, steps=args.steps, structures=wanted)
    print(f"trained in {time.perf_counter() - start:.1f} s")
    save_click_model(net, spec, args.out)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
