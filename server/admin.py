"""Administration: organisations, teams, clinicians, patients, hubs, enrolments, devices.

Keyword-only functions over a psycopg connection; each runs in
``conn.transaction()`` (a savepoint inside a caller's transaction), so they
work on autocommit and ordinary connections alike.  The demo seeds its data
with these; an admin API or command can call them too.

After :func:`pair_device` or :func:`remove_device`, publish the hub's new
retained configuration with :func:`server.hub_config.publish_hub_config`.

Refusals are :class:`AdminError`s with a message for a person: :class:`NotFound`
(an unknown team, clinician, patient or hub), :class:`Conflict` (a duplicate
username, team id, NHS number; a second bootstrap), :class:`Invalid` (a bad
role, NHS number or hub id).  ``homeward admin`` (server/admin_cli.py) and the
admin API (server/api/routes/admin.py) are the two front ends; docs/admin.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg import errors

from homeward.kinds import Kind
from homeward.wire import is_valid_hub_id
from server.auth import hash_password, hash_token, new_api_token
from server.nhs_number import BadNhsNumber, normalise_nhs_number

Conn = psycopg.Connection[Any]

#: The roles a person may have (``system`` is for workers, not made here).
CLINICIAN_ROLES = ("nurse", "team_lead", "admin")
PATIENT_STATUSES = ("active", "admitted", "away", "discharged")
TEAM_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class AdminError(ValueError):
    """An administrative change refused, with a message for a person."""


class NotFound(AdminError, LookupError):
    """An unknown organisation, team, clinician, patient or hub."""


class Conflict(AdminError):
    """A duplicate (username, team id, NHS number, hub id) or a state that forbids it."""


class Invalid(AdminError):
    """A value that can never be right (a role, an NHS number, a hub id)."""


class EnrolmentConflict(Conflict):
    """An enrolment would overlap another enrolment of the same hub."""


#: What a unique constraint's name means, for the message.
_UNIQUE = {"clinician_username_key": "username", "team_pkey": "team id",
           "patient_nhs_number_key": "NHS number", "hub_pkey": "hub id",
           "organisation_name_key": "organisation name",
           "team_member_pkey": "team membership", "patient_team_pkey": "care team",
           "team_shift_pkey": "shift name", "patient_team_one_lead": "lead care team"}


@contextmanager
def refusals(what: str = "") -> Iterator[None]:
    """Turn PostgreSQL's refusals into :class:`AdminError`s a person can read."""
    try:
        yield
    except errors.UniqueViolation as err:
        name = _UNIQUE.get(err.diag.constraint_name or "", err.diag.constraint_name or "value")
        raise Conflict(f"{what or name} already exists: {name} taken"
                       + (f" ({err.diag.message_detail})" if err.diag.message_detail else "")
                       ) from err
    except errors.ForeignKeyViolation as err:
        raise NotFound(f"{what}: {err.diag.message_detail or err}".lstrip(": ")) from err
    except errors.CheckViolation as err:
        raise Invalid(f"{what}: not allowed ({err.diag.constraint_name})".lstrip(": ")) from err


def _require(conn: Conn, table: str, key: Any, label: str) -> None:
    if conn.execute(f"SELECT 1 FROM {table} WHERE id = %s", (key,)).fetchone() is None:
        raise NotFound(f"unknown {label} {key!r}")


def _require_teams(conn: Conn, teams: Iterable[str]) -> list[str]:
    wanted = list(dict.fromkeys(teams))
    found = {r[0] for r in conn.execute("SELECT id FROM team WHERE id = ANY(%s)", (wanted,))}
    missing = [t for t in wanted if t not in found]
    if missing:
        raise NotFound(f"unknown team{'s' if len(missing) > 1 else ''} "
                       + ", ".join(repr(t) for t in missing))
    return wanted


def _check_role(role: str) -> None:
    if role not in CLINICIAN_ROLES:
        raise Invalid(f"unknown role {role!r}; use {', '.join(CLINICIAN_ROLES)}")


@dataclass(frozen=True)
class NewClinician:
    id: int
    #: The plain bearer token: shown once, only its sha256 is stored.
    api_token: str


@dataclass(frozen=True)
class Bootstrap:
    organisation_id: int
    admin: NewClinician


def create_organisation(conn: Conn, *, name: str) -> int:
    if not name.strip():
        raise Invalid("an organisation needs a name")
    with refusals(f"organisation {name!r}"), conn.transaction():
        row = conn.execute("INSERT INTO organisation (name) VALUES (%s) RETURNING id",
                           (name,)).fetchone()
    assert row is not None
    return int(row[0])


def bootstrap(conn: Conn, *, organisation: str, username: str, display_name: str,
              email: str | None = None, password: str | None = None) -> Bootstrap:
    """The first organisation and its first admin, on a database with no organisation.

    Refused with :class:`Conflict` once any organisation exists (a lock makes two
    bootstraps at once one bootstrap and one refusal)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('homeward.bootstrap'))")
        if conn.execute("SELECT 1 FROM organisation LIMIT 1").fetchone() is not None:
            raise Conflict("already bootstrapped: an organisation exists; an admin adds "
                           "organisations and clinicians with `homeward admin org|clinician`")
        org = create_organisation(conn, name=organisation)
        made = create_clinician(conn, username=username, display_name=display_name,
                                email=email, role="admin", password=password,
                                organisation_id=org)
    return Bootstrap(org, made)


def create_team(conn: Conn, *, team_id: str, organisation_id: int, name: str, kind: str,
                email: str | None = None, webhook_url: str | None = None,
                escalation_policy: str | None = None,
                fallback_team: str | None = None) -> str:
    """A community team; ``team_id`` is a slug such as ``district-nursing``."""
    if not TEAM_ID.match(team_id):
        raise Invalid(f"bad team id {team_id!r}: lower-case letters, digits, '-' and '_'")
    with refusals(f"team {team_id!r}"), conn.transaction():
        _require(conn, "organisation", organisation_id, "organisation")
        conn.execute("INSERT INTO team (id, organisation_id, name, kind, email, webhook_url)"
                     " VALUES (%s, %s, %s, %s, %s, %s)",
                     (team_id, organisation_id, name, kind, email, webhook_url))
        if escalation_policy is not None or fallback_team is not None:
            set_team_escalation(conn, team_id=team_id, escalation_policy=escalation_policy,
                                fallback_team=fallback_team)
    return team_id


#: Columns of ``team`` an admin may change, and ``team_escalation``'s.
TEAM_FIELDS = ("name", "kind", "email", "webhook_url")


def update_team(conn: Conn, *, team_id: str, changes: dict[str, Any]) -> None:
    """Change a team's name, kind, e-mail, webhook (a value of None clears email/webhook)
    and its escalation (``escalation_policy``, ``fallback_team``; "" clears)."""
    unknown = set(changes) - set(TEAM_FIELDS) - {"escalation_policy", "fallback_team"}
    if unknown:
        raise Invalid(f"unknown team fields {sorted(unknown)}")
    with refusals(f"team {team_id!r}"), conn.transaction():
        _require(conn, "team", team_id, "team")
        for column in TEAM_FIELDS:
            if column in changes:
                if column in ("name", "kind") and not changes[column]:
                    raise Invalid(f"a team's {column} cannot be empty")
                conn.execute(f"UPDATE team SET {column} = %s WHERE id = %s",
                             (changes[column] or None, team_id))
        if "escalation_policy" in changes or "fallback_team" in changes:
            current = conn.execute("SELECT escalation_policy, fallback_team_id FROM"
                                   " team_escalation WHERE team_id = %s", (team_id,)).fetchone()
            policy, fallback = current if current else (None, None)
            set_team_escalation(
                conn, team_id=team_id,
                escalation_policy=changes.get("escalation_policy", policy) or None,
                fallback_team=changes.get("fallback_team", fallback) or None)


def set_team_escalation(conn: Conn, *, team_id: str, escalation_policy: str | None,
                        fallback_team: str | None) -> None:
    """Where a team's alerts escalate: a policy of the routing file (checked against
    it) and the team that takes over when nobody is on duty."""
    if escalation_policy is not None:
        from alerts.routing import load_routing

        policies = load_routing().policies
        if escalation_policy not in policies:
            raise NotFound(f"unknown escalation policy {escalation_policy!r}; the routing "
                           f"file defines {', '.join(policies)}")
    if fallback_team is not None:
        if fallback_team == team_id:
            raise Conflict("a team cannot be its own fallback")
        _require_teams(conn, [fallback_team])
    with conn.transaction():
        conn.execute("INSERT INTO team_escalation (team_id, fallback_team_id, escalation_policy)"
                     " VALUES (%s, %s, %s) ON CONFLICT (team_id) DO UPDATE SET"
                     " fallback_team_id = EXCLUDED.fallback_team_id,"
                     " escalation_policy = EXCLUDED.escalation_policy",
                     (team_id, fallback_team, escalation_policy))


def _parse_clock(text: str) -> time:
    try:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise Invalid(f"not a time HH:MM: {text!r}") from None


def set_team_shift(conn: Conn, *, team_id: str, name: str, starts: str, ends: str,
                   timezone: str = "Europe/London") -> None:
    """A named shift of the team (``night``, ``20:00``, ``08:00``: an end before the start
    is the next morning; an end equal to it, the next day's: a 24-hour shift); a rota row
    can then say a date and the shift's name."""
    start, end = _parse_clock(starts), _parse_clock(ends)
    if not TEAM_ID.match(name):
        raise Invalid(f"bad shift name {name!r}: lower-case letters, digits, '-' and '_'")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "Europe" is a folder: OSError
        raise Invalid(f"unknown time zone {timezone!r}") from None
    with refusals(f"shift {name!r}"), conn.transaction():
        _require(conn, "team", team_id, "team")
        conn.execute("INSERT INTO team_shift (team_id, name, starts, ends, timezone)"
                     " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (team_id, name) DO UPDATE"
                     " SET starts = EXCLUDED.starts, ends = EXCLUDED.ends,"
                     " timezone = EXCLUDED.timezone", (team_id, name, start, end, timezone))


def remove_team_shift(conn: Conn, *, team_id: str, name: str) -> bool:
    with conn.transaction():
        return conn.execute("DELETE FROM team_shift WHERE team_id = %s AND name = %s",
                            (team_id, name)).rowcount > 0


def create_clinician(conn: Conn, *, username: str, display_name: str,
                     email: str | None = None, role: str = "nurse",
                     teams: Iterable[str] = (), password: str | None = None,
                     api_token: str | None = None,
                     organisation_id: int | None = None) -> NewClinician:
    """A clinician with an API token (made here unless given) and an optional password.

    ``organisation_id`` defaults to her first team's organisation."""
    _check_role(role)
    if not username.strip() or not display_name.strip():
        raise Invalid("a clinician needs a username and a display name")
    token = api_token or new_api_token()
    with refusals(f"clinician {username!r}"), conn.transaction():
        team_ids = _require_teams(conn, teams)
        if organisation_id is None and team_ids:
            row = conn.execute("SELECT organisation_id FROM team WHERE id = %s",
                               (team_ids[0],)).fetchone()
            organisation_id = int(row[0]) if row else None
        elif organisation_id is not None:
            _require(conn, "organisation", organisation_id, "organisation")
        row = conn.execute(
            "INSERT INTO clinician (username, display_name, email, role, password_hash,"
            " api_token_hash, organisation_id) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id",
            (username, display_name, email, role,
             hash_password(password) if password is not None else None,
             hash_token(token), organisation_id)).fetchone()
        assert row is not None
        clinician_id = int(row[0])
        for team in team_ids:
            conn.execute("INSERT INTO team_member (team_id, clinician_id) VALUES (%s, %s)",
                         (team, clinician_id))
    return NewClinician(clinician_id, token)


def create_system_client(conn: Conn, *, username: str, display_name: str,
                         organisation_id: int) -> NewClinician:
    """A system client (role ``system``): the FHIR API's bearer token of a GP system or a
    shared care record, reading what an admin of ``organisation_id`` sees, read-only and
    under ``/fhir`` only (server.access, server.api.scope).  It has no password and no
    team; rotate and deactivate it as a clinician."""
    if not username.strip() or not display_name.strip():
        raise Invalid("a system client needs a username and a display name")
    token = new_api_token()
    with refusals(f"system client {username!r}"), conn.transaction():
        _require(conn, "organisation", organisation_id, "organisation")
        row = conn.execute(
            "INSERT INTO clinician (username, display_name, role, api_token_hash,"
            " organisation_id) VALUES (%s, %s, 'system', %s, %s) RETURNING id",
            (username, display_name, hash_token(token), organisation_id)).fetchone()
        assert row is not None
    return NewClinician(int(row[0]), token)


def clinician_id_of(conn: Conn, who: str | int) -> int:
    """A clinician's id from her id or username (:class:`NotFound` otherwise)."""
    if isinstance(who, int) or who.isdigit():
        row = conn.execute("SELECT id FROM clinician WHERE id = %s", (int(who),)).fetchone()
    else:
        row = conn.execute("SELECT id FROM clinician WHERE username = %s", (who,)).fetchone()
    if row is None:
        raise NotFound(f"unknown clinician {who!r}")
    return int(row[0])


def _active(conn: Conn, clinician_id: int) -> None:
    row = conn.execute("SELECT active FROM clinician WHERE id = %s FOR UPDATE",
                       (clinician_id,)).fetchone()
    if row is None:
        raise NotFound(f"unknown clinician {clinician_id}")
    if not row[0]:
        raise Conflict(f"clinician {clinician_id} is deactivated")


def set_password(conn: Conn, *, clinician_id: int, password: str) -> None:
    with conn.transaction():
        _active(conn, clinician_id)
        conn.execute("UPDATE clinician SET password_hash = %s WHERE id = %s",
                     (hash_password(password), clinician_id))


def rotate_api_token(conn: Conn, *, clinician_id: int) -> str:
    """Replace the clinician's token; returns the new plain token (the old stops working)."""
    token = new_api_token()
    with conn.transaction():
        _active(conn, clinician_id)
        conn.execute("UPDATE clinician SET api_token_hash = %s WHERE id = %s",
                     (hash_token(token), clinician_id))
    return token


def deactivate_clinician(conn: Conn, *, clinician_id: int) -> bool:
    """She can no longer sign in: inactive, her token and password gone, her open
    invitations spent.  Her name stays on the record (audit, alerts, notes).
    False when she was already inactive."""
    with conn.transaction():
        row = conn.execute("SELECT active FROM clinician WHERE id = %s FOR UPDATE",
                           (clinician_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown clinician {clinician_id}")
        conn.execute("UPDATE clinician SET active = false, api_token_hash = NULL,"
                     " password_hash = NULL WHERE id = %s", (clinician_id,))
        conn.execute("UPDATE clinician_invite SET used_at = now() WHERE clinician_id = %s"
                     " AND used_at IS NULL", (clinician_id,))
    return bool(row[0])


def set_role(conn: Conn, *, clinician_id: int, role: str) -> None:
    _check_role(role)
    with conn.transaction():
        _active(conn, clinician_id)
        conn.execute("UPDATE clinician SET role = %s WHERE id = %s", (role, clinician_id))


def set_clinician_teams(conn: Conn, *, clinician_id: int, teams: Iterable[str]) -> None:
    """Her teams become exactly ``teams``."""
    with refusals("teams"), conn.transaction():
        _active(conn, clinician_id)
        team_ids = _require_teams(conn, teams)
        conn.execute("DELETE FROM team_member WHERE clinician_id = %s AND NOT"
                     " (team_id = ANY(%s))", (clinician_id, team_ids))
        for team in team_ids:
            conn.execute("INSERT INTO team_member (team_id, clinician_id) VALUES (%s, %s)"
                         " ON CONFLICT DO NOTHING", (team, clinician_id))


def create_patient(conn: Conn, *, display_name: str, teams: Iterable[str] = (),
                   nhs_number: str | None = None, date_of_birth: date | None = None,
                   status: str = "active", lead: str | None = None) -> int:
    """A patient and their care teams (``lead``, one of them, is the lead team).

    The NHS number must pass its Modulus 11 check; it is kept as its ten digits."""
    if status not in PATIENT_STATUSES:
        raise Invalid(f"unknown status {status!r}; use {', '.join(PATIENT_STATUSES)}")
    if not display_name.strip():
        raise Invalid("a patient needs a name")
    try:
        nhs = normalise_nhs_number(nhs_number) if nhs_number is not None else None
    except BadNhsNumber as err:
        raise Invalid(str(err)) from err
    team_list = list(teams)
    if lead is not None and lead not in team_list:
        team_list.append(lead)
    with refusals("patient"), conn.transaction():
        team_ids = _require_teams(conn, team_list)
        row = conn.execute(
            "INSERT INTO patient (display_name, nhs_number, date_of_birth, status)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (display_name, nhs, date_of_birth, status)).fetchone()
        assert row is not None
        patient_id = int(row[0])
        for team in team_ids:
            conn.execute("INSERT INTO patient_team (patient_id, team_id, lead)"
                         " VALUES (%s, %s, %s)", (patient_id, team, team == lead))
    return patient_id


def set_care_teams(conn: Conn, *, patient_id: int, teams: Iterable[str],
                   lead: str | None = None) -> None:
    """The patient's care team becomes exactly ``teams`` (``lead`` among them)."""
    team_list = list(teams)
    if not team_list:
        raise Invalid("a patient needs at least one care team")
    if lead is not None and lead not in team_list:
        team_list.append(lead)
    with refusals("care team"), conn.transaction():
        _require(conn, "patient", patient_id, "patient")
        team_ids = _require_teams(conn, team_list)
        conn.execute("DELETE FROM patient_team WHERE patient_id = %s AND NOT"
                     " (team_id = ANY(%s))", (patient_id, team_ids))
        conn.execute("UPDATE patient_team SET lead = false WHERE patient_id = %s",
                     (patient_id,))
        for team in team_ids:
            conn.execute("INSERT INTO patient_team (patient_id, team_id, lead)"
                         " VALUES (%s, %s, %s) ON CONFLICT (patient_id, team_id)"
                         " DO UPDATE SET lead = EXCLUDED.lead", (patient_id, team, team == lead))


def create_hub(conn: Conn, *, hub_id: str, organisation_id: int | None = None) -> str:
    """A hub; its id is its MQTT username (its broker credentials are made apart:
    ``homeward admin hub provision``)."""
    if not is_valid_hub_id(hub_id) or hub_id.startswith("homeward-"):
        raise Invalid(f"bad hub id {hub_id!r}: letters, digits, '_', '.', '-' (max 64), "
                      "not starting with 'homeward-' (the server's own users)")
    with refusals(f"hub {hub_id!r}"), conn.transaction():
        if organisation_id is not None:
            _require(conn, "organisation", organisation_id, "organisation")
        conn.execute("INSERT INTO hub (id, organisation_id) VALUES (%s, %s)",
                     (hub_id, organisation_id))
    return hub_id


def revoke_hub(conn: Conn, *, hub_id: str, at: datetime) -> None:
    """The hub is revoked from ``at``: marked, and its open enrolment ends (its broker
    credentials are taken away apart, at once)."""
    with conn.transaction():
        _require(conn, "hub", hub_id, "hub")
        conn.execute("UPDATE hub SET revoked_at = COALESCE(revoked_at, %s) WHERE id = %s",
                     (at, hub_id))
        end_enrolment(conn, hub_id=hub_id, valid_to=at)


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
        raise Invalid("enrolment times must be timezone-aware")
    with refusals("enrolment"), conn.transaction():
        _require(conn, "hub", hub_id, "hub")
        _require(conn, "patient", patient_id, "patient")
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
    try:
        kind_value = Kind(kind).value
    except ValueError:
        raise Invalid(f"unknown device kind {kind!r}; use "
                      + ", ".join(k.value for k in Kind)) from None
    if not address.strip():
        raise Invalid("a device needs an address")
    with conn.transaction():
        _require(conn, "hub", hub_id, "hub")
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
