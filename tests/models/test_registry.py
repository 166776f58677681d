"""The tool contract and registry."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from carina.core import Geometry, Label, LabelMap, LabelSet, Volume
from carina.core.errors import ModelError
from carina.models import Registry, Runner, SegmentationResult, Timings, ToolSpec, default_registry

BUILTIN = {"body", "lungs", "airways", "bones", "lung-vessels", "nodule-candidates", "tissue"}


def test_builtin_tools_registered_with_specs() -> None:
    reg = default_registry()
    ids = {r.spec.id for r in reg}
    assert ids >= BUILTIN
    for runner in reg:
        spec = runner.spec
        assert isinstance(runner, Runner)
        assert spec.method
        assert spec.citation
        assert spec.version
        assert not spec.requires_weights
        assert len(spec.labels) >= 1


class _Threshold:
    """A stand-in for a model runner: it only has to satisfy the protocol."""

    spec = ToolSpec(
        id="threshold-model",
        version="0",
        task="anything above 0",
        modalities=("CT",),
        labels=LabelSet([Label(1, "positive")]),
        method="x > 0",
        requires_weights=True,
        framework="none",
    )

    def run(self, volume: Volume, **params: Any) -> SegmentationResult:
        t = Timings()
        with t.stage("infer"):
            arr = (np.asarray(volume.array) > 0).astype(np.uint8)
        return SegmentationResult(
            LabelMap(arr, volume.geometry, labels=self.spec.labels),
            t.seconds,
            "threshold-model",
            "0",
        )


def test_registry_accepts_protocol_runners_and_rejects_duplicates() -> None:
    reg = Registry()
    reg.register(_Threshold())
    assert "threshold-model" in reg
    with pytest.raises(ModelError, match="already registered"):
        reg.register(_Threshold())
    with pytest.raises(ModelError, match="unknown tool 'nope'"):
        reg.get("nope")
    with pytest.raises(ModelError, match="Runner protocol"):
        reg.register(object())  # type: ignore[arg-type]
    vol = Volume(np.array([[[-1, 2]]], dtype=np.int16), Geometry(np.eye(4), (1, 1, 2)))
    res = reg.get("threshold-model").run(vol)
    assert res.labels.array.tolist() == [[[0, 1]]]
    assert res.timings["infer"] >= 0
