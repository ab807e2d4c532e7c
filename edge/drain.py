"""What the publisher sends next: batches from the outbox within a rate and an in-flight bound.

Pure bookkeeping over an :class:`~edge.outbox.Outbox` and a clock, no MQTT,
so the draining policy is testable on its own:

- a batch is at most ``batch_readings`` readings, in insertion order;
- at most ``max_inflight`` messages await a PUBACK (paho itself silently
  stops accepting QoS 1 publishes at 65,535 in flight, DESIGN.md);
- messages leave at most at ``messages_per_second`` on average (a token
  bucket allowing a one-second burst), so a week's backlog after an outage
  reaches the server as a steady stream, not a flood.

A reading leaves the outbox only in :meth:`DrainWindow.acked`, i.e. after the
broker's PUBACK for the message that carried it, or, with stored-acks on, only
when the server confirms it stored (``Outbox.delete_ids``); a reading still
unconfirmed ``stored_ack_timeout_s`` after its PUBACK is sent again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from edge.outbox import Outbox, OutboxRow

Clock = Callable[[], float]

#: The longest wait before unconfirmed readings are sent again (stored-ack mode).
MAX_RESEND_WAIT_S = 3600.0


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst`` (default: one second's worth)."""

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Clock = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        self.clock = clock
        self._tokens = self.capacity
        self._last = clock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def try_take(self) -> bool:
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_time(self) -> float:
        """Seconds until a token is available (0 when one is)."""
        self._refill()
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate


class DrainWindow:
    """The in-flight messages and the outbox cursor of one publisher connection."""

    def __init__(self, outbox: Outbox, *, batch_readings: int, max_inflight: int,
                 bucket: TokenBucket, refused_retry_s: float = 5.0,
                 stored_ack_timeout_s: float | None = None, coalesce_s: float = 0.0) -> None:
        self.outbox = outbox
        #: A batch short of ``batch_readings`` waits up to this long from when it was first
        #: seen for more readings to join it: a live stream (a 1 Hz oximeter, several
        #: devices) goes out a few readings a message instead of one, which costs the
        #: ingest far less per reading; a full batch, or a backlog, goes at once.
        self.coalesce_s = coalesce_s
        self._partial: tuple[int, float] | None = None  # (first seq, first seen) held back
        #: None: a PUBACK deletes.  A number: a PUBACK only starts this clock, the
        #: server's stored-ack deletes, and what is still held when it runs out is
        #: sent again.
        self.stored_ack_timeout_s = stored_ack_timeout_s
        self._awaiting_store: deque[tuple[float, int]] = deque()  # (PUBACK time, max seq)
        #: The wait before a resend doubles after each resend that no stored-ack
        #: follows (the server is down: don't re-queue the backlog every 30 s at
        #: the broker), up to this cap; any stored-ack brings it back.
        self._resend_wait = stored_ack_timeout_s
        self.resends = 0
        self.batch_readings = batch_readings
        self.max_inflight = max_inflight
        self.bucket = bucket
        self.refused_retry_s = refused_retry_s
        self._hold_until = float("-inf")  # after a refusal, pause before sending again
        self.cursor = 0  # highest seq handed to the publisher
        self.inflight: dict[int, list[int]] = {}  # mid -> outbox seqs
        self._inflight_seqs: set[int] = set()
        self._rewound_below = 0  # while cursor < this, skip in-flight seqs
        self.messages_acked = 0
        self.readings_acked = 0

    def next_batch(self) -> list[OutboxRow] | None:
        """The next batch to publish, or None (nothing new, window full, or rate reached)."""
        if len(self.inflight) >= self.max_inflight or self.bucket.wait_time() > 0:
            return None
        if self._hold_until > self.bucket.clock():
            return None
        limit = self.batch_readings
        skipping = self.cursor < self._rewound_below  # after a rewind: skip what is in flight
        if skipping:
            limit += len(self._inflight_seqs)
        rows = self.outbox.after(self.cursor, limit)
        if skipping:
            rows = [r for r in rows if r.seq not in self._inflight_seqs][: self.batch_readings]
        if not rows:
            return None
        if self.coalesce_s > 0 and len(rows) < self.batch_readings:
            now = self.bucket.clock()
            if self._partial is None or self._partial[0] != rows[0].seq:
                self._partial = (rows[0].seq, now)
            if now - self._partial[1] < self.coalesce_s:
                return None  # let more readings join it, within the latency budget
        self._partial = None
        self.bucket.try_take()
        return rows

    def sent(self, mid: int, rows: list[OutboxRow]) -> None:
        """Record that message ``mid`` carries ``rows`` (call before its PUBACK can be handled)."""
        seqs = [r.seq for r in rows]
        self.inflight[mid] = seqs
        self._inflight_seqs.update(seqs)
        self.cursor = max(self.cursor, seqs[-1])

    def acked(self, mid: int) -> int:
        """The broker acknowledged ``mid``: delete its readings (unless they wait for the
        server's stored-ack); returns how many were deleted."""
        seqs = self.inflight.pop(mid, None)
        if seqs is None:
            return 0
        self._inflight_seqs.difference_update(seqs)
        self.messages_acked += 1
        self.readings_acked += len(seqs)
        if self.stored_ack_timeout_s is not None:
            self._awaiting_store.append((self.bucket.clock(), max(seqs)))
            return 0
        return self.outbox.delete(seqs)

    def resend_unconfirmed(self) -> bool:
        """Stored-ack mode: when a batch PUBACKed ``stored_ack_timeout_s`` ago still has
        readings in the outbox (the server never confirmed them: a broker crash lost
        them, say), rewind so that everything held is sent again.  Returns True then.
        """
        if self._resend_wait is None or not self._awaiting_store:
            return False
        deadline = self.bucket.clock() - self._resend_wait
        expired_upto = 0
        while self._awaiting_store and self._awaiting_store[0][0] <= deadline:
            expired_upto = max(expired_upto, self._awaiting_store.popleft()[1])
        oldest = self.outbox.oldest_seq() if expired_upto else None
        if oldest is None or oldest > expired_upto:
            return False
        self._awaiting_store.clear()  # all of it goes again; the server is idempotent
        self.rewind()
        self.resends += 1
        self._resend_wait = min(self._resend_wait * 2, MAX_RESEND_WAIT_S)
        return True

    def confirmed(self) -> None:
        """A stored-ack arrived: the server is storing again; resend waits start over."""
        self._resend_wait = self.stored_ack_timeout_s

    def refused(self, mid: int) -> None:
        """The broker refused ``mid`` (an MQTT 5 PUBACK error): keep its readings.

        They are sent again after ``refused_retry_s`` (a misconfigured ACL must not
        turn into a busy loop of refused messages).
        """
        seqs = self.inflight.pop(mid, None)
        if seqs is not None:
            self._inflight_seqs.difference_update(seqs)
            self.rewind()
            self._hold_until = self.bucket.clock() + self.refused_retry_s

    def rewind(self) -> None:
        """Start again from the oldest reading held (what is in flight is skipped)."""
        self._rewound_below = max(self._inflight_seqs, default=0)
        self.cursor = 0

    def forget_inflight(self) -> None:
        """A new client session: nothing is in flight any more; resend from the outbox."""
        self.inflight.clear()
        self._inflight_seqs.clear()
        self._rewound_below = 0
        self.cursor = 0
