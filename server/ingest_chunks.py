"""How many TimescaleDB chunks one transaction may touch, and splitting batches to fit.

Each chunk of ``reading`` a transaction inserts into costs locks until COMMIT,
and PostgreSQL's lock table is shared and fixed in size
(``max_locks_per_transaction x (max_connections + max_prepared_transactions)``
slots).  Measured on PostgreSQL 15.20 with TimescaleDB 2.28 (docs/ingest.md):
inserting into a chunk that already exists takes about 1 lock; creating a chunk
takes about 17 (the table, its 3 indexes, constraints, catalog rows).  A batch
of 5,000 readings on 5,000 distinct days asked for some 85,000 slots of a
12,800-slot table, failed with ``out of shared memory`` and stalled the ingest.

So the writer plans its transactions: at most :data:`MAX_CHUNKS_PER_TRANSACTION`
distinct chunk intervals each (32 x 17 = 544 slots when every one is new),
splitting a batch between messages, and a message that alone spans more chunks
into parts of at most that many.  A part carries a subset of the message's
COPY lines; the message is acknowledged once all its parts are committed
(a crash in between redelivers it, and the parts already stored are duplicates).

The planner knows nothing of the database; :func:`reading_chunk_interval` asks
it for the interval (None on plain PostgreSQL, where nothing is split).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from server.ingest_rows import Prepared

#: Distinct chunk intervals one ingest transaction may touch.  32 new chunks are
#: about 544 lock slots, 1% of the 51,200 of the private server (256 x 200) and
#: 4% of a default server's 12,800 (64 x 200); a live batch touches 1 or 2.
MAX_CHUNKS_PER_TRANSACTION = 32

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY = 86_400


def reading_chunk_interval(conn: psycopg.Connection[Any]) -> timedelta | None:
    """The chunk interval of ``reading``'s time dimension; None when it is no hypertable."""
    has = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    interval = None
    if has:
        row = conn.execute(
            "SELECT time_interval FROM timescaledb_information.dimensions"
            " WHERE hypertable_name = 'reading' AND column_name = 'taken_at'").fetchone()
        if row is not None and isinstance(row[0], timedelta):
            interval = row[0]
    conn.commit()
    return interval


def chunk_key(taken_at: bytes, interval_s: int) -> int:
    """The chunk a COPY ``taken_at`` field falls in.

    TimescaleDB aligns chunks on the Unix epoch and floors: chunk ``k`` holds
    ``[k x interval, (k + 1) x interval)`` in microseconds since 1970-01-01 UTC
    (src/dimension.c, calculate_open_range_default).  The ingest writes times
    in UTC (``+00:00``), so for a whole number of days the date alone decides.
    """
    if interval_s % _DAY == 0 and taken_at.endswith(b"+00:00"):
        days = date.fromisoformat(taken_at[:10].decode()).toordinal() - _EPOCH_ORDINAL
        return days // (interval_s // _DAY)
    when = datetime.fromisoformat(taken_at.decode())
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() // interval_s)


def line_keys(copy_data: bytes, interval_s: int) -> list[tuple[int, bytes]]:
    """Each COPY line of a message with the chunk its reading falls in."""
    out = []
    keys: dict[bytes, int] = {}
    for line in copy_data.split(b"\n"):
        if not line:
            continue
        stamp = line.split(b"\t", 2)[1]
        key = keys.get(stamp[:10])
        if key is None or not stamp.endswith(b"+00:00"):
            key = chunk_key(stamp, interval_s)
            if stamp.endswith(b"+00:00") and interval_s % _DAY == 0:
                keys[stamp[:10]] = key
        out.append((key, line))
    return out


@dataclass(slots=True, eq=False)
class Part:
    """What one transaction writes of one message: all of it, or some of its lines."""

    msg: Prepared
    rows: Prepared
    keys: frozenset[int] = field(default_factory=frozenset)
    done: bool = False


def split_message(msg: Prepared, interval_s: int | None,
                  cap: int = MAX_CHUNKS_PER_TRANSACTION) -> list[Part]:
    """``msg`` as parts spanning at most ``cap`` chunks each (one part, usually).

    The first part carries the message's quarantine rows and hub status, the
    others only readings.
    """
    if interval_s is None or not msg.copy_data:
        return [Part(msg, msg)]
    lines = line_keys(msg.copy_data, interval_s)
    keys = frozenset(k for k, _ in lines)
    if len(keys) <= cap:
        return [Part(msg, msg, keys)]
    by_key: dict[int, list[bytes]] = {}
    for key, line in lines:
        by_key.setdefault(key, []).append(line)
    ordered = sorted(by_key)
    parts = []
    for start in range(0, len(ordered), cap):
        chosen = ordered[start:start + cap]
        chunk_lines = [line for k in chosen for line in by_key[k]]
        first = start == 0
        rows = dataclasses.replace(
            msg, copy_data=b"\n".join(chunk_lines) + b"\n", readings=len(chunk_lines),
            quarantine=msg.quarantine if first else [], status=msg.status if first else None)
        parts.append(Part(msg, rows, frozenset(chosen)))
    return parts


def plan(parts: Sequence[Part], cap: int = MAX_CHUNKS_PER_TRANSACTION) -> list[list[Part]]:
    """Group parts, in order, into transactions touching at most ``cap`` chunks each."""
    groups: list[list[Part]] = []
    current: list[Part] = []
    touched: set[int] = set()
    for part in parts:
        if current and len(touched | part.keys) > cap:
            groups.append(current)
            current, touched = [], set()
        current.append(part)
        touched |= part.keys
    if current:
        groups.append(current)
    return groups
