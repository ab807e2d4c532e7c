"""The access audit: one append-only row per read or write of patient data.

Who (clinician and role), what (action, resource), whose (patient), when, under
which request id, from which address, and how it ended.  Rows are written in
autocommit on their own connection, so an audit row is kept even when the
request's own transaction rolls back; ``access_audit`` refuses UPDATE and
DELETE (server/migrations/0200_access_audit.sql).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

Outcome = Literal["ok", "not_found", "refused", "error"]

INSERT = ("INSERT INTO access_audit (clinician_id, role, action, patient_id, resource,"
          " request_id, client_addr, outcome) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    clinician_id: int | None
    role: str
    action: str
    resource: str
    patient_id: int | None
    request_id: str | None
    client_addr: str | None
    outcome: Outcome


def record(conn: psycopg.Connection[Any], entry: AuditEntry) -> None:
    conn.execute(INSERT, (entry.clinician_id, entry.role, entry.action, entry.patient_id,
                          entry.resource, entry.request_id, entry.client_addr, entry.outcome))


def record_many(conn: psycopg.Connection[Any], entries: list[AuditEntry]) -> None:
    """Several rows in one round trip (a bulk export names each patient it carries)."""
    with conn.cursor() as cur:
        cur.executemany(INSERT, [(e.clinician_id, e.role, e.action, e.patient_id, e.resource,
                                  e.request_id, e.client_addr, e.outcome) for e in entries])


def search(conn: psycopg.Connection[Any], *, patient_id: int | None = None,
           clinician_id: int | None = None, start: datetime | None = None,
           end: datetime | None = None, visible: sql.Composable | None = None,
           limit: int = 500) -> list[dict[str, Any]]:
    """Audit rows newest first; ``visible`` (an access condition on ``patient_id``)
    limits them to the patients a reader may see."""
    where: list[sql.Composable] = [sql.SQL("TRUE")]
    if patient_id is not None:
        where.append(sql.SQL("a.patient_id = {}").format(sql.Literal(patient_id)))
    if clinician_id is not None:
        where.append(sql.SQL("a.clinician_id = {}").format(sql.Literal(clinician_id)))
    if start is not None:
        where.append(sql.SQL("a.at >= {}").format(sql.Literal(start)))
    if end is not None:
        where.append(sql.SQL("a.at < {}").format(sql.Literal(end)))
    if visible is not None:
        where.append(visible)
    query = sql.SQL(
        "SELECT a.id, a.at, a.clinician_id, c.username, c.display_name, a.role, a.action,"
        " a.patient_id, a.resource, a.request_id, a.client_addr, a.outcome"
        " FROM access_audit a LEFT JOIN clinician c ON c.id = a.clinician_id"
        " WHERE {} ORDER BY a.at DESC, a.id DESC LIMIT {}").format(
            sql.SQL(" AND ").join(where), sql.Literal(limit))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query).fetchall()
