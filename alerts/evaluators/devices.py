"""The home's equipment: the hub offline (its last will, or silence) and low device batteries.

```yaml
kind: hub_offline
params: {after: 15m, silence: 2h}   # offline for 15 min, or nothing heard for 2 h
kind: battery_low
params: {below: 20}                 # percent, from the hub's retained status
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alerts.evaluators._params import check_keys, duration, number
from alerts.model import Finding, Rule, Severity
from alerts.window import Window


@dataclass(frozen=True, slots=True)
class HubOfflineParams:
    after: timedelta = timedelta(minutes=15)
    silence: timedelta = timedelta(hours=2)


@dataclass(frozen=True, slots=True)
class BatteryParams:
    below: float = 20.0


def parse_hub(raw: Mapping[str, Any], *, where: str, rule_id: str,
              severity: Severity) -> HubOfflineParams:
    check_keys(raw, {"after", "silence"}, where=where, rule_id=rule_id)
    return HubOfflineParams(duration(raw, "after", "15m", where=where, rule_id=rule_id),
                            duration(raw, "silence", "2h", where=where, rule_id=rule_id))


def parse_battery(raw: Mapping[str, Any], *, where: str, rule_id: str,
                  severity: Severity) -> BatteryParams:
    check_keys(raw, {"below"}, where=where, rule_id=rule_id)
    return BatteryParams(number(raw, "below", 20, where=where, rule_id=rule_id, minimum=0))


def evaluate_hub(rule: Rule, window: Window, now: datetime) -> Finding | None:
    """The hub reported offline (last will) for a while, or has been silent too long."""
    p: HubOfflineParams = rule.params
    if window.hub_id is None:
        return None
    since = window.hub_state_at
    if window.hub_state == "offline" and since is not None and now - since >= p.after:
        return Finding(True, rule.severity, f"{rule.title}: hub {window.hub_id} offline since "
                       f"{since:%Y-%m-%d %H:%M} UTC", (), {"hub_id": window.hub_id,
                                                          "reason": "offline"},
                       key=f"offline:{since.isoformat()}")
    seen = window.hub_last_seen
    if seen is not None and now - seen >= p.silence:
        return Finding(True, rule.severity, f"{rule.title}: nothing from hub {window.hub_id} "
                       f"since {seen:%Y-%m-%d %H:%M} UTC", (), {"hub_id": window.hub_id,
                                                               "reason": "silent"},
                       key=f"silent:{seen.isoformat()}")
    enrolled = window.monitored_since
    if seen is None and enrolled is not None and now - enrolled >= p.silence:
        # never heard from since its enrolment (not set up, or never connected): the same
        # silence as a hub that stopped, or the home's readings never start and nobody knows
        return Finding(True, rule.severity, f"{rule.title}: nothing ever heard from hub "
                       f"{window.hub_id}, enrolled {enrolled:%Y-%m-%d %H:%M} UTC", (),
                       {"hub_id": window.hub_id, "reason": "never_seen"},
                       key=f"never:{enrolled.isoformat()}")
    if window.hub_state == "online" and seen is not None:
        return Finding(False, None, f"{rule.title}: hub {window.hub_id} back online")
    return None


def evaluate_battery(rule: Rule, window: Window, now: datetime) -> Finding | None:
    """A paired device reports its battery below the limit."""
    p: BatteryParams = rule.params
    known = [d for d in window.devices if d.battery is not None]
    if not known:
        return None
    low = sorted((d for d in known if d.battery is not None and d.battery < p.below),
                 key=lambda d: d.address)
    if low:
        names = ", ".join(f"{d.kind or 'device'} {d.address} {d.battery:g}%" for d in low)
        return Finding(True, rule.severity, f"{rule.title}: {names}", (),
                       {"devices": [{"address": d.address, "kind": d.kind,
                                     "battery": d.battery} for d in low]},
                       key="low:" + ",".join(d.address for d in low))
    return Finding(False, None, f"{rule.title}: batteries fine")


EVALUATORS = {"hub_offline": (parse_hub, evaluate_hub),
              "battery_low": (parse_battery, evaluate_battery)}
