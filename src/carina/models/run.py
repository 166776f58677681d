"""One call for "run this tool on this volume and clean up its labels"."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carina.core.volume import LabelMap, Volume
from carina.models.base import ToolSpec
from carina.models.postprocess import postprocess
from carina.models.registry import get_tool


@dataclass(frozen=True)
class ToolRun:
    """The post-processed labels of one run, the tool's spec, its stage timings and findings."""

    labels: LabelMap
    spec: ToolSpec
    timings: Mapping[str, float]
    findings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def volumes_ml(self) -> dict[str, float]:
        """Volume in mL of each label present, by label name."""
        labels = self.labels
        return {
            labels.labels[v].name: ml for v, ml in labels.volumes_ml().items() if v in labels.labels
        }


def run_tool(
    tool_id: str,
    volume: Volume,
    params: Mapping[str, Any] | None = None,
    *,
    largest_component: bool = False,
    fill_holes: bool = False,
    min_size_ml: float = 0.0,
    models_dir: str | Path | None = None,
) -> ToolRun:
    """Run the registered tool ``tool_id`` on ``volume`` (``params`` go to the tool), then the
    optional post-processing (see :func:`carina.models.postprocess.postprocess`); installed models
    under ``models_dir`` are found too."""
    runner = get_tool(tool_id, models_dir)
    result = runner.run(volume, **dict(params or {}))
    labels = postprocess(
        result.labels,
        largest_component=largest_component,
        fill_holes=fill_holes,
        min_size_ml=min_size_ml,
    )
    return ToolRun(labels, runner.spec, dict(result.timings), dict(result.findings))
