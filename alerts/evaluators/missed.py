"""Missed readings: a scheduled kind not received by its due time plus grace.

```yaml
kind: missed_reading
reading_kinds: [spo2]
params: {at: ["08:00", "20:00"], grace: 2h, early: 2h, timezone: Europe/London}
# optional: consecutive: 2   -- alert only when the last 2 due slots were both missed
```
A reading taken from ``early`` before a slot onwards counts for that slot.  With
``consecutive: N`` the rule fires only when nothing was received since the first of the
last N due slots (the rule's window must reach back that far): the virtual ward
(docs/clinical-evaluation.md) showed a single missed slot to be most of a COPD team's
alerts at 85 % adherence.
Slots before the patient's monitoring began never count as missed.  A
missing reading is never treated as normal (clinical.md 4.6); hub-offline
alerts inhibit this rule, so "device silent" and "patient did not measure"
stay apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerts.errors import RuleError
from alerts.evaluators._params import check_keys, duration
from alerts.model import Finding, Rule, Severity
from alerts.window import Window

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


@dataclass(frozen=True, slots=True)
class MissedParams:
    at: tuple[time, ...]
    grace: timedelta = timedelta(hours=2)
    early: timedelta = timedelta(hours=2)
    timezone: str = "Europe/London"
    consecutive: int = 1


def parse(raw: Mapping[str, Any], *, where: str, rule_id: str,
          severity: Severity) -> MissedParams:
    check_keys(raw, {"at", "grace", "early", "timezone", "consecutive"}, where=where,
               rule_id=rule_id, required={"at"})
    slots = raw["at"]
    if not isinstance(slots, list) or not slots:
        raise RuleError("'at' must be a list of local times like \"08:00\"", location=where,
                        culprit=f"{rule_id}.at")
    times = []
    for s in slots:
        m = _HHMM.match(str(s))
        if not m:
            raise RuleError(f"not a time HH:MM: {s!r}", location=where, culprit=f"{rule_id}.at")
        times.append(time(int(m.group(1)), int(m.group(2))))
    tz = raw.get("timezone", "Europe/London")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleError(f"unknown time zone {tz!r}", location=where,
                        culprit=f"{rule_id}.timezone") from None
    consecutive = raw.get("consecutive", 1)
    if type(consecutive) is not int or not 1 <= consecutive <= len(times) * 7:
        raise RuleError("'consecutive' must be a whole number of slots from 1 to a week's",
                        location=where, culprit=f"{rule_id}.consecutive")
    return MissedParams(tuple(sorted(times)),
                        duration(raw, "grace", "2h", where=where, rule_id=rule_id),
                        duration(raw, "early", "2h", where=where, rule_id=rule_id), tz,
                        consecutive)


def last_due_slot(p: MissedParams, now: datetime) -> datetime:
    """The latest slot whose due time plus grace has passed (an aware UTC datetime)."""
    return due_slots(p, now, 1)[-1]


def due_slots(p: MissedParams, now: datetime, n: int) -> list[datetime]:
    """The latest ``n`` slots whose due time plus grace has passed, oldest first."""
    tz = ZoneInfo(p.timezone)
    local_today = now.astimezone(tz).date()
    found: list[datetime] = []
    back = 0
    while len(found) < n:
        day = local_today - timedelta(days=back)
        for t in reversed(p.at):
            slot = datetime.combine(day, t, tzinfo=tz)
            if slot + p.grace <= now and len(found) < n:
                found.append(slot.astimezone(now.tzinfo))
        back += 1
    return found[::-1]


def evaluate(rule: Rule, window: Window, now: datetime) -> Finding | None:
    """A scheduled reading kind not received by its slot's due time plus grace."""
    p: MissedParams = rule.params
    slots = due_slots(p, now, p.consecutive)
    slot, first = slots[-1], slots[0]
    if window.monitored_since is not None and first < window.monitored_since:
        return None
    got = [r for r in window.of_kind(*rule.reading_kinds)
           if first - p.early <= r.taken_at <= now]
    kinds = ", ".join(rule.reading_kinds)
    local = slot.astimezone(ZoneInfo(p.timezone)).strftime("%a %H:%M")
    if got:
        return Finding(False, None, f"{rule.title}: {kinds} received for {local}", (got[-1],),
                       key=f"slot:{slot.isoformat()}")
    which = f"the {local} slot" if p.consecutive == 1 else (
        f"the last {p.consecutive} slots (since "
        f"{first.astimezone(ZoneInfo(p.timezone)).strftime('%a %H:%M')})")
    return Finding(True, rule.severity,
                   f"{rule.title}: no {kinds} reading for {which} "
                   f"(grace {p.grace.total_seconds() / 60:g} min)", (),
                   {"slot": slot.isoformat(), "missed_slots": p.consecutive},
                   key=f"slot:{slot.isoformat()}")


EVALUATORS = {"missed_reading": (parse, evaluate)}
