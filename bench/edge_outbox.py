"""Durable outbox throughput (``homeward bench edge``): readings/s with synchronous FULL and NORMAL.

Three figures per mode, each on a fresh database in ``folder``:

- ``add_1``: one reading per transaction, the agent's contract (a reading is
  committed before the collector hears back), i.e. one WAL fsync per reading
  with FULL;
- ``add_100``: 100 readings per transaction (what a batched writer would get);
- ``drain``: reading batches of 500 and deleting them, as the publisher does
  after each PUBACK.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.outbox import Outbox, Synchronous
from homeward.kinds import Kind
from homeward.wire import Reading

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def _readings(count: int) -> list[Reading]:
    return [Reading(id=uuid.uuid4(), kind=Kind.SPO2, taken_at=T0 + timedelta(seconds=n),
                    device="AA:00:00:00:00:01", values={"spo2": 97, "pulse_rate": 72},
                    raw="1c61004800000000000034f0") for n in range(count)]


def measure_outbox_rate(synchronous: Synchronous, *, seconds: float = 2.0,
                        folder: Path | None = None) -> dict[str, float]:
    """Readings/s of the three operations for one ``synchronous`` mode."""
    with tempfile.TemporaryDirectory(dir=folder, prefix="outbox-bench-") as tmp:
        box = Outbox(Path(tmp) / "outbox.db", max_readings=10_000_000, synchronous=synchronous)
        pool = _readings(2000)
        # one per transaction, for about `seconds`
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for reading in pool[:100]:
                box.add(reading.model_copy(update={"id": uuid.uuid4()}))
            count += 100
        add_1 = count / (time.perf_counter() - start)
        # 100 per transaction
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            batch = [r.model_copy(update={"id": uuid.uuid4()}) for r in pool[:100]]
            box.add_many(batch)
            count += 100
        add_100 = count / (time.perf_counter() - start)
        # drain everything in batches of 500
        held, start, cursor = box.depth, time.perf_counter(), 0
        while rows := box.after(cursor, 500):
            cursor = rows[-1].seq
            box.delete(r.seq for r in rows)
        drain = held / (time.perf_counter() - start)
        box.close()
    return {"add_1": add_1, "add_100": add_100, "drain": drain}
