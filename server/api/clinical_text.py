"""Readings and rules in words, for the dashboard (pure functions over JSON).

An alert carries the rule as it was loaded (``alert.rule``: id, kind, params,
source...), so the alert page can say why it fired even after the rule file
changed; a patient's chart draws the thresholds of the rules as they apply to
that patient now (personal settings merged in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homeward.kinds import METRIC_BY_NAME, Kind

#: What a nurse calls each metric.
LABELS: dict[str, str] = {
    "systolic": "systolic", "diastolic": "diastolic", "mean_arterial": "mean arterial",
    "pulse_rate": "pulse", "spo2": "SpO₂", "perfusion_index": "perfusion index",
    "body_temperature": "temperature", "body_weight": "weight",
    "blood_glucose": "glucose", "respiratory_rate": "respiratory rate",
}
KIND_LABELS: dict[str, str] = {
    "blood_pressure": "Blood pressure", "spo2": "Oxygen saturation",
    "temperature": "Temperature", "weight": "Weight", "glucose": "Blood glucose",
    "respiratory_rate": "Respiratory rate",
}
#: The metric each kind's chart draws first (and the only one, bar blood pressure).
CHART_METRICS: dict[str, tuple[str, ...]] = {
    "blood_pressure": ("systolic", "diastolic"), "spo2": ("spo2",),
    "temperature": ("body_temperature",), "weight": ("body_weight",),
    "glucose": ("blood_glucose",), "respiratory_rate": ("respiratory_rate",),
}
_OPS = {">": ">", ">=": "≥", "<": "<", "<=": "≤", "==": "=", "!=": "≠"}
_UNITS: dict[str, str] = {m.name: m.unit for metrics in METRIC_BY_NAME.values()
                          for m in metrics.values()}


def unit(metric: str) -> str:
    return _UNITS.get(metric, "")


def number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _with_unit(metric: str, value: Any) -> str:
    u = unit(metric)
    return f"{number(value)} {u}".rstrip() if u not in ("", "/min") else (
        f"{number(value)}/min" if u == "/min" else number(value))


def format_values(kind: str | None, values: Mapping[str, Any] | None) -> str:
    """A reading's values as a nurse writes them: "192/110 mmHg, pulse 71/min"."""
    if not values:
        return ""
    parts: list[str] = []
    rest = dict(values)
    if "systolic" in rest and "diastolic" in rest:
        parts.append(f"{number(rest.pop('systolic'))}/{number(rest.pop('diastolic'))} mmHg")
        rest.pop("mean_arterial", None)
    primary = CHART_METRICS.get(kind or "", ())
    for metric in [*[m for m in primary if m in rest], *[m for m in rest if m not in primary]]:
        value = rest[metric]
        if metric in primary and kind != "blood_pressure":
            parts.append(_with_unit(metric, value))
        else:
            parts.append(f"{LABELS.get(metric, metric)} {_with_unit(metric, value)}")
    return ", ".join(parts)


def condition_words(cond: Any) -> str:
    """``{metric, op, value}`` / ``{any: [...]}`` / ``{all: [...]}`` in words."""
    if not isinstance(cond, Mapping):
        return str(cond)
    if "any" in cond:
        return " or ".join(condition_words(c) for c in cond["any"])
    if "all" in cond:
        return " and ".join(condition_words(c) for c in cond["all"])
    metric = str(cond.get("metric", "?"))
    return f"{comparison(metric, str(cond.get('op')))} {_with_unit(metric, cond.get('value'))}"


def comparison(metric: str, op: str) -> str:
    """The words before the number of a condition: "SpO₂ ≤"."""
    return f"{LABELS.get(metric, metric)} {_OPS.get(op, op)}"


def _duration(text: Any) -> str:
    """"12h" -> "12 h", "3d" -> "3 days", "30m" -> "30 min" (rule-file durations)."""
    value = str(text)
    for suffix, word in (("m", " min"), ("h", " h"), ("d", " days"), ("s", " s")):
        if value.endswith(suffix) and value[:-1].replace(".", "", 1).isdigit():
            amount = value[:-1]
            return f"{amount}{' day' if word == ' days' and amount == '1' else word}"
    return value


def _threshold_words(rule: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    if "when" in params:
        out.append(f"Raised ({rule.get('severity')}) when {condition_words(params['when'])}.")
    for severity, cond in (params.get("levels") or {}).items():
        if severity != "__line__":
            out.append(f"{str(severity).capitalize()} when {condition_words(cond)}.")
    if params.get("for"):
        out.append(f"Only when the condition holds for {_duration(params['for'])}.")
    if params.get("n_of_m"):
        n, m = params["n_of_m"]
        out.append(f"Only when at least {n} of the last {m} readings match.")
    if params.get("clear"):
        count = int(params.get("clear_count") or 1)
        times = f" on {count} readings in a row" if count > 1 else ""
        out.append(f"Clears when {condition_words(params['clear'])}{times}.")
    return out


def _news2_words(rule: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    age = _duration(params.get("max_age", ""))
    out = ["NEWS2 score (RCP 2017) from the latest SpO₂, blood pressure, pulse, temperature "
           f"and respiratory rate taken within {age}."]
    bands = {k: v for k, v in (params.get("severity") or {}).items() if k != "__line__"}
    if bands:
        out.append("Response " + ", ".join(f"{b} → {s}" for b, s in bands.items()) + ".")
    return out


def _change_words(rule: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    metric = str(params.get("metric"))
    moves = [f"{verb} by more than {_with_unit(metric, params[key])}"
             for key, verb in (("rise", "rises"), ("fall", "falls"))
             if params.get(key) is not None]
    return [f"Raised when {LABELS.get(metric, metric)} {' or '.join(moves)} within "
            f"{_duration(params.get('over'))}."]


def _average_words(rule: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    above = params.get("above") or {}
    limits = " or ".join(f"{LABELS.get(m, m)} {_with_unit(m, v)}" for m, v in above.items()
                         if m != "__line__")
    out = [f"Raised when the average over {_duration(params.get('over'))} reaches {limits} "
           "or more."]
    if params.get("discard_first_day"):
        out.append("The first day's readings are discarded.")
    needs = [f"{params[k]} {word}" for k, word in (("min_days", "days"),
                                                  ("min_readings", "readings")) if params.get(k)]
    if needs:
        out.append("Needs at least " + " and ".join(needs) + ".")
    return out


def _missed_words(rule: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    slots = ", ".join(str(s) for s in params.get("at") or [])
    zone = params.get("timezone", "Europe/London")
    return [f"Expects a reading at {slots} ({zone}); raised when none arrives within "
            f"{_duration(params.get('grace', '?'))}."]


def _hub_words(rule: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    return [f"Raised when the home hub has been offline for {_duration(params.get('after'))}."]


def _battery_words(rule: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    return [f"Raised when a device's battery is below {number(params.get('below'))} %."]


_WORDS = {"threshold": _threshold_words, "news2": _news2_words, "change": _change_words,
          "average": _average_words, "missed_reading": _missed_words,
          "hub_offline": _hub_words, "battery_low": _battery_words}


def rule_in_words(rule: Mapping[str, Any]) -> list[str]:
    """Sentences that say when the rule raises (and clears) an alert."""
    params = {k: v for k, v in (rule.get("params") or {}).items() if k != "__line__"}
    words = _WORDS.get(str(rule.get("kind")))
    out = words(rule, params) if words else []
    if not out and params:
        out.append("Parameters: " + ", ".join(f"{k} = {v}" for k, v in params.items()) + ".")
    return out


@dataclass(frozen=True, slots=True)
class Threshold:
    """A line to draw on a chart: ``metric op value`` raises ``severity``."""

    rule_id: str
    metric: str
    op: str
    value: float
    severity: str

    def label(self) -> str:
        return f"{self.severity} {_OPS.get(self.op, self.op)} {number(self.value)}"


def _leaves(cond: Any) -> list[Mapping[str, Any]]:
    if not isinstance(cond, Mapping):
        return []
    if "any" in cond or "all" in cond:
        return [leaf for c in (cond.get("any") or cond.get("all") or []) for leaf in _leaves(c)]
    return [cond] if "metric" in cond and "value" in cond else []


def thresholds(rule_id: str, severity: str, params: Mapping[str, Any]) -> list[Threshold]:
    """The numeric limits of a threshold rule's raise conditions (not its clear ones)."""
    out: list[Threshold] = []
    levels: Sequence[tuple[str, Any]] = (
        [(severity, params["when"])] if "when" in params
        else [(str(s), c) for s, c in (params.get("levels") or {}).items() if s != "__line__"])
    for sev, cond in levels:
        for leaf in _leaves(cond):
            try:
                value = float(leaf["value"])
            except (TypeError, ValueError):
                continue
            out.append(Threshold(rule_id, str(leaf["metric"]), str(leaf.get("op")), value, sev))
    return out


def editable_limits(params: Mapping[str, Any]) -> list[tuple[str, str, str, float]]:
    """Every numeric limit of a threshold rule's params as (path, metric, op, value), the
    path being dot-separated keys and list indexes (``levels.red.value``,
    ``when.any.0.value``) for the threshold editor to write back."""
    out: list[tuple[str, str, str, float]] = []

    def walk(node: Any, path: list[str]) -> None:
        if isinstance(node, Mapping):
            if "metric" in node and isinstance(node.get("value"), int | float):
                out.append((".".join([*path, "value"]), str(node["metric"]),
                            str(node.get("op")), float(node["value"])))
                return
            for key, child in node.items():
                if key != "__line__":
                    walk(child, [*path, str(key)])
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, [*path, str(i)])

    for key in ("when", "levels", "clear"):
        if key in params:
            walk(params[key], [key])
    return out


def kinds() -> list[str]:
    return [k.value for k in Kind]
