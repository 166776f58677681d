"""The template runner keeps label values whatever their size."""

from __future__ import annotations

import numpy as np

from carina.core import Geometry, Label, LabelSet, Volume
from carina.models.spec import ModelSpec
from carina.models.template import ModelRunner


class _Constant(ModelRunner):
    """A runner whose network answers one channel everywhere."""

    def __init__(self, spec: ModelSpec, channel: int) -> None:
        super().__init__(spec)
        self.channel = channel

    def load(self, device: str | None = None) -> None:
        pass

    def infer(self, image: np.ndarray) -> np.ndarray:
        return np.full(image.shape, self.channel, dtype=np.int64)


def test_model_labels_above_255_survive_with_few_labels() -> None:
    # two labels, one of value 300: a type chosen from the label count (8 bits) would wrap 300
    # to 44 and the template would then drop it as unknown
    labels = LabelSet([Label(1, "liver"), Label(300, "lesion")])
    spec = ModelSpec(
        id="sparse",
        version="1",
        task="test",
        modalities=("CT",),
        labels=labels,
        method="constant",
        requires_weights=False,
    )
    volume = Volume(
        np.zeros((4, 5, 6), dtype=np.float32),
        Geometry.from_components(shape=(4, 5, 6), spacing=(1, 2, 3), origin=(10, 20, 30)),
    )
    result = _Constant(spec, 300).run(volume)
    assert result.labels.array.dtype == np.uint16
    assert np.all(result.labels.array == 300)
    assert result.labels.geometry.same_grid(volume.geometry)
