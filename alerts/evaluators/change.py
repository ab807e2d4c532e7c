"""Change over a window: e.g. heart-failure weight gain of more than 2 kg in 3 days.

```yaml
kind: change
reading_kinds: [weight]
params: {metric: body_weight, rise: 2.0, over: 3d, fall: 2.0, clear_rise: 1.0}
```
The latest value is compared with the lowest (for ``rise``) and highest (for
``fall``) value in the ``over`` period before it.  ``fall`` is optional (rapid
loss, e.g. over-diuresis).  It clears when the change is back within
``clear_rise`` / ``clear_fall`` (default: the trigger amounts).
Source for the default: ESC Heart Failure Association, heartfailurematters.org,
"tell your doctor or nurse if your weight rises by more than 2 kg in 3 days".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alerts.errors import RuleError
from alerts.evaluators._params import check_keys, duration, number
from alerts.model import Finding, Rule, Severity
from alerts.window import Window


@dataclass(frozen=True, slots=True)
class ChangeParams:
    metric: str
    over: timedelta
    rise: float | None = None
    fall: float | None = None
    clear_rise: float | None = None
    clear_fall: float | None = None


def parse(raw: Mapping[str, Any], *, where: str, rule_id: str,
          severity: Severity) -> ChangeParams:
    check_keys(raw, {"metric", "rise", "fall", "over", "clear_rise", "clear_fall"},
               where=where, rule_id=rule_id, required={"metric", "over"})
    if "rise" not in raw and "fall" not in raw:
        raise RuleError("a change rule needs 'rise' and/or 'fall'", location=where,
                        culprit=rule_id)

    def opt(key: str, default: float | None) -> float | None:
        if key not in raw and default is None:
            return None
        return number(raw, key, default, where=where, rule_id=rule_id, minimum=0)

    rise, fall = opt("rise", None), opt("fall", None)
    if not isinstance(raw["metric"], str):
        raise RuleError("metric must be a name", location=where, culprit=f"{rule_id}.metric")
    return ChangeParams(raw["metric"], duration(raw, "over", None, where=where, rule_id=rule_id),
                        rise, fall, opt("clear_rise", rise), opt("clear_fall", fall))


def evaluate(rule: Rule, window: Window, now: datetime) -> Finding | None:
    """Rise (or fall) of a metric over a period, against the period's low (or high)."""
    p: ChangeParams = rule.params
    rs = [r for r in window.of_kind(*rule.reading_kinds)
          if p.metric in r.values and r.taken_at <= now]
    if len(rs) < 2:
        return None
    latest = rs[-1]
    earlier = [r for r in rs[:-1] if r.taken_at >= latest.taken_at - p.over]
    if not earlier:
        return None
    v = float(latest.values[p.metric])
    low = min(earlier, key=lambda r: r.values[p.metric])
    high = max(earlier, key=lambda r: r.values[p.metric])
    rise = v - float(low.values[p.metric])
    fall = float(high.values[p.metric]) - v
    days = p.over.total_seconds() / 86400
    if p.rise is not None and rise > p.rise:
        return Finding(True, rule.severity,
                       f"{rule.title}: {p.metric} up {rise:.1f} in {days:g} d "
                       f"({low.values[p.metric]:g} -> {v:g})", (low, latest),
                       {"rise": round(rise, 3), "over_days": days})
    if p.fall is not None and fall > p.fall:
        return Finding(True, rule.severity,
                       f"{rule.title}: {p.metric} down {fall:.1f} in {days:g} d "
                       f"({high.values[p.metric]:g} -> {v:g})", (high, latest),
                       {"fall": round(fall, 3), "over_days": days})
    ok_rise = p.clear_rise is None or rise <= p.clear_rise
    ok_fall = p.clear_fall is None or fall <= p.clear_fall
    if ok_rise and ok_fall:
        return Finding(False, None, f"{rule.title}: change within limits", (latest,))
    return None


EVALUATORS = {"change": (parse, evaluate)}
