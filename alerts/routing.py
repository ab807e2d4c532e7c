"""The routing tree (YAML, like Alertmanager's): which team, channels and escalation policy.

```yaml
timezone: Europe/London
schedules:
  in_hours: {days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:30"}
  weekend: {days: [sat, sun]}
  out_of_hours: {not: in_hours}
escalation_policies:
  standard:
    ack_lease: 4h          # an acknowledgement holds this long, then the alert re-opens
    reminder: 30m          # re-notify at the last level while nobody acknowledges
    levels:
      - {notify: on_duty, rota_level: 0}
      - {after: 15m, notify: on_duty, rota_level: 1}
      - {after: 30m, notify: fallback}
route:                     # the root: always matches; children inherit what they omit
  team: $care_team         # the care team a matcher picked, else the patient's first
  channels: [dashboard, email]
  escalation: standard
  routes:
    - name: copd-in-hours
      match: {care_team_kind: copd, schedule: in_hours}
    - name: out-of-hours
      match: {schedule: out_of_hours}
      team: out-of-hours
```

Matchers: ``care_team`` (team ids), ``care_team_kind`` (team kinds), ``severity``,
``severity_at_least``, ``labels`` (rule labels), ``rule`` (rule ids), ``category``
(clinical/system), ``schedule`` (schedule names; any of them).  A value may be
a list (any of).  Children are tried in order: the first that matches wins
and its own children are tried the same way; ``continue: true`` on a matching
child lets later siblings match too (several receivers).  When no child
matches, the node itself is the answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerts.durations import parse_duration
from alerts.errors import RuleError
from alerts.model import Severity
from alerts.ruleset import LINE, load_yaml, read_config, strip_lines

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CHANNELS = ("dashboard", "email", "webhook")
CARE_TEAM = "$care_team"
NOTIFY_KINDS = ("on_duty", "team", "fallback")


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    days: tuple[int, ...] = tuple(range(7))
    start: time | None = None
    end: time | None = None
    negate: str | None = None   # "not: other_schedule"

    def contains(self, at: datetime, tz: ZoneInfo, table: Mapping[str, Schedule]) -> bool:
        if self.negate is not None:
            return not table[self.negate].contains(at, tz, table)
        local = at.astimezone(tz)
        if local.weekday() not in self.days:
            return False
        t = local.time()
        if self.start is not None and t < self.start:
            return False
        return not (self.end is not None and t >= self.end)


@dataclass(frozen=True, slots=True)
class Level:
    after: timedelta
    notify: str             # on_duty / team / fallback
    rota_level: int = 0


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    name: str
    levels: tuple[Level, ...]
    ack_lease: timedelta = timedelta(hours=4)
    reminder: timedelta | None = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class Matchers:
    care_team: tuple[str, ...] = ()
    care_team_kind: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()
    severity_at_least: Severity | None = None
    labels: tuple[tuple[str, tuple[str, ...]], ...] = ()
    rule: tuple[str, ...] = ()
    category: tuple[str, ...] = ()
    schedule: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    match: Matchers
    team: str | None
    channels: tuple[str, ...] | None
    escalation: str | None
    cont: bool = False
    routes: tuple[Route, ...] = ()
    location: str = ""


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """What routing looks at."""

    care_teams: tuple[tuple[str, str], ...]   # (team id, team kind), the patient's care teams
    severity: str
    at: datetime
    labels: Mapping[str, str] = field(default_factory=dict)
    rule_id: str = ""
    category: str = "clinical"


@dataclass(frozen=True, slots=True)
class Destination:
    route: str              # path of route names, e.g. "root/copd-in-hours"
    team_id: str | None
    channels: tuple[str, ...]
    escalation: str

    def as_json(self) -> dict[str, Any]:
        return {"route": self.route, "team_id": self.team_id, "channels": list(self.channels),
                "escalation": self.escalation}


@dataclass(frozen=True, slots=True)
class RoutingTree:
    root: Route
    schedules: Mapping[str, Schedule]
    policies: Mapping[str, EscalationPolicy]
    timezone: str = "Europe/London"
    default_fallback_team: str | None = None
    source: str = ""

    def count(self) -> int:
        def n(r: Route) -> int:
            return 1 + sum(n(c) for c in r.routes)
        return n(self.root)

    def in_schedule(self, name: str, at: datetime) -> bool:
        return self.schedules[name].contains(at, ZoneInfo(self.timezone), self.schedules)

    def route(self, facts: AlertFacts) -> list[Destination]:
        """Where an alert goes: one destination, or several when routes say ``continue``."""
        out: list[Destination] = []
        root = self.root
        team = root.team or CARE_TEAM
        self._walk(root, facts, root.name, team, root.channels or ("dashboard",),
                   root.escalation or next(iter(self.policies)), None, out)
        return out

    def _matches(self, m: Matchers, facts: AlertFacts) -> tuple[bool, str | None]:
        picked: str | None = None
        if m.care_team or m.care_team_kind:
            hits = [t for t, kind in facts.care_teams
                    if (not m.care_team or t in m.care_team)
                    and (not m.care_team_kind or kind in m.care_team_kind)]
            if not hits:
                return False, None
            picked = hits[0]
        if m.severity and facts.severity not in m.severity:
            return False, None
        if m.severity_at_least is not None and \
                Severity(facts.severity).rank < m.severity_at_least.rank:
            return False, None
        for key, values in m.labels:
            if facts.labels.get(key) not in values:
                return False, None
        if m.rule and facts.rule_id not in m.rule:
            return False, None
        if m.category and facts.category not in m.category:
            return False, None
        if m.schedule and not any(self.in_schedule(s, facts.at) for s in m.schedule):
            return False, None
        return True, picked

    def _walk(self, node: Route, facts: AlertFacts, path: str, team: str,
              channels: tuple[str, ...], escalation: str, picked: str | None,
              out: list[Destination]) -> None:
        matched_child = False
        for child in node.routes:
            ok, child_pick = self._matches(child.match, facts)
            if not ok:
                continue
            matched_child = True
            self._walk(child, facts, f"{path}/{child.name}", child.team or team,
                       child.channels or channels, child.escalation or escalation,
                       child_pick or picked, out)
            if not child.cont:
                break
        if not matched_child:
            if team == CARE_TEAM:
                team_id = picked or (facts.care_teams[0][0] if facts.care_teams else None)
                team_id = team_id or self.default_fallback_team
            else:
                team_id = team
            out.append(Destination(path, team_id, channels, escalation))


# --- loading ---------------------------------------------------------------------------

_ROUTE_KEYS = {"name", "match", "team", "channels", "escalation", "continue", "routes", LINE}
_MATCH_KEYS = {"care_team", "care_team_kind", "severity", "severity_at_least", "labels", "rule",
               "category", "schedule", LINE}


def _strs(value: Any, *, where: str, culprit: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value) and value:
        return tuple(value)
    raise RuleError("expected a name or a non-empty list of names", location=where,
                    culprit=culprit)


def _parse_time(value: Any, *, where: str, culprit: str) -> time:
    try:
        h, m = str(value).split(":")
        if value == "24:00":
            return time(23, 59, 59, 999999)
        return time(int(h), int(m))
    except ValueError:
        raise RuleError(f"not a time HH:MM: {value!r}", location=where,
                        culprit=culprit) from None


def _schedules(raw: Any, source: str) -> dict[str, Schedule]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise RuleError("schedules must map names to {days, from, to} or {not: name}",
                        location=source, culprit="schedules")
    out: dict[str, Schedule] = {}
    for name, spec in raw.items():
        if name == LINE:
            continue
        where = f"{source}:{spec.get(LINE, '?') if isinstance(spec, Mapping) else '?'}"
        culprit = f"schedules.{name}"
        if not isinstance(spec, Mapping):
            raise RuleError("a schedule is a mapping", location=where, culprit=culprit)
        unknown = set(spec) - {"days", "from", "to", "not", LINE}
        if unknown:
            raise RuleError(f"unknown keys {sorted(unknown)}; allowed: days, from, to, not",
                            location=where, culprit=culprit)
        if "not" in spec:
            if set(spec) - {"not", LINE}:
                raise RuleError("'not' stands alone", location=where, culprit=culprit)
            out[name] = Schedule(name, negate=str(spec["not"]))
            continue
        days = _strs(spec.get("days", list(DAYS)), where=where, culprit=culprit)
        bad = [d for d in days if d not in DAYS]
        if bad:
            raise RuleError(f"unknown days {bad}; use {', '.join(DAYS)}", location=where,
                            culprit=culprit)
        start = _parse_time(spec["from"], where=where, culprit=culprit) if "from" in spec else None
        end = _parse_time(spec["to"], where=where, culprit=culprit) if "to" in spec else None
        if start is not None and end is not None and end <= start:
            raise RuleError("'to' must be after 'from' (split overnight spans into two "
                            "schedules, or use not:)", location=where, culprit=culprit)
        out[name] = Schedule(name, tuple(DAYS.index(d) for d in days), start, end)
    for s in out.values():
        if s.negate is not None and s.negate not in out:
            raise RuleError(f"'not: {s.negate}' names no schedule", location=source,
                            culprit=f"schedules.{s.name}")
    return out


def _policies(raw: Any, source: str) -> dict[str, EscalationPolicy]:
    if not isinstance(raw, Mapping) or not [k for k in raw if k != LINE]:
        raise RuleError("escalation_policies must define at least one policy",
                        location=source, culprit="escalation_policies")
    out: dict[str, EscalationPolicy] = {}
    for name, spec in raw.items():
        if name == LINE:
            continue
        culprit = f"escalation_policies.{name}"
        where = f"{source}:{spec.get(LINE, '?') if isinstance(spec, Mapping) else '?'}"
        if not isinstance(spec, Mapping) or not isinstance(spec.get("levels"), list) \
                or not spec["levels"]:
            raise RuleError("a policy needs a non-empty 'levels' list", location=where,
                            culprit=culprit)
        unknown = set(spec) - {"levels", "ack_lease", "reminder", LINE}
        if unknown:
            raise RuleError(f"unknown keys {sorted(unknown)}", location=where, culprit=culprit)
        levels = []
        previous = timedelta(0)
        for n, lv in enumerate(spec["levels"]):
            lwhere = f"{source}:{lv.get(LINE, '?') if isinstance(lv, Mapping) else '?'}"
            lculprit = f"{culprit}.levels[{n}]"
            if not isinstance(lv, Mapping) or lv.get("notify") not in NOTIFY_KINDS:
                raise RuleError(f"each level needs notify: one of {', '.join(NOTIFY_KINDS)}",
                                location=lwhere, culprit=lculprit)
            try:
                after = parse_duration(lv.get("after", 0))
            except ValueError as err:
                raise RuleError(str(err), location=lwhere, culprit=lculprit) from None
            if n == 0 and after != timedelta(0):
                raise RuleError("the first level starts at once (after: 0)", location=lwhere,
                                culprit=lculprit)
            if n > 0 and after <= previous:
                raise RuleError("levels must come in increasing 'after' order",
                                location=lwhere, culprit=lculprit)
            previous = after
            rota_level = lv.get("rota_level", 0)
            if not isinstance(rota_level, int) or rota_level < 0:
                raise RuleError("rota_level must be a non-negative integer", location=lwhere,
                                culprit=lculprit)
            levels.append(Level(after, lv["notify"], rota_level))
        try:
            lease = parse_duration(spec.get("ack_lease", "4h"))
            reminder = parse_duration(spec["reminder"]) if spec.get("reminder") else None
        except ValueError as err:
            raise RuleError(str(err), location=where, culprit=culprit) from None
        out[name] = EscalationPolicy(name, tuple(levels), lease, reminder)
    return out


def _matchers(raw: Any, *, where: str, culprit: str,
              schedules: Mapping[str, Schedule]) -> Matchers:
    if raw is None:
        return Matchers()
    if not isinstance(raw, Mapping):
        raise RuleError("match must be a mapping of matchers", location=where, culprit=culprit)
    unknown = set(raw) - _MATCH_KEYS
    if unknown:
        raise RuleError(f"unknown matchers {sorted(unknown)}; allowed: "
                        f"{sorted(_MATCH_KEYS - {LINE})}", location=where, culprit=culprit)

    def names(key: str) -> tuple[str, ...]:
        return _strs(raw[key], where=where, culprit=f"{culprit}.{key}") if key in raw else ()

    severity = names("severity")
    for s in severity:
        if s not in {str(x) for x in Severity}:
            raise RuleError(f"unknown severity {s!r}", location=where, culprit=culprit)
    at_least = None
    if "severity_at_least" in raw:
        try:
            at_least = Severity(raw["severity_at_least"])
        except ValueError:
            raise RuleError(f"unknown severity {raw['severity_at_least']!r}", location=where,
                            culprit=culprit) from None
    sched = names("schedule")
    for s in sched:
        if s not in schedules:
            raise RuleError(f"unknown schedule {s!r}; defined: {', '.join(schedules) or 'none'}",
                            location=where, culprit=culprit)
    labels_raw = raw.get("labels", {})
    if not isinstance(labels_raw, Mapping):
        raise RuleError("labels must be a mapping", location=where, culprit=culprit)
    labels = tuple((k, _strs(v, where=where, culprit=f"{culprit}.labels.{k}"))
                   for k, v in labels_raw.items() if k != LINE)
    category = names("category")
    if set(category) - {"clinical", "system"}:
        raise RuleError("category is clinical or system", location=where, culprit=culprit)
    return Matchers(names("care_team"), names("care_team_kind"), severity, at_least, labels,
                    names("rule"), category, sched)


def _route(raw: Any, *, source: str, path: str, schedules: Mapping[str, Schedule],
           policies: Mapping[str, EscalationPolicy], root: bool = False) -> Route:
    if not isinstance(raw, Mapping):
        raise RuleError("a route is a mapping", location=source, culprit=path)
    where = f"{source}:{raw.get(LINE, '?')}"
    name = str(raw.get("name", "root" if root else path.rsplit("/", 1)[-1]))
    culprit = path if root else f"{path.rsplit('/', 1)[0]}/{name}"
    unknown = set(raw) - _ROUTE_KEYS
    if unknown:
        raise RuleError(f"unknown keys {sorted(unknown)}; allowed: "
                        f"{sorted(_ROUTE_KEYS - {LINE})}", location=where, culprit=culprit)
    if root and "match" in raw:
        raise RuleError("the root route matches everything; it takes no 'match'",
                        location=where, culprit=culprit)
    channels = None
    if "channels" in raw:
        channels = _strs(raw["channels"], where=where, culprit=f"{culprit}.channels")
        bad = [c for c in channels if c not in CHANNELS]
        if bad:
            raise RuleError(f"unknown channels {bad}; use {', '.join(CHANNELS)}",
                            location=where, culprit=culprit)
    escalation = raw.get("escalation")
    if escalation is not None and escalation not in policies:
        raise RuleError(f"unknown escalation policy {escalation!r}; defined: "
                        f"{', '.join(policies)}", location=where, culprit=culprit)
    team = raw.get("team")
    if team is not None and not isinstance(team, str):
        raise RuleError("team must be a team id or $care_team", location=where, culprit=culprit)
    children_raw = raw.get("routes", [])
    if not isinstance(children_raw, list):
        raise RuleError("routes must be a list", location=where, culprit=culprit)
    children = tuple(_route(c, source=source, path=f"{culprit}/{n}", schedules=schedules,
                            policies=policies) for n, c in enumerate(children_raw))
    cont = raw.get("continue", False)
    if not isinstance(cont, bool):
        raise RuleError("continue must be true or false", location=where, culprit=culprit)
    return Route(name, _matchers(raw.get("match"), where=where, culprit=culprit,
                                 schedules=schedules),
                 team, channels, escalation, cont, children, where)


def parse_routing(text: str, *, source: str = "<routes>") -> RoutingTree:
    doc = load_yaml(text, source=source)
    if not isinstance(doc, Mapping) or "route" not in doc:
        raise RuleError("a routing file is a mapping with a 'route'", location=source)
    unknown = set(doc) - {"timezone", "schedules", "escalation_policies", "route",
                          "default_fallback_team", "version", LINE}
    if unknown:
        raise RuleError(f"unknown top-level keys {sorted(unknown)}", location=source)
    tz = doc.get("timezone", "Europe/London")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleError(f"unknown time zone {tz!r}", location=source, culprit="timezone") from None
    schedules = _schedules(doc.get("schedules"), source)
    policies = _policies(doc.get("escalation_policies"), source)
    root = _route(doc["route"], source=source, path="root", schedules=schedules,
                  policies=policies, root=True)
    return RoutingTree(root, schedules, policies, tz, doc.get("default_fallback_team"), source)


def load_routing(path: str | Path | None = None) -> RoutingTree:
    """Load a routing file; ``None`` loads the shipped ``alerts/rules/routes.yaml``."""
    text, source = read_config(path, "routes.yaml")
    return parse_routing(text, source=source)


def describe(dests: Sequence[Destination]) -> list[dict[str, Any]]:
    return [strip_lines(d.as_json()) for d in dests]
