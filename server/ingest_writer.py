"""Writing a batch of prepared MQTT messages to PostgreSQL in one transaction.

Per batch: COPY every reading line into a temporary staging table, then one
``INSERT INTO reading SELECT ... ON CONFLICT DO NOTHING RETURNING`` that
attributes each reading to the patient enrolled on its hub at ``taken_at``
and feeds the newly stored ones (never duplicates) to ``evaluation_queue``;
quarantine rows and hub status updates go in the same transaction, then
``NOTIFY evaluation_queue`` and COMMIT.  The caller acknowledges the MQTT
messages only after :meth:`BatchWriter.write` returns.

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
from typing import Any

import psycopg

from server.ingest_rows import STAGE_COLUMNS, Prepared, QuarantineRow

CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS reading_stage (
    id uuid NOT NULL, taken_at timestamptz NOT NULL, kind text NOT NULL, hub_id text NOT NULL,
    device text NOT NULL, "values" jsonb NOT NULL, flags text[] NOT NULL, raw text,
    received_at timestamptz NOT NULL
) ON COMMIT DELETE ROWS
"""

COPY_STAGE = ("COPY reading_stage ("
              + ", ".join(f'"{c}"' if c == "values" else c for c in STAGE_COLUMNS)
              + ") FROM STDIN")

# The enrolment join is a plain LEFT JOIN (a hash join over the small enrolment
# table) rather than a LATERAL lookup per row; server.admin.enrol keeps a hub's
# enrolments from overlapping, so at most one matches.  committed_at is the
# statement's start, a few milliseconds before the COMMIT itself.
INSERT_READINGS = """
WITH stored AS (
    INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values", flags, raw,
                         received_at, committed_at)
    SELECT s.id, s.taken_at, s.kind, s.hub_id, e.patient_id, s.device, s."values", s.flags,
           s.raw, s.received_at, statement_timestamp()
      FROM reading_stage s
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

INSERT_QUARANTINE = """
INSERT INTO quarantine (received_at, hub_id, topic, item_index, reason, item, payload)
VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s)
"""

UPDATE_HUB = """
UPDATE hub SET state = %s, last_status = %s::jsonb, last_status_at = %s,
       last_seen_at = GREATEST(last_seen_at, %s)
 WHERE id = %s
"""


@dataclass(frozen=True, slots=True)
class BatchResult:
    messages: int
    readings: int  # valid readings offered
    stored: int  # newly stored
    quarantined: int
    statuses: int
    unknown_hub_statuses: int
    #: Wall-clock seconds spent in COPY, in the INSERT ... SELECT, and in COMMIT.
    copy_s: float = 0.0
    insert_s: float = 0.0
    commit_s: float = 0.0

    @property
    def duplicates(self) -> int:
        return self.readings - self.stored


class BatchWriter:
    """Owns one connection; :meth:`write` is one transaction."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        conn.execute(CREATE_STAGE)
        conn.commit()

    @classmethod
    def connect(cls, url: str, *, connect_timeout: int = 5) -> BatchWriter:
        conn = psycopg.connect(url, connect_timeout=connect_timeout,
                               application_name="homeward-ingest")
        return cls(conn)

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
                    t2 = time.perf_counter()
                if quarantine:
                    cur.executemany(INSERT_QUARANTINE, quarantine)
                for status in statuses:
                    cur.execute(UPDATE_HUB, status)
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
        return BatchResult(len(batch), readings, stored, len(quarantine), len(statuses), unknown,
                           copy_s=t1 - t0, insert_s=t2 - t1, commit_s=t4 - t3)
