"""A job kind registered outside carina.jobs, imported on workers through ``kind_modules``."""

from __future__ import annotations

from typing import Any

from carina.jobs import JobContext, register


@register("test.extra")
def _extra(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    ctx.progress(1.0, "done")
    return {**params, "module": __name__}
