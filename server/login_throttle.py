"""Sign-in throttling, shared by every API process through PostgreSQL (``login_attempt``).

At most ``max_failures`` failed sign-ins per username, and as many from one
client address, within ``window_seconds``; beyond that an attempt is refused
before any password is checked (the caller answers 429 with ``Retry-After``).

The bound is strict under concurrency: an attempt is *reserved* (a row
written) before its password is checked, under transaction-scoped advisory
locks on its username and its address, and a reservation counts as a failure
until it is resolved; so a burst of parallel attempts from several processes
cannot all slip under the limit while their scrypts run.  A failed check marks
the row failed; a good one deletes it.  A row left by a process that died
mid-check counts as a failure until it ages out: the safe side.

The username counts whether or not it exists, so the limit tells nothing about
which usernames do.  An address is keyed by itself, an IPv6 address by its
/64 (one host commonly has a whole /64).  Each lockout, the failure that
reaches the limit, is written to the access audit once (``login.lockout``);
the refused attempts during it are not (they would let anyone fill the audit).
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from server import audit

#: The longest username kept as a throttle key (a longer one is cut, not refused).
USERNAME_MAX = 200


@dataclass(frozen=True, slots=True)
class Limits:
    max_failures: int = 10
    window_seconds: int = 15 * 60

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_seconds)


@dataclass(frozen=True, slots=True)
class Locked:
    """Refused: ``retry_after`` seconds until an attempt would be checked again."""

    retry_after: int
    by: str  # "username" or "client"


@dataclass(frozen=True, slots=True)
class Reserved:
    attempt_id: int


def client_key(host: str | None) -> str:
    """The throttle key of a client address: itself, or an IPv6 address's /64."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is 192.0.2.1
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def username_key(username: str | None) -> str | None:
    if username is None:
        return None
    return username.strip().lower()[:USERNAME_MAX]


def retry_after(times: list[datetime], now: datetime, limits: Limits) -> int:
    """Seconds until fewer than ``max_failures`` of ``times`` (oldest first, all within the
    window) remain within the window: when the one that must age out does."""
    if len(times) < limits.max_failures:
        return 0
    must_go = times[len(times) - limits.max_failures]
    return max(1, math.ceil((must_go + limits.window - now).total_seconds()))


def _lock(conn: psycopg.Connection[Any], keys: list[str]) -> None:
    # sorted: two attempts taking the same two locks never wait on each other in a cycle
    for key in sorted(keys):
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))


def _keys(username: str | None, client: str) -> list[str]:
    return [f"login:client:{client}"] + ([f"login:user:{username}"] if username else [])


def _times(conn: psycopg.Connection[Any], column: str, value: str,
           limits: Limits) -> list[datetime]:
    """The attempts (pending or failed) of one key within the window, oldest first."""
    assert column in ("username", "client_key")
    rows = conn.execute(
        f"SELECT at FROM login_attempt WHERE {column} = %s AND at > now() - %s"
        " ORDER BY at", (value, limits.window)).fetchall()
    return [r[0] for r in rows]


def _now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT now()").fetchone()  # the transaction's time, as the rows'
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def reserve(conn: psycopg.Connection[Any], *, username: str | None, client: str,
            limits: Limits) -> Locked | Reserved:
    """Refuse the attempt (``Locked``) or record it as pending before its check."""
    user = username_key(username)
    with conn.transaction():
        _lock(conn, _keys(user, client))
        conn.execute("DELETE FROM login_attempt WHERE at <= now() - %s", (limits.window,))
        checks = [("client", "client_key", client)] + (
            [("username", "username", user)] if user else [])
        for by, column, value in checks:
            times = _times(conn, column, value, limits)
            if len(times) >= limits.max_failures:
                return Locked(retry_after(times, _now(conn), limits), by)
        row = conn.execute("INSERT INTO login_attempt (username, client_key) VALUES (%s, %s)"
                           " RETURNING id", (user, client)).fetchone()
    assert row is not None
    return Reserved(int(row[0]))


def succeeded(conn: psycopg.Connection[Any], attempt: Reserved) -> None:
    conn.execute("DELETE FROM login_attempt WHERE id = %s", (attempt.attempt_id,))


def failed(conn: psycopg.Connection[Any], attempt: Reserved, *, username: str | None,
           client: str, limits: Limits, request_id: str | None = None,
           client_addr: str | None = None) -> list[str]:
    """Mark the attempt failed; a failure that brings a key to the limit starts a lockout,
    audited once.  Returns what was locked out (``username:<name>``, ``client:<key>``)."""
    user = username_key(username)
    locked: list[str] = []
    with conn.transaction():
        _lock(conn, _keys(user, client))
        conn.execute("UPDATE login_attempt SET failed = true WHERE id = %s",
                     (attempt.attempt_id,))
        checks = [("client_key", client, f"client:{client}")] + (
            [("username", user, f"username:{user}")] if user else [])
        for column, value, resource in checks:
            # confirmations are serialised by the lock, so exactly one sees the count
            # reach the limit: that one starts the lockout
            failures = conn.execute(
                f"SELECT count(*) FROM login_attempt WHERE {column} = %s AND failed"
                " AND at > now() - %s", (value, limits.window)).fetchone()
            if failures and failures[0] == limits.max_failures:
                locked.append(resource)
        for resource in locked:
            clinician = (conn.execute("SELECT id FROM clinician WHERE lower(username) = %s",
                                      (user,)).fetchone()
                         if resource.startswith("username:") else None)
            audit.record(conn, audit.AuditEntry(
                clinician_id=int(clinician[0]) if clinician else None, role="anonymous",
                action="login.lockout", resource=resource[:300], patient_id=None,
                request_id=request_id, client_addr=client_addr, outcome="refused"))
    return locked
