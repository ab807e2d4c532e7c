# ruff: noqa: F811  -- pytest fixtures imported from tests/test_alerts_support.py
"""A patient's erasure and subject-access export (issue 11, data lifecycle).

A patient with readings (attributed, and sent by their hub unattributed), alerts
notified by e-mail and webhook through a real SMTP server and a real HTTP server,
acknowledgements, alert notes, record notes, status changes, personal rule
settings, audit rows and quarantined payloads from their hub is exported, then
erased; afterwards every column of every table in the database is scanned for
their id, NHS number and name.  A second patient on the same teams stays whole.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from alerts import store
from alerts.sample_data import add_patient, insert_reading
from alerts.settings_store import set_patient_rule
from server import admin, audit, record_queries
from server.access import load_scope
from server.erasure import erase_patient, erasure_reference
from server.migrate import grant_application_role
from server.subject_access import export_bundle
from tests.test_alerts_support import (  # noqa: F401 -- fixtures
    MONDAY,
    Clock,
    build_world,
    conn,
    make_service,
    smtp_server,
    vitals,
    webhook_server,
)

pytestmark = pytest.mark.integration

PATIENT_ID = 987654321      # distinctive: no other id or number in the database matches it
NHS = "9434765919"
NHS_SPACED = "943 476 5919"
NAME = "Colin Oakes"
KEY = "erasure-reference-key"


def _audit(conn: psycopg.Connection[Any], clinician: int, action: str, resource: str,
           patient: int | None) -> None:
    audit.record(conn, audit.AuditEntry(clinician, "nurse", action, resource, patient,
                                        f"req-{uuid.uuid4().hex[:8]}", "10.1.2.3", "ok"))


def _identity(conn: psycopg.Connection[Any]) -> None:
    """Identity rows for every stored reading, as the ingest writes them."""
    conn.execute("INSERT INTO reading_identity (id, taken_at) SELECT id, taken_at FROM reading"
                 " ON CONFLICT DO NOTHING")


def build_record(conn, smtp_port: int, webhook_url: str) -> dict[str, Any]:
    """Colin's whole record (discharged, ready to erase) and Dora's, which must stay."""
    conn.execute("SELECT setval('patient_id_seq', %s)", (PATIENT_ID - 1,))
    world = build_world(conn, webhook_url=webhook_url)
    pid = world["patient"]
    assert pid == PATIENT_ID
    conn.execute("UPDATE patient SET nhs_number = %s WHERE id = %s", (NHS, pid))
    dora = add_patient(conn, "Dora Penn", teams=["copd-north"], hub_id="hub-dora",
                       since=MONDAY - timedelta(days=7))
    amy = world["amy"]
    ada = admin.create_clinician(conn, username="ada", display_name="Ada Admin",
                                 role="admin").id
    clock = Clock(MONDAY + timedelta(hours=10))
    svc = make_service(clock, smtp_port)

    vitals(conn, pid, clock.now - timedelta(minutes=30), spo2=95)
    vitals(conn, pid, clock.now, sys_=186)
    insert_reading(conn, patient_id=dora, kind="blood_pressure", hub_id="hub-dora",
                   taken_at=clock.now, values={"systolic": 190, "diastolic": 80,
                                               "pulse_rate": 80})
    # sent by Colin's hub while he was enrolled, not attributed (yet)
    conn.execute("INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device,"
                 " \"values\", received_at) VALUES (%s, %s, 'temperature', 'hub-colin', NULL,"
                 " 'AA:BB:CC:DD:EE:01', '{\"body_temperature\": 37.2}', now())",
                 (str(uuid.uuid4()), clock.now - timedelta(hours=1)))
    _identity(conn)
    svc.step(conn)
    alerts = {a["patient_id"]: a for a in store.list_alerts(conn)}
    colin_alert, dora_alert = alerts[pid]["id"], alerts[dora]["id"]
    store.acknowledge(conn, colin_alert, clinician_id=amy, now=clock.advance(minutes=5))
    store.add_note(conn, colin_alert, clinician_id=amy, text=f"Phoned {NAME}, feels fine",
                   now=clock.advance(minutes=1))
    svc.tick(conn, clock.advance(minutes=1))

    scope = load_scope(conn, amy)
    assert scope is not None
    record_queries.add_note(conn, scope, pid, f"NHS number {NHS_SPACED} checked with GP",
                            "copd-north")
    record_queries.set_status(conn, scope, pid, status="admitted", note="Admitted to ward 4",
                              expected_end=None, team_id="copd-north",
                              now=clock.advance(hours=1))
    record_queries.set_status(conn, scope, pid, status="active", note=None, expected_end=None,
                              team_id="copd-north", now=clock.advance(hours=20))
    set_patient_rule(conn, patient_id=pid, rule_id="bp.severe_hypertension",
                     params={"systolic": 190}, set_by=amy, note="his usual is high")
    for action, resource in (("patient.read", f"patient:{pid}"),
                             ("alert.acknowledge", f"alert:{colin_alert}"),
                             ("series.read", "series:blood_pressure")):
        _audit(conn, amy, action, resource, pid)
    _audit(conn, amy, "patient.read", f"patient:{dora}", dora)
    for hub, reason in (("hub-colin", "spo2 250 out of range"), ("hub-dora", "bad json")):
        conn.execute("INSERT INTO quarantine (received_at, hub_id, topic, reason, item)"
                     " VALUES (%s, %s, %s, %s, %s)",
                     (MONDAY + timedelta(hours=9), hub, f"homeward/v1/hubs/{hub}/readings",
                      reason, '{"kind": "spo2", "values": {"spo2": 250}}'))
    conn.execute("INSERT INTO ingest_suspect (digest, topic, attempts, first_seen_at, last_error)"
                 " VALUES ('\\x01', 'homeward/v1/hubs/hub-colin/readings', 2, %s, 'deadlock')",
                 (MONDAY + timedelta(hours=9),))
    # a reading the alert engine has not seen yet (still queued for evaluation)
    insert_reading(conn, patient_id=pid, kind="weight", taken_at=clock.now,
                   values={"body_weight": 81.5})
    _identity(conn)
    return {"patient": pid, "dora": dora, "amy": amy, "admin": ada, "scope": scope,
            "clock": clock, "colin_alert": colin_alert, "dora_alert": dora_alert}


def discharge(conn, rec: dict[str, Any]) -> None:
    record_queries.set_status(conn, rec["scope"], rec["patient"], status="discharged",
                              note="Discharged to GP care", expected_end=None,
                              team_id="copd-north", now=rec["clock"].advance(days=2))


def _searchable_columns(conn) -> list[tuple[str, str, str, str]]:
    return conn.execute(
        "SELECT c.table_schema, c.table_name, c.column_name, c.data_type"
        "  FROM information_schema.columns c JOIN information_schema.tables t"
        "    ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
        " WHERE t.table_type = 'BASE TABLE'"
        "   AND c.table_schema NOT IN ('pg_catalog', 'information_schema')"
        "   AND c.table_schema NOT LIKE '\\_timescaledb%%'"
        " ORDER BY 1, 2, c.ordinal_position").fetchall()


def traces(conn, needles: list[str], patient_id: int) -> set[str]:
    """``schema.table.column`` of every column, in every table of the database, holding
    the patient's id (as a number, or inside any text or JSON) or one of ``needles``."""
    found: set[str] = set()
    for schema, table, column, data_type in _searchable_columns(conn):
        target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        col = sql.Identifier(column)
        if data_type in ("bigint", "integer", "smallint", "numeric"):
            cond = sql.SQL("{} = {}").format(col, sql.Literal(patient_id))
        elif data_type == "bytea":
            cond = sql.SQL("encode({}, 'escape') LIKE ANY({})").format(
                col, sql.Literal([f"%{n}%" for n in [str(patient_id), *needles]]))
        else:
            cond = sql.SQL("{}::text ILIKE ANY({})").format(
                col, sql.Literal([f"%{n}%" for n in [str(patient_id), *needles]]))
        hit = conn.execute(sql.SQL("SELECT 1 FROM {} WHERE {} LIMIT 1").format(target, cond))
        if hit.fetchone():
            found.add(f"{schema}.{table}.{column}")
    return found


NEEDLES = [NHS, NHS_SPACED, NAME]


def test_subject_access_export_holds_everything_about_the_patient(conn, smtp_server,
                                                                   webhook_server):
    rec = build_record(conn, smtp_server.port, webhook_server.url)
    # working together: a task and a message about Colin
    conn.execute("INSERT INTO task (patient_id, team_id, title, due_at, requested_at)"
                 " VALUES (%s, 'copd-north', 'Check his inhaler technique', now(), now())",
                 (rec["patient"],))
    conn.execute("INSERT INTO patient_message (patient_id, direction, body, sent_at)"
                 " VALUES (%s, 'from_patient', 'My reading was 94 after resting', now())",
                 (rec["patient"],))
    bundle = export_bundle(conn, rec["patient"], requested_by=rec["admin"])
    assert bundle["format"] == "homeward-subject-access/1"
    s = bundle["sections"]
    assert s["patient"]["nhs_number"] == NHS and s["patient"]["display_name"] == NAME
    assert {t["team_id"] for t in s["care_teams"]} == {"copd-north", "dn-north"}
    assert [e["status"] for e in s["status_history"]] == ["admitted", "active"]
    assert [e["hub_id"] for e in s["enrolments"]] == ["hub-colin"]
    assert sorted(r["kind"] for r in s["readings"]) == ["blood_pressure", "spo2", "weight"]
    assert [r["kind"] for r in s["unattributed_readings"]] == ["temperature"]
    assert [r["reason"] for r in s["rejected_readings"]] == ["spo2 250 out of range"]
    assert [a["id"] for a in s["alerts"]] == [rec["colin_alert"]]
    assert {"opened", "acknowledged", "note"} <= {e["event"] for e in s["alert_events"]}
    assert {n["channel"] for n in s["notifications"]} >= {"email", "webhook"}
    assert s["notification_attempts"] and all(a["ok"] for a in s["notification_attempts"])
    assert [n["text"] for n in s["notes"]] == [f"NHS number {NHS_SPACED} checked with GP"]
    assert [r["rule_id"] for r in s["rule_settings"]] == ["bp.severe_hypertension"]
    assert [t["title"] for t in s["tasks"]] == ["Check his inhaler technique"]
    assert [m["body"] for m in s["messages"]] == ["My reading was 94 after resting"]
    assert [a["action"] for a in s["access_audit"]] == [
        "patient.read", "alert.acknowledge", "series.read"]
    assert all("client_addr" not in a for a in s["access_audit"])
    # nothing of Dora's
    assert str(rec["dora"]) not in str(bundle) and "Dora Penn" not in str(bundle)
    # the export itself is audited
    (row,) = conn.execute("SELECT clinician_id, role, resource FROM access_audit"
                          " WHERE action = 'patient.subject_access_export'").fetchall()
    assert row == (rec["admin"], "admin", f"patient:{rec['patient']}")


def test_erasure_leaves_nothing_of_the_patient_in_any_table(conn, smtp_server, webhook_server):
    rec = build_record(conn, smtp_server.port, webhook_server.url)
    pid = rec["patient"]
    discharge(conn, rec)
    # the portal's e-mail to the patient: a message of the outbox, no alert's
    from alerts.outbox import enqueue_message
    from server.patient_auth import set_email

    set_email(conn, pid, "colin.oakes@example.org")
    enqueue_message(conn, channel="email", target="colin.oakes@example.org",
                    subject="Your sign-in code", body="12345678", key="code-colin",
                    at=MONDAY, reason="patient_code")
    before = traces(conn, NEEDLES, pid)
    # the scan finds the patient wherever the record put them (so its silence below means
    # something): ids, text, JSON, in the append-only history and the derived tables too
    expected = {"public.patient.id", "public.patient.nhs_number", "public.reading.patient_id",
                "public.reading_latest.patient_id", "public.reading_metric_hourly.patient_id",
                "public.alert.patient_id", "public.notification.payload",
                "public.patient_note.text", "public.patient_status_event.patient_id",
                "public.access_audit.patient_id", "public.access_audit.resource",
                "public.patient_rule_setting.patient_id", "public.enrolment.patient_id",
                "public.evaluation_queue.patient_id", "public.alert_event.detail"}
    columns = {".".join(c[:3]) for c in _searchable_columns(conn)}
    assert expected & columns <= before, before
    hub_rows = conn.execute("SELECT count(*) FROM quarantine WHERE hub_id = 'hub-colin'")
    assert hub_rows.fetchone() == (1,)

    receipt = erase_patient(conn, pid, erased_by=rec["admin"], basis="enrolled_in_error",
                            reason="Enrolled on the wrong record (IG request 2026/17)",
                            key=KEY, batch_rows=1)

    assert traces(conn, NEEDLES, pid) == set()
    assert conn.execute("SELECT count(*) FROM notification WHERE target = %s",
                        ("colin.oakes@example.org",)).fetchone() == (0,)
    for query in ("SELECT count(*) FROM quarantine WHERE hub_id = 'hub-colin'",
                  "SELECT count(*) FROM ingest_suspect WHERE topic LIKE '%hub-colin%'",
                  "SELECT count(*) FROM reading WHERE hub_id = 'hub-colin'",
                  "SELECT count(*) FROM reading_identity i WHERE NOT EXISTS"
                  " (SELECT 1 FROM reading r WHERE r.id = i.id)"):
        assert conn.execute(query).fetchone() == (0,), query
    # Dora is whole
    assert conn.execute("SELECT count(*) FROM reading WHERE patient_id = %s",
                        (rec["dora"],)).fetchone() == (1,)
    assert store.get_alert(conn, rec["dora_alert"])["notifications"]
    assert conn.execute("SELECT count(*) FROM access_audit WHERE patient_id = %s",
                        (rec["dora"],)).fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM quarantine WHERE hub_id = 'hub-dora'"
                        ).fetchone() == (1,)
    # the erasure is recorded: who, when, why, a reference, counts; never the data
    (erasure,) = conn.execute(
        "SELECT id, erased_by, basis, reason, reference, rows_removed, at > now() - interval"
        " '1 minute' FROM erasure").fetchall()
    assert erasure[:5] == (receipt.erasure_id, rec["admin"], "enrolled_in_error",
                           "Enrolled on the wrong record (IG request 2026/17)",
                           erasure_reference(KEY, nhs_number=NHS, patient_id=pid))
    assert erasure[6] is True
    removed = erasure[5]
    assert removed["reading"] == 3 and removed["reading_unattributed"] == 1
    assert removed["patient_note"] == 1 and removed["patient_status_event"] == 3
    assert removed["access_audit"] == 3 and removed["alert"] == 1 and removed["patient"] == 1
    assert removed["notification_attempt"] >= 2 and removed == receipt.rows_removed
    (logged,) = conn.execute("SELECT clinician_id, role, action, patient_id, resource"
                             " FROM access_audit WHERE action = 'patient.erase'").fetchall()
    assert logged == (rec["admin"], "admin", "patient.erase", None,
                      f"erasure:{receipt.erasure_id}")
    assert receipt.reference not in (NHS, str(pid)) and len(receipt.reference) == 64


@pytest.mark.hazard("H-020")
def test_erasure_is_refused_while_the_patient_is_under_care_or_the_reason_names_them(
        conn, smtp_server, webhook_server):
    rec = build_record(conn, smtp_server.port, webhook_server.url)
    pid = rec["patient"]
    readings = conn.execute("SELECT count(*) FROM reading").fetchone()
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="discharge"):
        erase_patient(conn, pid, erased_by=rec["admin"], basis="test_record",
                      reason="test", key=KEY)
    discharge(conn, rec)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="admin"):
        erase_patient(conn, pid, erased_by=rec["amy"], basis="test_record",
                      reason="test", key=KEY)
    for reason in (f"request from {NAME.upper()}", f"NHS {NHS_SPACED}", f"patient {pid}"):
        with pytest.raises(psycopg.errors.CheckViolation, match="must not identify"):
            erase_patient(conn, pid, erased_by=rec["admin"], basis="test_record",
                          reason=reason, key=KEY)
    with pytest.raises(ValueError, match="basis"):
        erase_patient(conn, pid, erased_by=rec["admin"], basis="because", reason="x", key=KEY)
    assert conn.execute("SELECT count(*) FROM reading").fetchone() == readings
    assert conn.execute("SELECT count(*) FROM erasure").fetchone() == (0,)


APPEND_ONLY = ("alert_event", "access_audit", "patient_note", "patient_status_event",
               "erasure", "history_purge")


@pytest.mark.hazard("H-015")
def test_append_only_history_refuses_delete_outside_the_procedures(
        conn, db_url, postgres_server, smtp_server, webhook_server):
    rec = build_record(conn, smtp_server.port, webhook_server.url)
    discharge(conn, rec)
    erase_patient(conn, rec["patient"], erased_by=rec["admin"],
                  basis="test_record", reason="a test record", key=KEY)
    conn.execute("SELECT purge_history('access_audit', now() + interval '1 day', 1)")
    record_queries.add_note(conn, rec["scope"], rec["dora"], "Well today", "copd-north")
    record_queries.set_status(conn, rec["scope"], rec["dora"], status="away", note=None,
                              expected_end=None, team_id="copd-north")
    # even the owner (a superuser here) cannot delete or update directly
    for table in APPEND_ONLY:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0, table
        for statement in (f"DELETE FROM {table}", f"UPDATE {table} SET id = id"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
    # the application role can neither open the gate nor call the guard's bluff
    role = f"app_{uuid.uuid4().hex[:8]}"
    app_url = postgres_server.ensure_login_role(role, "app-password")
    grant_application_role(db_url, role)
    database = conn.info.dbname
    with psycopg.connect(app_url.rsplit("/", 1)[0] + f"/{database}", autocommit=True) as app:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("INSERT INTO homeward_private.history_gate VALUES"
                        " (pg_current_xact_id(), 'mine')")
        app.execute("SET homeward.erasure = 'on'")  # a session setting opens nothing
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            app.execute("DELETE FROM access_audit")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            app.execute("DELETE FROM alert_event")
        # but the recorded procedure is open to it, and still checks what it may erase
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="discharge"):
            app.execute("SELECT erase_patient(%s, %s, 'test_record', 'x', %s)",
                        (rec["dora"], rec["amy"], "0" * 64))


def test_export_and_erase_from_the_command_line(conn, db_url, tmp_path, smtp_server,
                                                webhook_server):
    import json
    import subprocess
    import sys

    rec = build_record(conn, smtp_server.port, webhook_server.url)
    discharge(conn, rec)
    out = tmp_path / "colin.json"
    base = [sys.executable, "-m", "stack", "db"]
    done = subprocess.run([*base, "patient-export", str(PATIENT_ID), "--out", str(out),
                           "--requested-by", str(rec["admin"]), "--database-url", db_url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_bytes())["sections"]["patient"]["nhs_number"] == NHS
    assert "readings: 3" in done.stderr
    refused = subprocess.run([*base, "patient-erase", str(PATIENT_ID), "--erased-by",
                              str(rec["admin"]), "--basis", "test_record", "--reason",
                              f"asked by {NAME}", "--yes", "--database-url", db_url],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "must not identify" in refused.stderr
    done = subprocess.run([*base, "patient-erase", str(PATIENT_ID), "--erased-by",
                           str(rec["admin"]), "--basis", "test_record", "--reason",
                           "a test record", "--yes", "--database-url", db_url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "erasure 1 recorded" in done.stdout
    assert conn.execute("SELECT count(*) FROM patient WHERE id = %s",
                        (PATIENT_ID,)).fetchone() == (0,)
