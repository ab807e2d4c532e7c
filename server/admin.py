"""Administration: organisations, teams, clinicians, patients, hubs, enrolments, devices.

Keyword-only functions over a psycopg connection; each runs in
``conn.transaction()`` (a savepoint inside a caller's transaction), so they
work on autocommit and ordinary connections alike.  The demo seeds its data
with these; an admin API or command can call them too.

After :func:`pair_device` or :func:`remove_device`, publish the hub's new
retained configuration with :func:`server.hub_config.publish_hub_config`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg

from homeward.kinds import Kind
from homeward.wire import is_valid_hub_id
from server.auth import hash_password, hash_token, new_api_token

Conn = psycopg.Connection[Any]


class EnrolmentConflict(ValueError):
    """An enrolment would overlap another enrolment of the same hub."""


@dataclass(frozen=True)
class NewClinician:
    id: int
    #: The plain bearer token: shown once, only its sha256 is stored.
    api_token: str


def create_organisation(conn: Conn, *, name: str) -> int:
    with conn.transaction():
        row = conn.execute("INSERT INTO organisation (name) VALUES (%s) RETURNING id",
                           (name,)).fetchone()
    assert row is not None
    return int(row[0])


def create_team(conn: Conn, *, team_id: str, organisation_id: int, name: str, kind: str,
                email: str | None = None, webhook_url: str | None = None) -> str:
    """A community team; ``team_id`` is a slug such as ``district-nursing``."""
    with conn.transaction():
        conn.execute("INSERT INTO team (id, organisation_id, name, kind, email, webhook_url)"
                     " VALUES (%s, %s, %s, %s, %s, %s)",
                     (team_id, organisation_id, name, kind, email, webhook_url))
    return team_id


def create_clinician(conn: Conn, *, username: str, display_name: str,
                     email: str | None = None, role: str = "nurse",
                     teams: Iterable[str] = (), password: str | None = None,
                     api_token: str | None = None) -> NewClinician:
    """A clinician with an API token (made here unless given) and an optional password."""
    token = api_token or new_api_token()
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO clinician (username, display_name, email, role, password_hash,"
            " api_token_hash) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (username, display_name, email, role,
             hash_password(password) if password is not None else None,
             hash_token(token))).fetchone()
        assert row is not None
        clinician_id = int(row[0])
        for team in teams:
            conn.execute("INSERT INTO team_member (team_id, clinician_id) VALUES (%s, %s)",
                         (team, clinician_id))
    return NewClinician(clinician_id, token)


def set_password(conn: Conn, *, clinician_id: int, password: str) -> None:
    with conn.transaction():
        conn.execute("UPDATE clinician SET password_hash = %s WHERE id = %s",
                     (hash_password(password), clinician_id))


def rotate_api_token(conn: Conn, *, clinician_id: int) -> str:
    """Replace the clinician's token; returns the new plain token (the old stops working)."""
    token = new_api_token()
    with conn.transaction():
        conn.execute("UPDATE clinician SET api_token_hash = %s WHERE id = %s",
                     (hash_token(token), clinician_id))
    return token


def create_patient(conn: Conn, *, display_name: str, teams: Iterable[str] = (),
                   nhs_number: str | None = None, date_of_birth: date | None = None,
                   status: str = "active") -> int:
    """A patient and their care teams."""
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO patient (display_name, nhs_number, date_of_birth, status)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (display_name, nhs_number, date_of_birth, status)).fetchone()
        assert row is not None
        patient_id = int(row[0])
        for team in teams:
            conn.execute("INSERT INTO patient_team (patient_id, team_id) VALUES (%s, %s)",
                         (patient_id, team))
    return patient_id


def create_hub(conn: Conn, *, hub_id: str) -> str:
    """A hub; its id is its MQTT username (the broker's password file is managed apart)."""
    if not is_valid_hub_id(hub_id):
        raise ValueError(f"bad hub id {hub_id!r}: letters, digits, '_', '.', '-' (max 64)")
    with conn.transaction():
        conn.execute("INSERT INTO hub (id) VALUES (%s)", (hub_id,))
    return hub_id


#: Attribute the hub's unattributed readings in the window to the patient and queue them
#: for the alert engine in taken_at order (the order ingest queues a batch in).
BACKFILL_AND_QUEUE = """
WITH attributed AS (
    UPDATE reading SET patient_id = %s
     WHERE hub_id = %s AND patient_id IS NULL
       AND taken_at >= %s AND (%s::timestamptz IS NULL OR taken_at < %s)
    RETURNING id, taken_at, patient_id, kind
)
INSERT INTO evaluation_queue (reading_id, taken_at, patient_id, kind)
SELECT id, taken_at, patient_id, kind FROM attributed ORDER BY taken_at, id
"""


def enrol(conn: Conn, *, hub_id: str, patient_id: int, valid_from: datetime,
          valid_to: datetime | None = None) -> int:
    """Attribute the hub's readings taken from ``valid_from`` (to ``valid_to``) to the patient.

    An open-ended enrolment of the hub that started earlier is closed at
    ``valid_from`` (the hub moves to the new patient); any other overlap is
    refused with :class:`EnrolmentConflict`.  Readings already stored for the
    hub in the window without a patient (they arrived before the enrolment
    existed) are attributed to the patient and queued for evaluation in the same
    transaction: the alert engine passes over a queued reading without a patient
    (no patient, no rules), so this is when a rule first sees them.  Readings
    already attributed are never queued again: enrolling twice evaluates nothing twice.
    """
    if valid_from.tzinfo is None or (valid_to is not None and valid_to.tzinfo is None):
        raise ValueError("enrolment times must be timezone-aware")
    with conn.transaction():
        # Serialise enrolment changes of this hub (ingest reads without locking).
        conn.execute("SELECT 1 FROM hub WHERE id = %s FOR UPDATE", (hub_id,))
        conn.execute("UPDATE enrolment SET valid_to = %s WHERE hub_id = %s AND valid_to IS NULL"
                     " AND valid_from < %s", (valid_from, hub_id, valid_from))
        clash = conn.execute(
            "SELECT id, patient_id, valid_from, valid_to FROM enrolment WHERE hub_id = %s"
            " AND tstzrange(valid_from, valid_to) && tstzrange(%s, %s)",
            (hub_id, valid_from, valid_to)).fetchone()
        if clash is not None:
            raise EnrolmentConflict(
                f"hub {hub_id} is enrolled to patient {clash[1]} from {clash[2]} to "
                f"{clash[3] or 'open end'}, which overlaps")
        row = conn.execute(
            "INSERT INTO enrolment (hub_id, patient_id, valid_from, valid_to)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (hub_id, patient_id, valid_from, valid_to)).fetchone()
        assert row is not None
        queued = conn.execute(BACKFILL_AND_QUEUE,
                              (patient_id, hub_id, valid_from, valid_to, valid_to)).rowcount
        if queued:
            conn.execute("NOTIFY evaluation_queue")
    return int(row[0])


def end_enrolment(conn: Conn, *, hub_id: str, valid_to: datetime) -> int:
    """Close the hub's open enrolment at ``valid_to``; returns how many were closed (0 or 1)."""
    with conn.transaction():
        cur = conn.execute("UPDATE enrolment SET valid_to = %s WHERE hub_id = %s"
                           " AND valid_to IS NULL AND valid_from < %s",
                           (valid_to, hub_id, valid_to))
    return cur.rowcount


def pair_device(conn: Conn, *, hub_id: str, address: str, kind: Kind | str,
                name: str | None = None) -> None:
    """Pair (or re-pair) a device with the hub."""
    kind_value = Kind(kind).value
    with conn.transaction():
        conn.execute(
            "INSERT INTO device (hub_id, address, kind, name) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (hub_id, address) DO UPDATE SET kind = EXCLUDED.kind,"
            " name = EXCLUDED.name, paired_at = now(), removed_at = NULL",
            (hub_id, address, kind_value, name))


def remove_device(conn: Conn, *, hub_id: str, address: str) -> bool:
    """Unpair a device (kept with ``removed_at`` for the record); False if it was not paired."""
    with conn.transaction():
        cur = conn.execute("UPDATE device SET removed_at = now() WHERE hub_id = %s"
                           " AND address = %s AND removed_at IS NULL", (hub_id, address))
    return cur.rowcount > 0
