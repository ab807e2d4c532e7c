"""Credentials: API tokens (sha256) and passwords (scrypt).

An API token is random (256 bits), so a fast hash is enough to store it:
the database holds ``sha256(token)`` and a lookup is one indexed query.  A
password is chosen by a person, so it is stored with scrypt, a memory-hard
key-derivation function (RFC 7914) with a per-password salt.  The dashboard's
sessions live on the server (``server.web_sessions``); their ids are random
too, and stored as ``sha256`` like tokens.

Checking a password costs one scrypt, tens of milliseconds of CPU: callers in
an event loop run it in a worker thread (``server.api.routes.dashboard``).  A
username that does not exist, or has no password, is checked against a dummy
hash of the same cost, so the answer's timing does not tell which usernames
exist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache

# scrypt cost: N=2**14, r=8, p=1 (16 MiB, tens of ms) — the RFC 7914 section 2
# interactive-login figure, the same as Python's hashlib documentation example.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1


def new_api_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r),
                                p=int(p), dklen=len(_unb64(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, _unb64(digest))


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def check_login(password: str, stored: str | None) -> bool:
    """``verify_password`` at the same cost whether or not there is a stored hash."""
    if not stored:
        verify_password(password, _dummy_hash())
        return False
    return verify_password(password, stored)
