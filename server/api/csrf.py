"""Cross-site request forgery: a per-session token, and a strict Origin check.

Every state-changing request (POST, PUT, PATCH, DELETE) that the session cookie
authenticates must carry the session's CSRF token, in the ``X-CSRF-Token``
header (the dashboard's scripts read it from ``<meta name="csrf-token">``) or,
for a plain form such as sign-out, in a ``csrf_token`` field; without it, or
with another session's, the answer is 403 (``server.api.deps``).  The token is
``HMAC-SHA256(secret_key, session id)``: another site cannot read it, it needs
no storage, and it dies with the session.

Independently, :class:`OriginCheck` answers 403 to a state-changing request
whose ``Origin`` (or, without one, ``Sec-Fetch-Site``) says it comes from
another site, unless it carries a bearer token (an API client, which a browser
never sends cross-site on its own).  That also covers the requests no session
authenticates: signing in (login CSRF) and the invitation page.

Bearer-token API requests need neither: a browser does not attach an
``Authorization`` header to a forged request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from server.web_sessions import SESSION_COOKIE

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HEADER = "x-csrf-token"
FORM_FIELD = "csrf_token"


def csrf_token(session_id: str, secret: str) -> str:
    mac = hmac.new(secret.encode(), b"csrf\x00" + session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def token_matches(given: str | None, session_id: str, secret: str) -> bool:
    if not given:
        return False
    return hmac.compare_digest(given.encode(), csrf_token(session_id, secret).encode())


def request_token(request: Request) -> str:
    """The CSRF token of the request's session cookie ('' without one), for templates."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return ""
    return csrf_token(cookie, request.app.state.settings.secret_key)


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, lower-cased, default ports left out."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def has_bearer(headers: dict[bytes, bytes]) -> bool:
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


class OriginCheck:
    """403 for a state-changing, non-bearer request from another origin."""

    def __init__(self, app: ASGIApp, *, dashboard_url: str) -> None:
        self.app = app
        self.trusted = {o for o in (origin_of(dashboard_url),) if o}

    def _refused(self, scope: Scope) -> str | None:
        if scope["type"] != "http" or scope.get("method") not in UNSAFE_METHODS:
            return None
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        if has_bearer(headers):
            return None
        origin = headers.get(b"origin")
        if origin is None:
            site = headers.get(b"sec-fetch-site", b"").decode("latin-1").lower()
            return "a cross-site request" if site == "cross-site" else None
        own = origin_of(f"{scope.get('scheme', 'http')}://"
                        f"{headers.get(b'host', b'').decode('latin-1')}")
        given = origin_of(origin.decode("latin-1"))
        if given is not None and (given == own or given in self.trusted):
            return None
        return "a request from another origin"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = self._refused(scope)
        if refused is None:
            await self.app(scope, receive, send)
            return
        body = orjson.dumps({"detail": f"{refused} may not change anything here"})
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
