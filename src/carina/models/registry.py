"""The registry of segmentation tools and models, by id.

Built-in weight-free tools are always present. Installed models extend it: a package exposes a
factory in the ``carina.models`` entry-point group (``name = "package.module:factory"``) that
returns a :class:`~carina.models.base.Runner`; a runner for PyTorch, ONNX, a MONAI bundle, an
nnU-Net folder or a TotalSegmentator task implements the same protocol (spec +
``run(volume) -> SegmentationResult``), loads its weights lazily, and is registered the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

from carina.core.errors import ModelError
from carina.models.base import Runner
from carina.models.tools import builtin_tools

ENTRY_POINT_GROUP = "carina.models"


class Registry:
    """Runners by id, in registration order."""

    def __init__(self) -> None:
        self._runners: dict[str, Runner] = {}

    def register(self, runner: Runner, *, replace: bool = False) -> None:
        if not isinstance(runner, Runner):
            raise ModelError(f"{runner!r} does not implement the Runner protocol")
        tool_id = runner.spec.id
        if tool_id in self._runners and not replace:
            raise ModelError(f"a tool or model with id {tool_id!r} is already registered")
        self._runners[tool_id] = runner

    def get(self, tool_id: str) -> Runner:
        try:
            return self._runners[tool_id]
        except KeyError:
            known = ", ".join(self._runners) or "none"
            raise ModelError(f"unknown tool {tool_id!r} (available: {known})") from None

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register the runners that installed packages declare; returns their ids."""
        added = []
        for ep in entry_points(group=group):
            try:
                runner = ep.load()()
            except Exception as exc:  # a broken plug-in must not break the built-in tools
                raise ModelError(f"cannot load model entry point {ep.name!r}: {exc}") from exc
            self.register(runner)
            added.append(runner.spec.id)
        return added

    def __contains__(self, tool_id: object) -> bool:
        return tool_id in self._runners

    def __iter__(self) -> Iterator[Runner]:
        return iter(list(self._runners.values()))

    def __len__(self) -> int:
        return len(self._runners)


def default_registry(models_dir: str | Path | None = None) -> Registry:
    """A registry holding the built-in tools, the entry-point models and, when ``models_dir`` is
    given, the models installed there (see :mod:`carina.models.installed`)."""
    reg = Registry()
    for tool in builtin_tools():
        reg.register(tool)
    reg.load_entry_points()
    if models_dir is not None:
        from carina.models.installed import installed_models, runner_for

        for spec, folder in installed_models(models_dir):
            reg.register(runner_for(spec, folder))
    return reg


def get_tool(tool_id: str, models_dir: str | Path | None = None) -> Runner:
    """The built-in (or installed) runner ``tool_id``."""
    return default_registry(models_dir).get(tool_id)
