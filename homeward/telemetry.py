"""Serving a process's Prometheus metrics and its readiness (docs/observability.md).

Shared plumbing rather than vocabulary: it lives here because every runtime
package (the ingest in ``server``, the alert worker in ``alerts``, the API)
serves its metrics the same way, and ``alerts`` may not import ``server``.
It imports only the standard library and ``prometheus_client``.

Each process builds a :class:`prometheus_client.CollectorRegistry` of its own
(:func:`process_registry`) and serves it with :func:`serve` on the address and
port its settings name; the same small HTTP server answers ``/healthz`` from a
readiness callback, ``200`` while every check passes and ``503`` otherwise, so
an orchestrator can health-check a worker that has no HTTP API of its own.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

log = logging.getLogger("homeward.telemetry")
T = TypeVar("T")

METRICS_PATH = "/metrics"
READY_PATH = "/healthz"

#: Latency buckets (seconds) for database batches and HTTP requests: 1 ms to 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Readiness:
    """The outcome of a readiness check: each named check passed or not, and details."""

    checks: Mapping[str, bool]
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.checks.values())

    def body(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "unavailable",
                "failing": sorted(name for name, ok in self.checks.items() if not ok),
                "checks": dict(self.checks), **self.detail}


ReadyCheck = Callable[[], Readiness]


def fresh(last: float | None, limit_s: float, now: float | None = None) -> bool:
    """Did ``last`` (a ``time.monotonic()`` stamp, None: never) happen within ``limit_s``?"""
    if last is None:
        return False
    return (time.monotonic() if now is None else now) - last <= limit_s


def process_registry() -> CollectorRegistry:
    """A registry with the standard process, platform and GC collectors (CPU, memory,
    open files, Python version), to which a process adds its own metrics."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class MetricsEndpoint:
    """``GET /metrics`` (the registry, Prometheus text format) and ``GET /healthz``
    (the readiness callback; 404 when there is none) on a daemon thread."""

    def __init__(self, registry: CollectorRegistry, *, host: str, port: int,
                 ready: ReadyCheck | None = None) -> None:
        self.registry = registry
        self.ready = ready
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == METRICS_PATH:
                    self._answer(200, generate_latest(endpoint.registry), CONTENT_TYPE_LATEST)
                elif path == READY_PATH and endpoint.ready is not None:
                    readiness = endpoint._readiness()
                    self._answer(200 if readiness.ok else 503,
                                 json.dumps(readiness.body(), default=str).encode(),
                                 "application/json")
                else:
                    self._answer(404, b"not found\n", "text/plain")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would drown the process's own log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="homeward-metrics", daemon=True)
        self._thread.start()

    def _readiness(self) -> Readiness:
        assert self.ready is not None
        try:
            return self.ready()
        except Exception as err:  # a check that fails to run is a failing check
            log.exception("readiness check failed")
            return Readiness({"check": False}, {"error": f"{type(err).__name__}: {err}"})

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        return f"http://{host}:{self.port}{METRICS_PATH}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve(registry: CollectorRegistry, *, host: str, port: int,
          ready: ReadyCheck | None = None) -> MetricsEndpoint:
    """Serve ``registry`` (and ``ready`` on /healthz) on ``host:port`` until the process
    ends or :meth:`MetricsEndpoint.close`.  Port 0 picks a free port (tests); a port in use
    raises ``OSError`` naming it, rather than leaving a worker without a health check."""
    try:
        endpoint = MetricsEndpoint(registry, host=host, port=port, ready=ready)
    except OSError as err:
        raise OSError(err.errno, f"cannot serve metrics on {host}:{port}: {err.strerror}"
                                 " (set the process's *_METRICS_PORT; 0 turns it off)") from err
    log.info("metrics on %s, readiness on %s", endpoint.url,
             endpoint.url.removesuffix(METRICS_PATH) + READY_PATH if ready else "(none)",
             extra={"metrics_url": endpoint.url})
    return endpoint


class Cached(Generic[T]):
    """The last value of ``load()`` for ``ttl`` seconds: metrics computed by a database
    query at scrape time cost one query however often, or by how many, they are scraped.
    A load that raises keeps no value, so the next scrape tries again."""

    def __init__(self, load: Callable[[], T], ttl: float = 5.0) -> None:
        self._load = load
        self.ttl = ttl
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at: float | None = None

    def get(self) -> T:
        with self._lock:
            if self._value is None or not fresh(self._at, self.ttl):
                self._value = self._load()
                self._at = time.monotonic()
            return self._value


def label_value(value: object, *, known: Iterable[str] | None = None,
                other: str = "other") -> str:
    """A label value from data: ``none`` for None, ``other`` for a value outside ``known``
    (so a label's cardinality stays bounded by what the code expects)."""
    if value is None:
        return "none"
    text = str(value)
    if known is not None and text not in set(known):
        return other
    return text
