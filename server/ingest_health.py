"""The ingest's heartbeat: a row in ``ingest_heartbeat`` every few seconds.

A thread of its own with a connection of its own, so the row goes on beating
while the writer is stuck on a message, and says how long the ingest has held
its oldest message unacknowledged; ``/health`` reads it (the table's comment
in migration 0103 says how).  The same beat refreshes the digests of known
suspect messages (:class:`server.ingest_poison.SuspectBook`), so an ingest
recognises a message another ingest found refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

log = logging.getLogger("homeward.ingest")

#: Seconds between beats.  /health calls a beat older than 30 s a stopped ingest.
HEARTBEAT_EVERY_S = 5.0

UPSERT = """
INSERT INTO ingest_heartbeat AS h (client_id, heartbeat_at, oldest_held_since, held_messages,
                                   suspects, started_at, host, pid)
VALUES (%s, now(), %s, %s, %s, %s, %s, %s)
ON CONFLICT (client_id) DO UPDATE
   SET heartbeat_at = now(), oldest_held_since = excluded.oldest_held_since,
       held_messages = excluded.held_messages, suspects = excluded.suspects,
       started_at = excluded.started_at, stopped_at = NULL, host = excluded.host,
       pid = excluded.pid
"""

STOPPED = """
UPDATE ingest_heartbeat SET heartbeat_at = now(), stopped_at = now(), oldest_held_since = NULL,
       held_messages = 0 WHERE client_id = %s
"""


@dataclass(frozen=True)
class Holding:
    """What an ingest holds unacknowledged right now."""

    oldest_since: datetime | None
    messages: int
    suspects: int


class Heartbeat:
    """Beats every ``every`` seconds until :meth:`stop`; never raises into the ingest."""

    def __init__(self, url: str, client_id: str, holding: Callable[[], Holding],
                 on_beat: Callable[[psycopg.Connection[Any]], None] | None = None,
                 every: float = HEARTBEAT_EVERY_S) -> None:
        self.url = url
        self.client_id = client_id
        self.holding = holding
        self.on_beat = on_beat
        self.every = every
        self.started_at = datetime.now(UTC)
        self.beats = 0
        #: ``time.monotonic()`` of the last beat written (None: none yet); /healthz reads it.
        self.last_beat_at: float | None = None
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._thread = threading.Thread(target=self._run, name="homeward-ingest-heartbeat",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop beating and mark the row stopped (a clean stop is not a stall)."""
        self._stop.set()
        self._thread.join(timeout)
        with contextlib.suppress(psycopg.Error):
            conn = self._connection()
            conn.execute(STOPPED, (self.client_id,))
        self._close()

    def beat(self) -> None:
        """One beat (the thread calls it; tests may too)."""
        try:
            held = self.holding()
        except RuntimeError:  # a collection changed while read: next beat
            return
        conn = self._connection()
        conn.execute(UPSERT, (self.client_id, held.oldest_since, held.messages, held.suspects,
                              self.started_at, socket.gethostname(), os.getpid()))
        if self.on_beat is not None:
            self.on_beat(conn)
        self.beats += 1
        self.last_beat_at = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except psycopg.Error as err:
                log.debug("heartbeat failed (%s); next in %.0f s", err, self.every)
                self._close()
            except Exception:
                log.exception("heartbeat failed")
            self._stop.wait(self.every)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5,
                                         application_name="homeward-ingest-heartbeat")
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
