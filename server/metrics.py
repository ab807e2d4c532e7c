"""A tiny Prometheus-text endpoint for the ingest's counters (no dependency)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from server.ingest import IngestCounters


def render(counters: IngestCounters) -> str:
    lines = []
    for name, value in counters.as_dict().items():
        metric = f"homeward_ingest_{name}_total"
        lines += [f"# TYPE {metric} counter", f"{metric} {value}"]
    return "\n".join(lines) + "\n"


def serve_metrics(counters: IngestCounters, *, port: int,
                  host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve ``GET /metrics`` on a daemon thread; returns the server (``shutdown()`` stops it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = render(counters).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="homeward-metrics", daemon=True).start()
    return server
