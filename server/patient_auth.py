"""How a patient signs in to the portal: a one-time code by e-mail, then a session.

A patient gives their e-mail address (``patient.email``).  The server makes a random
challenge, kept by that browser in a cookie, and an 8-digit code sent to the address
through the notification outbox (``alerts.outbox.enqueue_message``), and stores only
the challenge's SHA-256 and an HMAC of the code under the secret key
(``patient_sign_in``, migration 0420).  The code signs in the browser holding the
challenge, once, within ``patient_code_seconds`` (10 minutes), for at most
``CODE_ATTEMPTS`` tries; on top, every wrong code counts in the sign-in throttle
(``server.login_throttle``: per address and per client), and codes asked for are
counted per address and per client (``CODE_REQUESTS`` in the throttle's window).

An address that names no patient (or a discharged one) gets the same answer and a
challenge that no code opens, so the page never tells who is registered.  Once a
code is used, the body of its e-mail is blanked in the outbox, so the code is not
kept in clear there either (until then it is, as in the e-mail itself, for at most
the code's lifetime).

Sessions are as the dashboard's (``server.web_sessions``): a random id of 256 bits in
the cookie, its SHA-256 in ``patient_session``, idle and absolute limits, a new id at
each sign-in, the row deleted at sign-out.

``patient_mail_file`` (development and the demo only; refused in production) appends
the e-mails to a file instead of the outbox: the demo has no mail server.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg

from alerts.outbox import enqueue_message
from homeward.settings import Settings
from server import login_throttle
from server.auth import hash_token

#: Wrong tries one code allows; then a new code must be asked for.
CODE_ATTEMPTS = 5
CODE_DIGITS = 8
#: Codes asked for per address, and (4x as many) per client, within the throttle window.
CODE_REQUESTS = 5
CLIENT_CODE_REQUESTS = 4 * CODE_REQUESTS
#: How long a sign-in row is kept after it was made (counting, then pruned).
KEEP_SIGN_INS = timedelta(days=1)
#: How stale ``last_seen_at`` may be before a request writes it again (seconds).
TOUCH_SECONDS = 60
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
CODE_SUBJECT = "Your Homeward sign-in code"


def normalise_email(text: str) -> str | None:
    """The address as stored and compared (trimmed, lower case), or None if it is not one."""
    email = text.strip().lower()
    return email if len(email) <= 254 and EMAIL.match(email) else None


def _mac(secret: str, *parts: str) -> str:
    return hmac.new(secret.encode(), "\x00".join(parts).encode(), hashlib.sha256).hexdigest()


def email_key(secret: str, email: str) -> str:
    return _mac(secret, "patient-email", email)


def code_hash(secret: str, challenge_hash: str, code: str) -> str:
    return _mac(secret, "patient-code", challenge_hash, code)


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def spaced(code: str) -> str:
    """"1234 5678": easier to read off an e-mail and type."""
    return f"{code[:4]} {code[4:]}"


def clean_code(text: str) -> str:
    """The digits a patient typed ("1234 5678", "1234-5678")."""
    return re.sub(r"[\s-]", "", text)[:32]


# -- e-mail to patients ------------------------------------------------------------------

def send_to_patient(conn: psycopg.Connection[Any], settings: Settings, *, email: str,
                    subject: str, body: str, key: str, reason: str,
                    team_id: str | None = None) -> int | None:
    """An e-mail to a patient through the outbox (its id; None: already queued), or to
    ``patient_mail_file`` when that is set (development and the demo)."""
    if settings.patient_mail_file is not None:
        _append_mail(settings.patient_mail_file, {"at": datetime.now(UTC).isoformat(),
                                                  "to": email, "subject": subject,
                                                  "body": body, "key": key})
        return None
    return enqueue_message(conn, channel="email", target=email, subject=subject, body=body,
                           key=key, at=datetime.now(UTC), reason=reason, team_id=team_id)


def _append_mail(path: Path, mail: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as out:
        out.write(orjson.dumps(mail) + b"\n")


def code_mail(code: str, minutes: int, portal_url: str) -> str:
    return (f"Your Homeward sign-in code is {spaced(code)}\n\n"
            f"Type it on the sign-in page ({portal_url}). It works once, for {minutes} "
            "minutes, and only on the device where you asked for it.\n\n"
            "If you did not ask for a code, you can ignore this e-mail. Nobody from your "
            "care team will ever ask you for this code.\n")


# -- asking for a code ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CodeSent:
    """The challenge for the browser's cookie (a code went out if the address is a
    patient's: the caller cannot tell, and says the same either way)."""

    challenge: str


@dataclass(frozen=True, slots=True)
class TooMany:
    retry_after: int


def request_code(conn: psycopg.Connection[Any], settings: Settings, *, email: str,
                 client_addr: str | None) -> CodeSent | TooMany:
    """Make a sign-in challenge for ``email`` (normalised) and send the patient its code."""
    secret = settings.secret_key
    key, client = email_key(secret, email), login_throttle.client_key(client_addr)
    window = timedelta(seconds=settings.login_failure_window_seconds)
    challenge = secrets.token_urlsafe(32)
    challenge_hash = hash_token(challenge)
    with conn.transaction():
        for lock in sorted((f"portal:email:{key}", f"portal:client:{client}")):
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock,))
        conn.execute("DELETE FROM patient_sign_in WHERE created_at < now() - %s",
                     (KEEP_SIGN_INS,))
        for column, value, limit in (("email_key", key, CODE_REQUESTS),
                                     ("client_key", client, CLIENT_CODE_REQUESTS)):
            times = [r[0] for r in conn.execute(
                f"SELECT created_at FROM patient_sign_in WHERE {column} = %s"
                " AND created_at > now() - %s ORDER BY created_at", (value, window))]
            if len(times) >= limit:
                now = conn.execute("SELECT now()").fetchone()
                assert now is not None
                wait = times[len(times) - limit] + window - now[0]
                return TooMany(max(1, int(wait.total_seconds()) + 1))
        row = conn.execute("SELECT id FROM patient WHERE lower(email) = %s"
                           " AND status <> 'discharged'", (email,)).fetchone()
        patient_id = int(row[0]) if row else None
        code = new_code()
        sign_in = conn.execute(
            "INSERT INTO patient_sign_in (challenge_hash, email_key, patient_id, code_hash,"
            " client_key, expires_at) VALUES (%s, %s, %s, %s, %s, now() + %s) RETURNING id",
            (challenge_hash, key, patient_id,
             code_hash(secret, challenge_hash, code) if patient_id else None, client,
             timedelta(seconds=settings.patient_code_seconds))).fetchone()
        assert sign_in is not None
        if patient_id is not None:
            portal = settings.dashboard_url.rstrip("/") + "/my/sign-in"
            notification = send_to_patient(
                conn, settings, email=email, subject=CODE_SUBJECT,
                body=code_mail(code, settings.patient_code_seconds // 60, portal),
                key=f"patient-sign-in-{sign_in[0]}", reason="patient_sign_in")
            conn.execute("UPDATE patient_sign_in SET notification_id = %s WHERE id = %s",
                         (notification, sign_in[0]))
    return CodeSent(challenge)


# -- checking a code ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SignedIn:
    patient_id: int


@dataclass(frozen=True, slots=True)
class Refused:
    """``why``: 'wrong' (tries left), 'expired' (unknown, used, too old or too many tries),
    'locked' (the throttle: retry_after seconds)."""

    why: str
    tries_left: int = 0
    retry_after: int = 0


def check_code(conn: psycopg.Connection[Any], settings: Settings, *, challenge: str,
               code: str, client_addr: str | None,
               request_id: str | None = None) -> SignedIn | Refused:
    """Sign in with ``code`` the browser holding ``challenge``; a code works once."""
    challenge_hash = hash_token(challenge)
    row = conn.execute("SELECT email_key FROM patient_sign_in WHERE challenge_hash = %s",
                       (challenge_hash,)).fetchone()
    if row is None:
        return Refused("expired")
    limits = login_throttle.Limits(settings.login_max_failures,
                                   settings.login_failure_window_seconds)
    client, username = login_throttle.client_key(client_addr), f"patient:{row[0][:32]}"
    attempt = login_throttle.reserve(conn, username=username, client=client, limits=limits)
    if isinstance(attempt, login_throttle.Locked):
        return Refused("locked", retry_after=attempt.retry_after)
    outcome = _check(conn, settings.secret_key, challenge_hash, clean_code(code))
    if isinstance(outcome, SignedIn):
        login_throttle.succeeded(conn, attempt)
    else:
        login_throttle.failed(conn, attempt, username=username, client=client, limits=limits,
                              request_id=request_id, client_addr=client_addr)
    return outcome


def _check(conn: psycopg.Connection[Any], secret: str, challenge_hash: str,
           code: str) -> SignedIn | Refused:
    with conn.transaction():
        row = conn.execute(
            "SELECT id, patient_id, code_hash, attempts, used_at IS NOT NULL,"
            " expires_at <= now(), notification_id FROM patient_sign_in"
            " WHERE challenge_hash = %s FOR UPDATE", (challenge_hash,)).fetchone()
        if row is None:
            return Refused("expired")
        sign_in, patient_id, stored, attempts, used, expired, notification = row
        if used or expired or attempts >= CODE_ATTEMPTS:
            return Refused("expired")
        conn.execute("UPDATE patient_sign_in SET attempts = attempts + 1 WHERE id = %s",
                     (sign_in,))
        good = stored is not None and hmac.compare_digest(
            stored, code_hash(secret, challenge_hash, code))
        if not good:
            left = CODE_ATTEMPTS - attempts - 1
            return Refused("wrong", tries_left=left) if left > 0 else Refused("expired")
        conn.execute("UPDATE patient_sign_in SET used_at = now() WHERE id = %s", (sign_in,))
        if notification is not None:  # the code is spent: not kept in clear in the outbox
            conn.execute("UPDATE notification SET payload = jsonb_set(payload, '{body}',"
                         " to_jsonb('(a sign-in code, used)'::text)) WHERE id = %s"
                         " AND state <> 'pending'", (notification,))
        status = conn.execute("SELECT status FROM patient WHERE id = %s",
                              (patient_id,)).fetchone()
        if status is None or status[0] == "discharged":
            return Refused("expired")
    return SignedIn(int(patient_id))


# -- sessions -----------------------------------------------------------------------------

def new_session(conn: psycopg.Connection[Any], patient_id: int, *, absolute_seconds: int,
                client_addr: str | None = None) -> str:
    """A new session; returns the id for the cookie (only its hash is stored)."""
    session_id = secrets.token_urlsafe(32)
    conn.execute("INSERT INTO patient_session (id_hash, patient_id, expires_at, client_addr)"
                 " VALUES (%s, %s, now() + %s, %s)",
                 (hash_token(session_id), patient_id, timedelta(seconds=absolute_seconds),
                  client_addr))
    return session_id


def session_patient(conn: psycopg.Connection[Any], session_id: str, *,
                    idle_seconds: int) -> tuple[int, str] | None:
    """(patient id, display name) of a live session (marked as used), else None.  A
    patient discharged meanwhile is signed out."""
    row = conn.execute(
        "WITH s AS (SELECT id_hash, patient_id, last_seen_at FROM patient_session"
        "            WHERE id_hash = %(h)s AND expires_at > now()"
        "              AND last_seen_at > now() - %(idle)s),"
        " touched AS (UPDATE patient_session w SET last_seen_at = now() FROM s"
        "              WHERE w.id_hash = s.id_hash AND s.last_seen_at < now() - %(touch)s"
        "              RETURNING 1)"
        " SELECT p.id, p.display_name FROM s JOIN patient p ON p.id = s.patient_id"
        " WHERE p.status <> 'discharged'",
        {"h": hash_token(session_id), "idle": timedelta(seconds=idle_seconds),
         "touch": timedelta(seconds=min(TOUCH_SECONDS, idle_seconds / 10))}).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def end_session(conn: psycopg.Connection[Any], session_id: str) -> bool:
    cur = conn.execute("DELETE FROM patient_session WHERE id_hash = %s",
                       (hash_token(session_id),))
    return cur.rowcount > 0


def prune_sessions(conn: psycopg.Connection[Any], *, idle_seconds: int) -> int:
    return conn.execute("DELETE FROM patient_session WHERE expires_at <= now()"
                        " OR last_seen_at <= now() - %s",
                        (timedelta(seconds=idle_seconds),)).rowcount


def set_email(conn: psycopg.Connection[Any], patient_id: int, email: str | None) -> None:
    """The patient's sign-in address (None: the patient cannot sign in); ValueError for
    an address that is not one, or is another patient's."""
    value = None if email is None else normalise_email(email)
    if email is not None and value is None:
        raise ValueError(f"{email!r} is not an e-mail address")
    try:
        with conn.transaction():
            cur = conn.execute("UPDATE patient SET email = %s WHERE id = %s",
                               (value, patient_id))
    except psycopg.errors.UniqueViolation as err:
        raise ValueError("another patient has this e-mail address") from err
    if cur.rowcount == 0:
        raise ValueError(f"unknown patient {patient_id}")
