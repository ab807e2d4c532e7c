"""Rows the alert tests, scenarios and ``homeward bench alerts`` need, written with plain SQL.

``insert_reading`` does what ingest does for one reading (the reading row,
its evaluation_queue row, ``NOTIFY evaluation_queue``) so the engine can be
exercised without a broker.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg

_LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def ensure_org(conn: psycopg.Connection[Any], name: str = "Test Trust") -> int:
    row = conn.execute("INSERT INTO organisation (name) VALUES (%s) ON CONFLICT (name)"
                       " DO UPDATE SET name = EXCLUDED.name RETURNING id", (name,)).fetchone()
    assert row is not None
    return int(row[0])


def add_team(conn: psycopg.Connection[Any], team_id: str, *, kind: str = "district_nursing",
             name: str | None = None, email: str | None = None,
             webhook_url: str | None = None) -> str:
    org = ensure_org(conn)
    conn.execute("INSERT INTO team (id, organisation_id, name, kind, email, webhook_url)"
                 " VALUES (%s, %s, %s, %s, %s, %s)",
                 (team_id, org, name or team_id, kind, email, webhook_url))
    return team_id


def add_clinician(conn: psycopg.Connection[Any], username: str, *, teams: Sequence[str] = (),
                  email: str | None = None, role: str = "nurse") -> int:
    row = conn.execute("INSERT INTO clinician (username, display_name, email, role)"
                       " VALUES (%s, %s, %s, %s) RETURNING id",
                       (username, username.title(), email, role)).fetchone()
    assert row is not None
    for t in teams:
        conn.execute("INSERT INTO team_member (team_id, clinician_id) VALUES (%s, %s)",
                     (t, row[0]))
    return int(row[0])


def add_patient(conn: psycopg.Connection[Any], name: str, *, teams: Sequence[str] = (),
                hub_id: str | None = None, since: datetime | None = None,
                status: str = "active") -> int:
    row = conn.execute("INSERT INTO patient (display_name, status) VALUES (%s, %s) RETURNING id",
                       (name, status)).fetchone()
    assert row is not None
    pid = int(row[0])
    for t in teams:
        conn.execute("INSERT INTO patient_team (patient_id, team_id) VALUES (%s, %s)", (pid, t))
    if hub_id is not None:
        conn.execute("INSERT INTO hub (id) VALUES (%s) ON CONFLICT DO NOTHING", (hub_id,))
        conn.execute("INSERT INTO enrolment (hub_id, patient_id, valid_from)"
                     " VALUES (%s, %s, %s)", (hub_id, pid, since or _LONG_AGO))
    return pid


def insert_reading(conn: psycopg.Connection[Any], *, patient_id: int, kind: str,
                   values: Mapping[str, float], taken_at: datetime,
                   hub_id: str = "hub-test", device: str = "AA:BB:CC:DD:EE:FF",
                   flags: Sequence[str] = (), reading_id: str | None = None) -> str:
    """Store a reading and queue it for evaluation, as ingest does."""
    rid = reading_id or str(uuid.uuid4())
    with conn.transaction():
        conn.execute(
            "INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, \"values\","
            " flags, received_at) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, now())",
            (rid, taken_at, kind, hub_id, patient_id, device,
             orjson.dumps(dict(values)).decode(), list(flags)))
        conn.execute("INSERT INTO evaluation_queue (reading_id, taken_at, patient_id, kind)"
                     " VALUES (%s, %s, %s, %s)", (rid, taken_at, patient_id, kind))
        conn.execute("NOTIFY evaluation_queue")
    return rid
