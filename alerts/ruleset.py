"""Loading rule files (YAML) into frozen ``Rule`` objects, validated on load.

Every error names the rule and the ``file:line`` where it is, e.g.::

    alerts/rules/default.yaml:42: bp_severe.when: unknown op '=>'; use one of > >= < <= == !=
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from alerts.durations import parse_duration
from alerts.errors import RuleError
from alerts.evaluators import registry
from alerts.model import Rule, Severity, frozen_mapping

LINE = "__line__"
_RULE_KEYS = {"id", "kind", "title", "severity", "source", "reading_kinds", "window", "params",
              "labels", "auto_resolve", "enabled_by_default", LINE}
_REQUIRED = ("id", "kind", "severity", "source", "title")


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records each mapping's line number under ``__line__``."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        mapping[LINE] = node.start_mark.line + 1
        return mapping


def strip_lines(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: strip_lines(v) for k, v in value.items() if k != LINE}
    if isinstance(value, list):
        return [strip_lines(v) for v in value]
    return value


def load_yaml(text: str, *, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise RuleError(f"not valid YAML: {err.problem}", location=f"{source}{line}") from None


@dataclass(frozen=True, slots=True)
class Inhibition:
    """While an active alert of ``when_rule`` exists for the patient, or the patient's
    status is one of ``when_patient_status``, alerts of ``mutes_kinds`` / ``mutes_rules``
    (or all, ``mutes_all``) are recorded but not notified or escalated."""

    reason: str
    when_rule: str | None = None
    when_patient_status: tuple[str, ...] = ()
    mutes_kinds: tuple[str, ...] = ()
    mutes_rules: tuple[str, ...] = ()
    mutes_all: bool = False

    def mutes(self, rule: Rule) -> bool:
        if rule.id == self.when_rule:
            return False
        return self.mutes_all or rule.kind in self.mutes_kinds or rule.id in self.mutes_rules


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    source: str = ""
    inhibitions: tuple[Inhibition, ...] = ()

    def sources_first(self, rules: list[Rule]) -> list[Rule]:
        """Rules that inhibit others first, so a muting alert exists before what it mutes."""
        sources = {i.when_rule for i in self.inhibitions if i.when_rule}
        return sorted(rules, key=lambda r: r.id not in sources)

    def inhibited_by(self, rule: Rule, *, patient_status: str | None,
                     active_rules: set[str]) -> str | None:
        """The reason ``rule``'s alerts are muted for this patient now, or None."""
        for inh in self.inhibitions:
            if not inh.mutes(rule):
                continue
            if patient_status is not None and patient_status in inh.when_patient_status:
                return inh.reason
            if inh.when_rule is not None and inh.when_rule in active_rules:
                return inh.reason
        return None

    def by_id(self) -> dict[str, Rule]:
        return {r.id: r for r in self.rules}

    def for_reading_kind(self, kind: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if kind in r.reading_kinds)


def parse_rule(raw: Any, *, source: str, index: int) -> Rule:
    if not isinstance(raw, Mapping):
        raise RuleError(f"rule #{index + 1} must be a mapping", location=source)
    where = f"{source}:{raw.get(LINE, '?')}"
    rule_id: str = raw["id"] if isinstance(raw.get("id"), str) else f"rule #{index + 1}"
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise RuleError(f"unknown keys {sorted(unknown)}; allowed: "
                        f"{sorted(_RULE_KEYS - {LINE})}", location=where, culprit=rule_id)
    for key in _REQUIRED:
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise RuleError(f"'{key}' is required (a non-empty string)",
                            location=where, culprit=rule_id)
    evaluators = registry()
    if raw["kind"] not in evaluators:
        raise RuleError(f"unknown kind {raw['kind']!r}; known: {', '.join(sorted(evaluators))}",
                        location=where, culprit=rule_id)
    try:
        severity = Severity(raw["severity"])
    except ValueError:
        raise RuleError(f"unknown severity {raw['severity']!r}; use info, amber or red",
                        location=where, culprit=rule_id) from None
    kinds = raw.get("reading_kinds", [])
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise RuleError("reading_kinds must be a list of reading kinds",
                        location=where, culprit=rule_id)
    from homeward.kinds import Kind

    bad = [k for k in kinds if k not in {str(x) for x in Kind}]
    if bad:
        raise RuleError(f"unknown reading kinds {bad}; known: {', '.join(map(str, Kind))}",
                        location=where, culprit=rule_id)
    try:
        window = parse_duration(raw.get("window", "1d"))
    except ValueError as err:
        raise RuleError(str(err), location=where, culprit=f"{rule_id}.window") from None
    labels = raw.get("labels", {})
    if not isinstance(labels, Mapping) or not all(
            isinstance(v, str) for k, v in labels.items() if k != LINE):
        raise RuleError("labels must map names to strings", location=where, culprit=rule_id)
    for flag in ("auto_resolve", "enabled_by_default"):
        if flag in raw and not isinstance(raw[flag], bool):
            raise RuleError(f"'{flag}' must be true or false", location=where, culprit=rule_id)
    raw_params = raw.get("params", {})
    if not isinstance(raw_params, Mapping):
        raise RuleError("params must be a mapping", location=where, culprit=rule_id)
    pwhere = f"{source}:{raw_params.get(LINE, raw.get(LINE, '?'))}"
    params = evaluators[raw["kind"]].parse(raw_params, where=pwhere, rule_id=rule_id,
                                           severity=severity)
    return Rule(
        id=raw["id"], kind=raw["kind"], severity=severity, title=raw["title"].strip(),
        source=raw["source"].strip(), reading_kinds=tuple(kinds), window=window, params=params,
        raw_params=frozen_mapping(strip_lines(raw_params)),
        labels=frozen_mapping(strip_lines(labels)),
        auto_resolve=bool(raw.get("auto_resolve", False)),
        enabled_by_default=bool(raw.get("enabled_by_default", True)), location=where)


def parse_ruleset(text: str, *, source: str = "<rules>") -> RuleSet:
    doc = load_yaml(text, source=source)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("rules"), list):
        raise RuleError("a rule file is a mapping with a 'rules' list", location=source)
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for n, raw in enumerate(doc["rules"]):
        rule = parse_rule(raw, source=source, index=n)
        if rule.id in seen:
            raise RuleError(f"duplicate rule id (first defined at {seen[rule.id]})",
                            location=rule.location, culprit=rule.id)
        seen[rule.id] = rule.location
        rules.append(rule)
    inhibitions = tuple(parse_inhibition(raw, source=source, known=seen)
                        for raw in doc.get("inhibit", []) or [])
    return RuleSet(tuple(rules), source, inhibitions)


_INHIBIT_KEYS = {"when_rule", "when_patient_status", "mutes_kinds", "mutes_rules", "mutes",
                 "reason", LINE}


def parse_inhibition(raw: Any, *, source: str, known: Mapping[str, str]) -> Inhibition:
    if not isinstance(raw, Mapping):
        raise RuleError("each 'inhibit' entry must be a mapping", location=source)
    where = f"{source}:{raw.get(LINE, '?')}"
    unknown = set(raw) - _INHIBIT_KEYS
    if unknown:
        raise RuleError(f"unknown keys {sorted(unknown)}; allowed: "
                        f"{sorted(_INHIBIT_KEYS - {LINE})}", location=where, culprit="inhibit")
    if ("when_rule" in raw) == ("when_patient_status" in raw):
        raise RuleError("an inhibition needs exactly one of when_rule or when_patient_status",
                        location=where, culprit="inhibit")
    if "when_rule" in raw and raw["when_rule"] not in known:
        raise RuleError(f"when_rule {raw['when_rule']!r} is not a rule in this file",
                        location=where, culprit="inhibit")
    statuses = raw.get("when_patient_status", [])
    allowed_status = {"active", "admitted", "away", "discharged"}
    if not isinstance(statuses, list) or not set(statuses) <= allowed_status:
        raise RuleError(f"when_patient_status must list some of {sorted(allowed_status)}",
                        location=where, culprit="inhibit")
    mutes_all = raw.get("mutes") == "all"
    if "mutes" in raw and not mutes_all:
        raise RuleError("'mutes' can only be 'all' (or use mutes_kinds / mutes_rules)",
                        location=where, culprit="inhibit")
    kinds = tuple(raw.get("mutes_kinds", []))
    bad = [k for k in kinds if k not in registry()]
    if bad:
        raise RuleError(f"mutes_kinds names unknown rule kinds {bad}", location=where,
                        culprit="inhibit")
    rules_ = tuple(raw.get("mutes_rules", []))
    if not (mutes_all or kinds or rules_):
        raise RuleError("an inhibition must mute something (mutes: all, mutes_kinds or "
                        "mutes_rules)", location=where, culprit="inhibit")
    return Inhibition(str(raw.get("reason", "inhibited")), raw.get("when_rule"),
                      tuple(statuses), kinds, rules_, mutes_all)


def read_config(path: str | Path | None, shipped: str) -> tuple[str, str]:
    """The text of a YAML file and its name for error messages; ``None`` reads the
    shipped ``alerts/rules/<shipped>``.  An unreadable file is a RuleError naming it."""
    if path is None:
        text = resources.files("alerts.rules").joinpath(shipped).read_text("utf-8")
        return text, f"alerts/rules/{shipped}"
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8"), str(p)
    except OSError as err:
        raise RuleError(f"cannot read: {err.strerror}", location=str(p)) from None


def load_ruleset(path: str | Path | None = None) -> RuleSet:
    """Load a rule file; ``None`` loads the shipped default rule set."""
    text, source = read_config(path, "default.yaml")
    return parse_ruleset(text, source=source)


def with_overrides(rule: Rule, overrides: Mapping[str, Any]) -> Rule:
    """The rule with a patient's personal params merged over its own, re-validated."""
    if not overrides:
        return rule
    merged = {**rule.raw_params, **overrides}
    where = f"patient setting for {rule.id}"
    params = registry()[rule.kind].parse(merged, where=where, rule_id=rule.id,
                                         severity=rule.severity)
    return dataclasses.replace(rule, params=params, raw_params=frozen_mapping(merged))


__all__ = ["Inhibition", "RuleSet", "load_ruleset", "parse_ruleset", "with_overrides"]


def check_file(path: str | Path) -> str:
    """Validate a rule file or a routing file; returns a one-line description."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise RuleError(f"cannot read: {err.strerror}", location=str(p)) from None
    doc = load_yaml(text, source=str(p))
    if isinstance(doc, Mapping) and "route" in doc:
        from alerts.routing import parse_routing

        tree = parse_routing(text, source=str(p))
        return f"routing tree with {tree.count()} routes"
    rs = parse_ruleset(text, source=str(p))
    return f"{len(rs.rules)} rules, {len(rs.inhibitions)} inhibitions"
