"""Label sets: what each integer value of a label map means."""

from __future__ import annotations

import colorsys
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from carina.core.errors import LabelError

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Code:
    """A coded concept (e.g. SNOMED CT ``10200004`` "Liver")."""

    value: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class Label:
    """One structure of a label map."""

    value: int
    name: str
    color: RGB = (255, 0, 0)
    code: Code | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.value, int) or isinstance(self.value, bool):
            raise LabelError(f"label value must be an integer, got {self.value!r}")
        if self.value <= 0:
            raise LabelError(f"label values start at 1 (0 is background), got {self.value}")
        if not self.name.strip():
            raise LabelError(f"label {self.value} has an empty name")
        if len(self.color) != 3 or any(not 0 <= c <= 255 for c in self.color):
            raise LabelError(f"label {self.value} colour must be three values 0..255")


def label_dtype(max_value: int) -> type[np.uint8] | type[np.uint16] | type[np.int32]:
    """The smallest array type for label values up to ``max_value``: ``uint8`` up to 255,
    ``uint16`` up to 65535, ``int32`` beyond. Choose it from the largest *value*, not from how
    many labels there are: two labels 1 and 300 need 16 bits."""
    if max_value <= np.iinfo(np.uint8).max:
        return np.uint8
    if max_value <= np.iinfo(np.uint16).max:
        return np.uint16
    return np.int32


def default_color(value: int) -> RGB:
    """A distinct, stable colour per label value (golden-angle hues)."""
    hue = (value * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return (round(r * 255), round(g * 255), round(b * 255))


class LabelSet:
    """An ordered, validated collection of labels with unique values and names."""

    __slots__ = ("_by_value",)

    def __init__(self, labels: Iterable[Label] = ()) -> None:
        by_value: dict[int, Label] = {}
        names: set[str] = set()
        for label in labels:
            if label.value in by_value:
                raise LabelError(f"label value {label.value} appears twice")
            if label.name in names:
                raise LabelError(f"label name {label.name!r} appears twice")
            by_value[label.value] = label
            names.add(label.name)
        self._by_value = dict(sorted(by_value.items()))

    @classmethod
    def from_names(cls, names: Mapping[int, str] | Mapping[str, str]) -> LabelSet:
        """From ``{value: name}`` (keys may be strings of integers, as in JSON)."""
        labels = []
        for key, name in names.items():
            try:
                value = int(key)
            except ValueError as exc:
                raise LabelError(f"label key {key!r} is not an integer") from exc
            labels.append(Label(value, str(name), default_color(value)))
        return cls(labels)

    @classmethod
    def from_json(cls, path: str | Path) -> LabelSet:
        """Read ``{"1": "spleen", ...}`` or ``[{"value": 1, "name": ..., "color": [...]}, ...]``."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise LabelError(f"cannot read label set {path}: {exc}") from exc
        if isinstance(data, dict):
            return cls.from_names({str(k): str(v) for k, v in data.items()})
        if isinstance(data, list):
            return cls.from_list(data)
        raise LabelError(f"label set {path} must be a JSON object or list")

    @classmethod
    def from_list(cls, items: Iterable[Mapping[str, Any]]) -> LabelSet:
        """From ``[{"value": 1, "name": ..., "color": [r, g, b], "code": {...}}, ...]`` (the
        form :meth:`to_list` writes; colour and code optional)."""
        labels = []
        for item in items:
            try:
                value = item["value"]
                if not isinstance(value, int) or isinstance(value, bool):
                    raise LabelError(f"label value must be an integer, got {value!r}")
                code = item.get("code")
                color = item.get("color") or default_color(value)
                if len(color) != 3:
                    raise LabelError(f"label {value} colour must be three values 0..255")
                labels.append(
                    Label(
                        value,
                        str(item["name"]),
                        (int(color[0]), int(color[1]), int(color[2])),
                        Code(str(code["value"]), str(code["scheme"]), str(code["meaning"]))
                        if code
                        else None,
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise LabelError(f"malformed label {item!r}: {exc}") from exc
        return cls(labels)

    def to_list(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for lab in self:
            item: dict[str, object] = {
                "value": lab.value,
                "name": lab.name,
                "color": list(lab.color),
            }
            if lab.code:
                item["code"] = {
                    "value": lab.code.value,
                    "scheme": lab.code.scheme,
                    "meaning": lab.code.meaning,
                }
            out.append(item)
        return out

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(self._by_value)

    def by_name(self, name: str) -> Label:
        for lab in self:
            if lab.name == name:
                return lab
        raise LabelError(f"no label named {name!r}")

    def subset(self, values: Iterable[int]) -> LabelSet:
        return LabelSet(self._by_value[v] for v in values if v in self._by_value)

    def __getitem__(self, value: int) -> Label:
        try:
            return self._by_value[value]
        except KeyError:
            raise LabelError(f"no label with value {value}") from None

    def __contains__(self, value: object) -> bool:
        return value in self._by_value

    def __iter__(self) -> Iterator[Label]:
        return iter(self._by_value.values())

    def __len__(self) -> int:
        return len(self._by_value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelSet) and list(self) == list(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"LabelSet({len(self)} labels)"
