"""Retention (issue 11, data lifecycle): `homeward db retention` deletes, in batches of at
most ``batch_rows`` rows a transaction, what is older than its period in every table that
grows, keeps what is younger, records what it took from the append-only history, and a
second run finds nothing left to do.  Plain PostgreSQL here; the TimescaleDB path (chunks
dropped) is tested where the extension is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts.sample_data import add_clinician, add_patient, add_team
from server.migrate import has_timescaledb
from server.retention import Periods, RetentionBusy, run_retention

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
PERIODS = Periods(readings=timedelta(days=30), record=timedelta(days=60),
                  notifications=timedelta(days=10), quarantine=timedelta(days=5),
                  audit=timedelta(days=90))
OLD = {  # just past each period
    "readings": NOW - timedelta(days=31), "record": NOW - timedelta(days=61),
    "notifications": NOW - timedelta(days=11), "quarantine": NOW - timedelta(days=6),
    "audit": NOW - timedelta(days=91)}
RECENT = NOW - timedelta(days=1)


def add_reading(conn, pid: int, hub: str, at: datetime) -> str:
    rid = str(uuid.uuid4())
    conn.execute("INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device,"
                 " \"values\", received_at) VALUES (%s, %s, 'spo2', %s, %s, 'AA:01', %s, %s)",
                 (rid, at, hub, pid, json.dumps({"spo2": 96, "pulse_rate": 70}), at))
    conn.execute("INSERT INTO reading_identity (id, taken_at) VALUES (%s, %s)", (rid, at))
    return rid


def add_alert(conn, pid: int, nurse: int, *, resolved_at: datetime | None) -> int:
    at = (resolved_at or NOW) - timedelta(hours=1)
    row = conn.execute(
        "INSERT INTO alert (patient_id, rule_id, rule, severity, state, opened_at, updated_at,"
        " last_triggered_at, resolved_at, resolved_by, outcome) VALUES (%s, %s, '{}', 'red',"
        " %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (pid, f"rule-{uuid.uuid4().hex[:6]}", "resolved" if resolved_at else "open", at, at, at,
         resolved_at, nurse if resolved_at else None, "seen" if resolved_at else None)
    ).fetchone()
    alert_id = row[0]
    conn.execute("INSERT INTO alert_event (alert_id, at, event) VALUES (%s, %s, 'opened')",
                 (alert_id, at))
    return alert_id


def add_notification(conn, alert_id: int, at: datetime, state: str = "delivered") -> int:
    row = conn.execute(
        "INSERT INTO notification (alert_id, channel, target, reason, idempotency_key, payload,"
        " state, created_at, next_attempt_at) VALUES (%s, 'email', 'a@example.org', 'opened',"
        " %s, '{}', %s, %s, %s) RETURNING id",
        (alert_id, uuid.uuid4().hex, state, at, at)).fetchone()
    conn.execute("INSERT INTO notification_attempt (notification_id, at, ok, duration_ms)"
                 " VALUES (%s, %s, true, 3)", (row[0], at))
    return row[0]


def seed(conn) -> dict[str, object]:
    """Rows just past their period and rows well within it, in every table that grows."""
    add_team(conn, "dn")
    nurse = add_clinician(conn, "nina", teams=["dn"])
    pid = add_patient(conn, "Pat", teams=["dn"], hub_id="hub-a", since=NOW - timedelta(days=400))
    old_readings = [add_reading(conn, pid, hub, OLD["readings"] - timedelta(minutes=i))
                    for hub in ("hub-a", "hub-b") for i in range(4)]          # 8, two hubs
    new_readings = [add_reading(conn, pid, "hub-a", RECENT - timedelta(minutes=i))
                    for i in range(3)]
    conn.execute("INSERT INTO evaluation_queue (reading_id, taken_at, patient_id, kind)"
                 " VALUES (%s, %s, %s, 'spo2')", (old_readings[0], OLD["readings"], pid))
    old_alert = add_alert(conn, pid, nurse, resolved_at=OLD["record"])
    add_notification(conn, old_alert, OLD["record"])
    kept_alert = add_alert(conn, pid, nurse, resolved_at=RECENT)
    open_alert = add_alert(conn, pid, nurse, resolved_at=None)
    add_notification(conn, kept_alert, OLD["notifications"])                  # goes
    add_notification(conn, open_alert, OLD["notifications"], state="pending")  # stays: pending
    add_notification(conn, open_alert, RECENT)
    for at in (OLD["record"], RECENT):
        conn.execute("INSERT INTO patient_note (patient_id, at, clinician_id, text)"
                     " VALUES (%s, %s, %s, 'note')", (pid, at, nurse))
        conn.execute("INSERT INTO patient_status_event (patient_id, at, status)"
                     " VALUES (%s, %s, 'active')", (pid, at))
        conn.execute("INSERT INTO patient_rule_setting (patient_id, rule_id, valid_from,"
                     " valid_to) VALUES (%s, 'r', %s, %s)",
                     (pid, at - timedelta(days=1), at))
    conn.execute("INSERT INTO hub (id) VALUES ('hub-old')")
    conn.execute("INSERT INTO enrolment (hub_id, patient_id, valid_from, valid_to)"
                 " VALUES ('hub-old', %s, %s, %s)",
                 (pid, OLD["record"] - timedelta(days=9), OLD["record"]))
    for at in (OLD["quarantine"], RECENT):
        for _ in range(4):
            conn.execute("INSERT INTO quarantine (received_at, hub_id, topic, reason)"
                         " VALUES (%s, 'hub-a', 't', 'bad')", (at,))
        conn.execute("INSERT INTO quarantine_hourly (hub_id, hour, rejects) VALUES"
                     " ('hub-a', date_trunc('hour', %s::timestamptz), 4)", (at,))
        conn.execute("INSERT INTO ingest_suspect (digest, topic, first_seen_at) VALUES"
                     " (%s, 't', %s)", (uuid.uuid4().bytes, at))
        conn.execute("INSERT INTO ingest_heartbeat (client_id, heartbeat_at, started_at,"
                     " stopped_at) VALUES (%s, %s, %s, %s)", (f"ingest-{at:%s}", at, at, at))
    for at in (OLD["audit"], OLD["audit"] - timedelta(days=1), RECENT):
        conn.execute("INSERT INTO access_audit (at, clinician_id, role, action, patient_id,"
                     " resource, outcome) VALUES (%s, %s, 'nurse', 'patient.read', %s, 'p',"
                     " 'ok')", (at, nurse, pid))
    return {"patient": pid, "old_readings": old_readings, "new_readings": new_readings,
            "alerts_kept": {kept_alert, open_alert}}


# (the resolved alert's notification goes with it, in the "alert" step; the pending
# notification stays but its old attempt goes)
EXPECTED = {"reading": 8, "evaluation_queue": 1, "alert": 1, "notification": 1,
            "notification_attempt": 1, "patient_note": 1, "patient_status_event": 1,
            "patient_rule_setting": 1, "enrolment": 1, "quarantine": 4, "quarantine_hourly": 1,
            "ingest_suspect": 1, "ingest_heartbeat": 1, "access_audit": 2}


@pytest.mark.hazard("H-020")
def test_retention_deletes_in_bounded_batches_what_is_past_its_period(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        world = seed(conn)
        rollup_before = conn.execute("SELECT count(*) FROM reading_metric_hourly").fetchone()
        progress: list[tuple[str, int, bool]] = []
        report = run_retention(conn, PERIODS, batch_rows=3, now=NOW,
                               on_progress=lambda *p: progress.append(p))

        assert report == EXPECTED
        # every batch took at most 3 rows: the running totals of readings go up by <= 3
        totals = [n for step, n, done in progress if step == "reading" and not done]
        steps = [b - a for a, b in zip([0, *totals], totals, strict=False)]
        assert totals[-1] == 8 and max(steps) <= 3 and len(steps) >= 4, totals
        assert ("reading", 8, True) in progress and ("access_audit", 2, True) in progress

        ids = {str(r[0]) for r in conn.execute("SELECT id FROM reading")}
        assert ids == set(world["new_readings"])
        assert conn.execute("SELECT count(*) FROM reading_identity").fetchone() == (3,)
        assert {r[0] for r in conn.execute("SELECT id FROM alert")} == world["alerts_kept"]
        assert conn.execute("SELECT state FROM notification ORDER BY id").fetchall() == [
            ("pending",), ("delivered",)]
        assert conn.execute("SELECT count(*) FROM notification_attempt").fetchone() == (1,)
        for table, left in (("quarantine", 4), ("quarantine_hourly", 1), ("ingest_suspect", 1),
                            ("patient_note", 1), ("patient_status_event", 1),
                            ("access_audit", 1), ("alert_event", 2), ("enrolment", 1)):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (left,), table
        # the rollup followed the readings (its old hours went with them)
        rollup_after = conn.execute("SELECT count(*) FROM reading_metric_hourly").fetchone()
        assert rollup_after < rollup_before
        assert conn.execute("SELECT count(*) FROM reading_metric_hourly WHERE bucket < %s",
                            (NOW - PERIODS.readings,)).fetchone() == (0,)
        # what left the append-only history is recorded, batch by batch
        purged = dict(conn.execute("SELECT table_name, sum(rows)::int FROM history_purge"
                                   " GROUP BY 1").fetchall())
        assert purged == {"alert_event": 1, "patient_note": 1, "patient_status_event": 1,
                          "access_audit": 2}

        # nothing left to do
        assert set(run_retention(conn, PERIODS, batch_rows=3, now=NOW).values()) == {0}


def test_one_retention_run_at_a_time(db_url):
    with psycopg.connect(db_url, autocommit=True) as holder, \
            psycopg.connect(db_url, autocommit=True) as conn:
        holder.execute("SELECT pg_advisory_lock(x'52657465'::int)")
        with pytest.raises(RetentionBusy):
            run_retention(conn, PERIODS, batch_rows=10)
        holder.execute("SELECT pg_advisory_unlock(x'52657465'::int)")
        assert run_retention(conn, PERIODS, batch_rows=10)["reading"] == 0


def test_retention_command_reports_progress(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        seed(conn)
    env = {"HOMEWARD_RETENTION_READINGS_DAYS": "30", "HOMEWARD_RETENTION_RECORD_DAYS": "60",
           "HOMEWARD_RETENTION_NOTIFICATIONS_DAYS": "10",
           "HOMEWARD_RETENTION_QUARANTINE_DAYS": "5", "HOMEWARD_RETENTION_AUDIT_DAYS": "90"}
    out = subprocess.run([sys.executable, "-m", "stack", "db", "retention", "--database-url",
                          db_url, "--batch-rows", "2"], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "reading: 8 rows deleted" in out.stdout
    assert "access_audit: 2 rows deleted" in out.stdout
    assert f"{sum(EXPECTED.values())} rows deleted in all" in out.stdout, out.stdout


def test_timescale_drops_whole_chunks_past_the_period(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        if not has_timescaledb(conn):
            pytest.skip("TimescaleDB is not installed here: the plain path is tested above")
        world = seed(conn)
        chunks = conn.execute("SELECT count(*) FROM show_chunks('reading')").fetchone()
        report = run_retention(conn, PERIODS, batch_rows=3, now=NOW)
        assert report["reading"] == 8
        assert {str(r[0]) for r in conn.execute("SELECT id FROM reading")} == set(
            world["new_readings"])
        assert conn.execute("SELECT count(*) FROM show_chunks('reading')").fetchone() < chunks
        assert conn.execute("SELECT count(*) FROM reading_identity").fetchone() == (3,)
