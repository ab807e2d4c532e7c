"""Readings a hub sent before it was enrolled: stored without a patient, evaluated once
the enrolment attributes them (real PostgreSQL, the real ingest writer, the real engine).

The alert engine passes over a queued reading that has no patient (no patient, no
rules); ``server.admin.enrol`` back-fills ``patient_id`` on the hub's readings in its
window and queues exactly those readings again, in the same transaction.  A late
reading is judged at its own instant: the rule's window ends at its ``taken_at``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from alerts import store
from alerts.ruleset import load_ruleset
from alerts.sample_data import add_patient, add_team, insert_reading
from alerts.worker import AlertEngine
from server import admin
from server.ingest_rows import Prepared, prepare
from server.ingest_writer import BatchWriter
from tests.ingest_support import reading

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
HUB = "hub-late"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def conn(db_url: str) -> Any:
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


def ingest(db_url: str, hub: str, items: list[dict[str, Any]]) -> int:
    """Store one readings message from ``hub`` the way `homeward ingest` does."""
    import orjson

    msg = prepare(Prepared(mid=1, qos=1, epoch=0, topic=f"homeward/v1/hubs/{hub}/readings",
                           payload=orjson.dumps(items), received_at=NOW))
    assert not msg.quarantine, msg.quarantine
    writer = BatchWriter.connect(db_url)
    try:
        return writer.write([msg]).stored
    finally:
        writer.close()


def drain(conn: psycopg.Connection[Any], engine: AlertEngine) -> int:
    n = 0
    while batch := engine.process_batch(conn).readings:
        n += batch
    return n


def queued(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT reading_id::text, patient_id FROM evaluation_queue"
                        " ORDER BY seq").fetchall()


def bp(systolic: int, diastolic: int, days_ago: float) -> dict[str, Any]:
    return reading(kind="blood_pressure", taken_at=NOW - timedelta(days=days_ago),
                   values={"systolic": systolic, "diastolic": diastolic, "pulse_rate": 70})


@pytest.mark.hazard("H-003")
def test_readings_stored_before_enrolment_are_evaluated_once_enrolled(conn, db_url):
    add_team(conn, "dn-north")
    pid = add_patient(conn, "Pat Late", teams=["dn-north"])
    admin.create_hub(conn, hub_id=HUB)
    before_window = bp(200, 110, days_ago=9)     # before the enrolment starts: not his
    normal, severe = bp(128, 82, days_ago=3), bp(186, 104, days_ago=2)
    assert ingest(db_url, HUB, [before_window, severe, normal]) == 3
    engine = AlertEngine(load_ruleset(), clock=Clock(NOW))

    # Not enrolled: stored without a patient, passed over by the engine, nothing raised.
    assert drain(conn, engine) == 3
    assert queued(conn) == []
    assert store.list_alerts(conn, states=None) == []

    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN evaluation_queue")
        admin.enrol(conn, hub_id=HUB, patient_id=pid, valid_from=NOW - timedelta(days=7))
        notified = list(listener.notifies(timeout=2, stop_after=1))
    assert notified, "enrol committed queue rows without NOTIFY evaluation_queue"
    # The two readings in the window are queued for the patient, oldest first.
    assert queued(conn) == [(normal["id"], pid), (severe["id"], pid)]

    assert drain(conn, engine) == 2
    assert queued(conn) == []
    (alert,) = store.list_alerts(conn, states=None)
    assert (alert["rule_id"], alert["severity"], alert["state"], alert["count"]) == (
        "bp_severe", "red", "open", 1)
    assert alert["latest_reading"]["id"] == severe["id"]   # judged at its own instant
    assert alert["opened_at"] == NOW.isoformat()             # raised now, when first seen

    # Enrolling again (the hub moves to the patient's new enrolment) and running the
    # engine again evaluate nothing twice.
    admin.enrol(conn, hub_id=HUB, patient_id=pid, valid_from=NOW - timedelta(days=1))
    assert queued(conn) == []
    assert drain(conn, engine) == 0
    (again,) = store.list_alerts(conn, states=None)
    assert again["count"] == 1
    assert [e["event"] for e in store.get_alert(conn, alert["id"])["events"]] == ["opened"]
    assert conn.execute("SELECT patient_id FROM reading WHERE id = %s",
                        (before_window["id"],)).fetchone() == (None,)


def test_enrol_queues_nothing_when_the_hub_has_no_unattributed_readings(conn, db_url):
    pid = add_patient(conn, "Pat Quiet")
    admin.create_hub(conn, hub_id=HUB)
    admin.enrol(conn, hub_id=HUB, patient_id=pid, valid_from=NOW - timedelta(days=7))
    assert queued(conn) == []
    assert ingest(db_url, HUB, [bp(120, 80, days_ago=1)]) == 1
    assert [p for _, p in queued(conn)] == [pid]                # attributed at ingest


def test_a_back_filled_old_reading_does_not_clear_a_newer_alert(conn, db_url):
    """Hub B's readings from two days ago, attributed late, are older than the low SpO2
    reading hub A sent this morning: the alert that reading raised stays open."""
    add_team(conn, "dn-north")
    pid = add_patient(conn, "Pat Two Hubs", teams=["dn-north"], hub_id="hub-a",
                      since=NOW - timedelta(days=30))
    engine = AlertEngine(load_ruleset(), clock=Clock(NOW))
    insert_reading(conn, patient_id=pid, kind="spo2", hub_id="hub-a",
                   values={"spo2": 91, "pulse_rate": 90}, taken_at=NOW - timedelta(hours=1))
    drain(conn, engine)
    (alert,) = [a for a in store.list_alerts(conn) if a["rule_id"] == "spo2_low"]

    admin.create_hub(conn, hub_id="hub-b")
    ingest(db_url, "hub-b", [reading(kind="spo2", values={"spo2": 97, "pulse_rate": 70},
                                     taken_at=NOW - timedelta(days=2, minutes=m),
                                     id=str(uuid.uuid4())) for m in (0, 5)])
    drain(conn, engine)
    admin.enrol(conn, hub_id="hub-b", patient_id=pid, valid_from=NOW - timedelta(days=7))
    assert drain(conn, engine) == 2
    still = store.get_alert(conn, alert["id"])
    assert still["state"] == "open"


def test_a_reading_stored_while_its_hub_is_being_enrolled_is_evaluated_once(conn, db_url):
    """The ingest's INSERT runs while an enrolment is uncommitted (it stores the reading
    without a patient) and commits after the enrolment's back-fill ran (which did not see
    it): the engine waits for the enrolment, then attributes and evaluates the reading."""
    import threading

    add_team(conn, "dn-north")
    pid = add_patient(conn, "Pat Racing", teams=["dn-north"])
    admin.create_hub(conn, hub_id=HUB)
    engine = AlertEngine(load_ruleset(), clock=Clock(NOW))
    severe = bp(190, 100, days_ago=0.01)
    with psycopg.connect(db_url) as enrolling:
        enrolling.execute("SELECT 1")          # an open transaction: enrol is a savepoint
        admin.enrol(enrolling, hub_id=HUB, patient_id=pid, valid_from=NOW - timedelta(days=1))
        assert ingest(db_url, HUB, [severe]) == 1
        assert queued(conn) == [(severe["id"], None)]
        done = threading.Event()

        def run_engine() -> None:
            with psycopg.connect(db_url, autocommit=True) as c:
                drain(c, engine)
            done.set()

        worker = threading.Thread(target=run_engine)
        worker.start()
        for _ in range(100):                      # until the engine waits for the enrolment
            if done.is_set() or conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()").fetchone() != (0,):
                break
            done.wait(0.05)
        enrolling.commit()
        worker.join(30)
    assert not worker.is_alive()
    drain(conn, engine)
    assert queued(conn) == []
    assert conn.execute("SELECT patient_id FROM reading WHERE id = %s",
                        (severe["id"],)).fetchone() == (pid,)
    (alert,) = store.list_alerts(conn, states=None)
    assert (alert["rule_id"], alert["count"]) == ("bp_severe", 1)
    assert alert["latest_reading"]["id"] == severe["id"]
