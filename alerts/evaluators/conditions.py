"""Conditions over a reading's values: ``{metric, op, value}`` and ``any``/``all`` of them."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alerts.errors import RuleError

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}


@dataclass(frozen=True, slots=True)
class Compare:
    metric: str
    op: str
    value: float
    _test: Callable[[float, float], bool] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_test", OPERATORS[self.op])

    def holds(self, values: Mapping[str, float]) -> bool | None:
        """None when the reading lacks the metric (unknown, not false)."""
        v = values.get(self.metric)
        if v is None:
            return None
        return self._test(float(v), self.value)

    def describe(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"

    def metrics(self) -> set[str]:
        return {self.metric}


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple[Condition, ...]

    def holds(self, values: Mapping[str, float]) -> bool | None:
        unknown = False
        for p in self.parts:
            r = p.holds(values)
            if r is True:
                return True
            unknown = unknown or r is None
        return None if unknown else False

    def describe(self) -> str:
        return " or ".join(p.describe() for p in self.parts)

    def metrics(self) -> set[str]:
        return set().union(*(p.metrics() for p in self.parts))


@dataclass(frozen=True, slots=True)
class AllOf:
    parts: tuple[Condition, ...]

    def holds(self, values: Mapping[str, float]) -> bool | None:
        unknown = False
        for p in self.parts:
            r = p.holds(values)
            if r is False:
                return False
            unknown = unknown or r is None
        return None if unknown else True

    def describe(self) -> str:
        return " and ".join(p.describe() for p in self.parts)

    def metrics(self) -> set[str]:
        return set().union(*(p.metrics() for p in self.parts))


Condition = Compare | AnyOf | AllOf


def parse_condition(raw: Any, *, where: str, culprit: str) -> Condition:
    """Parse ``{metric, op, value}``, ``{any: [...]}``, ``{all: [...]}`` or a list (= all)."""
    if isinstance(raw, list):
        raw = {"all": raw}
    if not isinstance(raw, Mapping):
        raise RuleError("a condition must be a mapping {metric, op, value} or {any|all: [...]}",
                        location=where, culprit=culprit)
    keys = set(raw) - {"__line__"}
    if keys in ({"any"}, {"all"}):
        (key,) = keys
        items = raw[key]
        if not isinstance(items, list) or not items:
            raise RuleError(f"'{key}' needs a non-empty list", location=where, culprit=culprit)
        parts = tuple(parse_condition(i, where=where, culprit=f"{culprit}.{key}[{n}]")
                      for n, i in enumerate(items))
        return AnyOf(parts) if key == "any" else AllOf(parts)
    if keys != {"metric", "op", "value"}:
        raise RuleError(f"expected keys metric, op, value (or any/all); got {sorted(keys)}",
                        location=where, culprit=culprit)
    if raw["op"] not in OPERATORS:
        raise RuleError(f"unknown op {raw['op']!r}; use one of {' '.join(OPERATORS)}",
                        location=where, culprit=culprit)
    value = raw["value"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(f"value must be a number, got {value!r}", location=where, culprit=culprit)
    if not isinstance(raw["metric"], str):
        raise RuleError("metric must be a name", location=where, culprit=culprit)
    return Compare(raw["metric"], raw["op"], float(value))
