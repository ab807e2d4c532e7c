"""The hub's durable outbox: order, bounds, crash safety and rate-limited draining."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.drain import DrainWindow, TokenBucket
from edge.outbox import Outbox, OutboxFull, join_batch
from homeward.kinds import Kind
from homeward.wire import Reading, decode_readings, encode_readings

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def reading(device: str = "AA:01", n: int = 0) -> Reading:
    return Reading(id=uuid.uuid4(), kind=Kind.SPO2, taken_at=T0 + timedelta(seconds=n),
                   device=device, values={"spo2": 97, "pulse_rate": 60 + n % 40})


def test_readings_come_out_in_insertion_order_and_leave_only_when_deleted(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    readings = [reading(dev, n) for n in range(5) for dev in ("AA:01", "BB:02")]
    for r in readings:
        assert box.add(r)
    rows = box.after(0, 100)
    assert [orjson_id(r.payload) for r in rows] == [str(r.id) for r in readings]
    box.delete([rows[0].seq, rows[3].seq])
    assert box.depth == 8
    assert box.reading_ids() == [str(r.id) for i, r in enumerate(readings) if i not in (0, 3)]
    assert [r.seq for r in box.after(rows[5].seq, 2)] == [rows[6].seq, rows[7].seq]


def test_sequence_numbers_are_never_reused_after_the_outbox_empties(tmp_path: Path) -> None:
    # The publisher's cursor is "the last seq sent": a reused number would be skipped.
    box = Outbox(tmp_path / "o.db")
    box.add(reading())
    (row,) = box.after(0, 10)
    box.delete([row.seq])
    box.close()
    box = Outbox(tmp_path / "o.db")
    box.add(reading())
    assert [r.seq for r in box.after(row.seq, 10)] == [row.seq + 1]


@pytest.mark.hazard("H-002")
def test_adding_the_same_reading_twice_stores_it_once(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    r = reading()
    assert box.add(r) is True
    assert box.add(r) is False
    assert box.depth == 1


@pytest.mark.parametrize(
    ("held", "nearly_full", "full"),
    [(0, False, False), (8, False, False), (9, True, False), (10, True, True)],
)
def test_nearly_full_flag_from_ninety_percent(tmp_path: Path, held: int, nearly_full: bool,
                                              full: bool) -> None:
    box = Outbox(tmp_path / "o.db", max_readings=10, nearly_full_ratio=0.9)
    for n in range(held):
        box.add(reading(n=n))
    status = box.status()
    assert (status.depth, status.nearly_full, status.full) == (held, nearly_full, full)


def test_a_full_outbox_refuses_new_readings_loudly_and_keeps_the_old(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_readings=3)
    kept = [reading(n=n) for n in range(3)]
    for r in kept:
        box.add(r)
    with pytest.raises(OutboxFull, match="holds 3 of 3 readings"):
        box.add(reading(n=3))
    assert box.status().refused == 1
    assert box.reading_ids() == [str(r.id) for r in kept]  # nothing evicted
    box.delete([box.after(0, 1)[0].seq])  # a PUBACK frees room
    assert box.add(reading(n=4))
    assert box.status().refused == 1


def test_the_count_survives_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_readings=2)
    box.add(reading(n=0))
    box.add(reading(n=1))
    box.close()
    with pytest.raises(OutboxFull):
        Outbox(tmp_path / "o.db", max_readings=2).add(reading(n=2))


@pytest.mark.hazard("H-002")
def test_last_sequence_is_stored_with_the_reading_in_one_transaction(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_readings=1)
    assert box.get_last_sequence("GL:01") is None
    box.add(reading("GL:01"), sequence=("GL:01", 41))
    assert box.get_last_sequence("GL:01") == 41
    with pytest.raises(OutboxFull):  # refused reading: the sequence does not advance
        box.add(reading("GL:01"), sequence=("GL:01", 42))
    assert box.get_last_sequence("GL:01") == 41
    box.set_last_sequence("GL:01", 7)
    assert box.get_last_sequence("GL:01") == 7


def test_key_value_state(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    assert box.get_state("config") is None
    box.set_state("config", '{"version": 2}')
    assert box.get_state("config") == '{"version": 2}'
    box.set_state("config", None)
    assert box.get_state("config") is None


def test_a_batch_of_stored_payloads_is_the_wire_batch(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    readings = [reading(n=n) for n in range(3)]
    readings.append(Reading(id=uuid.uuid4(), kind=Kind.BLOOD_PRESSURE,
                            taken_at=T0 + timedelta(milliseconds=1500), device="CUFF",
                            values={"systolic": 128, "diastolic": 82},
                            flags=("irregular_pulse",), raw="1e8000"))
    box.add_many(readings)
    payload = join_batch(r.payload for r in box.after(0, 10))
    assert payload == encode_readings(readings)
    assert decode_readings(payload).readings == readings


def orjson_id(payload: bytes) -> str:
    import orjson

    return str(orjson.loads(payload)["id"])


# -- crash safety ----------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, uuid
    from datetime import UTC, datetime
    from edge.outbox import Outbox
    from homeward.kinds import Kind
    from homeward.wire import Reading
    box = Outbox(sys.argv[1], synchronous=sys.argv[2])
    print("ready", flush=True)
    while True:
        r = Reading(id=uuid.uuid4(), kind=Kind.TEMPERATURE, taken_at=datetime.now(UTC),
                    device="TH:01", values={"body_temperature": 36.8})
        box.add(r)
        print(r.id, flush=True)   # printed only after the commit returned
""")


@pytest.mark.hazard("H-001")
@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_every_committed_reading_survives_a_sigkilled_writer(tmp_path: Path,
                                                             synchronous: str) -> None:
    db = tmp_path / "o.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), synchronous],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    committed = [proc.stdout.readline().strip() for _ in range(300)]
    proc.send_signal(signal.SIGKILL)  # mid-stream: it is writing the next ones
    proc.wait()
    committed += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]
    proc.stdout.close()
    with Outbox(db) as box:
        held = box.reading_ids()
        integrity = box._conn.execute("PRAGMA integrity_check").fetchone()[0]
    assert integrity == "ok"
    # every reading whose commit returned is there, in order; at most one more (committed
    # but killed before it could say so)
    assert held[: len(committed)] == committed
    assert len(held) - len(committed) in (0, 1)


# -- rate-limited draining -------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_backlog_drains_in_bounded_batches_at_the_message_rate(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    backlog = [reading(dev, n) for n in range(300) for dev in ("AA:01", "BB:02", "CC:03")]
    box.add_many(backlog)
    clock = FakeClock()
    window = DrainWindow(box, batch_readings=50, max_inflight=3,
                         bucket=TokenBucket(rate=4, clock=clock))
    sent_at: list[float] = []
    delivered: list[str] = []
    mid = 0
    awaiting: list[int] = []
    while box.depth:
        while (batch := window.next_batch()) is not None:
            mid += 1
            window.sent(mid, batch)
            awaiting.append(mid)
            sent_at.append(clock.now)
            assert len(batch) <= 50
            assert len(window.inflight) <= 3
            delivered += [orjson_id(r.payload) for r in batch]
        clock.now += 0.05
        if awaiting:  # the broker acknowledges the oldest message each tick
            window.acked(awaiting.pop(0))
    assert delivered == [str(r.id) for r in backlog]  # once each, in order
    assert len(sent_at) == 900 // 50
    # 4 messages/s with a one-second burst of 4: 18 messages take at least 3.5 s
    assert sent_at[-1] - sent_at[0] >= (18 - 4) / 4 - 0.01
    for start in sent_at:
        assert sum(1 for t in sent_at if start < t <= start + 1.0) <= 4
    assert window.readings_acked == 900


def test_a_refused_message_is_sent_again_without_duplicating_what_is_in_flight(
        tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.add_many([reading(n=n) for n in range(6)])
    clock = FakeClock()
    window = DrainWindow(box, batch_readings=2, max_inflight=10,
                         bucket=TokenBucket(rate=1000, clock=clock), refused_retry_s=5)
    batches = []
    for mid in (1, 2, 3):
        batch = window.next_batch()
        assert batch is not None
        window.sent(mid, batch)
        batches.append(batch)
    assert window.next_batch() is None
    window.refused(1)  # e.g. an MQTT 5 PUBACK "not authorized"
    clock.now += 4.9
    assert window.next_batch() is None  # no busy loop of refused messages
    clock.now += 0.2
    again = window.next_batch()
    assert again == batches[0]
    window.sent(4, again)
    assert window.next_batch() is None  # 2 and 3 are still in flight
    for mid in (2, 3, 4):
        window.acked(mid)
    assert box.depth == 0


def test_with_stored_acks_only_the_server_deletes_and_silence_means_send_again(
        tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    held = [reading(n=n) for n in range(4)]
    box.add_many(held)
    clock = FakeClock()
    window = DrainWindow(box, batch_readings=2, max_inflight=10,
                         bucket=TokenBucket(rate=1000, clock=clock), stored_ack_timeout_s=30)

    def send_all() -> list[str]:
        ids: list[str] = []
        mid = 100 + window.messages_acked
        while (batch := window.next_batch()) is not None:
            mid += 1
            window.sent(mid, batch)
            window.acked(mid)  # the broker's PUBACK
            ids += [orjson_id(r.payload) for r in batch]
        return ids

    assert send_all() == [str(r.id) for r in held]
    assert box.depth == 4  # a PUBACK alone deletes nothing
    box.delete_ids([str(held[0].id)])  # the server's stored-ack for one reading
    window.confirmed()
    clock.now += 29.9
    assert not window.resend_unconfirmed()
    clock.now += 0.2
    assert window.resend_unconfirmed()  # 30 s without a stored-ack for the rest
    assert send_all() == [str(r.id) for r in held[1:]]  # sent again, nothing else
    clock.now += 30.1
    assert not window.resend_unconfirmed()  # the server is still silent: wait doubles
    clock.now += 30.0
    assert window.resend_unconfirmed() and window.resends == 2
    send_all()
    box.delete_ids([str(r.id) for r in held[1:]])
    window.confirmed()
    clock.now += 30.1
    assert not window.resend_unconfirmed() and box.depth == 0


def test_live_readings_coalesce_within_the_latency_budget(tmp_path: Path) -> None:
    """A 1 Hz-like stream: a short batch waits up to coalesce_s for more readings to join
    it, never longer; a full batch goes at once (issue 12)."""
    box = Outbox(tmp_path / "o.db")
    clock = FakeClock()
    window = DrainWindow(box, batch_readings=5, max_inflight=10,
                         bucket=TokenBucket(rate=1000, clock=clock), coalesce_s=1.0)
    box.add_many([reading(n=0)])
    assert window.next_batch() is None          # first seen: held for company
    clock.now += 0.6
    box.add_many([reading(n=1)])
    assert window.next_batch() is None          # 0.6 s: still within the budget
    clock.now += 0.4
    batch = window.next_batch()                 # 1.0 s after the first was seen
    assert batch is not None and len(batch) == 2
    window.sent(1, batch)
    box.add_many([reading(n=n) for n in range(2, 7)])
    full = window.next_batch()                  # a full batch does not wait
    assert full is not None and len(full) == 5
    window.sent(2, full)
    assert window.next_batch() is None          # nothing left
    unbudgeted = DrainWindow(Outbox(tmp_path / "p.db"), batch_readings=5, max_inflight=10,
                             bucket=TokenBucket(rate=1000, clock=clock))
    unbudgeted.outbox.add_many([reading(n=9)])
    assert unbudgeted.next_batch() is not None  # coalesce_s 0: at once
