"""The patient record's SQL: the caseload, one patient, chart series and the timeline.

Every function that returns patient data takes the caller's :class:`Scope`
or a patient id already checked against it (``server.api.scope``); the
scope's condition comes from :mod:`server.access`, never from a filter here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads

from alerts.model import Rule
from alerts.news2 import score as news2_score
from alerts.ruleset import load_ruleset
from alerts.store import RETRY_WINDOW
from homeward.kinds import Kind
from server.access import Scope, patient_condition

Conn = psycopg.Connection[Any]
Resolution = Literal["raw", "minute", "hour", "day"]

SEVERITY_RANK = {"red": 0, "amber": 1, "info": 2}
#: A NEWS2 is made from the latest reading of each kind taken within this long.
NEWS2_WINDOW = timedelta(hours=24)
#: Adherence is counted over this many days.
ADHERENCE_DAYS = 7
#: Series: raw points up to this range, hourly buckets up to the next, then daily.
RAW_UP_TO = timedelta(days=2)
HOURLY_UP_TO = timedelta(days=31)
#: A "raw" range holding more readings than this (continuous oximetry) is answered in
#: one-minute buckets instead: a chart cannot show more, and a cut list would hide the end.
MAX_RAW_POINTS = 20_000


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


@lru_cache(maxsize=1)
def _shipped_rules() -> dict[str, Rule]:
    """The rule set, for which kinds each missed-reading schedule covers."""
    return dict(load_ruleset().by_id())


# -- caseload ---------------------------------------------------------------------------

_CASELOAD = """
SELECT p.id, p.display_name AS name, p.nhs_number, p.status, p.date_of_birth,
       (SELECT COALESCE(jsonb_agg(jsonb_build_object('id', t.id, 'name', t.name,
                                                     'lead', pt.lead) ORDER BY t.name), '[]')
          FROM patient_team pt JOIN team t ON t.id = pt.team_id
         WHERE pt.patient_id = p.id) AS teams,
       (SELECT COALESCE(jsonb_object_agg(l.kind, jsonb_build_object(
                 'values', l."values", 'taken_at', l.taken_at)), '{{}}')
          FROM reading_latest l
         WHERE l.patient_id = p.id AND l.kind = ANY(%(kinds)s::text[])) AS latest,
       a.open_alerts, a.highest_severity, a.oldest_unacknowledged_at,
       e.hub_id, h.state AS hub_state, h.last_seen_at AS hub_last_seen_at,
       CASE WHEN jsonb_typeof(h.last_status->'outbox_depth') = 'number'
            THEN (h.last_status->>'outbox_depth')::numeric END AS outbox_depth,
       (SELECT min((d->>'battery')::int)
          FROM jsonb_array_elements(CASE WHEN jsonb_typeof(h.last_status->'devices') = 'array'
                                         THEN h.last_status->'devices' END) d
         WHERE jsonb_typeof(d->'battery') = 'number'
           AND d->>'battery' ~ '^-?[0-9]{{1,9}}$') AS lowest_battery
  FROM patient p
  LEFT JOIN LATERAL (
        SELECT count(*) AS open_alerts,
               min(CASE severity WHEN 'red' THEN 0 WHEN 'amber' THEN 1 ELSE 2 END) AS rank,
               (array_agg(severity ORDER BY CASE severity WHEN 'red' THEN 0
                          WHEN 'amber' THEN 1 ELSE 2 END))[1] AS highest_severity,
               min(opened_at) FILTER (WHERE state = 'open') AS oldest_unacknowledged_at
          FROM alert WHERE patient_id = p.id AND state IN ('open', 'acknowledged')) a ON true
  LEFT JOIN LATERAL (
        SELECT hub_id FROM enrolment
         WHERE patient_id = p.id AND valid_from <= now()
           AND (valid_to IS NULL OR valid_to > now())
         ORDER BY valid_from DESC LIMIT 1) e ON true
  LEFT JOIN hub h ON h.id = e.hub_id
 WHERE {scope} {filters}
"""


def caseload(conn: Conn, scope: Scope, *, team: str | None = None, status: str | None = None,
             severity: str | None = None, q: str | None = None, limit: int = 500,
             now: datetime | None = None) -> list[dict[str, Any]]:
    """A row per patient in scope, in attention order: highest open severity, then
    the oldest unacknowledged alert, then the stalest data."""
    params: dict[str, Any] = {"kinds": [k.value for k in Kind]}
    filters: list[str] = []
    if team is not None:
        filters.append("p.id IN (SELECT patient_id FROM patient_team WHERE team_id = %(team)s)")
        params["team"] = team
    if status is not None:
        filters.append("p.status = %(status)s")
        params["status"] = status
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        digits = "".join(ch for ch in q if ch.isdigit())
        filters.append("(p.display_name ILIKE %(like)s OR (%(digits)s <> '' AND"
                       " replace(p.nhs_number, ' ', '') LIKE %(digits_like)s))")
        params.update(like=f"%{escaped}%", digits=digits, digits_like=f"{digits}%")
    query = sql.SQL(_CASELOAD).format(
        scope=patient_condition(scope, "p.id"),
        filters=sql.SQL("".join(" AND " + f for f in filters)))
    with conn.cursor(row_factory=dict_row) as cur:
        set_json_loads(orjson.loads, cur)  # teams and latest readings: JSON per row
        rows = cur.execute(query, params).fetchall()
        if severity is not None:
            rows = [r for r in rows if r["highest_severity"] == severity]
        # Order and cut first: NEWS2, adherence and the row itself only for the page.
        rows.sort(key=_attention_key)
        rows = rows[:limit]
        adherence = _adherence(conn, [r["id"] for r in rows], now=now)
    at = now or datetime.now(UTC)
    return [_caseload_row(r, adherence.get(r["id"]), at) for r in rows]


_NEVER = datetime.max.replace(tzinfo=UTC)


def _int(value: Any) -> int | None:
    """A whole JSON number as an int (a hub's status is its own word, not checked)."""
    return int(value) if value is not None and value == int(value) else None


def _attention_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """Highest open severity, then the oldest unacknowledged alert, then the stalest
    data (the patient whose latest reading is oldest, or who has none, first)."""
    latest: dict[str, Any] = row["latest"] or {}
    last_reading_at = max((v["taken_at"] for v in latest.values()), default="")
    return (SEVERITY_RANK.get(row["highest_severity"] or "", 9),
            row["oldest_unacknowledged_at"] or _NEVER, last_reading_at, row["id"])


def _caseload_row(r: dict[str, Any], adherence: dict[str, int] | None,
                  now: datetime) -> dict[str, Any]:
    latest: dict[str, Any] = r["latest"] or {}
    last_reading_at = max((v["taken_at"] for v in latest.values()), default=None)
    return {
        "id": r["id"], "name": r["name"], "nhs_number": r["nhs_number"],
        "status": r["status"], "teams": r["teams"],
        "latest": latest,
        "news2": _news2(latest, now),
        "open_alerts": int(r["open_alerts"] or 0),
        "highest_severity": r["highest_severity"],
        "oldest_unacknowledged_at": _iso(r["oldest_unacknowledged_at"]),
        "last_reading_at": last_reading_at,
        "hub": None if r["hub_id"] is None else {
            "id": r["hub_id"], "state": r["hub_state"],
            "last_seen_at": _iso(r["hub_last_seen_at"]),
            "outbox_depth": _int(r["outbox_depth"])},
        "lowest_battery": r["lowest_battery"],
        "adherence": adherence,
    }


def _news2(latest: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """NEWS2 from the latest reading of each kind within NEWS2_WINDOW (partial when a
    parameter is missing, as it usually is at home)."""
    since = (now - NEWS2_WINDOW).isoformat()

    def value(kind: str, metric: str) -> float | None:
        entry = latest.get(kind)
        if not entry or entry["taken_at"] < since:
            return None
        found = entry["values"].get(metric)
        return float(found) if isinstance(found, int | float) else None

    inputs = {"respiratory_rate": value("respiratory_rate", "respiratory_rate"),
              "spo2": value("spo2", "spo2"), "systolic": value("blood_pressure", "systolic"),
              "pulse_rate": value("spo2", "pulse_rate") or value("blood_pressure",
                                                                 "pulse_rate"),
              "temperature": value("temperature", "body_temperature")}
    if all(v is None for v in inputs.values()):
        return None
    result = news2_score(respiratory_rate=inputs["respiratory_rate"], spo2=inputs["spo2"],
                         systolic=inputs["systolic"], pulse_rate=inputs["pulse_rate"],
                         temperature=inputs["temperature"],
                         consciousness=None)  # not measured at home, as in alerts.evaluators
    return {"total": result.total, "partial": result.partial, "response": result.response}


def _adherence(conn: Conn, patient_ids: list[int], *, now: datetime | None
               ) -> dict[int, dict[str, int]]:
    """Readings expected by each patient's enabled missed-reading schedules over the last
    ADHERENCE_DAYS, and readings received of those kinds (at most one per slot counts,
    so extra readings cannot hide missed ones beyond the total)."""
    if not patient_ids:
        return {}
    at = now or datetime.now(UTC)
    since = at - timedelta(days=ADHERENCE_DAYS)
    rules = _shipped_rules()
    expected: dict[int, dict[str, int]] = {}
    settings = conn.execute(
        "SELECT patient_id, rule_id, params FROM patient_rule_setting"
        " WHERE patient_id = ANY(%s) AND enabled AND valid_from <= %s"
        " AND (valid_to IS NULL OR valid_to > %s)", (patient_ids, at, at)).fetchall()
    for patient_id, rule_id, params in settings:
        rule = rules.get(rule_id)
        if rule is None or rule.kind != "missed_reading":
            continue
        slots = (params or {}).get("at") or rule.raw_params.get("at") or []
        for kind in rule.reading_kinds:
            per = expected.setdefault(patient_id, {})
            per[kind] = per.get(kind, 0) + len(slots) * ADHERENCE_DAYS
    if not expected:
        return {}
    # Counted per patient and kind up to what was expected and no further (only that
    # many count), so a patient on 1 Hz oximetry costs 28 index entries, not 604,800.
    pairs = [(p, k, n) for p, kinds in expected.items() for k, n in kinds.items()]
    received = conn.execute(
        "SELECT x.p, x.k, (SELECT count(*) FROM (SELECT 1 FROM reading r"
        "  WHERE r.patient_id = x.p AND r.kind = x.k AND r.taken_at >= %s"
        "  AND r.taken_at < %s LIMIT x.cap) s)"
        " FROM unnest(%s::bigint[], %s::text[], %s::bigint[]) AS x(p, k, cap)",
        (since, at, [p for p, _, _ in pairs], [k for _, k, _ in pairs],
         [n for _, _, n in pairs])).fetchall()
    got = {(p, k): int(n) for p, k, n in received}
    out = {}
    for patient_id, kinds in expected.items():
        exp = sum(kinds.values())
        rec = sum(min(n, got.get((patient_id, k), 0)) for k, n in kinds.items())
        out[patient_id] = {"expected": exp, "received": rec}
    return out


# -- one patient ------------------------------------------------------------------------

def patient_detail(conn: Conn, patient_id: int) -> dict[str, Any]:
    """Care teams, status and its history, hub and devices with their health, and
    personal rule settings with their history."""
    with conn.cursor(row_factory=dict_row) as cur:
        p = cur.execute("SELECT id, display_name AS name, nhs_number, date_of_birth, status,"
                        " created_at FROM patient WHERE id = %s", (patient_id,)).fetchone()
        assert p is not None  # the caller checked the scope, which checks existence
        teams = cur.execute(
            "SELECT t.id, t.name, t.kind, t.organisation_id, pt.lead, pt.added_at"
            " FROM patient_team pt JOIN team t ON t.id = pt.team_id WHERE pt.patient_id = %s"
            " ORDER BY pt.lead DESC, t.name", (patient_id,)).fetchall()
        status_history = cur.execute(
            "SELECT s.at, s.status, s.expected_end, s.note, s.clinician_id,"
            " c.display_name AS by, s.team_id FROM patient_status_event s"
            " LEFT JOIN clinician c ON c.id = s.clinician_id WHERE s.patient_id = %s"
            " ORDER BY s.at DESC, s.id DESC", (patient_id,)).fetchall()
        hubs = cur.execute(
            "SELECT e.hub_id AS id, e.valid_from, e.valid_to, h.state, h.last_seen_at,"
            " h.last_status, COALESCE((SELECT jsonb_agg(jsonb_build_object('address',"
            " d.address, 'kind', d.kind, 'name', d.name, 'paired_at', d.paired_at)"
            " ORDER BY d.paired_at) FROM device d WHERE d.hub_id = e.hub_id"
            " AND d.removed_at IS NULL), '[]') AS devices"
            " FROM enrolment e JOIN hub h ON h.id = e.hub_id WHERE e.patient_id = %s"
            " ORDER BY e.valid_from DESC", (patient_id,)).fetchall()
        settings = cur.execute(
            "SELECT s.id, s.rule_id, s.enabled, s.params, s.valid_from, s.valid_to, s.set_at,"
            " s.set_by, c.display_name AS set_by_name, s.note FROM patient_rule_setting s"
            " LEFT JOIN clinician c ON c.id = s.set_by WHERE s.patient_id = %s"
            " ORDER BY s.rule_id, s.valid_from DESC, s.id DESC", (patient_id,)).fetchall()
    for hub in hubs:
        status = hub.pop("last_status") or {}
        health = {d.get("address"): d for d in status.get("devices") or [] if isinstance(d, dict)}
        hub["outbox_depth"] = status.get("outbox_depth")
        for device in hub["devices"]:
            seen = health.get(device["address"], {})
            device["battery"] = seen.get("battery")
            device["last_seen"] = seen.get("last_seen")
            device["connected"] = seen.get("connected")
    detail: dict[str, Any] = _jsonable({**p, "teams": teams, "status_history": status_history,
                                        "hubs": hubs, "rule_settings": settings})
    return detail


def _jsonable(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


# -- series -----------------------------------------------------------------------------

def resolution_for(start: datetime, end: datetime) -> Resolution:
    span = end - start
    if span <= RAW_UP_TO:
        return "raw"
    return "hour" if span <= HOURLY_UP_TO else "day"


def series(conn: Conn, patient_id: int, *, kind: str, metric: str, start: datetime,
           end: datetime, resolution: Resolution | None = None) -> dict[str, Any]:
    """Points of one metric for a chart: raw readings for a short range (one-minute
    buckets when it holds more than MAX_RAW_POINTS), hourly or daily buckets
    (min/mean/max) for a long one, so 90 days of 1 Hz oximetry stays small."""
    chosen = resolution or resolution_for(start, end)
    value = sql.SQL("(\"values\"->>{})::float8").format(sql.Literal(metric))
    rows: list[Any] = []
    if chosen == "raw":
        query = sql.SQL(
            "SELECT taken_at AS t, {v} AS v FROM reading WHERE patient_id = %s AND kind = %s"
            " AND taken_at >= %s AND taken_at < %s AND \"values\" ? %s"
            " ORDER BY taken_at LIMIT {n}").format(v=value, n=sql.Literal(MAX_RAW_POINTS + 1))
        rows = conn.execute(query, (patient_id, kind, start, end, metric)).fetchall()
        if len(rows) > MAX_RAW_POINTS:
            chosen = "minute"
    if chosen == "raw":
        points = [{"t": t.isoformat(), "v": v} for t, v in rows]
    elif chosen == "minute":
        query = sql.SQL(
            "SELECT date_bin('1 minute'::interval, taken_at, timestamptz '2000-01-01') AS t,"
            " min({v}), avg({v}), max({v}), count(*) FROM reading"
            " WHERE patient_id = %s AND kind = %s AND taken_at >= %s AND taken_at < %s"
            " AND \"values\" ? %s GROUP BY 1 ORDER BY 1").format(v=value)
        rows = conn.execute(query, (patient_id, kind, start, end, metric)).fetchall()
        points = [{"t": t.isoformat(), "min": lo, "mean": mean, "max": hi, "n": n}
                  for t, lo, mean, hi, n in rows]
    elif (window := _rollup_window(conn, metric, start, end)) is not None:
        width = "1 hour" if chosen == "hour" else "1 day"
        rows = conn.execute(_rollup_query(metric, width), {
            "p": patient_id, "k": kind, "m": metric, "start": start, "end": end,
            "h0": window[0], "h1": window[1]}).fetchall()
        points = [{"t": t.isoformat(), "min": lo, "mean": mean, "max": hi, "n": n}
                  for t, lo, mean, hi, n in rows]
    else:
        width = "1 hour" if chosen == "hour" else "1 day"
        query = sql.SQL(
            "SELECT date_bin({w}::interval, taken_at, timestamptz '2000-01-01') AS t,"
            " min({v}), avg({v}), max({v}), count(*) FROM reading"
            " WHERE patient_id = %s AND kind = %s AND taken_at >= %s AND taken_at < %s"
            " AND \"values\" ? %s GROUP BY 1 ORDER BY 1").format(w=sql.Literal(width), v=value)
        rows = conn.execute(query, (patient_id, kind, start, end, metric)).fetchall()
        points = [{"t": t.isoformat(), "min": lo, "mean": mean, "max": hi, "n": n}
                  for t, lo, mean, hi, n in rows]
    return {"patient_id": patient_id, "kind": kind, "metric": metric,
            "from": start.isoformat(), "to": end.isoformat(), "resolution": chosen,
            "points": points}


#: The metrics ``reading_metric_hourly`` (migration 0210) keeps a rollup of.
ROLLUP_METRICS = frozenset({"systolic", "diastolic", "mean_arterial", "pulse_rate", "spo2",
                            "perfusion_index", "body_temperature", "body_weight",
                            "blood_glucose", "respiratory_rate"})


def _rollup_window(conn: Conn, metric: str, start: datetime, end: datetime
                   ) -> tuple[datetime, datetime] | None:
    """The whole UTC hours of [start, end) that the hourly rollup answers, or None when
    it cannot: an unknown metric, no whole hour, or no rollup to read (a continuous
    aggregate on TimescaleDB, a trigger-kept table on plain PostgreSQL: migrations
    0210 and 0212)."""
    if metric not in ROLLUP_METRICS or start.tzinfo is None or end.tzinfo is None:
        return None
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if first < start:
        first += timedelta(hours=1)
    last = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if first >= last:
        return None
    row = conn.execute("SELECT c.relkind = 'r' OR EXISTS (SELECT 1 FROM pg_extension"
                       " WHERE extname = 'timescaledb') FROM pg_class c"
                       " WHERE c.oid = to_regclass('reading_metric_hourly')").fetchone()
    return (first, last) if row is not None and row[0] else None


def _rollup_query(metric: str, width: str) -> sql.Composed:
    """The same buckets as the raw aggregate: whole hours [h0, h1) from the rollup, the
    partial hours at either end from raw readings, then grouped by ``width``.  Counts,
    minima and maxima are exact; the mean is the sum over the count of numbers (the
    same division ``avg`` makes, summed in a different order)."""
    column = {part: sql.Identifier(f"{metric}_{part}")
              for part in ("n", "numbers", "sum", "min", "max")}
    return sql.SQL(
        "WITH parts AS ("
        " SELECT bucket AS h, {n} AS n, {numbers} AS numbers, {sum} AS s, {min} AS lo,"
        "  {max} AS hi FROM reading_metric_hourly"
        "  WHERE patient_id = %(p)s AND kind = %(k)s AND bucket >= %(h0)s"
        "  AND bucket < %(h1)s AND {n} > 0"
        " UNION ALL"
        " SELECT taken_at, 1, CASE WHEN v IS NULL THEN 0 ELSE 1 END, v, v, v FROM ("
        "  SELECT taken_at, (\"values\"->>%(m)s)::float8 AS v FROM reading"
        "   WHERE patient_id = %(p)s AND kind = %(k)s AND \"values\" ? %(m)s"
        "   AND ((taken_at >= %(start)s AND taken_at < %(h0)s)"
        "     OR (taken_at >= %(h1)s AND taken_at < %(end)s))) r)"
        " SELECT date_bin({w}::interval, h, timestamptz '2000-01-01') AS t, min(lo),"
        " sum(s) / NULLIF(sum(numbers), 0), max(hi), sum(n)::bigint"
        " FROM parts GROUP BY 1 ORDER BY 1").format(w=sql.Literal(width), **column)


# -- timeline ---------------------------------------------------------------------------

_TIMELINE = """
SELECT t.*, tm.name AS team_name, o.name AS organisation FROM (
  SELECT e.at, 'alert.' || e.event AS type, e.clinician_id, c.display_name AS author,
         a.team_id, jsonb_build_object('alert_id', a.id, 'rule_id', a.rule_id,
                                       'severity', a.severity, 'summary', a.summary,
                                       'detail', e.detail) AS detail
    FROM alert_event e JOIN alert a ON a.id = e.alert_id
    LEFT JOIN clinician c ON c.id = e.clinician_id WHERE a.patient_id = %(p)s
     AND e.event <> 'handed_over'  -- the hand-over's own entries below say it
  UNION ALL
  SELECT n.at, 'note', n.clinician_id, c.display_name, n.team_id,
         jsonb_build_object('text', n.text)
    FROM patient_note n LEFT JOIN clinician c ON c.id = n.clinician_id
   WHERE n.patient_id = %(p)s
  UNION ALL
  SELECT s.at, 'status', s.clinician_id, c.display_name, s.team_id,
         jsonb_build_object('status', s.status, 'expected_end', s.expected_end, 'note', s.note)
    FROM patient_status_event s LEFT JOIN clinician c ON c.id = s.clinician_id
   WHERE s.patient_id = %(p)s
  UNION ALL
  SELECT r.set_at, 'rule_setting', r.set_by, c.display_name, NULL,
         jsonb_build_object('rule_id', r.rule_id, 'enabled', r.enabled, 'params', r.params,
                            'valid_from', r.valid_from, 'note', r.note)
    FROM patient_rule_setting r LEFT JOIN clinician c ON c.id = r.set_by
   WHERE r.patient_id = %(p)s
  UNION ALL
  SELECT d.paired_at, 'device.paired', NULL, NULL, NULL,
         jsonb_build_object('hub_id', d.hub_id, 'address', d.address, 'kind', d.kind)
    FROM device d JOIN enrolment e ON e.hub_id = d.hub_id AND e.patient_id = %(p)s
  UNION ALL
  SELECT d.removed_at, 'device.removed', NULL, NULL, NULL,
         jsonb_build_object('hub_id', d.hub_id, 'address', d.address, 'kind', d.kind)
    FROM device d JOIN enrolment e ON e.hub_id = d.hub_id AND e.patient_id = %(p)s
   WHERE d.removed_at IS NOT NULL
  UNION ALL  -- hand-overs: offered (by the sender), escalated, and answered (the receiver)
  SELECT x.at, 'handover.' || x.step, x.who, c.display_name, x.team,
         jsonb_build_object('handover_id', h.id, 'kind', h.kind, 'alert_id', h.alert_id,
                            'from_team', h.from_team, 'to_team', h.to_team, 'note', h.note,
                            'from_team_name', (SELECT name FROM team WHERE id = h.from_team),
                            'to_team_name', (SELECT name FROM team WHERE id = h.to_team),
                            'state', h.state, 'reason', h.decline_reason,
                            'respond_by', h.respond_by)
    FROM handover h
   CROSS JOIN LATERAL (VALUES ('offered', h.offered_at, h.offered_by, h.from_team),
                              ('escalated', h.escalated_at, NULL::bigint, h.to_team),
                              (h.state, h.decided_at, h.decided_by, h.to_team))
                      AS x(step, at, who, team)
    LEFT JOIN clinician c ON c.id = x.who
   WHERE h.patient_id = %(p)s AND x.at IS NOT NULL
  UNION ALL  -- tasks: asked (by the requester), claimed and closed (the owning team)
  SELECT x.at, 'task.' || x.step, x.who, c.display_name, x.team,
         jsonb_build_object('task_id', k.id, 'title', k.title, 'team', k.team_id,
                            'team_name', (SELECT name FROM team WHERE id = k.team_id),
                            'priority', k.priority, 'due_at', k.due_at, 'state', k.state,
                            'note', k.close_note)
    FROM task k
   CROSS JOIN LATERAL (VALUES ('requested', k.requested_at, k.requested_by, k.requested_team),
                              ('claimed', k.claimed_at, k.claimed_by, k.team_id),
                              (k.state, k.closed_at, k.closed_by,
                               CASE WHEN k.state = 'cancelled' THEN k.requested_team
                                    ELSE k.team_id END))
                      AS x(step, at, who, team)
    LEFT JOIN clinician c ON c.id = x.who
   WHERE k.patient_id = %(p)s AND x.at IS NOT NULL
  UNION ALL
  SELECT v.at, 'care_team.' || v.event, v.clinician_id, c.display_name, v.team_id,
         jsonb_build_object('team', v.team_id, 'role', v.role, 'by_team', v.by_team,
                            'team_name', (SELECT name FROM team WHERE id = v.team_id),
                            'note', v.note)
    FROM care_team_event v LEFT JOIN clinician c ON c.id = v.clinician_id
   WHERE v.patient_id = %(p)s
  UNION ALL
  SELECT m.sent_at, 'message.' || m.direction, m.clinician_id,
         COALESCE(c.display_name, 'the patient'), m.team_id,
         jsonb_build_object('message_id', m.id, 'body', m.body, 'alert_id', m.alert_id,
                            'needs_confirmation', m.needs_confirmation, 'read_at', m.read_at,
                            'confirmed_at', m.confirmed_at, 'reply_to', m.reply_to)
    FROM patient_message m LEFT JOIN clinician c ON c.id = m.clinician_id
   WHERE m.patient_id = %(p)s
) t LEFT JOIN team tm ON tm.id = t.team_id
    LEFT JOIN organisation o ON o.id = tm.organisation_id
ORDER BY t.at DESC LIMIT %(limit)s
"""


def timeline(conn: Conn, patient_id: int, *, limit: int = 200) -> list[dict[str, Any]]:
    """Alerts and their events, notes, status changes, rule-setting changes, device
    changes, hand-overs, tasks, care-team changes and messages, newest first, each with
    its author, team and organisation: one record every team on the care team shares."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_TIMELINE, {"p": patient_id, "limit": limit}).fetchall()
    return _jsonable(rows)  # type: ignore[no-any-return]


# -- writes -----------------------------------------------------------------------------

def add_note(conn: Conn, scope: Scope, patient_id: int, text: str,
             team_id: str | None) -> dict[str, Any]:
    team = team_id if team_id in scope.team_ids else next(iter(scope.team_ids), None)
    with conn.cursor(row_factory=dict_row) as cur:
        retried = cur.execute(  # the same note sent again (a retry) is not a second note
            "SELECT id, at, team_id, text FROM patient_note WHERE patient_id = %s"
            " AND clinician_id = %s AND text = %s AND at > now() - %s"
            " ORDER BY id DESC LIMIT 1",
            (patient_id, scope.clinician_id, text, RETRY_WINDOW)).fetchone()
        if retried is not None:
            return _jsonable({**retried, "author": scope.display_name})  # type: ignore[no-any-return]
        row = cur.execute(
            "INSERT INTO patient_note (patient_id, clinician_id, team_id, text)"
            " VALUES (%s, %s, %s, %s) RETURNING id, at, team_id, text",
            (patient_id, scope.clinician_id, team, text)).fetchone()
    assert row is not None
    return _jsonable({**row, "author": scope.display_name})  # type: ignore[no-any-return]


PATIENT_STATUSES = ("active", "admitted", "away", "discharged")


def set_status(conn: Conn, scope: Scope, patient_id: int, *, status: str, note: str | None,
               expected_end: datetime | None, team_id: str | None,
               now: datetime | None = None) -> dict[str, Any]:
    """Change the patient's status, with its history.  ``discharged`` also ends the
    hub enrolment (so new readings are no longer attributed, and reading-driven
    evaluation stops), resolves open alerts with outcome ``discharged``; the
    scheduled rules already skip discharged patients (alerts.worker)."""
    from alerts import store

    at = now or datetime.now(UTC)
    team = team_id if team_id in scope.team_ids else next(iter(scope.team_ids), None)
    resolved: list[int] = []
    with conn.transaction():
        current = conn.execute("SELECT status FROM patient WHERE id = %s FOR UPDATE",
                               (patient_id,)).fetchone()
        assert current is not None
        conn.execute("UPDATE patient SET status = %s WHERE id = %s", (status, patient_id))
        conn.execute(
            "INSERT INTO patient_status_event (patient_id, at, status, expected_end, note,"
            " clinician_id, team_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (patient_id, at, status, expected_end, note, scope.clinician_id, team))
        if status == "discharged":
            conn.execute("UPDATE enrolment SET valid_to = %s WHERE patient_id = %s"
                         " AND valid_from < %s AND (valid_to IS NULL OR valid_to > %s)",
                         (at, patient_id, at, at))
            open_ids = [int(r[0]) for r in conn.execute(
                "SELECT id FROM alert WHERE patient_id = %s AND state IN ('open',"
                " 'acknowledged') ORDER BY id", (patient_id,)).fetchall()]
            for alert_id in open_ids:
                store.resolve(conn, alert_id, clinician_id=scope.clinician_id,
                              outcome="discharged", note=note, now=at)
                resolved.append(alert_id)
    return {"patient_id": patient_id, "status": status, "previous": current[0],
            "at": at.isoformat(), "expected_end": _iso(expected_end),
            "resolved_alerts": resolved}
