"""Writing a batch of prepared MQTT messages to PostgreSQL in one transaction.

Per batch: COPY every reading line into a temporary staging table, then one
statement that claims each reading's id in ``reading_identity`` (the id alone
is the idempotency key), stores the readings whose id it claimed in
``reading``, attributing each to the patient enrolled on its hub at
``taken_at``, and feeds them (never duplicates) to ``evaluation_queue``.  When
some ids were already claimed, a second statement (a fresh snapshot, so it sees
what a concurrent ingest committed) tells duplicates (same time, same digest:
nothing to do) from conflicts (another time or other content), which are
quarantined with both versions.  Quarantine rows (within each hub's hourly
quota, see :class:`QuarantineQuota`) and hub status updates go in the same
transaction, then ``NOTIFY evaluation_queue`` and COMMIT.  The caller
acknowledges the MQTT messages only after :meth:`BatchWriter.write` returns.

Readings whose hub has no enrolment at ``taken_at`` (a hub not yet enrolled,
or unknown to the server) are stored with ``patient_id`` NULL rather than
quarantined: the broker authenticated the hub, the reading is valid, and it
can be attributed later (``server.admin.enrol`` back-fills it).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from homeward.wire import format_time, readings_topic
from server.ingest_rows import STAGE_COLUMNS, Prepared, QuarantineRow

CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS reading_stage (
    id uuid NOT NULL, taken_at timestamptz NOT NULL, kind text NOT NULL, hub_id text NOT NULL,
    device text NOT NULL, "values" jsonb NOT NULL, flags text[] NOT NULL, raw text,
    received_at timestamptz NOT NULL, digest bytea NOT NULL
) ON COMMIT DELETE ROWS
"""

COPY_STAGE = ("COPY reading_stage ("
              + ", ".join(f'"{c}"' if c == "values" else c for c in STAGE_COLUMNS)
              + ") FROM STDIN")

# ``claimed`` holds the ids this statement claimed, each with the time and digest
# of the version that claimed it (the first staged: DO NOTHING skips the later
# rows of the same id); only those versions are stored, so a second version in
# the same batch is a conflict like any other.  ON CONFLICT DO NOTHING on reading
# stores an exact copy staged twice once, and skips a reading stored before
# reading_identity existed by an older ingest.
# The enrolment join is a plain LEFT JOIN (a hash join over the small enrolment
# table) rather than a LATERAL lookup per row; server.admin.enrol keeps a hub's
# enrolments from overlapping, so at most one matches.  committed_at is the
# statement's start, a few milliseconds before the COMMIT itself.
INSERT_READINGS = """
WITH claimed AS (
    INSERT INTO reading_identity (id, taken_at, digest)
    SELECT id, taken_at, digest FROM reading_stage
    ON CONFLICT (id) DO NOTHING
    RETURNING id, taken_at, digest
), stored AS (
    INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values", flags, raw,
                         received_at, committed_at)
    SELECT s.id, s.taken_at, s.kind, s.hub_id, e.patient_id, s.device, s."values", s.flags,
           s.raw, s.received_at, statement_timestamp()
      FROM reading_stage s
      JOIN claimed c ON c.id = s.id AND c.taken_at = s.taken_at AND c.digest = s.digest
      LEFT JOIN enrolment e
        ON e.hub_id = s.hub_id AND e.valid_from <= s.taken_at
       AND (e.valid_to IS NULL OR s.taken_at < e.valid_to)
    ON CONFLICT DO NOTHING
    RETURNING id, taken_at, patient_id, kind
), queued AS (
    INSERT INTO evaluation_queue (reading_id, taken_at, patient_id, kind)
    SELECT id, taken_at, patient_id, kind FROM stored ORDER BY taken_at
)
SELECT count(*) FROM stored
"""

# Staged readings whose id is held by another version: another taken_at, another
# digest, or (an id back-filled by migration 0102 without a digest) other content.
# Both versions come back as JSON for the quarantine item.
FIND_CONFLICTS = """
SELECT s.hub_id, s.received_at, s.id::text, s.taken_at, i.taken_at,
       jsonb_build_object('id', s.id, 'taken_at', s.taken_at, 'kind', s.kind,
                          'hub', s.hub_id, 'device', s.device, 'values', s."values",
                          'flags', s.flags, 'raw', s.raw)::text,
       (SELECT jsonb_build_object('id', r.id, 'taken_at', r.taken_at, 'kind', r.kind,
                                  'hub', r.hub_id, 'device', r.device, 'values', r."values",
                                  'flags', r.flags, 'raw', r.raw,
                                  'committed_at', r.committed_at)::text
          FROM reading r WHERE r.id = i.id AND r.taken_at = i.taken_at LIMIT 1)
  FROM reading_stage s
  JOIN reading_identity i ON i.id = s.id
 WHERE i.taken_at <> s.taken_at
    OR i.digest <> s.digest
    OR (i.digest IS NULL AND NOT EXISTS (
          SELECT 1 FROM reading r
           WHERE r.id = s.id AND r.taken_at = s.taken_at AND r.kind = s.kind
             AND r.hub_id = s.hub_id AND r.device = s.device AND r."values" = s."values"
             AND r.flags = s.flags AND r.raw IS NOT DISTINCT FROM s.raw))
 ORDER BY s.received_at, s.id
"""

INSERT_QUARANTINE = """
INSERT INTO quarantine (received_at, hub_id, topic, item_index, reason, item, payload)
VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s)
"""

COUNT_REJECTS = """
INSERT INTO quarantine_hourly AS q (hub_id, hour, rejects, bytes) VALUES (%s, %s, %s, %s)
ON CONFLICT (hub_id, hour) DO UPDATE
   SET rejects = q.rejects + excluded.rejects, bytes = q.bytes + excluded.bytes
RETURNING rejects, bytes
"""

COUNT_KEPT = "UPDATE quarantine_hourly SET kept = kept + %s WHERE hub_id = %s AND hour = %s"

# An offline status is merged over the last one (it keeps the last known devices and
# outbox depth); any other status replaces it.
UPDATE_HUB = """
UPDATE hub SET state = %(state)s,
       last_status = CASE WHEN %(state)s = 'offline'
                          THEN COALESCE(last_status, '{}'::jsonb) || %(status)s::jsonb
                          ELSE %(status)s::jsonb END,
       last_status_at = %(at)s, last_seen_at = GREATEST(last_seen_at, %(seen)s)
 WHERE id = %(hub)s
"""


@dataclass(frozen=True, slots=True)
class QuarantineQuota:
    """How much of one hub's rejects per hour the quarantine keeps in full.

    Within ``rows`` rejects and ``bytes`` of them an hour, every reject is kept
    as it came.  Beyond either, every reject is still counted (quarantine_hourly)
    but only 1 in ``sample_every`` is kept, cut to ``preview_bytes``: a hub
    that floods the quarantine cannot fill the disk or the listings.
    Settings: ``HOMEWARD_INGEST_QUARANTINE_PER_HUB_HOUR`` (1,000: a hub sends a
    few hundred readings a day, so a thousand rejects in an hour is a broken or
    hostile hub, and a thousand examples diagnose it), ``..._BYTES_PER_HUB_HOUR``
    (8 MiB: two of the largest payloads, 4 MiB, kept whole), and
    ``..._SAMPLE_EVERY`` (100).
    """

    rows: int = 1000
    bytes: int = 8 * 1024 * 1024
    sample_every: int = 100
    preview_bytes: int = 4096


DEFAULT_QUOTA = QuarantineQuota()


def _size(row: QuarantineRow) -> int:
    item, payload = row[5], row[6]
    return len(item) if item is not None else len(payload or b"")


def _hour(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def _sampled(row: QuarantineRow, quota: QuarantineQuota) -> QuarantineRow:
    """A reject beyond the quota, as kept: a bounded preview, the reason saying so."""
    received_at, hub, topic, index, reason, item, payload = row
    reason = (f"{reason} [over this hub's hourly quarantine quota: 1 in "
              f"{quota.sample_every} kept, as a preview]")
    if item is not None and len(item) > quota.preview_bytes:
        payload = item.encode()
        item = None
    if payload is not None:
        payload = payload[:quota.preview_bytes]
    return (received_at, hub, topic, index, reason, item, payload)


def within_quota(rows: Sequence[QuarantineRow], before: tuple[int, int],
                 quota: QuarantineQuota) -> list[QuarantineRow]:
    """The rows of one hub and hour to keep, given the rejects and bytes counted
    ``before`` them in that hour (pure: the caller counts and writes)."""
    count, size = before
    kept = []
    for row in rows:
        row_size = _size(row)
        if count < quota.rows and size + row_size <= quota.bytes:
            kept.append(row)
        elif count % quota.sample_every == 0:
            kept.append(_sampled(row, quota))
        count += 1
        size += row_size
    return kept


@dataclass(frozen=True, slots=True)
class BatchResult:
    messages: int
    readings: int  # valid readings offered
    stored: int  # newly stored
    quarantined: int  # rejects, conflicts included, whether kept in full, sampled or counted
    statuses: int
    unknown_hub_statuses: int
    #: Wall-clock seconds spent in COPY, in the INSERT ... SELECT, and in COMMIT.
    copy_s: float = 0.0
    insert_s: float = 0.0
    commit_s: float = 0.0
    #: Readings whose id was already stored with another time or other content.
    conflicts: int = 0
    #: Rejects beyond their hub's hourly quota that were counted but not kept.
    quarantine_not_kept: int = 0

    @property
    def duplicates(self) -> int:
        return self.readings - self.stored - self.conflicts


class BatchWriter:
    """Owns one connection; :meth:`write` is one transaction."""

    def __init__(self, conn: psycopg.Connection[Any],
                 quota: QuarantineQuota | None = None) -> None:
        self.conn = conn
        self.quota = quota or DEFAULT_QUOTA
        conn.execute(CREATE_STAGE)
        conn.commit()

    @classmethod
    def connect(cls, url: str, *, connect_timeout: int = 5,
                quota: QuarantineQuota | None = None) -> BatchWriter:
        conn = psycopg.connect(url, connect_timeout=connect_timeout,
                               application_name="homeward-ingest")
        return cls(conn, quota)

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):  # closing a broken connection
            self.conn.close()

    def write(self, batch: Sequence[Prepared]) -> BatchResult:
        """Store the batch in one transaction; raises psycopg errors (nothing committed)."""
        conn = self.conn
        readings = 0
        stored = 0
        quarantine: list[QuarantineRow] = []
        statuses = []
        for msg in batch:
            readings += msg.readings
            if msg.quarantine:
                quarantine.extend(msg.quarantine)
            if msg.status is not None:
                statuses.append(msg.status)
        unknown = 0
        conflicts = 0
        t0 = t1 = t2 = time.perf_counter()
        try:
            with conn.cursor() as cur:
                if readings:
                    with cur.copy(COPY_STAGE) as copy:
                        for msg in batch:
                            if msg.copy_data:
                                copy.write(msg.copy_data)
                    t1 = time.perf_counter()
                    row = cur.execute(INSERT_READINGS).fetchone()
                    stored = int(row[0]) if row else 0
                    if stored < readings:  # duplicates, or conflicts
                        found = _conflicts(cur)
                        conflicts = len(found)
                        quarantine.extend(found)
                    t2 = time.perf_counter()
                offered = len(quarantine)
                if quarantine:
                    quarantine = self._within_quota(cur, quarantine)
                    cur.executemany(INSERT_QUARANTINE, quarantine)
                for status in statuses:
                    state, body, at, seen, hub = status
                    cur.execute(UPDATE_HUB, {"state": state, "status": body, "at": at,
                                             "seen": seen, "hub": hub})
                    if cur.rowcount == 0:
                        unknown += 1
                if stored:
                    cur.execute("NOTIFY evaluation_queue")
            t3 = time.perf_counter()
            conn.commit()
            t4 = time.perf_counter()
        except BaseException:
            if not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
            raise
        return BatchResult(len(batch), readings, stored, offered, len(statuses), unknown,
                           copy_s=t1 - t0, insert_s=t2 - t1, commit_s=t4 - t3,
                           conflicts=conflicts, quarantine_not_kept=offered - len(quarantine))

    def _within_quota(self, cur: psycopg.Cursor[Any],
                      rows: list[QuarantineRow]) -> list[QuarantineRow]:
        """Count every reject by hub and hour; keep those the quota allows."""
        groups: dict[tuple[str, datetime], list[QuarantineRow]] = {}
        for row in rows:
            groups.setdefault((row[1] or "", _hour(row[0])), []).append(row)
        kept: list[QuarantineRow] = []
        for (hub, hour), group in groups.items():
            size = sum(_size(r) for r in group)
            after = cur.execute(COUNT_REJECTS, (hub, hour, len(group), size)).fetchone()
            assert after is not None
            keep = within_quota(group, (int(after[0]) - len(group), int(after[1]) - size),
                                self.quota)
            cur.execute(COUNT_KEPT, (len(keep), hub, hour))
            kept += keep
        return kept


def _conflicts(cur: psycopg.Cursor[Any]) -> list[QuarantineRow]:
    """Quarantine rows for the staged readings whose id another version holds."""
    rows: list[QuarantineRow] = []
    for hub, received_at, rid, taken_at, stored_at, incoming, stored in cur.execute(
            FIND_CONFLICTS):
        if taken_at != stored_at:
            why = (f"taken_at {format_time(taken_at)}, but it is stored with taken_at "
                   f"{format_time(stored_at)}")
        else:
            why = "the same taken_at but other content (kind, device, values, flags or raw)"
        reason = (f"conflict: reading id {rid} is already stored; this version has {why}; "
                  f"not stored (item.incoming is this version, item.stored the stored one)")
        item = b'{"incoming":' + incoming.encode() + b',"stored":' + (
            stored.encode() if stored is not None else b"null") + b"}"
        rows.append((received_at, hub, readings_topic(hub), None, reason,
                     item.decode(), None))
    return rows
