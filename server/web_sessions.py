"""The dashboard's server-side sessions (table ``web_session``, migration 0340).

The session cookie holds a random id of 256 bits; the table holds only its
SHA-256, so reading the table (a backup, a replica) gives no one a session.
A session is good while it is younger than its absolute limit and has been
used within the idle limit; logout deletes its row, so a copy of the cookie
replayed afterwards names nothing.  ``last_seen_at`` is written at most once a
``TOUCH_SECONDS``, not on every request, so a busy page costs no write per
request (the idle limit is therefore exact to within that much).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import psycopg

from server.auth import hash_token

#: The dashboard's cookie: the session id, nothing else.
SESSION_COOKIE = "homeward_session"
#: How stale ``last_seen_at`` may be before a request writes it again (seconds).
TOUCH_SECONDS = 60


def new_session(conn: psycopg.Connection[Any], clinician_id: int, *, absolute_seconds: int,
                client_addr: str | None = None) -> str:
    """A new session for the clinician; returns the id to put in the cookie (never stored)."""
    session_id = secrets.token_urlsafe(32)
    conn.execute("INSERT INTO web_session (id_hash, clinician_id, expires_at, client_addr)"
                 " VALUES (%s, %s, now() + %s, %s)",
                 (hash_token(session_id), clinician_id, timedelta(seconds=absolute_seconds),
                  client_addr))
    return session_id


def session_clinician(conn: psycopg.Connection[Any], session_id: str, *,
                      idle_seconds: int) -> int | None:
    """The clinician of a live session (and the session marked as used), else None."""
    row = conn.execute(
        "WITH s AS (SELECT id_hash, clinician_id, last_seen_at FROM web_session"
        "            WHERE id_hash = %(h)s AND expires_at > now()"
        "              AND last_seen_at > now() - %(idle)s),"
        " touched AS (UPDATE web_session w SET last_seen_at = now() FROM s"
        "              WHERE w.id_hash = s.id_hash AND s.last_seen_at < now() - %(touch)s"
        "              RETURNING 1)"
        " SELECT clinician_id FROM s",
        {"h": hash_token(session_id), "idle": timedelta(seconds=idle_seconds),
         "touch": timedelta(seconds=min(TOUCH_SECONDS, idle_seconds / 10))}).fetchone()
    return int(row[0]) if row else None


def session_live(conn: psycopg.Connection[Any], session_id: str, *, idle_seconds: int) -> bool:
    """Whether the session still stands, without counting this as a use (a live stream
    asks this; an open stream alone does not keep a session from going idle)."""
    row = conn.execute("SELECT 1 FROM web_session WHERE id_hash = %s AND expires_at > now()"
                       " AND last_seen_at > now() - %s",
                       (hash_token(session_id), timedelta(seconds=idle_seconds))).fetchone()
    return row is not None


def end_session(conn: psycopg.Connection[Any], session_id: str) -> bool:
    """Logout: the session is gone on the server (True when there was one)."""
    cur = conn.execute("DELETE FROM web_session WHERE id_hash = %s", (hash_token(session_id),))
    return cur.rowcount > 0


def prune_sessions(conn: psycopg.Connection[Any], *, idle_seconds: int) -> int:
    """Delete sessions past either limit (run at each sign-in; cheap on its indexes)."""
    return conn.execute("DELETE FROM web_session WHERE expires_at <= now()"
                        " OR last_seen_at <= now() - %s",
                        (timedelta(seconds=idle_seconds),)).rowcount
