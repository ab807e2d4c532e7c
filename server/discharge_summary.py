"""The discharge summary of one patient's monitoring episode, for the GP practice (issue 9,
docs/reports.md): per kind and metric the count, minimum, maximum and mean of the
readings over the episode, a chart per kind, the alerts with their outcomes, the notes,
the hand-overs and the status changes.  The page, the JSON and the PDF print this one
builder (server/api/routes/reports.py).

The episode: from the start of monitoring (the patient's first enrolment since the
previous discharge, else when the patient was registered) to the discharge (the latest
``discharged`` status event, when the patient's status is discharged), or to now while
monitoring continues (the summary then says "so far").

The statistics come from the day buckets of ``record_queries.series`` (the hourly
rollup where there is one), so a 90-day episode of 1 Hz oximetry costs a few hundred
rows: counts, minima and maxima are exact, the mean is the sum over the count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from homeward.kinds import METRIC_BY_NAME, Kind
from server import record_queries
from server.patient_view import chart_resolution

#: Up to this many readings a kind's chart draws each one (else hourly/daily buckets).
CHART_RAW_MAX = 2000


@dataclass(frozen=True, slots=True)
class Episode:
    start: datetime
    end: datetime
    #: True when the patient is discharged (the end is the discharge).
    ended: bool


@dataclass(frozen=True, slots=True)
class MetricStats:
    metric: str
    count: int
    minimum: float | None
    maximum: float | None
    mean: float | None

    def as_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "count": self.count, "min": self.minimum,
                "max": self.maximum, "mean": self.mean}


@dataclass
class KindSummary:
    kind: str
    readings: int
    metrics: list[MetricStats]
    #: The chart's series: metric -> (resolution, points as record_queries.series gives).
    series: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class DischargeSummary:
    patient: dict[str, Any]
    episode: Episode
    kinds: list[KindSummary]
    alerts: list[dict[str, Any]]
    notes: list[dict[str, Any]]
    handovers: list[dict[str, Any]]
    statuses: list[dict[str, Any]]
    teams: list[dict[str, Any]]
    generated_at: datetime

    def as_json(self) -> dict[str, Any]:
        def iso(v: Any) -> Any:
            return v.isoformat() if isinstance(v, datetime) else v

        def rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{k: iso(v) for k, v in item.items()} for item in items]

        return {"patient": {k: iso(v) for k, v in self.patient.items()},
                "episode": {"from": self.episode.start.isoformat(),
                            "to": self.episode.end.isoformat(), "ended": self.episode.ended},
                "kinds": [{"kind": k.kind, "readings": k.readings,
                           "metrics": [m.as_json() for m in k.metrics]} for k in self.kinds],
                "alerts": rows(self.alerts), "notes": rows(self.notes),
                "handovers": rows(self.handovers), "statuses": rows(self.statuses),
                "care_team": rows(self.teams), "generated_at": self.generated_at.isoformat()}


def episode(conn: psycopg.Connection[Any], patient_id: int, now: datetime) -> Episode:
    row = conn.execute(
        "SELECT p.status, p.created_at,"
        " (SELECT max(at) FROM patient_status_event WHERE patient_id = p.id"
        "   AND status = 'discharged') FROM patient p WHERE p.id = %s",
        (patient_id,)).fetchone()
    assert row is not None  # the caller checked the scope, which checks existence
    status, created_at, discharged_at = row
    ended = status == "discharged"
    end = (discharged_at or now) if ended else now
    previous = conn.execute(
        "SELECT max(at) FROM patient_status_event WHERE patient_id = %s"
        " AND status = 'discharged' AND at < %s", (patient_id, end)).fetchone()
    before = previous[0] if previous else None
    enrolled = conn.execute(
        "SELECT min(valid_from) FROM enrolment WHERE patient_id = %s AND valid_from < %s"
        " AND (valid_to IS NULL OR valid_to > %s)",
        (patient_id, end, before or datetime.min.replace(tzinfo=UTC))).fetchone()
    first = enrolled[0] if enrolled else None
    candidates = [t for t in (first, before) if t is not None]
    start = max(candidates) if candidates else created_at
    if start >= end:
        start = min(created_at, end)
    return Episode(start, end, ended)


def metric_stats(conn: psycopg.Connection[Any], patient_id: int, kind: str, metric: str,
                 start: datetime, end: datetime) -> MetricStats:
    """Count, minimum, maximum and mean of one metric over [start, end)."""
    points = record_queries.series(conn, patient_id, kind=kind, metric=metric, start=start,
                                   end=end, resolution="day")["points"]
    count = sum(int(p["n"]) for p in points)
    numbers = [p for p in points if p["mean"] is not None]
    if not numbers:
        return MetricStats(metric, count, None, None, None)
    weight = sum(int(p["n"]) for p in numbers)
    return MetricStats(metric, count, min(float(p["min"]) for p in numbers),
                       max(float(p["max"]) for p in numbers),
                       sum(float(p["mean"]) * int(p["n"]) for p in numbers) / weight)


def _kinds(conn: psycopg.Connection[Any], patient_id: int, ep: Episode) -> list[KindSummary]:
    counts = dict(conn.execute(
        "SELECT k.kind, (SELECT count(*) FROM reading r WHERE r.patient_id = %s"
        " AND r.kind = k.kind AND r.taken_at >= %s AND r.taken_at < %s)"
        " FROM unnest(%s::text[]) AS k(kind)",
        (patient_id, ep.start, ep.end, [k.value for k in Kind])).fetchall())
    out = []
    for kind in Kind:
        n = int(counts.get(kind.value) or 0)
        if not n:
            continue
        stats = [metric_stats(conn, patient_id, kind.value, m, ep.start, ep.end)
                 for m in METRIC_BY_NAME[kind]]
        summary = KindSummary(kind.value, n, [s for s in stats if s.count])
        resolution = chart_resolution(conn, patient_id, kind.value, start=ep.start,
                                      end=ep.end, raw_max=CHART_RAW_MAX)
        for s in summary.metrics:
            summary.series[s.metric] = record_queries.series(
                conn, patient_id, kind=kind.value, metric=s.metric, start=ep.start,
                end=ep.end, resolution=resolution)
        out.append(summary)
    return out


def build(conn: psycopg.Connection[Any], patient_id: int, *,
          now: datetime | None = None) -> DischargeSummary:
    at = now or datetime.now(UTC)
    ep = episode(conn, patient_id, at)
    args = {"p": patient_id, "start": ep.start, "end": ep.end}
    with conn.cursor(row_factory=dict_row) as cur:
        patient = cur.execute(
            "SELECT id, display_name AS name, nhs_number, date_of_birth, status, created_at"
            " FROM patient WHERE id = %(p)s", args).fetchone()
        assert patient is not None
        teams = cur.execute(
            "SELECT t.id, t.name, t.kind, t.email, pt.lead FROM patient_team pt"
            " JOIN team t ON t.id = pt.team_id WHERE pt.patient_id = %(p)s"
            " ORDER BY pt.lead DESC, t.name", args).fetchall()
        alerts = cur.execute(
            "SELECT a.id, a.opened_at, a.severity, a.rule_id, a.summary, a.state,"
            " a.team_id, tm.name AS team, a.acknowledged_at, ack.display_name AS"
            " acknowledged_by, a.resolved_at, a.outcome, res.display_name AS resolved_by,"
            " (SELECT e.detail->>'note' FROM alert_event e WHERE e.alert_id = a.id"
            "   AND e.event = 'resolved' ORDER BY e.id DESC LIMIT 1) AS resolve_note,"
            " (SELECT count(*) FROM alert_event e WHERE e.alert_id = a.id"
            "   AND e.event = 'escalated') AS escalations"
            " FROM alert a LEFT JOIN team tm ON tm.id = a.team_id"
            " LEFT JOIN clinician ack ON ack.id = a.acknowledged_by"
            " LEFT JOIN clinician res ON res.id = a.resolved_by"
            " WHERE a.patient_id = %(p)s AND a.opened_at >= %(start)s"
            " AND a.opened_at <= %(end)s ORDER BY a.opened_at, a.id", args).fetchall()
        notes = cur.execute(
            "SELECT n.at, n.text, c.display_name AS author, tm.name AS team"
            " FROM patient_note n LEFT JOIN clinician c ON c.id = n.clinician_id"
            " LEFT JOIN team tm ON tm.id = n.team_id WHERE n.patient_id = %(p)s"
            " AND n.at >= %(start)s AND n.at <= %(end)s ORDER BY n.at, n.id", args).fetchall()
        handovers = cur.execute(
            "SELECT h.id, h.kind, h.alert_id, a.summary AS alert_summary, h.offered_at,"
            " f.name AS from_team, t.name AS to_team, h.state, h.decided_at, h.note,"
            " h.decline_reason, o.display_name AS offered_by, d.display_name AS decided_by"
            " FROM handover h JOIN team f ON f.id = h.from_team JOIN team t ON t.id = h.to_team"
            " LEFT JOIN alert a ON a.id = h.alert_id"
            " LEFT JOIN clinician o ON o.id = h.offered_by"
            " LEFT JOIN clinician d ON d.id = h.decided_by"
            " WHERE h.patient_id = %(p)s AND h.offered_at >= %(start)s"
            " AND h.offered_at <= %(end)s ORDER BY h.offered_at, h.id", args).fetchall()
        statuses = cur.execute(
            "SELECT s.at, s.status, s.note, s.expected_end, c.display_name AS by"
            " FROM patient_status_event s LEFT JOIN clinician c ON c.id = s.clinician_id"
            " WHERE s.patient_id = %(p)s AND s.at >= %(start)s AND s.at <= %(end)s"
            " ORDER BY s.at, s.id", args).fetchall()
    return DischargeSummary(patient, ep, _kinds(conn, patient_id, ep), alerts, notes,
                            handovers, statuses, teams, at)
