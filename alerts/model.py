"""The alert engine's vocabulary: severities, rules, readings in a window, findings.

Everything here is a frozen dataclass so rules and findings compare with
``==`` in tests and cannot change under an evaluator's feet.  Times are
timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class Severity(StrEnum):
    INFO = "info"
    AMBER = "amber"
    RED = "red"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.AMBER: 1, Severity.RED: 2}

#: Alert states; the first two are "active" (at most one per patient and rule).
ACTIVE_STATES = ("open", "acknowledged")
CLOSED_STATES = ("resolved", "auto_resolved")

#: Coded outcomes a clinician chooses when resolving an alert.
OUTCOMES = (
    "patient_contacted_no_action",
    "advice_given",
    "medication_changed",
    "home_visit",
    "referred_to_gp",
    "referred_to_hospital",
    "emergency_999",
    "measurement_error",
    "device_fault",
    "duplicate",
    "discharged",  # the patient left the service; set by a discharge, not chosen
    "other",
)


def frozen_mapping(d: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True, slots=True)
class WindowReading:
    """One stored reading as an evaluator sees it."""

    id: str
    kind: str
    taken_at: datetime
    values: Mapping[str, float]
    flags: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "taken_at": self.taken_at.isoformat(),
                "values": dict(self.values), "flags": list(self.flags)}


@dataclass(frozen=True, slots=True)
class Rule:
    """One clinical rule, loaded from YAML (alerts/ruleset.py) and validated.

    ``params`` is the evaluator's own frozen parameters object (for example
    ``ThresholdParams``); ``raw_params`` the mapping it was parsed from, kept
    so per-patient overrides can be merged over it and re-parsed.
    """

    id: str
    kind: str                       # evaluator kind: threshold, news2, change, ...
    severity: Severity
    title: str
    source: str                     # clinical citation
    reading_kinds: tuple[str, ...]  # reading kinds that make it re-evaluate
    window: timedelta               # how much history the evaluator needs
    params: Any
    raw_params: Mapping[str, Any] = field(default_factory=frozen_mapping)
    labels: Mapping[str, str] = field(default_factory=frozen_mapping)
    auto_resolve: bool = False
    enabled_by_default: bool = True
    location: str = ""              # file:line it came from

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "severity": str(self.severity),
                "title": self.title, "source": self.source,
                "reading_kinds": list(self.reading_kinds),
                "window_seconds": self.window.total_seconds(),
                "params": _jsonable(self.raw_params), "labels": dict(self.labels),
                "auto_resolve": self.auto_resolve}


@dataclass(frozen=True, slots=True)
class Finding:
    """What an evaluator concluded about a window.

    ``firing`` True: the rule's condition holds (open or update an alert).
    ``firing`` False: the rule's *clear* condition holds (auto-resolve when
    the rule allows).  An evaluator returns ``None`` when neither is true
    (inside the hysteresis band, or not enough data to say).
    """

    firing: bool
    severity: Severity | None = None
    summary: str = ""
    readings: tuple[WindowReading, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=frozen_mapping)
    #: For findings made by the scheduler (missed reading, hub offline...): the
    #: same key as the active alert's last trigger means "nothing new", so the
    #: alert is not re-triggered on every tick.
    key: str | None = None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, datetime):
        return value.isoformat()
    return value


#: An evaluation failure's error as stored and shown: enough to find the fault.
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class EvaluationFailure:
    """A rule that raised while judging one patient's reading (or a stored personal setting
    the rule set now refuses): the engine goes on with every other patient and rule, and
    says so (``AlertEngine.on_failure``: a system alert to the patient's team)."""

    patient_id: int
    rule_id: str
    #: None for the scheduler tick's (no reading: ``taken_at`` is the tick's time).
    reading_id: str | None
    taken_at: datetime
    error: str
