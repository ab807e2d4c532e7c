"""The ingest against a real Mosquitto and a real PostgreSQL: idempotency,
quarantine, attribution by enrolment, hub status, retained hub config."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from homeward.wire import config_topic, readings_topic, status_topic
from server import admin
from server.hub_config import publish_hub_config
from server.ingest import Ingest, IngestConfig
from server.migrate import migrate
from stack.services import MosquittoServer, PostgresServer
from tests.ingest_support import Publisher, one, reading
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def ingest(db_url: str, mosquitto: MosquittoServer) -> Iterator[Ingest]:
    service = Ingest(IngestConfig(database_url=db_url, mqtt_port=mosquitto.port,
                                  client_id=f"ingest-{uuid.uuid4().hex[:8]}", batch_ms=5))
    service.start()
    yield service
    service.stop()


@pytest.fixture
def publisher(mosquitto: MosquittoServer) -> Iterator[Publisher]:
    pub = Publisher(mosquitto.port)
    yield pub
    pub.close()


def scalar(url: str, sql: str, *args: object) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, args).fetchone()
        return row[0] if row else None


@pytest.mark.hazard("H-002")
def test_the_same_reading_twice_is_stored_once_and_evaluated_once(
        db_url: str, ingest: Ingest, publisher: Publisher) -> None:
    r = reading()
    publisher.publish(readings_topic("hub-1"), r)
    publisher.publish(readings_topic("hub-1"), [r, r])  # again, and twice in one batch
    publisher.publish(readings_topic("hub-1"), reading())
    wait_for(lambda: ingest.counters.readings_received == 4)
    assert scalar(db_url, "SELECT count(*) FROM reading WHERE id = %s", r["id"]) == 1
    assert scalar(db_url, "SELECT count(*) FROM evaluation_queue WHERE reading_id = %s",
                  r["id"]) == 1
    assert scalar(db_url, "SELECT count(*) FROM reading") == 2
    assert ingest.counters.stored == 2
    assert ingest.counters.duplicates == 2


@pytest.mark.hazard("H-006")
@pytest.mark.parametrize(("payload", "reason_part", "item_index"), [
    (b"this is not json", "not JSON", None),
    (b'{"v": 1, "kind": "spo2"}', "id: Field required", None),
    (b"42", "must be a JSON object or array", None),
    (orjson.dumps(reading(values={"spo2": 160, "pulse_rate": 70})), "outside plausible range",
     None),
    (orjson.dumps(reading(taken_at=datetime.now(UTC) + timedelta(hours=2))), "in the future",
     None),
    (orjson.dumps(reading(kind="temperature", values={"body_temperature": 37,
                                                      "systolic": 120})), "unknown metric",
     None),
])
def test_a_bad_payload_is_quarantined_with_its_reason_and_ingest_goes_on(
        db_url: str, ingest: Ingest, publisher: Publisher, payload: bytes, reason_part: str,
        item_index: int | None) -> None:
    publisher.publish(readings_topic("hub-q"), payload)
    good = reading()
    publisher.publish(readings_topic("hub-q"), good)
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM reading WHERE id = %s", good["id"]))
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT hub_id, topic, item_index, reason, item, payload"
                            " FROM quarantine").fetchall()
    assert len(rows) == 1
    hub, topic, index, reason, item, raw = rows[0]
    assert (hub, topic, index) == ("hub-q", readings_topic("hub-q"), item_index)
    assert reason_part in reason
    assert item is not None or bytes(raw) == payload
    assert ingest.counters.quarantined == 1


def test_one_bad_item_in_a_batch_costs_only_itself(db_url: str, ingest: Ingest,
                                                   publisher: Publisher) -> None:
    good = [reading(), reading(kind="temperature")]
    bad = reading(kind="blood_pressure", values={"systolic": 80, "diastolic": 95,
                                                 "pulse_rate": 60})
    publisher.publish(readings_topic("hub-b"), [good[0], bad, good[1], "not a reading"])
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM quarantine") == 2)
    with psycopg.connect(db_url) as conn:
        stored = {str(r[0]) for r in conn.execute("SELECT id FROM reading")}
        quarantined = conn.execute(
            "SELECT item_index, reason, item FROM quarantine ORDER BY item_index").fetchall()
    assert stored == {good[0]["id"], good[1]["id"]}
    assert [q[0] for q in quarantined] == [1, 3]
    assert "diastolic must be below systolic" in quarantined[0][1]
    assert quarantined[0][2]["id"] == bad["id"]
    assert quarantined[1][2] == "not a reading"


def test_a_nul_character_that_jsonb_refuses_is_quarantined_as_bytes(
        db_url: str, ingest: Ingest, publisher: Publisher) -> None:
    payload = b'[{"v": 1, "device": "a\\u0000b"}]'
    publisher.publish(readings_topic("hub-n"), payload)
    good = reading()
    publisher.publish(readings_topic("hub-n"), good)
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM reading WHERE id = %s", good["id"]))
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT item, payload FROM quarantine").fetchone()
    assert row is not None and row[0] is None and b"\\u0000" in bytes(row[1])


@pytest.mark.hazard("H-003")
def test_readings_go_to_the_patient_enrolled_when_they_were_taken(
        db_url: str, ingest: Ingest, publisher: Publisher) -> None:
    t0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        admin.create_hub(conn, hub_id="hub-e")
        alice = admin.create_patient(conn, display_name="Alice")
        bob = admin.create_patient(conn, display_name="Bob")
        admin.enrol(conn, hub_id="hub-e", patient_id=alice, valid_from=t0)
        admin.enrol(conn, hub_id="hub-e", patient_id=bob, valid_from=t0 + timedelta(days=10))
    cases = [  # (taken_at, expected patient)
        (t0 - timedelta(minutes=1), None),  # before anyone was enrolled
        (t0, alice),
        (t0 + timedelta(days=9, hours=23), alice),
        (t0 + timedelta(days=10), bob),
        (t0 + timedelta(days=30), bob),
    ]
    items = [reading(taken_at=when) for when, _ in cases]
    publisher.publish(readings_topic("hub-e"), items)
    stranger = reading()
    publisher.publish(readings_topic("hub-unknown"), stranger)
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM reading") == 6)
    with psycopg.connect(db_url) as conn:
        got: dict[str, int | None] = dict(
            conn.execute("SELECT id::text, patient_id FROM reading").fetchall())
        queued: dict[str, int | None] = dict(
            conn.execute("SELECT reading_id::text, patient_id FROM evaluation_queue").fetchall())
    assert [got[i["id"]] for i in items] == [expected for _, expected in cases]
    assert got[stranger["id"]] is None  # an unknown hub's reading is kept, unattributed
    assert queued == got


def test_enrolling_later_attributes_readings_already_stored(db_url: str, ingest: Ingest,
                                                           publisher: Publisher) -> None:
    early = reading(taken_at=datetime.now(UTC) - timedelta(hours=1))
    publisher.publish(readings_topic("hub-late"), early)
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM reading") == 1)
    with psycopg.connect(db_url, autocommit=True) as conn:
        admin.create_hub(conn, hub_id="hub-late")
        p = admin.create_patient(conn, display_name="Carol")
        admin.enrol(conn, hub_id="hub-late", patient_id=p,
                    valid_from=datetime.now(UTC) - timedelta(days=1))
    assert scalar(db_url, "SELECT patient_id FROM reading WHERE id = %s", early["id"]) == p


@pytest.mark.hazard("H-014")
def test_hub_status_updates_the_hub(db_url: str, ingest: Ingest, publisher: Publisher) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        admin.create_hub(conn, hub_id="hub-s")
    ts = datetime(2026, 3, 1, 9, tzinfo=UTC)
    devices = [{"address": "AA:01", "kind": "spo2", "battery": 12}]
    publisher.publish(status_topic("hub-s"), {"state": "online", "ts": ts.isoformat(),
                                              "agent": "0.1.0", "outbox_depth": 3,
                                              "devices": devices},
                      retain=True)
    wait_for(lambda: scalar(db_url, "SELECT state FROM hub WHERE id = 'hub-s'") == "online")
    publisher.publish(status_topic("hub-s"), {"state": "offline"}, retain=True)
    wait_for(lambda: scalar(db_url, "SELECT state FROM hub WHERE id = 'hub-s'") == "offline")
    publisher.publish(status_topic("hub-s"), b'{"state": "sleeping"}')
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM quarantine") == 1)
    with psycopg.connect(db_url) as conn:
        last_status, last_seen = one(conn.execute(
            "SELECT last_status, last_seen_at FROM hub WHERE id = 'hub-s'"))
    assert last_status["state"] == "offline"
    # the last will says only "offline": the last known devices, batteries and outbox
    # depth are kept, exactly when a nurse needs them
    assert (last_status["devices"][0]["battery"], last_status["outbox_depth"]) == (12, 3)
    assert last_seen is not None
    assert "invalid hub status" in str(scalar(db_url, "SELECT reason FROM quarantine"))


def test_paired_devices_are_published_as_the_hubs_retained_config(
        db_url: str, mosquitto: MosquittoServer) -> None:
    from homeward.settings import Settings

    with psycopg.connect(db_url, autocommit=True) as conn:
        admin.create_hub(conn, hub_id="hub-c")
        admin.pair_device(conn, hub_id="hub-c", address="C4:7C:8D:6A:3E:21",
                          kind="blood_pressure", name="cuff")
        admin.pair_device(conn, hub_id="hub-c", address="00:11:22:33:44:55", kind="spo2")
        assert admin.remove_device(conn, hub_id="hub-c", address="00:11:22:33:44:55")
        published = publish_hub_config(conn, "hub-c",
                                       settings=Settings(mqtt_port=mosquitto.port))
    assert [d.address for d in published.devices] == ["C4:7C:8D:6A:3E:21"]
    got: list[bytes] = []
    done = threading.Event()
    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        got.append(bytes(m.payload))
        done.set()

    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(config_topic("hub-c"), qos=1)
    sub.on_message = on_message
    sub.connect("127.0.0.1", mosquitto.port)
    sub.loop_start()
    try:
        assert done.wait(10)
    finally:
        sub.disconnect()
        sub.loop_stop()
    config = orjson.loads(got[0])
    assert config["devices"] == [{"address": "C4:7C:8D:6A:3E:21", "kind": "blood_pressure",
                                  "name": "cuff"}]


@pytest.mark.hazard("H-001", "H-020")
def test_a_database_outage_holds_acks_and_the_readings_arrive_after_it(
        tmp_path: Path, mosquitto: MosquittoServer, publisher: Publisher) -> None:
    pg = PostgresServer(tmp_path / "pg", durable=False)
    pg.start()
    try:
        url = pg.create_database("outage")
        migrate(url)
        service = Ingest(IngestConfig(database_url=url, mqtt_port=mosquitto.port,
                                      client_id="ingest-outage", batch_ms=5))
        service.start()
        try:
            before = reading()
            publisher.publish(readings_topic("hub-o"), before)
            wait_for(lambda: service.counters.stored == 1)
            pg.stop()
            during = [reading() for _ in range(5)]
            publisher.publish(readings_topic("hub-o"), during)
            wait_for(lambda: service.counters.db_errors >= 2)  # retrying with back-off
            assert service.counters.stored == 1
            pg.start()
            wait_for(lambda: service.counters.stored == 6, timeout=30)
            with psycopg.connect(url) as conn:
                ids = {str(r[0]) for r in conn.execute("SELECT id FROM reading")}
            assert ids == {before["id"], *(r["id"] for r in during)}
        finally:
            service.stop()
    finally:
        pg.stop(mode="immediate")
