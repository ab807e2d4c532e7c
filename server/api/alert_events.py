"""One LISTEN connection per API process, fanned out to every live alert stream.

The alert engine NOTIFYs ``alert_event`` with a JSON payload on every alert
change.  Holding a PostgreSQL connection per browser tab exhausted
``max_connections`` at 185 streams, so a process holds one: ``AlertEvents``
opens it when the first stream subscribes, reads notifications in one task and
puts each payload on every subscriber's bounded queue.  A subscriber that
falls ``QUEUE_SIZE`` events behind is ended (its browser reconnects and
refreshes its whole list) rather than allowed to grow without bound.  When the
connection drops every stream is ended the same way, and the next subscriber
opens a new connection.

``subscribe`` also enforces the cap of streams per clinician (``StreamLimit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "alert_event"
#: Events a stream may fall behind before it is ended.
QUEUE_SIZE = 256
#: What a subscriber's queue yields when it fell behind and must end.
OVERFLOW = object()
APPLICATION_NAME = "homeward-api-events"


class StreamLimit(Exception):
    """This clinician already holds the most streams allowed."""


@dataclass(eq=False)
class Subscription:
    clinician_id: int
    queue: asyncio.Queue[object] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))


class AlertEvents:
    def __init__(self, database_url: str, *, per_clinician: int) -> None:
        self.database_url = database_url
        self.per_clinician = per_clinician
        self._subscribers: set[Subscription] = set()
        self._per_clinician: Counter[int] = Counter()
        self._reader: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def subscribe(self, clinician_id: int) -> Subscription:
        """A new stream's queue, once the LISTEN is in place (so no later event is missed).

        Raises ``StreamLimit`` when the clinician already holds ``per_clinician`` streams;
        a database that cannot be reached raises psycopg.OperationalError (503)."""
        if self._per_clinician[clinician_id] >= self.per_clinician:
            raise StreamLimit(f"at most {self.per_clinician} live streams per clinician")
        sub = Subscription(clinician_id)
        self._subscribers.add(sub)
        self._per_clinician[clinician_id] += 1
        try:
            await self._ensure_listening()
        except BaseException:
            self.unsubscribe(sub)
            raise
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.discard(sub)
            self._per_clinician[sub.clinician_id] -= 1
            if self._per_clinician[sub.clinician_id] <= 0:
                del self._per_clinician[sub.clinician_id]

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    async def _ensure_listening(self) -> None:
        async with self._start_lock:
            if self._reader is None or self._reader.done():
                conn = await self._connect()  # its error reaches this subscriber (503)
                self._reader = asyncio.create_task(self._read(conn), name="alert-events")

    async def _connect(self) -> psycopg.AsyncConnection[object]:
        conn: psycopg.AsyncConnection[object] = await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True, application_name=APPLICATION_NAME,
            connect_timeout=5)
        await conn.execute(f"LISTEN {CHANNEL}")
        return conn

    async def _read(self, conn: psycopg.AsyncConnection[object]) -> None:
        """Fan out until the connection drops; then end every stream (events may have
        been missed: each browser reconnects and refreshes) and stop, so the next
        subscriber connects afresh."""
        try:
            async for notify in conn.notifies():
                self._fan_out(notify.payload)
        except psycopg.OperationalError as err:
            log.warning("alert event connection lost: %s", err)
        except Exception:
            log.exception("alert event reader failed")
        finally:
            for sub in list(self._subscribers):
                self._end(sub)
            with contextlib.suppress(Exception):
                await conn.close()

    def _fan_out(self, payload: str) -> None:
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait(payload)
            except asyncio.QueueFull:
                self._end(sub)

    def _end(self, sub: Subscription) -> None:
        """Tell a stream to end: its next item is OVERFLOW."""
        self.unsubscribe(sub)
        with contextlib.suppress(asyncio.QueueEmpty):
            if sub.queue.full():
                sub.queue.get_nowait()
        sub.queue.put_nowait(OVERFLOW)
