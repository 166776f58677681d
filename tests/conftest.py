"""Shared fixtures: the public data in ../shared/data, read in place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("CARINA_SHARED_DATA")
    return Path(env) if env else _ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"shared test data not found at {path} (set CARINA_SHARED_DATA)")
    return path


@dataclass
class TinyClick:
    """A tiny click-guided CT model trained here on the 3 mm abdominal CT and its reference
    structures, saved as an installable model folder."""

    folder: Path
    train_s: float


@pytest.fixture(scope="session")
def tiny_click(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyClick:
    import time

    from carina.core import LabelSet
    from carina.imaging import read_image, read_labelmap
    from carina.models.train_click import save_click_model, train_click_unet

    ts = shared_data / "totalsegmentator_ref"
    names = LabelSet.from_json(ts / "label_map_total.json")
    ct = read_image(ts / "ct_3mm/ct.nii.gz")
    labels = read_labelmap(ts / "ct_3mm/seg_total_fast.nii.gz", names)
    start = time.perf_counter()
    net, spec = train_click_unet(ct, labels)
    train_s = time.perf_counter() - start
    folder = tmp_path_factory.mktemp("tiny-click") / "tiny-click"
    save_click_model(net, spec, folder)
    return TinyClick(folder, train_s)
