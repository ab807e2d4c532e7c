"""The API's SQL in one place: keyword-only functions over a psycopg connection."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.Connection[Any]

CLINICIAN_COLUMNS = "id, username, display_name, email, role"


def _iso(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def clinician_by_token_hash(conn: Conn, *, token_hash: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {CLINICIAN_COLUMNS} FROM clinician WHERE api_token_hash = %s",
                           (token_hash,)).fetchone()


def clinician_by_id(conn: Conn, *, clinician_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {CLINICIAN_COLUMNS} FROM clinician WHERE id = %s",
                           (clinician_id,)).fetchone()


def clinician_login(conn: Conn, *, username: str) -> tuple[int, str | None] | None:
    """(id, password_hash) of the clinician with this username."""
    row = conn.execute("SELECT id, password_hash FROM clinician WHERE username = %s",
                       (username,)).fetchone()
    return (int(row[0]), row[1]) if row else None


def patient_readings(conn: Conn, *, patient_id: int, start: datetime, end: datetime,
                     kind: str | None = None, limit: int = 10000) -> list[dict[str, Any]]:
    """The patient's readings with ``start <= taken_at < end``, oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            'SELECT id::text AS id, kind, taken_at, "values", flags, device, hub_id, received_at'
            " FROM reading WHERE patient_id = %s AND taken_at >= %s AND taken_at < %s"
            " AND (%s::text IS NULL OR kind = %s) ORDER BY taken_at, id LIMIT %s",
            (patient_id, start, end, kind, kind, limit)).fetchall()
    return [_iso(r) for r in rows]


def recent_quarantine(conn: Conn, *, limit: int = 100, hub_id: str | None = None,
                      before_id: int | None = None, head_bytes: int = 512
                      ) -> list[dict[str, Any]]:
    """Newest first (keyset paging on ``id < before_id``); never more than ``head_bytes``
    of a payload or of an item's JSON, beside their full sizes."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT id, received_at, hub_id, topic, item_index, reason,"
            " convert_to(left(item::text, %(head)s), 'UTF8') AS item_head,"
            " octet_length(item::text) AS item_bytes,"
            " substring(payload from 1 for %(head)s) AS payload_head,"
            " octet_length(payload) AS payload_bytes"
            " FROM quarantine WHERE (%(hub)s::text IS NULL OR hub_id = %(hub)s)"
            " AND (%(before)s::bigint IS NULL OR id < %(before)s)"
            " ORDER BY id DESC LIMIT %(limit)s",
            {"head": head_bytes, "hub": hub_id, "before": before_id, "limit": limit}).fetchall()
    return [_iso(r) for r in rows]


def hubs(conn: Conn) -> list[dict[str, Any]]:
    """Every hub with its state, current patient and paired devices."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT h.id, h.state, h.last_status, h.last_status_at, h.last_seen_at,"
            " (SELECT e.patient_id FROM enrolment e WHERE e.hub_id = h.id"
            "   AND e.valid_from <= now() AND (e.valid_to IS NULL OR e.valid_to > now())"
            "   ORDER BY e.valid_from DESC LIMIT 1) AS patient_id,"
            " COALESCE((SELECT jsonb_agg(jsonb_build_object('address', d.address, 'kind', d.kind,"
            "   'name', d.name) ORDER BY d.paired_at) FROM device d"
            "   WHERE d.hub_id = h.id AND d.removed_at IS NULL), '[]') AS devices"
            " FROM hub h ORDER BY h.id").fetchall()
    return [_iso(r) for r in rows]


def evaluation_backlog_seconds(conn: Conn) -> float | None:
    """Age in seconds of the oldest reading waiting for the alert engine (None: none).

    The queue is ordered by ``seq`` (its primary key), which follows ``enqueued_at``, so
    this reads one index entry however long the queue is."""
    row = conn.execute("SELECT extract(epoch FROM now() - enqueued_at)::float8"
                       " FROM evaluation_queue ORDER BY seq LIMIT 1").fetchone()
    return None if row is None else max(0.0, float(row[0]))


def ingest_heartbeats(conn: Conn) -> list[dict[str, Any]]:
    """The running ingests' heartbeats (migration 0103): per client id, seconds since its
    last beat and since the oldest message it holds unacknowledged (None: holds none).

    Ingests stopped cleanly, or silent for over an hour (gone for good), are left out;
    before migration 0103 there are none."""
    if conn.execute("SELECT to_regclass('ingest_heartbeat')").fetchone() == (None,):
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT client_id, extract(epoch FROM now() - heartbeat_at)::float8"
            "   AS heartbeat_seconds,"
            " extract(epoch FROM now() - oldest_held_since)::float8 AS held_seconds,"
            " held_messages, suspects FROM ingest_heartbeat"
            " WHERE stopped_at IS NULL AND heartbeat_at > now() - interval '1 hour'"
            " ORDER BY client_id").fetchall()
