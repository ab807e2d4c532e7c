"""Issue 7, critical finding: no message can stop the ingest.

One batch of 5,000 weight readings on 5,000 distinct days made TimescaleDB
run out of lock memory (``out of shared memory``, SQLSTATE 53200); psycopg
raises that as ``OperationalError``, the ingest took it for an outage, retried
forever holding the message, and no hub's readings were stored again, not even
after a restart.  Real PostgreSQL (TimescaleDB when installed), real
Mosquitto, the real ingest.  A database refusal that does not depend on
TimescaleDB is made with a trigger that raises SQLSTATE 53200 itself for a
chosen device: the same error, the same psycopg class, on any PostgreSQL.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from homeward.wire import ReadingBounds, acks_topic, readings_topic
from server.ingest import Ingest, IngestConfig
from server.ingest_chunks import Part, chunk_key, plan, split_message
from server.ingest_failures import Failure, classify, classify_error
from server.ingest_rows import Prepared, prepare
from stack.services import MosquittoServer
from tests.ingest_support import IngestProcess, Publisher, reading
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


# -- which failures are outages ------------------------------------------------------

@pytest.mark.parametrize(("sqlstate", "connection_lost", "expected"), [
    ("53200", False, Failure.REFUSAL),  # out of shared memory: the critical finding
    ("53100", False, Failure.REFUSAL),  # disk full
    ("53400", False, Failure.REFUSAL),  # configuration limit exceeded
    ("54000", False, Failure.REFUSAL),  # program limit exceeded
    ("54001", False, Failure.REFUSAL),  # statement too complex
    ("22008", False, Failure.REFUSAL),  # datetime field overflow
    ("22P05", False, Failure.REFUSAL),  # untranslatable character
    ("23505", False, Failure.REFUSAL),  # unique violation
    ("23514", False, Failure.REFUSAL),  # check violation
    (None, False, Failure.REFUSAL),  # psycopg refused to send a value (NUL in text)
    ("08006", False, Failure.OUTAGE),  # connection failure
    ("08001", False, Failure.OUTAGE),  # unable to connect
    ("57P01", False, Failure.OUTAGE),  # admin shutdown
    ("57P02", False, Failure.OUTAGE),  # crash shutdown
    ("57P03", False, Failure.OUTAGE),  # cannot connect now
    ("53300", False, Failure.OUTAGE),  # too many connections: about no message
    (None, True, Failure.OUTAGE),  # the connection is gone
    ("53200", True, Failure.OUTAGE),  # ...whatever the last error said
    ("40P01", False, Failure.UNSURE),  # deadlock detected
    ("40001", False, Failure.UNSURE),  # serialization failure
    ("57014", False, Failure.UNSURE),  # statement timeout
    ("42501", False, Failure.UNSURE),  # insufficient privilege: every message gets it
    ("XX000", False, Failure.UNSURE),  # internal error
])
def test_out_of_shared_memory_is_a_refusal_not_an_outage(
        sqlstate: str | None, connection_lost: bool, expected: Failure) -> None:
    assert classify(sqlstate, connection_lost=connection_lost) is expected


def test_psycopg_calls_out_of_shared_memory_an_operational_error_and_it_is_still_a_refusal(
        db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        with pytest.raises(psycopg.OperationalError) as raised:
            conn.execute("DO $$ BEGIN RAISE EXCEPTION 'out of shared memory'"
                         " USING ERRCODE = '53200'; END $$")
        assert raised.value.sqlstate == "53200"
        assert classify_error(raised.value, conn) is Failure.REFUSAL
        conn.rollback()
        conn.close()
        assert classify_error(raised.value, conn) is Failure.OUTAGE


# -- chunks per transaction ------------------------------------------------------------

WEEK = 7 * 86_400


@pytest.mark.parametrize(("taken_at", "interval_s", "key"), [
    (b"1970-01-01T00:00:00+00:00", WEEK, 0),
    (b"1970-01-07T23:59:59.999000+00:00", WEEK, 0),
    (b"1970-01-08T00:00:00+00:00", WEEK, 1),  # chunks start on the epoch, a Thursday
    (b"1969-12-31T23:59:59+00:00", WEEK, -1),  # floored, not truncated, before it
    (b"2026-12-02T10:00:00+00:00", 86_400, date(2026, 12, 2).toordinal()
     - date(1970, 1, 1).toordinal()),
    (b"2026-12-02T00:30:00+01:00", 86_400, date(2026, 12, 1).toordinal()
     - date(1970, 1, 1).toordinal()),  # another zone: the UTC day decides
    (b"1970-01-01T02:00:00+00:00", 3600, 2),  # an hourly interval
])
def test_chunk_keys_follow_timescaledbs_epoch_aligned_floor(
        taken_at: bytes, interval_s: int, key: int) -> None:
    assert chunk_key(taken_at, interval_s) == key


def weight(day: date, hour: int = 8) -> dict[str, Any]:
    when = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    return reading(kind="weight", taken_at=when, values={"body_weight": 80.0},
                   device="AA:BB:CC:DD:EE:02")


def prepared(items: list[dict[str, Any]], hub: str = "hub-a") -> Prepared:
    msg = Prepared(mid=1, qos=1, epoch=1, topic=readings_topic(hub),
                   payload=orjson.dumps(items), received_at=datetime.now(UTC))
    return prepare(msg, ReadingBounds(max_age=timedelta(days=365 * 30),
                                      max_days_per_message=100_000))


def test_a_message_over_the_chunk_cap_is_written_in_parts_of_at_most_32_chunks() -> None:
    start = datetime.now(UTC).date() - timedelta(days=1000)
    msg = prepared([weight(start + timedelta(days=i)) for i in range(1000)])
    parts = split_message(msg, WEEK)
    assert all(len(p.keys) <= 32 for p in parts)
    assert len({k for p in parts for k in p.keys}) == sum(len(p.keys) for p in parts)
    assert sum(p.rows.readings for p in parts) == 1000
    assert b"".join(p.rows.copy_data for p in parts).count(b"\n") == 1000
    live = [Part(m, m, frozenset({9999})) for m in [msg, msg]]
    groups = plan([*parts, *live])
    assert all(len(set().union(*(p.keys for p in g))) <= 32 for g in groups)
    assert groups[-1][-2:] == live  # the live messages share the last transaction


def test_the_private_postgresql_has_the_lock_slots_the_arithmetic_assumes(db_url: str) -> None:
    """docs/ingest.md: 256 x 200 = 51,200 slots, room for four ingests at 32 new chunks
    (544 slots) each and an 8-year export at once."""
    locks = int(scalar(db_url, "SHOW max_locks_per_transaction"))
    connections = int(scalar(db_url, "SHOW max_connections"))
    assert locks * connections >= 51_200


# -- the real ingest ----------------------------------------------------------------

IngestFactory = Callable[..., Ingest]


@pytest.fixture
def start_ingest(db_url: str, mosquitto: MosquittoServer) -> Iterator[IngestFactory]:
    started: list[Ingest] = []
    client_id = f"ingest-{uuid.uuid4().hex[:8]}"

    def start(**overrides: Any) -> Ingest:
        config = IngestConfig(database_url=db_url, mqtt_port=mosquitto.port,
                              client_id=client_id, batch_ms=5,
                              **{"heartbeat_every_s": 0.2, **overrides})
        service = Ingest(config)
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop(timeout=5)


@pytest.fixture
def publisher(mosquitto: MosquittoServer) -> Iterator[Publisher]:
    pub = Publisher(mosquitto.port)
    yield pub
    pub.close()


def rows(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]


def scalar(url: str, sql: str, *args: object) -> Any:
    found = rows(url, sql, *args)
    return found[0][0] if found else None


def stored(url: str, reading_id: str) -> bool:
    return bool(scalar(url, "SELECT count(*) FROM reading WHERE id = %s", reading_id))


class LiveHub:
    """Another hub publishing a reading every ``every`` seconds; records how long each
    took from PUBACK to being stored."""

    def __init__(self, url: str, pub: Publisher, hub: str = "hub-live",
                 every: float = 0.5) -> None:
        self.url, self.pub, self.hub, self.every = url, pub, hub, every
        self.published: list[tuple[float, str]] = []
        self.latency: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LiveHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            r = reading()
            self.pub.publish(readings_topic(self.hub), r)
            self.published.append((time.monotonic(), r["id"]))
            self._stop.wait(self.every)
            self._measure()

    def _measure(self) -> bool:
        now = time.monotonic()
        for at, rid in self.published:
            if rid not in self.latency and stored(self.url, rid):
                self.latency[rid] = now - at
        return len(self.latency) == len(self.published)

    def assert_all_stored_within(self, seconds: float) -> None:
        wait_for(self._measure, timeout=seconds + 5, step=0.2, what="the live hub's readings")
        late = {rid: round(s, 1) for rid, s in self.latency.items() if s > seconds}
        assert not late, f"readings of {self.hub} waited longer than {seconds} s: {late}"


def five_thousand_days() -> list[dict[str, Any]]:
    """The finding's batch: 5,000 valid weights, each on its own day from 2005 on."""
    first = date(2005, 1, 1)
    return [weight(first + timedelta(days=i)) for i in range(5000)]


@pytest.mark.parametrize("bounds", [
    None,  # the shipped bounds: too old and too many days, refused item by item
    ReadingBounds(max_age=timedelta(days=365 * 30), max_days_per_message=100_000),  # let in
], ids=["shipped-bounds", "bounds-opened"])
def test_a_batch_spanning_5000_days_does_not_stall_other_hubs(
        db_url: str, start_ingest: IngestFactory, publisher: Publisher,
        bounds: ReadingBounds | None) -> None:
    extra = {} if bounds is None else {"bounds": bounds}
    ingest = start_ingest(**extra)
    batch = five_thousand_days()
    ids = [r["id"] for r in batch]
    with LiveHub(db_url, publisher) as live:
        time.sleep(0.6)
        publisher.publish(readings_topic("hub-backlog"), batch)

        def settled() -> bool:
            kept = scalar(db_url, "SELECT count(*) FROM reading WHERE hub_id = 'hub-backlog'")
            rejected = scalar(db_url, "SELECT count(*) FROM quarantine"
                                      " WHERE hub_id = 'hub-backlog'")
            return bool(kept == 5000 or rejected)
        wait_for(settled, timeout=60, what="the 5,000-day batch stored or quarantined")
        time.sleep(1.5)
    live.assert_all_stored_within(10)
    kept = scalar(db_url, "SELECT count(*) FROM reading WHERE hub_id = 'hub-backlog'")
    assert kept in (0, 5000)
    if kept == 0:
        assert ingest.counters.quarantined >= 1
    # A restart does not bring the stall back: nothing of it is delivered again.
    ingest.stop()
    again = start_ingest(**extra)
    with LiveHub(db_url, publisher) as live:
        time.sleep(3)
    live.assert_all_stored_within(10)
    assert again.counters.messages == len(live.published)
    assert scalar(db_url, "SELECT count(*) FROM reading WHERE hub_id = 'hub-backlog'") == kept
    if kept:
        assert {str(r[0]) for r in rows(db_url, "SELECT id FROM reading"
                                                " WHERE hub_id = 'hub-backlog'")} == set(ids)


POISON_DEVICE = "DE:AD:BE:EF:00:01"


def refuse_device(url: str, device: str, *, sleep_s: float = 0.0) -> None:
    """Make PostgreSQL refuse any reading of ``device`` with SQLSTATE 53200 (after
    ``sleep_s``), counting every try in a sequence (which no rollback undoes)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE poison_tries")
        conn.execute(f"""
            CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.device = '{device}' THEN
                    PERFORM nextval('poison_tries');
                    PERFORM pg_sleep({sleep_s});
                    RAISE EXCEPTION 'out of shared memory'
                        USING ERRCODE = '53200',
                              HINT = 'You might need to increase max_locks_per_transaction.';
                END IF;
                RETURN NEW;
            END $$""")
        conn.execute("CREATE TRIGGER refuse_poison BEFORE INSERT ON reading"
                     " FOR EACH ROW EXECUTE FUNCTION refuse_poison()")


def tries(url: str) -> int:
    return int(scalar(url, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END"
                           " FROM poison_tries"))


class AckListener:
    """A hub's view of its stored-acks (``homeward/v1/hubs/{hub}/acks``)."""

    def __init__(self, port: int, hub: str) -> None:
        self.ids: list[str] = []
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"acks-{uuid.uuid4().hex[:8]}")
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = lambda c, u, m: self.ids.extend(
            orjson.loads(m.payload)["stored"])
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(acks_topic(hub), qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.hazard("H-021")
def test_a_message_the_database_refuses_is_quarantined_acked_and_stored_acked(
        db_url: str, mosquitto: MosquittoServer, start_ingest: IngestFactory,
        publisher: Publisher) -> None:
    refuse_device(db_url, POISON_DEVICE)
    acks = AckListener(mosquitto.port, "hub-poison")
    try:
        ingest = start_ingest(attempt_limit=2, retry_first_s=0.2)
        poison = [reading(), reading(device=POISON_DEVICE)]
        innocent = reading()
        with LiveHub(db_url, publisher) as live:
            publisher.publish(readings_topic("hub-poison"), poison)
            publisher.publish(readings_topic("hub-poison"), innocent)
            found = wait_for(lambda: rows(
                db_url, "SELECT reason, payload FROM quarantine WHERE hub_id = 'hub-poison'"),
                what="the refused message in quarantine")
            time.sleep(1.0)
        live.assert_all_stored_within(5)
        assert stored(db_url, innocent["id"])  # same hub, next message: not held behind it
        assert not any(stored(db_url, r["id"]) for r in poison)
        [(reason, payload)] = found
        assert "53200" in reason and "out of shared memory" in reason
        assert "refused this message 2 time(s)" in reason
        assert orjson.loads(bytes(payload)) == poison  # the message, whole
        # Tried in its batch and the halves holding it (a batch of at most three
        # messages here: two splits), then twice alone, and no more.
        assert ingest.settler.stats.tries_alone == 2
        assert 3 <= tries(db_url) <= 5
        wait_for(lambda: {r["id"] for r in poison} <= set(acks.ids),
                 what="a stored-ack naming the quarantined readings")
        assert ingest.counters.poison_quarantined == 1
        # PUBACKed too: the persistent session does not deliver it again.
        ingest.stop()
        again = start_ingest(attempt_limit=2, retry_first_s=0.2)
        time.sleep(2)
        assert again.counters.messages == 0
        assert tries(db_url) <= 5
    finally:
        acks.close()


def test_the_heartbeat_says_how_long_the_ingest_has_held_a_refused_message(
        db_url: str, start_ingest: IngestFactory, publisher: Publisher) -> None:
    refuse_device(db_url, POISON_DEVICE)
    ingest = start_ingest(attempt_limit=4, retry_first_s=1.0)
    client = ingest.config.client_id
    wait_for(lambda: scalar(db_url, "SELECT heartbeat_at FROM ingest_heartbeat"
                                    " WHERE client_id = %s", client))
    assert scalar(db_url, "SELECT oldest_held_since FROM ingest_heartbeat") is None
    before = datetime.now(UTC)
    publisher.publish(readings_topic("hub-poison"), reading(device=POISON_DEVICE))
    held = wait_for(lambda: rows(db_url, "SELECT oldest_held_since, suspects FROM"
                                         " ingest_heartbeat WHERE oldest_held_since IS NOT NULL"),
                    what="a heartbeat naming the held message")
    since, suspects = held[0]
    assert before - timedelta(seconds=1) <= since <= datetime.now(UTC)
    assert suspects == 1
    wait_for(lambda: scalar(db_url, "SELECT count(*) FROM quarantine"), timeout=30)
    wait_for(lambda: rows(db_url, "SELECT 1 FROM ingest_heartbeat WHERE oldest_held_since"
                                  " IS NULL AND suspects = 0 AND heartbeat_at > now()"
                                  " - interval '2 seconds'"), what="a beat holding nothing")
    ingest.stop()
    assert scalar(db_url, "SELECT stopped_at IS NOT NULL FROM ingest_heartbeat") is True


def test_a_redelivered_poison_message_is_recognised(
        db_url: str, mosquitto: MosquittoServer, publisher: Publisher, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    # Each try of the poison takes 2 s: long enough to kill the ingest in the middle.
    refuse_device(db_url, POISON_DEVICE, sleep_s=2.0)
    proc = IngestProcess(db_url, mosquitto.port, tmp_path / "ingest.log",
                         client_id="ingest-poison-test")
    request.node.homeward_logs = [*getattr(request.node, "homeward_logs", []),
                                  ("ingest", lambda: proc.log.read_text()[-4000:])]
    try:
        proc.start()
        probe = reading()
        deadline = time.monotonic() + 30
        while not stored(db_url, probe["id"]):  # the persistent subscription exists
            publisher.publish(readings_topic("hub-probe"), probe)
            assert time.monotonic() < deadline, proc.log.read_text()
            time.sleep(0.3)
        poison = reading(device=POISON_DEVICE)
        publisher.publish(readings_topic("hub-poison"), poison)
        # Kill it during its third (last) try alone: the try never finishes.
        wait_for(lambda: scalar(db_url, "SELECT attempts FROM ingest_suspect") == 3,
                 timeout=40, step=0.02, what="the third try alone to begin")
        proc.kill()
        assert scalar(db_url, "SELECT count(*) FROM quarantine") == 0
        tried = tries(db_url)
        assert 3 <= tried <= 5  # in its batch (split once if a probe shared it), then alone

        proc.start()  # the broker delivers it again, with the same persistent session
        with LiveHub(db_url, publisher) as live:
            wait_for(lambda: scalar(db_url, "SELECT count(*) FROM quarantine"), timeout=20,
                     what="the redelivered poison quarantined")
            time.sleep(1.0)
        live.assert_all_stored_within(3)
        assert tries(db_url) == tried  # recognised: quarantined without another try
        (reason,) = rows(db_url, "SELECT reason FROM quarantine")[0]
        assert "refused this message 3 time(s)" in reason
        assert not stored(db_url, poison["id"])
    finally:
        proc.stop()
