"""Retention: delete what is older than its retention period, in small batches.

``homeward db retention`` runs :func:`run_retention` once (or every N seconds
with ``--every``).  Every batch is its own short transaction of at most
``batch_rows`` rows, so a run never holds a lock for long, never writes a
year of WAL at once, and can be stopped at any point (the next run goes on
where it stopped).  Periods are settings (``HOMEWARD_RETENTION_*``,
homeward/settings.py); what each covers is in docs/operations.md.

Readings on plain PostgreSQL are walked hub by hub on ``reading_hub_time_idx``
(no extra index on the ingest's hot path); their identity rows go in the same
statement, and the rollups follow through their triggers.  With TimescaleDB
whole chunks older than the period are dropped (``drop_chunks``: no row-by-row
delete, no dead tuples), after their identity rows; that needs the role that
owns ``reading`` (the one that runs ``homeward db migrate``).

The append-only history leaves only through the SECURITY DEFINER functions of
migration 0300 (``purge_resolved_alerts``, ``purge_history``), which record
every batch in ``history_purge``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from homeward.settings import Settings
from server.migrate import has_timescaledb

Conn = psycopg.Connection[Any]
#: ``on_progress(step, rows_deleted_so_far_in_step, step_done)`` after every batch.
ProgressFn = Callable[[str, int, bool], None]
#: One batch: delete at most ``limit`` rows older than ``cutoff``; how many went.
Batch = Callable[[Conn, datetime, int], int]

_LOCK_KEY = 0x52657465  # "Rete": one retention run at a time


class RetentionBusy(RuntimeError):
    """Another retention run holds the lock."""


@dataclass(frozen=True)
class Periods:
    readings: timedelta
    record: timedelta
    notifications: timedelta
    quarantine: timedelta
    audit: timedelta

    @classmethod
    def from_settings(cls, s: Settings) -> Periods:
        return cls(readings=timedelta(days=s.retention_readings_days),
                   record=timedelta(days=s.retention_record_days),
                   notifications=timedelta(days=s.retention_notifications_days),
                   quarantine=timedelta(days=s.retention_quarantine_days),
                   audit=timedelta(days=s.retention_audit_days))


def _statement(query: str) -> Batch:
    """A batch that is one DELETE taking (cutoff, limit)."""
    def batch(conn: Conn, cutoff: datetime, limit: int) -> int:
        with conn.transaction():
            return conn.execute(query.encode(), (cutoff, limit)).rowcount
    return batch


def _function(query: str) -> Batch:
    """A batch that is one purge function of migration 0300 (it returns its count)."""
    def batch(conn: Conn, cutoff: datetime, limit: int) -> int:
        with conn.transaction():
            row = conn.execute(query.encode(), (cutoff, limit)).fetchone()
        return int(row[0]) if row is not None else 0
    return batch


def _notifications(conn: Conn, cutoff: datetime, limit: int) -> int:
    """Notifications sent or given up on (never a pending one), with their attempts."""
    with conn.transaction():
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM notification WHERE created_at < %s AND state <> 'pending'"
            " ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED", (cutoff, limit))]
        if not ids:
            return 0
        conn.execute("DELETE FROM notification_attempt WHERE notification_id = ANY(%s)", (ids,))
        return conn.execute("DELETE FROM notification WHERE id = ANY(%s)", (ids,)).rowcount


_READING_HUBS = """
WITH RECURSIVE hubs AS (
    (SELECT hub_id FROM reading ORDER BY hub_id LIMIT 1)
    UNION ALL
    SELECT (SELECT r.hub_id FROM reading r WHERE r.hub_id > hubs.hub_id
             ORDER BY r.hub_id LIMIT 1)
      FROM hubs WHERE hubs.hub_id IS NOT NULL
)
SELECT hub_id FROM hubs WHERE hub_id IS NOT NULL
"""

_READINGS_OF_HUB = """
WITH gone AS (
    DELETE FROM reading WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM reading WHERE hub_id = %s AND taken_at < %s
         ORDER BY taken_at LIMIT %s))
    RETURNING id, taken_at
), identity_gone AS (
    DELETE FROM reading_identity i USING gone
     WHERE i.id = gone.id AND i.taken_at = gone.taken_at
)
SELECT count(*) FROM gone
"""


def _plain_readings(conn: Conn, cutoff: datetime, limit: int) -> Iterator[int]:
    """Batches of readings (and their identity rows) taken before ``cutoff``, hub by hub
    (a loose index scan finds the hubs: one index probe per hub)."""
    hubs = [r[0] for r in conn.execute(_READING_HUBS)]
    for hub in hubs:
        while True:
            with conn.transaction():
                row = conn.execute(_READINGS_OF_HUB, (hub, cutoff, limit)).fetchone()
            deleted = int(row[0]) if row is not None else 0
            if deleted:
                yield deleted
            if deleted < limit:
                break


def _timescale_readings(conn: Conn, cutoff: datetime, limit: int) -> Iterator[int]:
    """Whole chunks of ``reading`` older than ``cutoff`` dropped, each after its readings'
    identity rows (in batches by id).  A chunk that is partly younger than the cutoff
    waits for a later run (at most one chunk interval, 7 days)."""
    chunks = [r[0] for r in conn.execute(
        "SELECT c::text FROM show_chunks('reading', older_than => %s) AS c", (cutoff,))]
    for chunk in chunks:
        last = None
        while True:
            with conn.transaction():
                after = "" if last is None else "WHERE id > %(last)s "
                rows = conn.execute(
                    f"SELECT id, taken_at FROM {chunk} {after}ORDER BY id LIMIT %(limit)s",
                    {"last": last, "limit": limit}).fetchall()
                if rows:
                    conn.execute("DELETE FROM reading_identity i USING unnest(%s::uuid[],"
                                 " %s::timestamptz[]) AS g(id, taken_at)"
                                 " WHERE i.id = g.id AND i.taken_at = g.taken_at",
                                 ([r[0] for r in rows], [r[1] for r in rows]))
            if len(rows) < limit:
                break
            last = rows[-1][0]
        with conn.transaction():
            count = conn.execute(f"SELECT count(*) FROM {chunk}").fetchone()
            conn.execute("SELECT drop_chunks('reading', older_than => %s)", (cutoff,))
        yield int(count[0]) if count else 0


@dataclass(frozen=True)
class Step:
    name: str
    period: str           # a field of Periods
    batch: Batch


#: Every table that grows, but reading (see :func:`run_retention`), in the order run.
STEPS: tuple[Step, ...] = (
    Step("evaluation_queue", "readings", _statement(
        "DELETE FROM evaluation_queue WHERE seq = ANY(ARRAY(SELECT seq FROM evaluation_queue"
        " WHERE taken_at < %s ORDER BY seq LIMIT %s))")),
    Step("alert", "record", _function("SELECT purge_resolved_alerts(%s, %s)")),
    Step("notification", "notifications", _notifications),
    Step("notification_attempt", "notifications", _statement(
        "DELETE FROM notification_attempt WHERE id = ANY(ARRAY(SELECT id FROM"
        " notification_attempt WHERE at < %s ORDER BY at LIMIT %s))")),
    Step("patient_note", "record", _function(
        "SELECT purge_history('patient_note', %s, %s)")),
    Step("patient_status_event", "record", _function(
        "SELECT purge_history('patient_status_event', %s, %s)")),
    Step("patient_rule_setting", "record", _statement(
        "DELETE FROM patient_rule_setting WHERE id = ANY(ARRAY(SELECT id FROM"
        " patient_rule_setting WHERE valid_to < %s ORDER BY id LIMIT %s))")),
    Step("enrolment", "record", _statement(
        "DELETE FROM enrolment WHERE id = ANY(ARRAY(SELECT id FROM enrolment"
        " WHERE valid_to < %s ORDER BY id LIMIT %s))")),
    Step("quarantine", "quarantine", _statement(
        "DELETE FROM quarantine WHERE id = ANY(ARRAY(SELECT id FROM quarantine"
        " WHERE received_at < %s ORDER BY received_at LIMIT %s))")),
    Step("quarantine_hourly", "quarantine", _statement(
        "DELETE FROM quarantine_hourly WHERE (hub_id, hour) IN (SELECT hub_id, hour FROM"
        " quarantine_hourly WHERE hour < %s ORDER BY hour LIMIT %s)")),
    Step("ingest_suspect", "quarantine", _statement(
        "DELETE FROM ingest_suspect WHERE digest = ANY(ARRAY(SELECT digest FROM ingest_suspect"
        " WHERE coalesce(last_tried_at, first_seen_at) < %s LIMIT %s))")),
    Step("ingest_heartbeat", "quarantine", _statement(
        "DELETE FROM ingest_heartbeat WHERE client_id = ANY(ARRAY(SELECT client_id FROM"
        " ingest_heartbeat WHERE stopped_at < %s LIMIT %s))")),
    Step("access_audit", "audit", _function(
        "SELECT purge_history('access_audit', %s, %s)")),
)


def cutoffs(periods: Periods, now: datetime) -> dict[str, datetime]:
    """Each period's cutoff: rows older than it go."""
    return {name: now - getattr(periods, name) for name in
            ("readings", "record", "notifications", "quarantine", "audit")}


def run_retention(conn: Conn, periods: Periods, *, batch_rows: int,
                  now: datetime | None = None, on_progress: ProgressFn | None = None,
                  pause_seconds: float = 0.0) -> dict[str, int]:
    """One retention run over every growing table; rows deleted per table.

    ``conn`` must be in autocommit mode (each batch commits on its own).  Raises
    :class:`RetentionBusy` when another run holds the lock.
    """
    if not conn.autocommit:
        raise ValueError("run_retention needs an autocommit connection (a batch per transaction)")
    when = now or datetime.now(UTC)
    cut = cutoffs(periods, when)
    report: dict[str, int] = {}
    progress = on_progress or (lambda step, n, done: None)
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()
    if not got or not got[0]:
        raise RetentionBusy("another retention run is in progress")
    try:
        conn.execute("SET lock_timeout = '10s'")
        readings = (_timescale_readings if has_timescaledb(conn) else _plain_readings)
        total = 0
        for deleted in readings(conn, cut["readings"], batch_rows):
            total += deleted
            progress("reading", total, False)
            if pause_seconds:
                time.sleep(pause_seconds)
        report["reading"] = total
        progress("reading", total, True)
        for step in STEPS:
            total = 0
            limit = max(1, batch_rows // 10) if step.name == "alert" else batch_rows
            while True:
                deleted = step.batch(conn, cut[step.period], limit)
                total += deleted
                if deleted:
                    progress(step.name, total, False)
                if deleted < limit:
                    break
                if pause_seconds:
                    time.sleep(pause_seconds)
            report[step.name] = total
            progress(step.name, total, True)
    finally:
        conn.execute("RESET lock_timeout")
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return report
