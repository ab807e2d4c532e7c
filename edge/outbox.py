"""The hub's durable outbox: a reading is on disk before anything else happens to it.

SQLite in WAL mode.  :meth:`Outbox.add` commits one reading in its own
transaction and returns only then; the publisher deletes it only after the
broker's PUBACK (``edge/publisher.py``).  What a commit survives depends on
``PRAGMA synchronous`` (https://www.sqlite.org/pragma.html#pragma_synchronous,
https://www.sqlite.org/wal.html):

- ``FULL`` (the default here): the WAL file is fsynced at every commit, so a
  committed reading survives a SIGKILL of the agent *and* a power cut or
  kernel crash.
- ``NORMAL``: the WAL is fsynced only at checkpoints.  A commit still survives
  a SIGKILL of the agent (the bytes are in the operating system's page cache),
  and the database is never corrupted, but the last commits before a power
  cut may roll back.

Bounded: at ``max_readings`` new readings are *refused* with
:class:`OutboxFull` (never a silent drop, never eviction).  The devices keep
their own stored records and the collector fetches them again with RACP from
the last delivered sequence, so refusing the newest is safer than evicting the
oldest, which no device can resend.  ``nearly_full`` turns on from
``nearly_full_ratio`` of the maximum and is published in the hub's status.

The outbox also keeps small key-value state: the RACP last-delivered sequence
per device (:meth:`get_last_sequence` / :meth:`set_last_sequence`) and free
strings (:meth:`get_state` / :meth:`set_state`).

One ``Outbox`` object is shared by the agent's threads; a lock serialises
access to its single connection.  Every SQL statement is in
``edge/outbox_sql.py``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple

import orjson

from edge import outbox_sql as sql
from homeward.wire import Reading

log = logging.getLogger(__name__)

Synchronous = Literal["FULL", "NORMAL"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class OutboxFull(RuntimeError):
    """The outbox holds its maximum; the reading was not stored (the caller logs it)."""


class OutboxRow(NamedTuple):
    seq: int
    payload: bytes  # the reading's wire JSON object


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    depth: int
    capacity: int
    nearly_full: bool
    full: bool
    refused: int  # readings refused since this process opened the outbox


def encode_payload(reading: Reading) -> bytes:
    """The reading's wire object, as :func:`homeward.wire.encode_readings` writes it."""
    return orjson.dumps(reading.to_wire())


def join_batch(payloads: Iterable[bytes]) -> bytes:
    """A JSON array of already-encoded reading objects (equal to ``encode_readings``)."""
    return b"[" + b",".join(payloads) + b"]"


def _micros(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class Outbox:
    """Readings awaiting the broker's PUBACK, in insertion order, on disk."""

    def __init__(
        self,
        path: Path | str,
        *,
        max_readings: int = 1_000_000,
        nearly_full_ratio: float = 0.9,
        synchronous: Synchronous = "FULL",
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_readings = max_readings
        self.nearly_full_at = max(1, int(max_readings * nearly_full_ratio))
        self.synchronous: Synchronous = synchronous
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                     timeout=10.0)
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"{self.path}: SQLite refused WAL mode (got {mode})")
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        for statement in sql.SCHEMA:
            self._conn.execute(statement)
        self._depth: int = self._conn.execute(sql.COUNT_READINGS).fetchone()[0]
        self._refused = 0

    # -- readings -------------------------------------------------------------------------

    def add(self, reading: Reading, *, sequence: tuple[str, int] | None = None) -> bool:
        """Store one reading durably; returns False when its id was already stored.

        ``sequence`` (device address, RACP sequence number) is recorded in the
        same transaction, so a record is never both stored and fetched again.
        Raises :class:`OutboxFull` at the maximum.
        """
        return self.add_many([reading], sequence=sequence) == 1

    def add_many(self, readings: Sequence[Reading], *,
                 sequence: tuple[str, int] | None = None) -> int:
        """Store readings in one transaction (all or none); returns how many were new."""
        rows = [(str(r.id), r.device, _micros(r.taken_at), encode_payload(r)) for r in readings]
        with self._lock:
            if self._depth + len(rows) > self.max_readings:
                self._refused += len(rows)
                raise OutboxFull(
                    f"outbox {self.path} holds {self._depth} of {self.max_readings} readings; "
                    f"refused {len(rows)} (refused so far: {self._refused}); the device keeps "
                    "its stored records for a later RACP fetch")
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                before = self._conn.total_changes
                self._conn.executemany(sql.INSERT_READING, rows)
                added = self._conn.total_changes - before
                if sequence is not None:
                    self._conn.execute(sql.SET_LAST_SEQUENCE, sequence)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._depth += added
            return added

    def after(self, seq: int, limit: int) -> list[OutboxRow]:
        """Up to ``limit`` readings inserted after ``seq``, oldest first."""
        with self._lock:
            return [OutboxRow(s, bytes(p)) for s, p in
                    self._conn.execute(sql.READINGS_AFTER, (seq, limit))]

    def delete(self, seqs: Iterable[int]) -> int:
        """Remove acknowledged readings; returns how many were there."""
        return self._delete(sql.DELETE_READING, [(s,) for s in seqs])

    def delete_ids(self, ids: Iterable[str]) -> int:
        """Remove readings the server confirmed stored, by reading id."""
        return self._delete(sql.DELETE_READING_BY_ID, [(i,) for i in ids])

    def oldest_seq(self) -> int | None:
        """The insertion number of the oldest reading held, or None when empty."""
        with self._lock:
            row = self._conn.execute(sql.OLDEST_SEQ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _delete(self, statement: str, params: list[tuple[int] | tuple[str]]) -> int:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                before = self._conn.total_changes
                self._conn.executemany(statement, params)
                deleted = self._conn.total_changes - before
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._depth -= deleted
            return deleted

    def reading_ids(self) -> list[str]:
        """Ids of every reading held, in insertion order (for tests and diagnostics)."""
        with self._lock:
            return [r[0] for r in self._conn.execute(sql.ALL_READING_IDS)]

    @property
    def depth(self) -> int:
        return self._depth

    def status(self) -> OutboxStatus:
        depth = self._depth
        return OutboxStatus(depth=depth, capacity=self.max_readings,
                            nearly_full=depth >= self.nearly_full_at,
                            full=depth >= self.max_readings, refused=self._refused)

    # -- key-value state ------------------------------------------------------------------

    def get_last_sequence(self, address: str) -> int | None:
        """The RACP sequence number of the last record stored from ``address``."""
        with self._lock:
            row = self._conn.execute(sql.GET_LAST_SEQUENCE, (address,)).fetchone()
        return None if row is None else int(row[0])

    def set_last_sequence(self, address: str, seq: int) -> None:
        with self._lock:
            self._conn.execute(sql.SET_LAST_SEQUENCE, (address, seq))

    def get_state(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute(sql.GET_STATE, (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str | None) -> None:
        with self._lock:
            if value is None:
                self._conn.execute(sql.DELETE_STATE, (key,))
            else:
                self._conn.execute(sql.SET_STATE, (key, value))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
