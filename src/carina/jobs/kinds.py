"""Built-in job kinds: ``echo`` and ``sleep`` (for trying the engine), ``quantify`` and
``segment``."""

from __future__ import annotations

from typing import Any

from carina.analysis import quantify
from carina.core.errors import ModelError
from carina.core.labels import LabelSet
from carina.imaging import read_image, read_labelmap, write_image
from carina.jobs.context import JobContext
from carina.jobs.registry import JobError, register
from carina.models import get_tool, run_tool


@register("echo", remote=True)
def echo(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Return the parameters unchanged."""
    ctx.progress(1.0, "echoed")
    return dict(params)


@register("sleep", remote=True)
def sleep(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Wait ``seconds`` (at most 3600) in ``steps`` steps, reporting progress after each."""
    seconds = float(params.get("seconds", 1.0))
    steps = int(params.get("steps", 10))
    if not 0 <= seconds <= 3600 or not 1 <= steps <= 10_000:
        raise JobError("sleep needs 0 <= seconds <= 3600 and 1 <= steps <= 10000")
    for step in range(steps):
        ctx.sleep(seconds / steps)
        ctx.progress((step + 1) / steps, f"step {step + 1} of {steps}")
    return {"slept": seconds, "worker": ctx.worker}


@register("quantify")
def quantify_files(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Statistics of the image file ``image`` inside every label of the label map file ``labels``
    (optional ``label_names``: a JSON label set file; ``components``: per connected component).
    Paths are read on the worker; the kind is not offered over HTTP."""
    ctx.progress(0.0, "reading image")
    image = read_image(params["image"])
    ctx.progress(0.3, "reading labels")
    names = LabelSet.from_json(params["label_names"]) if params.get("label_names") else None
    labels = read_labelmap(params["labels"], names)
    ctx.progress(0.6, "measuring")
    result = quantify(image, labels, components=bool(params.get("components", False)))
    return {"image": str(params["image"]), "regions": result.to_json()["regions"]}


@register("segment")
def segment_file(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Run the segmentation tool ``tool`` on the image file ``image`` and write the label map to
    ``output`` (a NIfTI/NRRD/MHA path), with the optional post-processing ``largest_component``,
    ``fill_holes`` and ``min_size_ml``. Paths are read and written on the worker; the kind is not
    offered over HTTP (``segment-series`` in ``carina.services.job_kinds`` works on stored
    series and is)."""
    if "tool" not in params:
        raise JobError("segment needs 'tool', 'image' and 'output'")
    try:
        get_tool(str(params["tool"]))
    except ModelError as exc:
        raise JobError(str(exc)) from exc
    if not all(key in params for key in ("image", "output")):
        raise JobError("segment needs 'tool', 'image' and 'output'")
    ctx.progress(0.0, "reading image")
    image = read_image(params["image"])
    ctx.progress(0.2, f"running {params['tool']}")
    run = run_tool(
        str(params["tool"]),
        image,
        params.get("params"),
        largest_component=bool(params.get("largest_component", False)),
        fill_holes=bool(params.get("fill_holes", False)),
        min_size_ml=float(params.get("min_size_ml", 0.0)),
    )
    written = write_image(run.labels, params["output"])
    return {
        "output": str(written),
        "tool": run.spec.id,
        "version": run.spec.version,
        "timings_s": dict(run.timings),
        "volumes_ml": run.volumes_ml,
        "findings": dict(run.findings),
    }
