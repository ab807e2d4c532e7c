"""NEWS2 as a rule: score the latest value of each parameter in the window.

```yaml
kind: news2
reading_kinds: [spo2, blood_pressure, temperature, respiratory_rate]
params:
  spo2_scale: 1          # 2 only under clinical direction (target 88-92 %); per patient
  on_oxygen: false       # or a reading flag "on_oxygen" on the SpO2 reading
  max_age: 12h           # older values do not count (RCP chart 4: 12-hourly minimum)
  severity: {low-medium: amber, medium: amber, high: red}
```
A missing parameter never counts as normal: the score is flagged partial
and the summary says which parameters are missing.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alerts.errors import RuleError
from alerts.evaluators._params import boolean, check_keys, duration
from alerts.model import Finding, Rule, Severity, WindowReading
from alerts.news2 import RESPONSES, News2Score, score
from alerts.window import Window, order_key

#: parameter -> (reading kind, metric) sources, first found newest wins.
SOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    "respiratory_rate": (("respiratory_rate", "respiratory_rate"),),
    "spo2": (("spo2", "spo2"),),
    "systolic": (("blood_pressure", "systolic"),),
    "pulse_rate": (("spo2", "pulse_rate"), ("blood_pressure", "pulse_rate")),
    "temperature": (("temperature", "body_temperature"),),
}


#: reading kind -> (parameter, metric) it can give, in SOURCES order.
_BY_KIND: dict[str, tuple[tuple[str, str], ...]] = {}
for _param, _sources in SOURCES.items():
    for _kind, _metric in _sources:
        _BY_KIND[_kind] = (*_BY_KIND.get(_kind, ()), (_param, _metric))


@dataclass(frozen=True, slots=True)
class News2Params:
    spo2_scale: int = 1
    on_oxygen: bool = False
    max_age: timedelta = timedelta(hours=12)
    severity: tuple[tuple[str, Severity], ...] = (("low-medium", Severity.AMBER),
                                                  ("medium", Severity.AMBER),
                                                  ("high", Severity.RED))

    def severity_for(self, response: str) -> Severity | None:
        return dict(self.severity).get(response)


def parse(raw: Mapping[str, Any], *, where: str, rule_id: str,
          severity: Severity) -> News2Params:
    check_keys(raw, {"spo2_scale", "on_oxygen", "max_age", "severity"}, where=where,
               rule_id=rule_id)
    scale = raw.get("spo2_scale", 1)
    if scale not in (1, 2):
        raise RuleError(f"spo2_scale must be 1 or 2, got {scale!r}", location=where,
                        culprit=f"{rule_id}.spo2_scale")
    sev_map = News2Params().severity
    if "severity" in raw:
        m = raw["severity"]
        if not isinstance(m, Mapping):
            raise RuleError("severity must map NEWS2 responses to severities", location=where,
                            culprit=f"{rule_id}.severity")
        pairs = []
        for resp, sev in m.items():
            if resp == "__line__":
                continue
            if resp not in RESPONSES:
                raise RuleError(f"unknown NEWS2 response {resp!r}; use {', '.join(RESPONSES)}",
                                location=where, culprit=f"{rule_id}.severity")
            try:
                pairs.append((resp, Severity(sev)))
            except ValueError:
                raise RuleError(f"unknown severity {sev!r}", location=where,
                                culprit=f"{rule_id}.severity.{resp}") from None
        sev_map = tuple(pairs)
    return News2Params(int(scale), boolean(raw, "on_oxygen", False, where=where, rule_id=rule_id),
                       duration(raw, "max_age", "12h", where=where, rule_id=rule_id), sev_map)


def latest_values(window: Window, now: datetime,
                  max_age: timedelta) -> tuple[dict[str, float], list[WindowReading], bool]:
    """The newest value of each NEWS2 parameter, the readings used, and an on-oxygen flag."""
    oldest = now - max_age
    if window.by_kind is not None:
        return _latest_by_kind(window, now, oldest)
    values: dict[str, float] = {}
    used: dict[str, WindowReading] = {}
    oxygen = False
    for r in reversed(window.readings):
        if r.taken_at > now:
            continue
        if r.taken_at < oldest:
            break  # readings are oldest first: the rest are older still
        for param, metric in _BY_KIND.get(r.kind, ()):
            if param in values or metric not in r.values:
                continue
            values[param] = float(r.values[metric])
            used[r.id] = r
            if r.kind == "spo2" and "on_oxygen" in r.flags:
                oxygen = True
        if len(values) == len(SOURCES):
            break
    return values, sorted(used.values(), key=lambda r: r.taken_at), oxygen


#: (parameter, reading kind) -> the metric of that kind's readings that gives it.
_METRIC = {(param, kind): metric for param, sources in SOURCES.items()
           for kind, metric in sources}


def _latest_by_kind(window: Window, now: datetime, oldest: datetime
                    ) -> tuple[dict[str, float], list[WindowReading], bool]:
    """``latest_values`` from each kind's own readings, walking back from each kind's
    newest and stopping once that kind has given what it can: the same answer as walking
    back through all of them (the winner of a parameter two kinds give is the one later
    in window order), without passing every reading of a kind a parameter is missing
    from (consciousness is never measured at home, and a day of 1 Hz oximetry is 86,400
    readings)."""
    assert window.by_kind is not None
    judged = window.judged
    best: dict[str, WindowReading] = {}
    for kind, view in window.by_kind.items():
        pairs = _BY_KIND.get(kind)
        if not pairs or not view:
            continue
        found: set[str] = set()
        for r in reversed(view):
            if r.taken_at > now:
                continue
            if r.taken_at < oldest:
                break
            for param, metric in pairs:
                if param in found or metric not in r.values:
                    continue
                found.add(param)
                old = best.get(param)
                if old is None or order_key(r, judged) > order_key(old, judged):
                    best[param] = r
            if len(found) == len(pairs):
                break
    values = {param: float(r.values[_METRIC[param, r.kind]]) for param, r in best.items()}
    # as the walk through all readings lists them: newest first as found, then by taken_at
    used = sorted({r.id: r for r in best.values()}.values(),
                  key=lambda r: order_key(r, judged), reverse=True)
    used.sort(key=lambda r: r.taken_at)
    oxygen = any(r.kind == "spo2" and "on_oxygen" in r.flags for r in used)
    return values, used, oxygen


def evaluate(rule: Rule, window: Window, now: datetime) -> Finding | None:
    """NEWS2 (RCP 2017) over the newest value of each parameter; partial when some are missing."""
    return _judge(rule, window, now, clears=True)


def firing(rule: Rule, window: Window, now: datetime) -> Finding | None:
    """``evaluate``'s firing finding, or None (no clear finding built)."""
    return _judge(rule, window, now, clears=False)


@functools.lru_cache(maxsize=8192)
def _score(spo2_scale: int, on_oxygen: bool, values: tuple[tuple[str, float], ...]
           ) -> News2Score:
    """``score`` is pure and its result immutable, and a live stream repeats its values
    (a 1 Hz oximeter, the same blood pressure all day): most evaluations are a lookup."""
    return score(spo2_scale=spo2_scale, on_oxygen=on_oxygen, consciousness=None,
                 **dict(values))


def _judge(rule: Rule, window: Window, now: datetime, *, clears: bool) -> Finding | None:
    p: News2Params = rule.params
    values, used, oxygen_flag = latest_values(window, now, p.max_age)
    if not values:
        return None
    s = _score(p.spo2_scale, p.on_oxygen or oxygen_flag, tuple(sorted(values.items())))
    severity = p.severity_for(s.response)
    if severity is None and not clears:
        return None
    detail = {"total": s.total, "parameters": dict(s.parameters), "partial": s.partial,
              "missing": list(s.missing), "response": s.response, "spo2_scale": p.spo2_scale}
    label = f"NEWS2 {s.total}" + (f" (partial: no {', '.join(s.missing)})" if s.partial else "")
    if severity is None:
        return Finding(False, None, f"{label}: {s.response}", tuple(used), detail)
    return Finding(True, severity, f"{label}: {s.response} clinical response", tuple(used),
                   detail)


EVALUATORS = {"news2": (parse, evaluate)}
FIRING = {"news2": firing}
