"""Invitations: a one-time, expiring link whose page lets a clinician set her password.

The token is random (256 bits) and only its sha256 is stored, like an API
token.  Redeeming it sets the password and spends it in one transaction (the
row is locked, so two redemptions at once are one success and one refusal);
an expired, spent or unknown token, or one of a deactivated clinician, is
refused with the same answer, so the page tells nobody which tokens existed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import psycopg

from server.auth import hash_password, hash_token, new_api_token

DEFAULT_TTL = timedelta(days=3)
#: The shortest password an invitation accepts.
MIN_PASSWORD = 12


class InviteRefused(ValueError):
    """The invitation is unknown, expired, already used, or its clinician is inactive."""


def create_invite(conn: psycopg.Connection[Any], *, clinician_id: int,
                  ttl: timedelta = DEFAULT_TTL, created_by: int | None = None,
                  now: datetime | None = None) -> str:
    """A new invitation for the clinician; returns the plain token (shown once)."""
    at = now or datetime.now(UTC)
    token = new_api_token()
    with conn.transaction():
        row = conn.execute("SELECT active FROM clinician WHERE id = %s",
                           (clinician_id,)).fetchone()
        if row is None or not row[0]:
            raise InviteRefused(f"clinician {clinician_id} is unknown or deactivated")
        conn.execute("INSERT INTO clinician_invite (token_hash, clinician_id, created_at,"
                     " expires_at, created_by) VALUES (%s, %s, %s, %s, %s)",
                     (hash_token(token), clinician_id, at, at + ttl, created_by))
    return token


def invite_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/invite/{quote(token, safe='')}"


def pending_invite(conn: psycopg.Connection[Any], token: str,
                   now: datetime | None = None) -> tuple[int, str] | None:
    """(clinician id, display name) of a usable invitation, or None."""
    at = now or datetime.now(UTC)
    row = conn.execute(
        "SELECT c.id, c.display_name FROM clinician_invite i JOIN clinician c"
        " ON c.id = i.clinician_id WHERE i.token_hash = %s AND i.used_at IS NULL"
        " AND i.expires_at > %s AND c.active", (hash_token(token), at)).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def redeem_invite(conn: psycopg.Connection[Any], *, token: str, password: str,
                  now: datetime | None = None) -> int:
    """Set the password of the invitation's clinician and spend it; her id."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"choose a password of at least {MIN_PASSWORD} characters")
    at = now or datetime.now(UTC)
    with conn.transaction():
        row = conn.execute(
            "SELECT i.clinician_id FROM clinician_invite i JOIN clinician c"
            " ON c.id = i.clinician_id WHERE i.token_hash = %s AND i.used_at IS NULL"
            " AND i.expires_at > %s AND c.active FOR UPDATE OF i",
            (hash_token(token), at)).fetchone()
        if row is None:
            raise InviteRefused("this invitation link is not valid: it has expired or "
                                "been used; ask your administrator for a new one")
        clinician_id = int(row[0])
        conn.execute("UPDATE clinician_invite SET used_at = %s WHERE token_hash = %s",
                     (at, hash_token(token)))
        conn.execute("UPDATE clinician SET password_hash = %s WHERE id = %s",
                     (hash_password(password), clinician_id))
    return clinician_id
