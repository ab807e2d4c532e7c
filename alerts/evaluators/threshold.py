"""Threshold rules: a condition on a reading's values, with optional duration or N-of-M,
severity levels, and a separate clear condition (hysteresis).

```yaml
params:
  when: {any: [{metric: systolic, op: ">=", value: 180}, {metric: diastolic, op: ">=", value: 120}]}
  # or levels: {amber: <condition>, red: <condition>}   (highest matching level wins)
  for: 10m          # optional: the condition held on every reading for this long
  n_of_m: [2, 3]    # optional: at least 2 of the last 3 readings matched
  clear: {all: [...]}  # optional: the condition that resolves it (default: not `when`)
  clear_count: 2    # optional: that many consecutive latest readings must satisfy `clear`
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alerts.durations import parse_duration
from alerts.errors import RuleError
from alerts.evaluators.conditions import Condition, parse_condition
from alerts.model import Finding, Rule, Severity, WindowReading
from alerts.window import Window


@dataclass(frozen=True, slots=True)
class Level:
    severity: Severity
    when: Condition


@dataclass(frozen=True, slots=True)
class ThresholdParams:
    levels: tuple[Level, ...]          # ascending severity
    clear: Condition | None = None
    for_: timedelta | None = None
    n_of_m: tuple[int, int] | None = None
    clear_count: int = 1
    #: every metric the conditions read (computed once, from the fields above)
    metric_set: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        out: set[str] = set()
        for level in self.levels:
            out |= level.when.metrics()
        if self.clear is not None:
            out |= self.clear.metrics()
        object.__setattr__(self, "metric_set", frozenset(out))

    def metrics(self) -> set[str]:
        return set(self.metric_set)


_KEYS = {"when", "levels", "for", "n_of_m", "clear", "clear_count", "__line__"}


def parse(raw: Mapping[str, Any], *, where: str, rule_id: str,
          severity: Severity) -> ThresholdParams:
    unknown = set(raw) - _KEYS
    if unknown:
        raise RuleError(f"unknown threshold params {sorted(unknown)}; allowed: "
                        f"{sorted(_KEYS - {'__line__'})}", location=where, culprit=rule_id)
    if ("when" in raw) == ("levels" in raw):
        raise RuleError("a threshold rule needs exactly one of 'when' or 'levels'",
                        location=where, culprit=rule_id)
    if "when" in raw:
        levels: tuple[Level, ...] = (
            Level(severity, parse_condition(raw["when"], where=where,
                                            culprit=f"{rule_id}.when")),)
    else:
        if not isinstance(raw["levels"], Mapping) or not raw["levels"]:
            raise RuleError("'levels' must map severities (info/amber/red) to conditions",
                            location=where, culprit=rule_id)
        parsed = []
        for name, cond in raw["levels"].items():
            if name == "__line__":
                continue
            try:
                sev = Severity(name)
            except ValueError:
                raise RuleError(f"unknown severity {name!r} in levels; use info, amber, red",
                                location=where, culprit=rule_id) from None
            parsed.append(Level(sev, parse_condition(cond, where=where,
                                                     culprit=f"{rule_id}.levels.{name}")))
        levels = tuple(sorted(parsed, key=lambda lv: lv.severity.rank))
    for_ = None
    if "for" in raw:
        try:
            for_ = parse_duration(raw["for"])
        except ValueError as err:
            raise RuleError(str(err), location=where, culprit=f"{rule_id}.for") from None
    n_of_m = None
    if "n_of_m" in raw:
        v = raw["n_of_m"]
        if (not isinstance(v, list) or len(v) != 2 or not all(isinstance(x, int) for x in v)
                or not 1 <= v[0] <= v[1]):
            raise RuleError(f"n_of_m must be [n, m] with 1 <= n <= m, got {v!r}",
                            location=where, culprit=f"{rule_id}.n_of_m")
        n_of_m = (v[0], v[1])
    if for_ is not None and n_of_m is not None:
        raise RuleError("use 'for' or 'n_of_m', not both", location=where, culprit=rule_id)
    clear = None
    if "clear" in raw:
        clear = parse_condition(raw["clear"], where=where, culprit=f"{rule_id}.clear")
    clear_count = raw.get("clear_count", 1)
    if not isinstance(clear_count, int) or clear_count < 1:
        raise RuleError(f"clear_count must be a positive integer, got {clear_count!r}",
                        location=where, culprit=f"{rule_id}.clear_count")
    return ThresholdParams(levels, clear, for_, n_of_m, clear_count)


def _level(p: ThresholdParams, r: WindowReading) -> Severity | None:
    for level in reversed(p.levels):
        if level.when.holds(r.values) is True:
            return level.severity
    return None


def _describe(rs: Sequence[WindowReading], metrics: frozenset[str]) -> str:
    last = rs[-1]
    shown = ", ".join(f"{k} {v:g}" for k, v in last.values.items() if k in metrics)
    more = f" ({len(rs)} readings)" if len(rs) > 1 else ""
    return f"{shown}{more}"


def evaluate(rule: Rule, window: Window, now: datetime) -> Finding | None:
    """Threshold with optional duration or N-of-M, severity levels and a clear condition."""
    return _judge(rule, window, now, clears=True)


def firing(rule: Rule, window: Window, now: datetime) -> Finding | None:
    """``evaluate``'s firing finding, or None (no clear finding built)."""
    return _judge(rule, window, now, clears=False)


def _judge(rule: Rule, window: Window, now: datetime, *, clears: bool) -> Finding | None:
    p: ThresholdParams = rule.params
    metrics = p.metric_set
    readings = window.of_kind(*rule.reading_kinds)
    if p.for_ is None:
        # only the newest few can matter: the last one (or the last m), and clear_count
        need = max(p.n_of_m[1] if p.n_of_m is not None else 1, p.clear_count)
        newest: list[WindowReading] = []
        for r in reversed(readings):
            if not metrics.isdisjoint(r.values):
                newest.append(r)
                if len(newest) == need:
                    break
        newest.reverse()
        rs = newest
    else:
        rs = [r for r in readings if not metrics.isdisjoint(r.values)]
    if not rs:
        return None
    firing: tuple[Severity, list[WindowReading]] | None = None
    if p.n_of_m is not None:
        n, m = p.n_of_m
        recent = rs[-m:]
        for level in reversed(p.levels):
            hits = [r for r in recent if (s := _level(p, r)) is not None
                    and s.rank >= level.severity.rank]
            if len(hits) >= n:
                firing = (level.severity, hits)
                break
    elif p.for_ is not None:
        streak: list[WindowReading] = []
        for r in reversed(rs):
            if _level(p, r) is None:
                break
            streak.insert(0, r)
        if streak and now - streak[0].taken_at >= p.for_:
            sev = min((_level(p, r) or p.levels[0].severity for r in streak),
                      key=lambda s: s.rank)
            firing = (sev, streak)
    else:
        last_level = _level(p, rs[-1])
        if last_level is not None:
            firing = (last_level, [rs[-1]])
    if firing is not None:
        sev, hits = firing
        # the key names the evidence: the scheduler's re-evaluation of the same readings
        # (rules with ``for``) is not a new trigger
        return Finding(True, sev, f"{rule.title}: {_describe(hits, metrics)}", tuple(hits[-10:]),
                       key=f"reading:{rs[-1].id}")
    latest = rs[-p.clear_count:]
    if not clears or len(latest) < p.clear_count:
        return None
    if p.clear is not None:
        cleared = all(p.clear.holds(r.values) is True for r in latest)
    else:
        cleared = all(p.levels[0].when.holds(r.values) is False for r in latest)
    if cleared:
        return Finding(False, None, f"{rule.title}: cleared ({_describe(latest, metrics)})",
                       tuple(latest))
    return None


EVALUATORS = {"threshold": (parse, evaluate)}
FIRING = {"threshold": firing}
