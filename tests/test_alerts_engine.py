"""The alert engine end to end on a real PostgreSQL: queue -> rule -> alert -> lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts import store
from alerts.ruleset import load_ruleset
from alerts.sample_data import add_clinician, add_patient, add_team, insert_reading
from alerts.worker import AlertEngine

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def conn(db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


@pytest.fixture
def world(conn):
    add_team(conn, "copd-north", kind="copd")
    add_team(conn, "dn-north")
    nurse = add_clinician(conn, "nina", teams=["dn-north"])
    pid = add_patient(conn, "Pat Example", teams=["dn-north", "copd-north"], hub_id="hub-1")
    return {"patient": pid, "nurse": nurse}


def bp(conn, pid, sys_, dia, at):
    return insert_reading(conn, patient_id=pid, kind="blood_pressure",
                          values={"systolic": sys_, "diastolic": dia, "pulse_rate": 70},
                          taken_at=at)


@pytest.mark.hazard("H-007", "H-010")
def test_high_reading_raises_one_alert_and_repeat_updates_it(conn, world):
    engine = AlertEngine(load_ruleset(), clock=Clock(T0))
    pid = world["patient"]
    bp(conn, pid, 128, 82, T0)
    r1 = bp(conn, pid, 184, 96, T0 + timedelta(minutes=5))
    result = engine.process_batch(conn)
    assert result.readings == 2
    assert conn.execute("SELECT count(*) FROM evaluation_queue").fetchone()[0] == 0
    alerts = store.list_alerts(conn)
    assert len(alerts) == 1
    a = alerts[0]
    assert (a["rule_id"], a["severity"], a["state"], a["count"]) == ("bp_severe", "red", "open", 1)
    assert a["team_id"] == "copd-north"  # first care team by id
    assert a["latest_reading"]["id"] == r1
    assert a["rule"]["source"].startswith("NICE NG136")

    r2 = bp(conn, pid, 150, 121, T0 + timedelta(minutes=10))
    engine.process_batch(conn)
    alerts = store.list_alerts(conn)
    assert len(alerts) == 1
    assert alerts[0]["count"] == 2
    assert alerts[0]["latest_reading"]["id"] == r2
    assert [r["id"] for r in alerts[0]["readings"]] == [r1, r2]
    events = [e["event"] for e in store.get_alert(conn, a["id"])["events"]]
    assert events == ["opened", "retriggered"]


def test_two_high_readings_in_one_batch_count_twice(conn, world):
    engine = AlertEngine(load_ruleset(), clock=Clock(T0))
    bp(conn, world["patient"], 190, 100, T0)
    bp(conn, world["patient"], 185, 100, T0 + timedelta(minutes=1))
    engine.process_batch(conn)
    (a,) = store.list_alerts(conn)
    assert a["count"] == 2


def test_normal_readings_raise_nothing(conn, world):
    engine = AlertEngine(load_ruleset(), clock=Clock(T0))
    for n, (s, d) in enumerate([(179, 119), (120, 80), (115, 70)]):
        bp(conn, world["patient"], s, d, T0 + timedelta(minutes=n))
    assert engine.process_batch(conn).readings == 3
    assert store.list_alerts(conn, states=None) == []


def test_acknowledge_then_resolve_and_invalid_transitions(conn, world):
    engine = AlertEngine(load_ruleset(), clock=Clock(T0))
    bp(conn, world["patient"], 200, 100, T0)
    engine.process_batch(conn)
    (a,) = store.list_alerts(conn)
    nurse = world["nurse"]
    acked = store.acknowledge(conn, a["id"], clinician_id=nurse, note="calling",
                              now=T0 + timedelta(minutes=3))
    assert acked["state"] == "acknowledged"
    assert acked["acknowledged_by"] == nurse
    assert acked["ack_expires_at"] == (T0 + timedelta(minutes=3)
                                       + store.DEFAULT_ACK_LEASE).isoformat()
    with pytest.raises(store.UnknownOutcome):
        store.resolve(conn, a["id"], clinician_id=nurse, outcome="made_up")
    done = store.resolve(conn, a["id"], clinician_id=nurse, outcome="advice_given",
                         now=T0 + timedelta(minutes=9))
    assert done["state"] == "resolved"
    assert done["outcome"] == "advice_given"
    assert [(e["event"], e["actor"]) for e in done["events"]] == [
        ("opened", "system"), ("acknowledged", f"clinician:{nurse}"),
        ("resolved", f"clinician:{nurse}")]
    with pytest.raises(store.InvalidTransition):
        store.acknowledge(conn, a["id"], clinician_id=nurse)
    with pytest.raises(store.InvalidTransition):
        store.resolve(conn, a["id"], clinician_id=nurse, outcome="other")
    with pytest.raises(store.AlertNotFound):
        store.acknowledge(conn, 999999, clinician_id=nurse)
    assert store.get_alert(conn, 999999) is None
    assert store.list_alerts(conn) == []
    assert len(store.list_alerts(conn, states=["resolved"])) == 1

    # a new high reading after resolution opens a NEW alert; the old history stays
    bp(conn, world["patient"], 181, 90, T0 + timedelta(hours=1))
    engine.process_batch(conn)
    (b,) = store.list_alerts(conn)
    assert b["id"] != a["id"] and b["count"] == 1


def test_history_is_append_only(conn, world):
    engine = AlertEngine(load_ruleset(), clock=Clock(T0))
    bp(conn, world["patient"], 200, 100, T0)
    engine.process_batch(conn)
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute("UPDATE alert_event SET event = 'x'")
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute("DELETE FROM alert_event")


@pytest.mark.hazard("H-010")
def test_one_active_alert_per_patient_rule_is_enforced_by_the_database(conn, world):
    engine = AlertEngine(load_ruleset(), clock=Clock(T0))
    bp(conn, world["patient"], 200, 100, T0)
    engine.process_batch(conn)
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO alert (patient_id, rule_id, rule, severity, opened_at,"
                     " updated_at, last_triggered_at) SELECT patient_id, rule_id, rule, severity,"
                     " opened_at, updated_at, last_triggered_at FROM alert")


def test_alert_event_is_notified_on_commit(conn, world, db_url):
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN alert_event")
        engine = AlertEngine(load_ruleset(), clock=Clock(T0))
        bp(conn, world["patient"], 200, 100, T0)
        engine.process_batch(conn)
        notes = list(listener.notifies(timeout=2, stop_after=1))
    import json

    payload = json.loads(notes[0].payload)
    assert payload["event"] == "opened"
    assert payload["severity"] == "red"
    assert payload["team_id"] == "copd-north"


@pytest.mark.hazard("H-008")
def test_homeward_alerts_process_evaluates_within_a_second_of_notify(conn, world, db_url,
                                                                    repo_root):
    import os
    import signal
    import subprocess
    import time

    proc = subprocess.Popen([str(repo_root / ".venv/bin/homeward"), "alerts",
                             "--database-url", db_url, "--poll", "30"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        # wait until it listens, then a reading must be evaluated on NOTIFY, not the 30 s poll
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query ="
                            " 'LISTEN evaluation_queue'").fetchone()[0]:
                break
            time.sleep(0.05)
        bp(conn, world["patient"], 200, 100, datetime.now(UTC))
        t = time.monotonic()
        while time.monotonic() - t < 5 and not store.list_alerts(conn):
            time.sleep(0.02)
        assert store.list_alerts(conn), "no alert within 5 s"
        assert time.monotonic() - t < 2
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=10) == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_two_engines_side_by_side_keep_one_alert_and_count_every_reading(conn, world, db_url):
    """SKIP LOCKED hands each engine its own queue rows; the partial unique index keeps one
    active alert per (patient, rule) even when both open it at the same moment."""
    import threading

    for n in range(40):
        bp(conn, world["patient"], 190 + n % 5, 100, T0 + timedelta(seconds=n))
    counts = []

    def run():
        with psycopg.connect(db_url, autocommit=True) as c:
            engine = AlertEngine(load_ruleset(), clock=Clock(T0), batch_size=3)
            done = 0
            while (n := engine.process_batch(c).readings):
                done += n
            counts.append(done)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(counts) == 40
    (a,) = store.list_alerts(conn)
    assert a["count"] == 40
    assert conn.execute("SELECT count(*) FROM evaluation_queue").fetchone()[0] == 0


@pytest.mark.parametrize("severe_first", [True, False])
def test_a_severe_reading_with_the_same_timestamp_as_a_normal_one_still_alerts(
        conn, world, severe_first):
    """Two readings of one kind stamped the same second (a cuff's clock has 1 s steps):
    each is evaluated as itself, whichever sorts last."""
    engine = AlertEngine(load_ruleset(), clock=Clock(T0))
    pid = world["patient"]
    readings = [(186, 104), (128, 82)] if severe_first else [(128, 82), (186, 104)]
    ids = [bp(conn, pid, s, d, T0) for s, d in readings]
    engine.process_batch(conn)
    (alert,) = store.list_alerts(conn)
    severe = ids[0] if severe_first else ids[1]
    assert alert["rule_id"] == "bp_severe" and severe in [r["id"] for r in alert["readings"]]
