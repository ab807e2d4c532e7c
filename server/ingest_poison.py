"""Poison-message isolation: a message the database refuses cannot stop the ingest.

The :class:`Settler` writes what the ingest received, transaction by
transaction (:func:`server.ingest_chunks.plan`), and settles every message:
stored (or quarantined by validation) and acknowledged, or, when the
database refuses it, quarantined whole after a bounded number of tries and
acknowledged all the same.  An outage (:mod:`server.ingest_failures`) is the
one thing it waits out, holding everything.

When a transaction is refused it is split in two, and again, so the messages
that store are stored at once and the culprit ends up alone.  A culprit is
set aside (the *held* lane, still unacknowledged) and retried alone later,
between the other batches, with back-off; nothing waits behind it.  Before
each try alone its attempt is counted in ``ingest_suspect`` by the digest of
its topic and payload, in a transaction of its own that commits first, so a
try that kills the ingest counts too, and a copy the broker delivers again
after a restart is recognised and set aside at once (or, at the limit,
quarantined without a try).  A failure that is not plainly about the message
(:data:`Failure.UNSURE`: a deadlock, a timeout, a missing privilege) counts
only when the database has stored other work since the message last failed;
otherwise the database, not the message, is in trouble, and it is held.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from server.ingest_chunks import MAX_CHUNKS_PER_TRANSACTION, Part, plan, split_message
from server.ingest_failures import Failure, classify_error, describe
from server.ingest_rows import Prepared
from server.ingest_writer import BatchResult, BatchWriter

log = logging.getLogger("homeward.ingest")

#: Tries of a message alone before it is quarantined.
ATTEMPT_LIMIT = 3
#: Wait before the first retry of a set-aside message, and the cap (seconds).
RETRY_FIRST = 0.5
RETRY_MAX = 30.0
#: A suspect's row is kept this long after its last try: a day more than the
#: ingest's MQTT session expiry (server.ingest.SESSION_EXPIRY_SECONDS).
FORGET_AFTER_S = 8 * 24 * 3600


def digest(msg: Prepared) -> bytes:
    """What recognises a message again: sha256 of its topic, a NUL, its payload."""
    return hashlib.sha256(msg.topic.encode() + b"\0" + msg.payload).digest()



def correlation(msg: Prepared, key: bytes | None = None) -> dict[str, Any]:
    """Fields that tie a log line to the message (hub, MQTT id, digest, first reading ids)."""
    return {"hub": msg.hub, "mqtt_mid": msg.mid, "digest": key.hex()[:16] if key else None,
            "reading_ids": msg.ids[:5] or None}


class SuspectBook:
    """``ingest_suspect``: attempts per message digest, each committed on its own."""

    def __init__(self) -> None:
        #: Digests known to the table (refreshed from it by the heartbeat).
        self.known: frozenset[bytes] = frozenset()

    def refresh(self, conn: psycopg.Connection[Any]) -> None:
        """Reload the known digests (``conn`` in autocommit); forget rows older than
        the broker's session expiry, past which no copy can be delivered again."""
        conn.execute("DELETE FROM ingest_suspect WHERE coalesce(last_tried_at, first_seen_at)"
                     " < now() - %s * interval '1 second'", (FORGET_AFTER_S,))
        rows = conn.execute("SELECT digest FROM ingest_suspect").fetchall()
        self.known = frozenset(bytes(r[0]) for r in rows)

    @staticmethod
    def lookup(conn: psycopg.Connection[Any], key: bytes) -> tuple[int, bool]:
        """(attempts so far, already quarantined)."""
        row = conn.execute("SELECT attempts, quarantined_at IS NOT NULL FROM ingest_suspect"
                           " WHERE digest = %s", (key,)).fetchone()
        conn.commit()
        return (int(row[0]), bool(row[1])) if row else (0, False)

    def begin_attempt(self, conn: psycopg.Connection[Any], key: bytes, topic: str) -> int:
        """Count one more try alone and COMMIT it before the try; the attempts now."""
        row = conn.execute(
            "INSERT INTO ingest_suspect AS s (digest, topic, attempts, last_tried_at)"
            " VALUES (%s, %s, 1, now())"
            " ON CONFLICT (digest) DO UPDATE SET attempts = s.attempts + 1,"
            " last_tried_at = now() RETURNING attempts", (key, topic)).fetchone()
        conn.commit()
        self.known = self.known | {key}
        return int(row[0]) if row else 1

    @staticmethod
    def record_failure(conn: psycopg.Connection[Any], key: bytes, err: BaseException) -> None:
        conn.execute("UPDATE ingest_suspect SET sqlstate = %s, last_error = %s"
                     " WHERE digest = %s",
                     (getattr(err, "sqlstate", None), describe(err), key))
        conn.commit()

    @staticmethod
    def mark_quarantined(conn: psycopg.Connection[Any], key: bytes, topic: str) -> None:
        conn.execute("INSERT INTO ingest_suspect AS s (digest, topic, quarantined_at)"
                     " VALUES (%s, %s, now()) ON CONFLICT (digest) DO UPDATE"
                     " SET quarantined_at = now()", (key, topic))
        conn.commit()

    def forget(self, conn: psycopg.Connection[Any], key: bytes) -> None:
        conn.execute("DELETE FROM ingest_suspect WHERE digest = %s", (key,))
        conn.commit()
        self.known = self.known - {key}


@dataclass(slots=True, eq=False)
class Held:
    """A message set aside after the database refused it; retried alone at ``due``."""

    key: bytes
    copies: list[Prepared]  # the message, and copies redelivered meanwhile
    parts: list[Part]
    due: float
    kind: Failure = Failure.REFUSAL
    error: BaseException | None = None
    #: The settler's commit count when it last failed (UNSURE needs progress since).
    commits_then: int = -1
    tries: int = 0

    @property
    def msg(self) -> Prepared:
        return self.copies[0]


@dataclass
class SettlerStats:
    refusals: int = 0  # transactions the database refused (not outages)
    set_aside: int = 0  # messages set aside as suspects
    tries_alone: int = 0
    poison_quarantined: int = 0  # messages quarantined whole after their tries
    recognised: int = 0  # redelivered suspects recognised by digest


@dataclass
class Settler:
    """Writes batches as transactions, isolates refused messages; see the module doc.

    ``writer`` returns the connected :class:`BatchWriter` (raising a psycopg
    error when the database cannot be reached), ``ack`` acknowledges settled
    messages, ``on_result`` sees each committed transaction.
    """

    writer: Callable[[], BatchWriter]
    ack: Callable[[list[Prepared]], None]
    on_result: Callable[[BatchResult], None]
    book: SuspectBook = field(default_factory=SuspectBook)
    attempt_limit: int = ATTEMPT_LIMIT
    retry_first: float = RETRY_FIRST
    retry_max: float = RETRY_MAX
    chunk_cap: int = MAX_CHUNKS_PER_TRANSACTION
    #: Seconds of ``reading``'s chunk interval (None: no hypertable, nothing split).
    chunk_interval_s: int | None = None
    stats: SettlerStats = field(default_factory=SettlerStats)
    #: The error of the outage that stopped :meth:`drain`, for the caller's log.
    last_outage: BaseException | None = None
    commits: int = 0
    _queue: list[list[Part]] = field(default_factory=list)
    _open: dict[int, list[Part]] = field(default_factory=dict)
    _held: dict[bytes, Held] = field(default_factory=dict)

    # -- what is in hand ---------------------------------------------------------
    def add(self, batch: Iterable[Prepared], *, first: bool = False) -> None:
        """Take a batch: recognise known suspects, plan the rest into transactions.

        ``first`` puts them before what is still queued (the parts of a long
        backlog), so that live readings do not wait for a backlog to drain.
        """
        parts: list[Part] = []
        known = self.book.known
        for msg in batch:
            if known or self._held:
                key = digest(msg)
                if key in self._held:
                    self._held[key].copies.append(msg)
                    continue
                if key in known:
                    self.stats.recognised += 1
                    log.warning("message on %s (%d bytes) was refused before; trying it "
                                "alone, apart from the other readings", msg.topic,
                                len(msg.payload), extra=correlation(msg, key))
                    self._set_aside_new(key, msg, split_message(msg, self.chunk_interval_s,
                                                                self.chunk_cap),
                                        due=time.monotonic(), recognised=True)
                    continue
            msg_parts = split_message(msg, self.chunk_interval_s, self.chunk_cap)
            self._open[id(msg)] = msg_parts
            parts.extend(msg_parts)
        groups = plan(parts, self.chunk_cap)
        if first:
            self._queue[0:0] = groups
        else:
            self._queue.extend(groups)

    def busy(self) -> bool:
        """Transactions are waiting to be written (after an outage)."""
        return bool(self._queue)

    def next_due(self) -> float | None:
        """Seconds until a set-aside message is due for a retry (None: none is held)."""
        if not self._held:
            return None
        return max(0.0, min(h.due for h in self._held.values()) - time.monotonic())

    def held(self) -> list[Prepared]:
        """The messages in hand and not yet acknowledged (queued or set aside)."""
        out = [h.msg for h in list(self._held.values())]
        out += [parts[0].msg for parts in list(self._open.values()) if parts]
        return out

    def suspects(self) -> int:
        return len(self._held)

    # -- writing -------------------------------------------------------------------
    def drain(self, max_transactions: int | None = None) -> bool:
        """Write the queued transactions (at most ``max_transactions`` of them), then,
        once none is queued, the set-aside messages that are due.

        False when an outage stopped it (:attr:`last_outage`); call again later.
        """
        self.last_outage = None
        tried = 0
        while self._queue:
            if max_transactions is not None and tried >= max_transactions:
                return True
            tried += 1
            group = [p for p in self._queue[0] if not p.done]
            if not group:
                self._queue.pop(0)
                continue
            err = self._write(group)
            if err is None:
                self._queue.pop(0)
                continue
            kind = classify_error(err, self._conn())
            if kind is Failure.OUTAGE:
                self.last_outage = err
                return False
            self.stats.refusals += 1
            if len(group) > 1:
                mid = len(group) // 2
                log.warning("the database refused a transaction of %d part(s) (%s: %s); "
                            "splitting it", len(group), kind, describe(err))
                self._queue[0:1] = [group[:mid], group[mid:]]
                continue
            self._queue.pop(0)
            self._set_aside(group[0], err, kind)
        return self._retry_due()

    def _conn(self) -> psycopg.Connection[Any] | None:
        try:
            return self.writer().conn
        except psycopg.Error:
            return None

    def _write(self, group: list[Part]) -> BaseException | None:
        """One transaction; marks its parts done and acks finished messages."""
        try:
            writer = self.writer()
            result = writer.write([p.rows for p in group])
        except Exception as err:  # psycopg's, or a bug some content triggers: not fatal
            if not isinstance(err, psycopg.Error):
                log.exception("writing a transaction failed")
            return err
        self.commits += 1
        self.on_result(result)
        finished = []
        for part in group:
            part.done = True
            parts = self._open.get(id(part.msg))
            if parts is not None and all(p.done for p in parts):
                del self._open[id(part.msg)]
                finished.append(part.msg)
        if finished:
            self.ack(finished)
        return None

    # -- suspects ------------------------------------------------------------------
    def _set_aside(self, part: Part, err: BaseException, kind: Failure) -> None:
        msg = part.msg
        key = digest(msg)
        parts = self._open.pop(id(msg), [part])
        held = self._held.get(key)
        if held is None:
            held = self._set_aside_new(key, msg, parts, due=time.monotonic() + self.retry_first)
        held.kind, held.error, held.commits_then = kind, err, self.commits
        log.warning("the database refused a message on %s (%s: %s); set aside to retry "
                    "alone, the other readings go on", msg.topic, kind, describe(err),
                    extra=correlation(msg, key))

    def _set_aside_new(self, key: bytes, msg: Prepared, parts: list[Part], *, due: float,
                       recognised: bool = False) -> Held:
        held = Held(key, [msg], parts, due, commits_then=-1 if recognised else self.commits)
        self._held[key] = held
        self.stats.set_aside += 1
        return held

    def _retry_due(self) -> bool:
        now = time.monotonic()
        for held in sorted(self._held.values(), key=lambda h: h.due):
            if held.due > now:
                break
            if not self._retry(held):
                return False
        return True

    def _retry(self, held: Held) -> bool:
        """Try a set-aside message alone; False on an outage (it stays held)."""
        if held.kind is Failure.UNSURE and self.commits == held.commits_then:
            # Nothing else stored since it failed: no evidence it is the message.
            held.due = time.monotonic() + self._backoff(held.tries + 1)
            return True
        try:
            conn = self.writer().conn
            attempts, quarantined = self.book.lookup(conn, held.key)
            if quarantined:  # quarantined before; this is a copy the broker redelivered
                self._finish(held)
                return True
            if attempts >= self.attempt_limit:
                return self._quarantine(held, attempts)
            attempts = self.book.begin_attempt(conn, held.key, held.msg.topic)
        except psycopg.Error as err:
            # Even the bookkeeping failed: the database cannot take work. Hold.
            self.last_outage = err
            held.due = time.monotonic() + self._backoff(held.tries + 1)
            return False
        held.tries += 1
        self.stats.tries_alone += 1
        for part in held.parts:
            if part.done:
                continue
            failed = self._write_alone(part)
            if failed is None:
                continue
            kind = classify_error(failed, self._conn())
            if kind is Failure.OUTAGE:
                self.last_outage = failed
                held.due = time.monotonic()
                return False
            with_evidence = kind is not Failure.UNSURE or self.commits != held.commits_then
            held.kind, held.error, held.commits_then = kind, failed, self.commits
            try:
                self.book.record_failure(self.writer().conn, held.key, failed)
            except psycopg.Error as book_err:
                self.last_outage = book_err
                return False
            if with_evidence and attempts >= self.attempt_limit:
                return self._quarantine(held, attempts)
            held.due = time.monotonic() + self._backoff(held.tries)
            log.warning("message on %s refused alone (attempt %d of %d: %s); retrying in "
                        "%.1f s", held.msg.topic, attempts, self.attempt_limit, describe(failed),
                        held.due - time.monotonic(), extra=correlation(held.msg, held.key))
            return True
        # Every part stored after all.
        with contextlib.suppress(psycopg.Error):  # a stale row costs a later copy a detour
            self.book.forget(self.writer().conn, held.key)
        self._finish(held)
        return True

    def _write_alone(self, part: Part) -> BaseException | None:
        try:
            result = self.writer().write([part.rows])
        except Exception as err:
            if not isinstance(err, psycopg.Error):
                log.exception("writing a message alone failed")
            return err
        part.done = True
        self.commits += 1
        self.on_result(result)
        return None

    def _backoff(self, tries: int) -> float:
        return float(min(self.retry_first * 2 ** max(tries - 1, 0), self.retry_max))

    def _quarantine(self, held: Held, attempts: int) -> bool:
        """Quarantine the whole message with the reason; ack it.  False on an outage."""
        msg = held.msg
        cause = describe(held.error) if held.error is not None else "refused before a restart"
        stored = sum(1 for p in held.parts if p.done)
        reason = (f"the database refused this message {attempts} time(s) alone ({cause}); "
                  "quarantined whole so that other readings are not held behind it")
        if stored:
            reason += f" ({stored} of its {len(held.parts)} parts were stored before)"
        rows: list[tuple[datetime, str | None, str, int | None, str, str | None,
                         bytes | None]] = [
            (msg.received_at, msg.hub, msg.topic, None, reason, None, msg.payload),
            (msg.received_at, msg.hub, msg.topic, None, reason + " [payload not kept]",
             None, None),
        ]
        last: BaseException | None = None
        for row in rows:
            only = dataclasses.replace(msg, copy_data=b"", readings=0, status=None,
                                       quarantine=[row])
            try:
                result = self.writer().write([only])
            except psycopg.Error as err:
                last = err
                if classify_error(err, self._conn()) is Failure.OUTAGE:
                    break
                continue
            self.commits += 1
            self.on_result(result)
            with contextlib.suppress(psycopg.Error):  # else a copy is quarantined again
                self.book.mark_quarantined(self.writer().conn, held.key, msg.topic)
            self.stats.poison_quarantined += 1
            log.error("quarantined a message on %s (%d bytes) after %d tries alone: %s",
                      msg.topic, len(msg.payload), attempts, cause,
                      extra=correlation(msg, held.key))
            self._finish(held)
            return True
        self.last_outage = last
        held.due = time.monotonic() + self._backoff(held.tries + 1)
        return False

    def _finish(self, held: Held) -> None:
        self._held.pop(held.key, None)
        for part in held.parts:
            part.done = True  # parts still queued elsewhere are skipped
        self.ack(held.copies)
