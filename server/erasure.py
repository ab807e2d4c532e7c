"""A patient's erasure, where lawful: everything held about them goes, the fact stays.

Health records are normally kept, not erased (UK GDPR art. 17(3)(b)-(c): a
legal obligation and public health); an erasure is for a record that should
never have existed or has no basis left (``BASES``), decided by the data
controller, not by this code.  The database enforces what it can: the patient
must be discharged with no open enrolment, the eraser an active admin, the
reason must not identify the patient, and the append-only history accepts the
deletion only from ``erase_patient()`` (server/migrations/0300_data_lifecycle.sql),
which records an ``erasure`` row (who, when, basis, reason, a reference, row
counts) and an ``access_audit`` row ``patient.erase`` without the patient's id.

The reference is an HMAC-SHA256 of the NHS number (or, without one, the patient
id) under a key kept outside the database (``HOMEWARD_ERASURE_REFERENCE_KEY``,
default the secret key): with the key and the person's NHS number one can show
they were erased; from the database alone nobody can say who it was (a plain
hash of a 10-digit number would be reversed by trying them all).

Readings, the bulk of a record, are deleted first in batches (short
transactions); then the rest goes in one transaction.  If the run stops in
between, the patient is still there without some readings, and running it
again finishes the job.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import psycopg

from server.migrate import has_timescaledb

Conn = psycopg.Connection[Any]

#: Why a record may be erased (the erasure table's CHECK holds the same list).
BASES = ("enrolled_in_error", "objection_upheld", "consent_withdrawn", "retention_expired",
         "court_order", "test_record")

#: TimescaleDB continuous aggregates over reading, refreshed after an erasure.
CONTINUOUS_AGGREGATES = ("reading_hourly", "reading_daily", "reading_metric_hourly")

_READINGS_BATCH = """
WITH gone AS (
    DELETE FROM reading WHERE (id, taken_at) IN (
        SELECT id, taken_at FROM reading WHERE patient_id = %s LIMIT %s)
    RETURNING id, taken_at
), identity_gone AS (
    DELETE FROM reading_identity i USING gone WHERE i.id = gone.id RETURNING 1
), queue_gone AS (
    DELETE FROM evaluation_queue q USING gone WHERE q.reading_id = gone.id RETURNING 1
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM identity_gone),
       (SELECT count(*) FROM queue_gone), (SELECT min(taken_at) FROM gone),
       (SELECT max(taken_at) FROM gone)
"""


@dataclass(frozen=True)
class ErasureReceipt:
    erasure_id: int
    reference: str
    rows_removed: dict[str, int]


def erasure_reference(key: str | bytes, *, nhs_number: str | None, patient_id: int) -> str:
    """The keyed, non-reversible reference recorded for an erasure (64 hex digits)."""
    digits = "".join(ch for ch in (nhs_number or "") if ch.isdigit())
    subject = f"nhs:{digits}" if digits else f"patient:{patient_id}"
    secret = key.encode() if isinstance(key, str) else key
    return hmac.new(secret, b"homeward-erasure\0" + subject.encode(), hashlib.sha256).hexdigest()


def erase_patient(conn: Conn, patient_id: int, *, erased_by: int, basis: str, reason: str,
                  key: str | bytes, batch_rows: int = 5000,
                  on_progress: Callable[[int], None] | None = None) -> ErasureReceipt:
    """Erase the patient (see the module's docstring); ``conn`` in autocommit mode.

    Raises ``psycopg`` errors from ``erasure_check()`` when the erasure is refused
    (nothing has been deleted then), ``ValueError`` for an unknown basis.
    """
    if basis not in BASES:
        raise ValueError(f"basis {basis!r}: one of {', '.join(BASES)}")
    if not conn.autocommit:
        raise ValueError("erase_patient needs an autocommit connection (readings in batches)")
    conn.execute("SELECT erasure_check(%s, %s, %s)", (patient_id, erased_by, reason))
    row = conn.execute("SELECT nhs_number FROM patient WHERE id = %s", (patient_id,)).fetchone()
    assert row is not None  # erasure_check raised otherwise
    reference = erasure_reference(key, nhs_number=row[0], patient_id=patient_id)

    batched = {"reading": 0, "reading_identity": 0, "evaluation_queue": 0}
    first: datetime | None = None
    last: datetime | None = None
    while True:
        with conn.transaction():
            got = conn.execute(_READINGS_BATCH, (patient_id, batch_rows)).fetchone()
        assert got is not None
        for name, n in zip(batched, got[:3], strict=True):
            batched[name] += int(n)
        if got[3] is not None:
            first = got[3] if first is None else min(first, got[3])
            last = got[4] if last is None else max(last, got[4])
        if on_progress is not None:
            on_progress(batched["reading"])
        if int(got[0]) < batch_rows:
            break

    with conn.transaction():
        # the outbox's messages to the patient (portal sign-in codes, message notices) are
        # no alert's, so the procedure's cascade from alerts does not reach them
        conn.execute(
            "WITH gone AS (DELETE FROM notification n USING patient p WHERE p.id = %s"
            " AND n.kind = 'message' AND n.target = p.email RETURNING n.id)"
            " DELETE FROM notification_attempt a USING gone WHERE a.notification_id = gone.id",
            (patient_id,))
        erased = conn.execute(
            "SELECT erase_patient(%s, %s, %s, %s, %s, %s::jsonb)",
            (patient_id, erased_by, basis, reason, reference,
             orjson.dumps(batched).decode())).fetchone()
        assert erased is not None
        counts = conn.execute("SELECT rows_removed FROM erasure WHERE id = %s",
                              (erased[0],)).fetchone()
    assert counts is not None
    if first is not None and last is not None and has_timescaledb(conn):
        refresh_aggregates(conn, first, last)
    return ErasureReceipt(int(erased[0]), reference, {k: int(v) for k, v in counts[0].items()})


def refresh_aggregates(conn: Conn, start: datetime, end: datetime) -> None:
    """TimescaleDB: recompute the continuous aggregates over [start, end] (their buckets
    still hold the erased readings' sums until refreshed; a refresh runs outside a
    transaction block, so ``conn`` is in autocommit)."""
    for view in CONTINUOUS_AGGREGATES:
        exists = conn.execute("SELECT 1 FROM timescaledb_information.continuous_aggregates"
                              " WHERE view_name = %s", (view,)).fetchone()
        if exists:
            conn.execute("CALL refresh_continuous_aggregate(%s, %s, %s)",
                         (view, start - timedelta(days=1), end + timedelta(days=1)))
