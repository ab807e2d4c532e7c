"""Per-patient rule settings held in the database (table ``patient_rule_setting``).

A setting says whether a rule applies to a patient and which personal
parameters override the rule file's, who set it, when, and from when it
applies.  Settings are never edited in place: a new one closes the previous
(``valid_to``), so the history of a patient's thresholds stays visible.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg

from alerts.model import Rule
from alerts.ruleset import RuleSet, with_overrides


@dataclass(frozen=True, slots=True)
class PatientRuleSetting:
    patient_id: int
    rule_id: str
    enabled: bool
    params: Mapping[str, Any]
    valid_from: datetime
    valid_to: datetime | None
    set_by: int | None = None


def set_patient_rule(conn: psycopg.Connection[Any], *, patient_id: int, rule_id: str,
                     enabled: bool = True, params: Mapping[str, Any] | None = None,
                     set_by: int | None, valid_from: datetime | None = None,
                     note: str | None = None, ruleset: RuleSet | None = None) -> int:
    """Record a new setting from ``valid_from`` (default now), closing the one in force then.

    With ``ruleset`` given, personal params are validated against the rule first.
    """
    start = valid_from or datetime.now(UTC)
    if ruleset is not None:
        rule = ruleset.by_id().get(rule_id)
        if rule is None:
            raise ValueError(f"unknown rule {rule_id!r}")
        with_overrides(rule, dict(params or {}))  # raises RuleError when invalid
    with conn.transaction():
        # Serialise settings of one patient and rule, so two writers cannot overlap.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('patient_rule_setting'),"
                     " hashtext(%s || ':' || %s))", (str(patient_id), rule_id))
        # The setting in force at ``start`` ends there.  A back-dated setting then holds
        # until the next later one begins (later history is kept, never rewritten), so
        # the rows of one patient and rule never overlap.
        conn.execute(
            "UPDATE patient_rule_setting SET valid_to = %s WHERE patient_id = %s"
            " AND rule_id = %s AND valid_from < %s AND (valid_to IS NULL OR valid_to > %s)",
            (start, patient_id, rule_id, start, start))
        later = conn.execute(
            "SELECT min(valid_from) FROM patient_rule_setting WHERE patient_id = %s"
            " AND rule_id = %s AND valid_from >= %s", (patient_id, rule_id, start)).fetchone()
        end = later[0] if later else None
        if end is not None and end <= start:  # a setting from the very same instant
            raise ValueError(f"a setting of {rule_id!r} already starts at {start.isoformat()}")
        row = conn.execute(
            "INSERT INTO patient_rule_setting (patient_id, rule_id, enabled, params, set_by,"
            " valid_from, valid_to, note) VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s)"
            " RETURNING id",
            (patient_id, rule_id, enabled, orjson.dumps(dict(params or {})).decode(), set_by,
             start, end, note)).fetchone()
    assert row is not None
    return int(row[0])


def load_settings(conn: psycopg.Connection[Any],
                  patient_ids: Iterable[int]) -> dict[int, list[PatientRuleSetting]]:
    out: dict[int, list[PatientRuleSetting]] = {}
    rows = conn.execute(
        "SELECT patient_id, rule_id, enabled, params, valid_from, valid_to, set_by"
        " FROM patient_rule_setting WHERE patient_id = ANY(%s) ORDER BY valid_from",
        (list(patient_ids),)).fetchall()
    for r in rows:
        out.setdefault(r[0], []).append(PatientRuleSetting(*r))
    return out


def rules_for(ruleset: RuleSet, settings: list[PatientRuleSetting],
              at: datetime) -> list[Rule]:
    """The rules that apply to a patient at ``at``, with their personal params merged in."""
    current: dict[str, PatientRuleSetting] = {}
    for s in settings:
        if s.valid_from <= at and (s.valid_to is None or at < s.valid_to):
            current[s.rule_id] = s
    out = []
    for rule in ruleset.rules:
        setting = current.get(rule.id)
        if setting is None:
            if rule.enabled_by_default:
                out.append(rule)
        elif setting.enabled:
            out.append(with_overrides(rule, setting.params))
    return out
