"""Small validators shared by the evaluators' ``parse`` functions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from alerts.durations import parse_duration
from alerts.errors import RuleError

LINE = "__line__"


def check_keys(raw: Mapping[str, Any], allowed: set[str], *, where: str, rule_id: str,
               required: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    unknown = set(raw) - allowed - {LINE}
    if unknown:
        raise RuleError(f"unknown params {sorted(unknown)}; allowed: {sorted(allowed)}",
                        location=where, culprit=rule_id)
    absent = required - set(raw)
    if absent:
        raise RuleError(f"missing params {sorted(absent)}", location=where, culprit=rule_id)


def number(raw: Mapping[str, Any], key: str, default: float | None, *, where: str,
           rule_id: str, minimum: float | None = None) -> float:
    value = raw.get(key, default)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(f"'{key}' must be a number, got {value!r}", location=where,
                        culprit=f"{rule_id}.{key}")
    if minimum is not None and value < minimum:
        raise RuleError(f"'{key}' must be >= {minimum:g}, got {value!r}", location=where,
                        culprit=f"{rule_id}.{key}")
    return float(value)


def duration(raw: Mapping[str, Any], key: str, default: str | None, *, where: str,
             rule_id: str) -> timedelta:
    value = raw.get(key, default)
    try:
        return parse_duration(value)
    except ValueError as err:
        raise RuleError(str(err), location=where, culprit=f"{rule_id}.{key}") from None


def boolean(raw: Mapping[str, Any], key: str, default: bool, *, where: str,
            rule_id: str) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise RuleError(f"'{key}' must be true or false", location=where,
                        culprit=f"{rule_id}.{key}")
    return value
