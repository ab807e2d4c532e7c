"""What the patient portal shows of a patient's own readings: the latest of each kind,
the readings of a range, one reading.  Every query takes the signed-in patient's id
(``server.api.patient_scope``) and answers only that patient's rows: another
patient's reading id finds nothing (a 404), the same as an id that does not exist."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from homeward.kinds import Kind

_COLUMNS = ('id::text AS id, kind, taken_at, received_at, "values", flags, device')


def latest_by_kind(conn: psycopg.Connection[Any], patient_id: int, *,
                   since: datetime) -> list[dict[str, Any]]:
    """The newest reading of each kind taken since ``since``, in the kinds' order."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT r.* FROM unnest(%s::text[]) WITH ORDINALITY AS k(kind, n) CROSS JOIN"
            f" LATERAL (SELECT {_COLUMNS} FROM reading WHERE patient_id = %s"
            " AND kind = k.kind AND taken_at >= %s ORDER BY taken_at DESC LIMIT 1) r"
            " ORDER BY k.n", ([k.value for k in Kind], patient_id, since)).fetchall()


def readings(conn: psycopg.Connection[Any], patient_id: int, *, start: datetime,
             end: datetime, limit: int) -> list[dict[str, Any]]:
    """Readings in [start, end), newest first, at most ``limit`` (the newest ``limit`` of
    each kind from the (patient, kind, time) index, then merged)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT r.* FROM unnest(%s::text[]) AS k(kind) CROSS JOIN LATERAL ("
            f" SELECT {_COLUMNS} FROM reading WHERE patient_id = %s AND kind = k.kind"
            " AND taken_at >= %s AND taken_at < %s ORDER BY taken_at DESC LIMIT %s) r"
            " ORDER BY r.taken_at DESC, r.id LIMIT %s",
            ([k.value for k in Kind], patient_id, start, end, limit, limit)).fetchall()


def reading(conn: psycopg.Connection[Any], patient_id: int,
            reading_id: str) -> dict[str, Any] | None:
    """One of the patient's readings; None for another patient's, or no such id."""
    try:
        key = uuid.UUID(reading_id)
    except ValueError:
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {_COLUMNS} FROM reading WHERE id = %s AND patient_id = %s",
                           (key, patient_id)).fetchone()


def care_team(conn: psycopg.Connection[Any], patient_id: int) -> list[str]:
    """The names of the teams caring for the patient, the lead team first."""
    rows = conn.execute("SELECT t.name FROM patient_team pt JOIN team t ON t.id = pt.team_id"
                        " WHERE pt.patient_id = %s ORDER BY pt.lead DESC, t.name",
                        (patient_id,)).fetchall()
    return [str(r[0]) for r in rows]
