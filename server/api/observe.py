"""Request ids, request logging and per-route latency for the API (docs/observability.md).

:class:`RequestContext` is a pure ASGI middleware, the outermost one, so that
it times and names every request, including those answered by the other
middlewares (413, 403, 429):

- the request id is the caller's ``X-Request-ID`` when it is sane (printable
  ASCII, at most 64 characters), else a new one; it is put where
  ``server.api.scope.request_id`` finds it (``request.state.request_id``), so
  the access audit records the same id, echoed in the response's
  ``X-Request-ID``, and bound to every log line of the request;
- latency is labelled by the matched route's template (``/api/patients/{patient_id}``),
  never by the raw path, so a scan of random URLs adds one series (``unmatched``),
  not one per URL.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from homeward.logs import log_context
from homeward.telemetry import LATENCY_BUCKETS, process_registry

log = logging.getLogger("homeward.api.access")

REQUEST_ID_HEADER = "x-request-id"
#: The longest caller-chosen request id kept (server.api.scope uses the same bound).
REQUEST_ID_MAX = 64
#: The route label of a request that matched no route (a 404 from the router).
UNMATCHED = "unmatched"

#: The API process's registry; ``homeward serve`` serves it on HOMEWARD_API_METRICS_PORT.
API_REGISTRY = process_registry()
REQUEST_SECONDS = Histogram(
    "homeward_api_request_seconds",
    "API request latency until the response ends, by method and route template",
    ["method", "route"], buckets=LATENCY_BUCKETS, registry=API_REGISTRY)
REQUESTS = Counter(
    "homeward_api_requests", "API requests answered, by method, route template and status",
    ["method", "route", "status"], registry=API_REGISTRY)
IN_FLIGHT = Gauge(
    "homeward_api_requests_in_flight", "API requests being answered (open streams included)",
    registry=API_REGISTRY)

#: Methods kept as labels; anything else (a scanner's PROPFIND) is ``other``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def sane_request_id(given: str | None) -> str:
    """The caller's request id if it is short printable ASCII, else a new random one."""
    if given and len(given) <= REQUEST_ID_MAX and given.isascii() and given.isprintable():
        return given
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """The template of the route the router matched (``scope["route"]``), else
    ``unmatched``; a mount (``/static``) is labelled by its prefix."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED


class RequestContext:
    """Request id in and out, one access log line and the latency metrics per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope.get("headers", ())
                      if k == b"x-request-id"), None)
        request_id = sane_request_id(given)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        method = scope.get("method", "GET")
        method_label = method if method in METHODS else "other"
        status = 500
        started = time.perf_counter()
        IN_FLIGHT.inc()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", ())
                           if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        with log_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                IN_FLIGHT.dec()
                route = route_template(scope)
                REQUEST_SECONDS.labels(method_label, route).observe(seconds)
                REQUESTS.labels(method_label, route, str(status)).inc()
                log.info("%s %s %d %.1f ms", method, route, status, seconds * 1000,
                         extra={"method": method, "route": route, "path": scope.get("path"),
                                "status": status, "duration_ms": round(seconds * 1000, 2),
                                "client": (scope.get("client") or ("", 0))[0]})
