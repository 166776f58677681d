"""Rich progress bars for the stages that services report as ``progress(stage, done, total)``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

Progress = Callable[[str, int, int], None]

#: Labels of the stages services report.
STAGES = {
    "scan": "Reading headers",
    "load": "Loading series",
    "convert": "Writing",
    "deid": "De-identifying",
    "segment": "Segmenting",
    "write": "Writing",
}

err_console = Console(stderr=True)


@contextmanager
def stage_progress(enabled: bool = True) -> Iterator[Progress | None]:
    """One bar per reported stage, on standard error; ``None`` (silent) when not ``enabled``."""
    if not enabled:
        yield None
        return
    with RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(STAGES.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update
