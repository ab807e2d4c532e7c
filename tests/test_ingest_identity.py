"""The reading id alone is the idempotency key, bad items cost only themselves, and a
hub's rejects are bounded by a quota: through a real Mosquitto into the real ingest
and PostgreSQL (issue 7)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from homeward.wire import ReadingBounds, format_time, readings_topic
from server.ingest import Ingest, IngestConfig
from server.ingest_writer import QuarantineQuota, within_quota
from server.migrate import migrate
from stack.services import MosquittoServer
from tests.ingest_support import Publisher, reading
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


class StoredAcks:
    """Every id the server names on any hub's ``.../acks`` topic."""

    def __init__(self, port: int) -> None:
        self.ids: set[str] = set()
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"acks-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("homeward/v1/hubs/+/acks",
                                                                    qos=1)
        self.client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), "could not subscribe to the acks"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.ids.update(orjson.loads(message.payload)["stored"])

    def named(self, *ids: str) -> bool:
        with self._lock:
            return set(ids) <= self.ids

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_ingest(db_url: str, port: int, **options: Any) -> Ingest:
    service = Ingest(IngestConfig(database_url=db_url, mqtt_port=port,
                                  client_id=f"ingest-{uuid.uuid4().hex[:8]}", batch_ms=5,
                                  **options))
    service.start()
    return service


@pytest.fixture
def ingest(db_url: str, mosquitto: MosquittoServer) -> Iterator[Ingest]:
    service = start_ingest(db_url, mosquitto.port)
    yield service
    service.stop()


@pytest.fixture
def publisher(mosquitto: MosquittoServer) -> Iterator[Publisher]:
    pub = Publisher(mosquitto.port)
    yield pub
    pub.close()


@pytest.fixture
def acks(mosquitto: MosquittoServer) -> Iterator[StoredAcks]:
    collector = StoredAcks(mosquitto.port)
    yield collector
    collector.close()


def rows(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]


def stored_ids(url: str) -> list[str]:
    return sorted(str(r[0]) for r in rows(url, "SELECT id FROM reading"))


def test_an_exact_redelivery_is_a_duplicate_stored_once_and_stored_acked(
        db_url: str, ingest: Ingest, publisher: Publisher, acks: StoredAcks) -> None:
    r = reading()
    publisher.publish(readings_topic("hub-d"), r)
    wait_for(lambda: acks.named(r["id"]))
    acks.ids.clear()
    reordered = {**r, "values": dict(reversed(list(r["values"].items())))}  # same content
    publisher.publish(readings_topic("hub-d"), [reordered, r])
    wait_for(lambda: acks.named(r["id"]))
    wait_for(lambda: ingest.counters.readings_received == 3)
    assert stored_ids(db_url) == [r["id"]]
    assert rows(db_url, "SELECT count(*) FROM quarantine") == [(0,)]
    assert ingest.counters.duplicates == 2


def _conflict(db_url: str) -> tuple[str, dict[str, Any]]:
    (reason, item), = rows(db_url, "SELECT reason, item FROM quarantine")
    return reason, item


def test_same_id_with_a_different_taken_at_is_a_conflict_not_stored_twice(
        db_url: str, ingest: Ingest, publisher: Publisher, acks: StoredAcks) -> None:
    first_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    first = reading(taken_at=first_at)
    publisher.publish(readings_topic("hub-t"), first)
    wait_for(lambda: acks.named(first["id"]))
    later = {**first, "taken_at": format_time(first_at + timedelta(hours=1))}
    acks.ids.clear()
    publisher.publish(readings_topic("hub-t"), later)
    wait_for(lambda: acks.named(first["id"]), what="the conflict's stored-ack")
    wait_for(lambda: rows(db_url, "SELECT count(*) FROM quarantine") == [(1,)])
    assert rows(db_url, "SELECT taken_at FROM reading") == [(first_at,)]  # once, the first
    reason, item = _conflict(db_url)
    assert "conflict" in reason and first["id"] in reason
    assert format_time(first_at) in reason and later["taken_at"] in reason
    assert datetime.fromisoformat(item["incoming"]["taken_at"]) == first_at + timedelta(hours=1)
    assert datetime.fromisoformat(item["stored"]["taken_at"]) == first_at
    assert item["incoming"]["id"] == item["stored"]["id"] == first["id"]


@pytest.mark.parametrize("change", [
    {"values": {"spo2": 91, "pulse_rate": 72}},
    {"device": "AA:BB:CC:DD:EE:99"},
    {"flags": ["from_storage"]},
    {"kind": "temperature", "values": {"body_temperature": 37.2}},
])
@pytest.mark.parametrize("together", [False, True], ids=["later", "same_batch"])
def test_same_id_same_time_different_values_is_a_conflict_not_dropped(
        db_url: str, ingest: Ingest, publisher: Publisher, acks: StoredAcks,
        change: dict[str, Any], together: bool) -> None:
    first = reading()
    other = {**first, **change}
    if together:
        publisher.publish(readings_topic("hub-v"), [first, other])
    else:
        publisher.publish(readings_topic("hub-v"), first)
        wait_for(lambda: stored_ids(db_url) == [first["id"]])
        publisher.publish(readings_topic("hub-v"), other)
    wait_for(lambda: rows(db_url, "SELECT count(*) FROM quarantine") == [(1,)])
    wait_for(lambda: acks.named(first["id"]))
    assert rows(db_url, 'SELECT count(*), min(device), min(kind) FROM reading') == [
        (1, first["device"], first["kind"])]
    reason, item = _conflict(db_url)
    assert "same taken_at but other content" in reason
    assert item["stored"]["values"] == {k: float(v) for k, v in first["values"].items()}
    assert item["incoming"]["values"] == {k: float(v) for k, v in other["values"].items()}
    assert item["incoming"]["device"] == other["device"]
    assert ingest.counters.stored == 1


@pytest.mark.parametrize("taken_at", [
    "0001-01-01T00:00:00+01:00",  # OverflowError in Python: it took the whole message
    "9999-12-31T23:59:59-01:00",
    "10000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",       # below the lower bound
])
def test_one_item_with_an_overflowing_time_quarantines_only_itself_and_the_rest_are_stored_acked(
        db_url: str, ingest: Ingest, publisher: Publisher, acks: StoredAcks,
        taken_at: str) -> None:
    good = [reading(), reading(kind="temperature")]
    bad = reading(id=str(uuid.uuid4()))
    bad["taken_at"] = taken_at
    publisher.publish(readings_topic("hub-o"), [good[0], bad, good[1]])
    wait_for(lambda: acks.named(good[0]["id"], good[1]["id"], bad["id"]),
             what="stored-acks for every item of the batch")
    assert stored_ids(db_url) == sorted(g["id"] for g in good)
    (hub, index, reason, item), = rows(db_url, "SELECT hub_id, item_index, reason, item"
                                               " FROM quarantine")
    assert (hub, index, item["id"]) == ("hub-o", 1, bad["id"])
    assert "taken_at" in reason


@pytest.mark.hazard("H-005")
def test_taken_at_before_the_lower_bound_is_quarantined_with_a_reason(
        db_url: str, mosquitto: MosquittoServer, publisher: Publisher,
        acks: StoredAcks) -> None:
    service = start_ingest(db_url, mosquitto.port,
                           bounds=ReadingBounds(max_age=timedelta(days=30)))
    try:
        old = reading(taken_at=datetime.now(UTC) - timedelta(days=31))
        recent = reading(taken_at=datetime.now(UTC) - timedelta(days=29))
        publisher.publish(readings_topic("hub-a"), [old, recent])
        wait_for(lambda: acks.named(old["id"], recent["id"]))
    finally:
        service.stop()
    assert stored_ids(db_url) == [recent["id"]]
    (reason,), = rows(db_url, "SELECT reason FROM quarantine")
    assert "older than the 30-day limit" in reason


def test_a_message_over_the_distinct_days_limit_is_quarantined_whole_and_stored_acked(
        db_url: str, mosquitto: MosquittoServer, publisher: Publisher,
        acks: StoredAcks) -> None:
    service = start_ingest(db_url, mosquitto.port, bounds=ReadingBounds(max_days_per_message=5))
    try:
        now = datetime.now(UTC)
        spread = [reading(taken_at=now - timedelta(days=n, hours=1)) for n in range(6)]
        publisher.publish(readings_topic("hub-spread"), spread)
        other_hub = reading()
        publisher.publish(readings_topic("hub-calm"), other_hub)
        wait_for(lambda: acks.named(*(r["id"] for r in spread)),
                 what="stored-acks of the spread")
        wait_for(lambda: stored_ids(db_url) == [other_hub["id"]])
    finally:
        service.stop()
    quarantined = rows(db_url, "SELECT item_index, reason, item->>'id' FROM quarantine"
                               " ORDER BY item_index")
    assert [q[0] for q in quarantined] == list(range(len(spread)))
    assert [q[2] for q in quarantined] == [r["id"] for r in spread]
    assert all("spans 6 distinct UTC days, more than the 5" in q[1] for q in quarantined)


def clear_of_an_hour_boundary(needed_s: float = 60.0) -> None:
    """Rejects are counted by hub and hour (quarantine_hourly), so a test that counts them
    must not run across an hour: with fewer than ``needed_s`` left in this one, sleep
    until the next has begun."""
    now = datetime.now(UTC)
    left = 3600 - (now.minute * 60 + now.second + now.microsecond / 1e6)
    if left < needed_s:
        time.sleep(left + 0.5)


def test_quarantine_quota_per_hub_counts_and_samples(
        db_url: str, mosquitto: MosquittoServer, publisher: Publisher) -> None:
    quota = QuarantineQuota(rows=5, bytes=10_000, sample_every=10, preview_bytes=64)
    clear_of_an_hour_boundary()
    service = start_ingest(db_url, mosquitto.port, quarantine_quota=quota)
    try:
        for n in range(50):  # the noisy hub: 50 rejects, each a ~1 kB non-JSON payload
            publisher.publish(readings_topic("hub-noisy"), b"garbage %d " % n + b"x" * 1000)
        publisher.publish(readings_topic("hub-quiet"), b"one bad payload")
        good = reading()
        publisher.publish(readings_topic("hub-noisy"), good)
        wait_for(lambda: stored_ids(db_url) == [good["id"]])
        wait_for(lambda: service.counters.quarantined == 51)
    finally:
        service.stop()
    hourly = rows(db_url, "SELECT hub_id, rejects, bytes, kept FROM quarantine_hourly")
    assert len(hourly) == 2, f"one row per hub, in one hour: {hourly}"
    counted = {r[0]: r[1:] for r in hourly}
    kept = rows(db_url, "SELECT reason, length(payload) FROM quarantine"
                        " WHERE hub_id = 'hub-noisy' ORDER BY id")
    # Ordinals 0-4 are within the quota; beyond it, 10, 20, 30 and 40 are kept as samples.
    assert counted["hub-noisy"] == (50, sum(len(b"garbage %d " % n) + 1000 for n in range(50)),
                                    9)
    assert counted["hub-quiet"] == (1, len(b"one bad payload"), 1)
    assert len(kept) == 9
    assert all("not JSON" in reason for reason, _ in kept)  # the reason is still there
    assert [length for _, length in kept[:5]] == [len(b"garbage %d " % n) + 1000
                                                  for n in range(5)]
    assert all("quota" in reason and length == 64 for reason, length in kept[5:])
    assert rows(db_url, "SELECT count(*) FROM quarantine WHERE hub_id = 'hub-quiet'") == [(1,)]


def _row(size: int) -> Any:
    return (datetime(2026, 1, 1, tzinfo=UTC), "h", "t", None, "why", None, b"x" * size)


@pytest.mark.parametrize(("before", "sizes", "kept"), [
    ((0, 0), [10, 10, 10], ["full", "full", "full"]),
    ((3, 0), [10, 10], ["sampled", "-"]),         # 3 rows already: over the 3-row quota
    ((0, 95), [5, 1], ["full", "-"]),             # 100 bytes fit exactly, 101 do not
    ((2, 0), [10] * 6, ["full", "sampled", "-", "-", "sampled", "-"]),  # ordinals 3 and 6
])
def test_within_quota_keeps_rows_and_bytes_then_samples(
        before: tuple[int, int], sizes: list[int], kept: list[str]) -> None:
    quota = QuarantineQuota(rows=3, bytes=100, sample_every=3, preview_bytes=4)
    rows_in = [_row(n) for n in sizes]
    out = within_quota(rows_in, before, quota)
    assert [("full" if o in rows_in else "sampled") for o in out] == [k for k in kept if k != "-"]
    assert all(o[6] == b"xxxx" and "quota" in o[4] for o in out if o not in rows_in)


def test_the_migration_back_fills_reading_identity_and_old_readings_compare_by_content(
        db_url: str, mosquitto: MosquittoServer, publisher: Publisher,
        acks: StoredAcks) -> None:
    old = reading(taken_at=datetime.now(UTC).replace(microsecond=0) - timedelta(days=2))
    with psycopg.connect(db_url, autocommit=True) as conn:  # as before 0102: no identity
        conn.execute("DROP TABLE reading_identity")
        conn.execute("DELETE FROM schema_migration WHERE name = '0102_reading_identity.sql'")
        conn.execute(
            "INSERT INTO reading (id, taken_at, kind, hub_id, device, \"values\", flags,"
            " received_at) VALUES (%s, %s, %s, 'hub-m', %s, %s, '{}', now())",
            (old["id"], old["taken_at"], old["kind"], old["device"],
             orjson.dumps({k: float(v) for k, v in old["values"].items()}).decode()))
    assert migrate(db_url) == ["0102_reading_identity.sql"]
    assert rows(db_url, "SELECT id::text, digest FROM reading_identity") == [(old["id"], None)]
    service = start_ingest(db_url, mosquitto.port)
    try:
        publisher.publish(readings_topic("hub-m"), old)  # the hub resends it: a duplicate
        wait_for(lambda: acks.named(old["id"]))
        wait_for(lambda: service.counters.readings_received == 1)
        assert rows(db_url, "SELECT count(*) FROM quarantine") == [(0,)]
        publisher.publish(readings_topic("hub-m"), {**old, "values": {"spo2": 90,
                                                                      "pulse_rate": 72}})
        wait_for(lambda: rows(db_url, "SELECT count(*) FROM quarantine") == [(1,)])
    finally:
        service.stop()
    assert rows(db_url, "SELECT count(*) FROM reading") == [(1,)]
    assert "conflict" in _conflict(db_url)[0]
