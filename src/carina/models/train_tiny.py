"""A tiny lung-segmentation network trained in seconds on CPU: the recipe behind the model tests.

No weights can be downloaded where Carina is tested, so the models that exercise the PyTorch,
ONNX and MONAI-bundle runners are trained here, on a real CT, from a weight-free target: the
``lungs`` tool (both lungs as one label). The network is a small MONAI 3-D U-Net seeing the CT
at 4 mm with a [-1000, 500] HU window; a fixed number of Adam steps on random patches with a
fixed seed. :func:`save_model` writes it as an installable model folder (``model.json`` + weights
as a state dict, TorchScript or ONNX); :func:`save_bundle` as a MONAI bundle.

``python -m carina.models.train_tiny CT OUT`` (CT: a DICOM series folder or an image file)
writes ``OUT/torch``, ``OUT/torchscript``, ``OUT/onnx`` and ``OUT/bundle``, ready for
``carina models add``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from carina.core.labels import Code, Label, LabelSet
from carina.core.volume import LabelMap, Volume
from carina.imaging.resample import resample_to_geometry
from carina.models.registry import get_tool
from carina.models.spec import Intensity, ModelSpec
from carina.models.template import model_grid, scale_intensity

NETWORK: dict[str, Any] = {
    "name": "UNet",
    "args": {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 2,
        "channels": [4, 8, 16],
        "strides": [2, 2],
        "num_res_units": 0,
    },
}
LUNG_LABELS = LabelSet(
    [Label(1, "lung", color=(196, 121, 79), code=Code("39607008", "SCT", "Lung"))]
)


def lung_spec(model_id: str = "tiny-lung", fmt: str = "torch", weights: str = "") -> ModelSpec:
    return ModelSpec(
        id=model_id,
        version="0.1",
        task="lungs (both as one label) on chest CT",
        modalities=("CT",),
        labels=LUNG_LABELS,
        method="3-D U-Net (MONAI) trained on CPU in seconds on one CT against the weight-free "
        "lungs tool; 4 mm, [-1000, 500] HU window, sliding window 48x48x32",
        citation="Ronneberger et al., U-Net, MICCAI 2015; carina.models.train_tiny",
        requires_weights=True,
        framework=fmt,
        format=fmt,
        weights=weights,
        spacing=(4.0, 4.0, 4.0),
        orientation="LPS",
        intensity=Intensity("window", -1000.0, 500.0),
        roi_size=(48, 48, 32),
        overlap=0.25,
        network=NETWORK if fmt == "torch" else None,
        licence="CC BY 4.0 (trained on TCIA Lung-PET-CT-Dx data)",
    )


def lung_target(volume: Volume) -> LabelMap:
    """The training target: the ``lungs`` tool, both lungs as label 1, on ``volume``'s grid."""
    lungs = get_tool("lungs").run(volume).labels
    return LabelMap(
        (np.asarray(lungs.array) > 0).astype(np.uint8), lungs.geometry, labels=LUNG_LABELS
    )


def train_lung_unet(volume: Volume, *, steps: int = 120, seed: int = 0) -> tuple[Any, ModelSpec]:
    """Train the tiny U-Net on ``volume`` (the ``lungs`` tool as target); returns (net, spec)."""
    import torch
    from monai.losses.dice import DiceCELoss

    spec = lung_spec()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    grid = model_grid(volume, spec)
    image = scale_intensity(np.asarray(grid.array), spec.intensity)
    target = resample_to_geometry(lung_target(volume), grid.geometry, interpolator="nearest")
    label = np.asarray(target.array, dtype=np.int64)
    pad = [(0, max(0, r - s)) for r, s in zip(spec.roi_size, image.shape, strict=True)]
    image, label = np.pad(image, pad), np.pad(label, pad)
    from carina.models.torch_runner import build_network

    net = build_network(NETWORK)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    roi = spec.roi_size
    for _ in range(steps):
        xs, ys = [], []
        for _b in range(2):
            start = [int(rng.integers(0, s - r + 1)) for s, r in zip(image.shape, roi, strict=True)]
            box = tuple(slice(a, a + r) for a, r in zip(start, roi, strict=True))
            xs.append(image[box][None])
            ys.append(label[box][None])
        x = torch.from_numpy(np.stack(xs))
        y = torch.from_numpy(np.stack(ys))
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
    net.eval()
    return net, spec


def save_model(net: Any, spec: ModelSpec, folder: str | Path, fmt: str = "torch") -> ModelSpec:
    """Write ``net`` as a model folder (``model.json`` + weights) in format ``fmt``."""
    import torch

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    example = torch.zeros((1, 1, *spec.roi_size))
    with warnings.catch_warnings():
        # tracing and the ONNX exporter warn about MONAI's shape checks (constant here)
        warnings.simplefilter("ignore")
        if fmt == "torch":
            weights = "model.pt"
            torch.save(net.state_dict(), out / weights)
        elif fmt == "torchscript":
            weights = "model.ts"
            torch.jit.save(torch.jit.trace(net, example), str(out / weights))  # type: ignore[no-untyped-call]
        elif fmt == "onnx":
            weights = "model.onnx"
            torch.onnx.export(
                net,
                (example,),
                str(out / weights),
                dynamo=False,
                input_names=["image"],
                output_names=["logits"],
            )
        else:
            raise ValueError(f"unknown format {fmt!r}")
    saved = replace(
        spec,
        format=fmt,
        framework=fmt,
        weights=weights,
        network=NETWORK if fmt == "torch" else None,
    )
    saved.save(out)
    return saved


def bundle_config(spec: ModelSpec) -> dict[str, Any]:
    """A MONAI bundle inference config for the tiny lung U-Net (the spec's orientation and
    spacing, HU window, sliding window, argmax, inverted back to the input grid)."""
    lo, hi = spec.intensity.lo, spec.intensity.hi
    return {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "output_dir": "output",
        "input_image": "",
        "device": "$torch.device('cpu')",
        "network_def": {"_target_": "UNet", **NETWORK["args"]},
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image", "image_only": False},
                {"_target_": "EnsureChannelFirstd", "keys": "image"},
                {"_target_": "Orientationd", "keys": "image", "axcodes": spec.orientation},
                {
                    "_target_": "Spacingd",
                    "keys": "image",
                    "pixdim": list(spec.spacing or (1.0, 1.0, 1.0)),
                    "mode": "bilinear",
                },
                {
                    "_target_": "ScaleIntensityRanged",
                    "keys": "image",
                    "a_min": lo,
                    "a_max": hi,
                    "b_min": 0.0,
                    "b_max": 1.0,
                    "clip": True,
                },
                {"_target_": "EnsureTyped", "keys": "image"},
            ],
        },
        "datalist": [{"image": "@input_image"}],
        "dataset": {
            "_target_": "Dataset",
            "data": "@datalist",
            "transform": "@preprocessing",
        },
        "dataloader": {
            "_target_": "DataLoader",
            "dataset": "@dataset",
            "batch_size": 1,
            "shuffle": False,
            "num_workers": 0,
        },
        "inferer": {
            "_target_": "SlidingWindowInferer",
            "roi_size": list(spec.roi_size),
            "sw_batch_size": 1,
            "overlap": spec.overlap,
            "mode": "gaussian",
        },
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
                {
                    "_target_": "Invertd",
                    "keys": "pred",
                    "transform": "@preprocessing",
                    "orig_keys": "image",
                    "nearest_interp": True,
                    "to_tensor": True,
                },
                {
                    "_target_": "SaveImaged",
                    "keys": "pred",
                    "output_dir": "@output_dir",
                    "output_postfix": "seg",
                    "output_dtype": "uint8",
                    "resample": False,
                    "separate_folder": False,
                },
            ],
        },
        "handlers": [
            {
                "_target_": "CheckpointLoader",
                "load_path": "$@bundle_root + '/models/model.pt'",
                "load_dict": {"model": "@network"},
                "map_location": "@device",
            }
        ],
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
            "val_handlers": "@handlers",
            "amp": False,
        },
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "run": ["$@evaluator.run()"],
    }


def save_bundle(net: Any, spec: ModelSpec, folder: str | Path) -> Path:
    """Write ``net`` as a MONAI bundle: configs/metadata.json, configs/inference.json and
    models/model.pt (state dict)."""
    import torch

    root = Path(folder)
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    torch.save(net.state_dict(), root / "models" / "model.pt")
    metadata = {
        "version": spec.version,
        "monai_version": "1.6.1",
        "name": spec.id,
        "task": spec.task,
        "description": spec.method,
        "authors": "Carina",
        "license": spec.licence,
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "hounsfield",
                    "modality": "CT",
                    "num_channels": 1,
                    "spatial_shape": list(spec.roi_size),
                    "dtype": "float32",
                    "value_range": [spec.intensity.lo, spec.intensity.hi],
                    "is_patch_data": True,
                    "channel_def": {"0": "image"},
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": 2,
                    "spatial_shape": list(spec.roi_size),
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": True,
                    "channel_def": {"0": "background", "1": "lung"},
                }
            },
        },
    }
    (root / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    (root / "configs" / "inference.json").write_text(
        json.dumps(bundle_config(spec), indent=2) + "\n"
    )
    return root


def main(argv: list[str] | None = None) -> int:
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Train the tiny lung U-Net and save it.")
    parser.add_argument("ct", type=Path, help="chest CT: DICOM series folder or image file")
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--steps", type=int, default=120)
    args = parser.parse_args(argv)
    from carina.dicom import read_volume
    from carina.imaging.formats import is_image_file, read_image

    ct = read_image(args.ct) if is_image_file(args.ct) else read_volume(args.ct)
    start = time.perf_counter()
    net, spec = train_lung_unet(ct, steps=args.steps)
    print(f"trained in {time.perf_counter() - start:.1f} s")
    for fmt in ("torch", "torchscript", "onnx"):
        save_model(net, spec, args.out / fmt, fmt)
    save_bundle(net, spec, args.out / "bundle")
    print(f"saved under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
