"""Averages over a period: e.g. home blood pressure per NICE NG136.

```yaml
kind: average
reading_kinds: [blood_pressure]
params:
  above: {systolic: 135, diastolic: 85}  # fires when an average is >= its limit
  over: 7d
  discard_first_day: true   # NG136 HBPM: discard day 1, average the rest
  min_days: 4               # NG136: at least 4 days of readings
  min_readings: 6
```
NICE NG136 1.2 (HBPM): two consecutive seated readings at least a minute
apart, twice daily, for at least 4 (ideally 7) days; discard the first day
and average the rest; stage 1 hypertension from an HBPM average of 135/85.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alerts.errors import RuleError
from alerts.evaluators._params import boolean, check_keys, duration, number
from alerts.model import Finding, Rule, Severity
from alerts.window import Window


@dataclass(frozen=True, slots=True)
class AverageParams:
    above: tuple[tuple[str, float], ...]
    over: timedelta
    discard_first_day: bool = True
    min_days: int = 4
    min_readings: int = 1


def parse(raw: Mapping[str, Any], *, where: str, rule_id: str,
          severity: Severity) -> AverageParams:
    check_keys(raw, {"above", "over", "discard_first_day", "min_days", "min_readings"},
               where=where, rule_id=rule_id, required={"above", "over"})
    above = raw["above"]
    if not isinstance(above, Mapping) or not [k for k in above if k != "__line__"]:
        raise RuleError("'above' must map metrics to limits", location=where,
                        culprit=f"{rule_id}.above")
    limits = tuple((k, number(above, k, None, where=where, rule_id=f"{rule_id}.above"))
                   for k in above if k != "__line__")
    return AverageParams(
        limits, duration(raw, "over", None, where=where, rule_id=rule_id),
        boolean(raw, "discard_first_day", True, where=where, rule_id=rule_id),
        int(number(raw, "min_days", 4, where=where, rule_id=rule_id, minimum=1)),
        int(number(raw, "min_readings", 1, where=where, rule_id=rule_id, minimum=1)))


def evaluate(rule: Rule, window: Window, now: datetime) -> Finding | None:
    """Mean of each metric over the period (first day discarded) against its limit."""
    return _judge(rule, window, now, clears=True)


def firing(rule: Rule, window: Window, now: datetime) -> Finding | None:
    """``evaluate``'s firing finding, or None (no clear finding built)."""
    return _judge(rule, window, now, clears=False)


def _judge(rule: Rule, window: Window, now: datetime, *, clears: bool) -> Finding | None:
    p: AverageParams = rule.params
    metrics = {m for m, _ in p.above}
    rs = [r for r in window.of_kind(*rule.reading_kinds)
          if now - p.over <= r.taken_at <= now and metrics <= set(r.values)]
    if not rs:
        return None
    days = sorted({r.taken_at.date() for r in rs})
    if p.discard_first_day:
        rs = [r for r in rs if r.taken_at.date() != days[0]]
        days = days[1:]
    if len(days) < p.min_days or len(rs) < p.min_readings:
        return None
    means = {m: sum(float(r.values[m]) for r in rs) / len(rs) for m in metrics}
    fires = any(means[m] >= limit for m, limit in p.above)
    if not fires and not clears:
        return None
    shown = "/".join(f"{means[m]:.0f}" for m, _ in p.above)
    detail = {"means": {m: round(v, 1) for m, v in means.items()}, "readings": len(rs),
              "days": len(days)}
    if fires:
        return Finding(True, rule.severity,
                       f"{rule.title}: average {shown} over {len(days)} days "
                       f"({len(rs)} readings)", tuple(rs[-10:]), detail)
    return Finding(False, None, f"{rule.title}: average {shown} below limits", (rs[-1],), detail)


EVALUATORS = {"average": (parse, evaluate)}
FIRING = {"average": firing}
