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
from homeward.kinds import Kind
from server.record_queries import HOURLY_UP_TO, Resolution


@lru_cache(maxsize=1)
def shipped_ruleset() -> RuleSet:
    return load_ruleset()


def recent_readings(conn: psycopg.Connection[Any], patient_id: int, *, start: datetime,
                    end: datetime, limit: int = 100) -> list[dict[str, Any]]:
    """The patient's readings in [start, end), newest first, at most ``limit``: the newest
    ``limit`` of each kind from the (patient, kind, time) index, then merged, so a
    patient with a week of 1 Hz oximetry costs no more than one with spot checks."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT r.* FROM unnest(%s::text[]) AS k(kind) CROSS JOIN LATERAL ("
            ' SELECT id::text AS id, kind, taken_at, "values", flags, device FROM reading'
            " WHERE patient_id = %s AND kind = k.kind AND taken_at >= %s AND taken_at < %s"
            " ORDER BY taken_at DESC LIMIT %s) r ORDER BY r.taken_at DESC, r.id LIMIT %s",
            ([k.value for k in Kind], patient_id, start, end, limit, limit)).fetchall()


def kinds_measured(conn: psycopg.Connection[Any], patient_id: int, *,
                   since: datetime) -> set[str]:
    """The kinds the patient has readings of since ``since`` (one index probe a kind)."""
    rows = conn.execute(
        "SELECT k.kind FROM unnest(%s::text[]) AS k(kind) WHERE EXISTS (SELECT 1 FROM reading"
        " WHERE patient_id = %s AND kind = k.kind AND taken_at >= %s)",
        ([k.value for k in Kind], patient_id, since)).fetchall()
    return {str(r[0]) for r in rows}


def chart_resolution(conn: psycopg.Connection[Any], patient_id: int, kind: str, *,
                     start: datetime, end: datetime, raw_max: int) -> Resolution:
    """Every reading when there are at most ``raw_max`` in the range (spot checks, the
    evidence around an alert), else hourly buckets, or daily past HOURLY_UP_TO: dense
    data (1 Hz oximetry) is never cut short at the series' raw limit."""
    row = conn.execute("SELECT count(*) FROM (SELECT 1 FROM reading WHERE patient_id = %s"
                       " AND kind = %s AND taken_at >= %s AND taken_at < %s LIMIT %s) r",
                       (patient_id, kind, start, end, raw_max + 1)).fetchone()
    if row is not None and row[0] <= raw_max:
        return "raw"
    return "hour" if end - start <= HOURLY_UP_TO else "day"


def rules_now(conn: psycopg.Connection[Any], patient_id: int, *,
              ruleset: RuleSet | None = None, at: datetime | None = None) -> list[Rule]:
    """The rules that apply to the patient at ``at`` (default now), personal params
    merged in: what the engine evaluates the next reading with."""
    rules = ruleset or shipped_ruleset()
    settings = load_settings(conn, [patient_id]).get(patient_id, [])
    return rules_for(rules, settings, at or datetime.now(UTC))
