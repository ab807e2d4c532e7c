"""Security headers on every response the app sends (docs/security.md).

A pure ASGI middleware, so the answers of the other middlewares (413, 403) and
of static files carry them too.  A header a route set itself is kept (the
invitation page's ``Referrer-Policy: no-referrer``, the API docs' own policy).

The policy allows scripts and styles from the app's own origin only: no inline
script, no inline event handler, no ``style=`` attribute in markup.  Styles set
from a script through the CSSOM (``el.style.width = ...``, as uPlot does) are not
markup and are allowed by ``style-src 'self'``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    # for browsers older than CSP's frame-ancestors
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
#: Every answer but the static assets: a page or an API answer holds patient data as it
#: was when sent, which a browser's cache or back button must not show later as current
#: (hazard H-012), nor keep on a shared computer.  A route's own (the stream's) is kept.
NO_STORE = (b"cache-control", b"no-store")
STATIC_PREFIX = "/static/"
#: Sent over HTTPS only (a browser ignores it over HTTP anyway): a year, as commonly advised.
HSTS = (b"strict-transport-security", b"max-age=31536000")
#: The body of a 500 this middleware answers itself (as Starlette's own).
ERROR_BODY = b"Internal Server Error"


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = (HEADERS + ((HSTS,) if scope.get("scheme") == "https" else ())
                 + (() if scope.get("path", "").startswith(STATIC_PREFIX) else (NO_STORE,)))

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", ()))
                present = {k.lower() for k, _ in headers}
                headers.extend((k, v) for k, v in extra if k not in present)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Starlette's outermost handler would answer this 500 past us, without the
            # headers; answered here it has them (and the request id), and the error
            # still goes on to be logged
            if not started:
                await send_with_headers({"type": "http.response.start", "status": 500,
                                         "headers": [(b"content-type",
                                                      b"text/plain; charset=utf-8"),
                                                     (b"content-length",
                                                      str(len(ERROR_BODY)).encode())]})
                await send_with_headers({"type": "http.response.body", "body": ERROR_BODY})
            raise
