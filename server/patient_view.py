"""What the patient page shows beside the record itself: the newest readings, and the
rules as they apply to this patient now (personal settings merged over the rule file).

The caller has checked the patient against the caller's scope
(``server.api.scope.PatientAccess``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.rows import dict_row

from alerts.model import Rule
from alerts.ruleset import RuleSet, load_ruleset
from alerts.settings_store import load_settings, rules_for


@lru_cache(maxsize=1)
def shipped_ruleset() -> RuleSet:
    return load_ruleset()


def recent_readings(conn: psycopg.Connection[Any], patient_id: int, *, start: datetime,
                    end: datetime, limit: int = 100) -> list[dict[str, Any]]:
    """The patient's readings in [start, end), newest first, at most ``limit``."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            'SELECT id::text AS id, kind, taken_at, "values", flags, device'
            " FROM reading WHERE patient_id = %s AND taken_at >= %s AND taken_at < %s"
            " ORDER BY taken_at DESC, id LIMIT %s", (patient_id, start, end, limit)).fetchall()


def rules_now(conn: psycopg.Connection[Any], patient_id: int, *,
              ruleset: RuleSet | None = None, at: datetime | None = None) -> list[Rule]:
    """The rules that apply to the patient at ``at`` (default now), personal params
    merged in: what the engine evaluates the next reading with."""
    rules = ruleset or shipped_ruleset()
    settings = load_settings(conn, [patient_id]).get(patient_id, [])
    return rules_for(rules, settings, at or datetime.now(UTC))
