"""The virtual radio over a local socket: addresses, framing and error names.

``homeward sim devices`` serves a ``VirtualRadio`` on a TCP port or a Unix
socket; the sim backend in another process reaches it when ``sim_radio`` is a
URL instead of a plain radio id:

- ``tcp://HOST:PORT/RADIO``   e.g. ``tcp://127.0.0.1:40123/hub-1``
- ``unix:///PATH#RADIO``      e.g. ``unix:///tmp/hub-1.sock#hub-1``

``RADIO`` may be left out (``tcp://127.0.0.1:40123``): the server's own radio.
A query ``?timeout=SECONDS`` sets how long a request may wait for its reply
(default 10 s).

Wire format: one JSON object per line (UTF-8, ``\\n``-terminated, at most
``MAX_LINE`` bytes); bytes travel as hex strings.  The client sends requests
``{"id": 7, "op": "read", "handle": 12}``; the server answers each with
``{"id": 7, "ok": true, ...}`` or ``{"id": 7, "ok": false, "error": NAME,
"message": "...", "code": 3}`` and pushes events without an id:
``{"event": "advertisement", ...}``, ``{"event": "notification", "handle":
12, "data": "0078..."}``, ``{"event": "disconnected"}``.  Replies and events
of one connection leave the server in the order they happened.  The table of
operations is ``OPS`` below; docs/simulator.md shows an exchange.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import orjson

PROTOCOL_VERSION = 1

#: Longest line either side accepts (a GATT tree is ~3 KB; a notification < 1 KB).
MAX_LINE = 1 << 20

#: How long a request waits for its reply unless the URL says ``?timeout=``.
DEFAULT_REQUEST_TIMEOUT_S = 10.0

#: A connected client pings an otherwise quiet server this often: a server that
#: stopped answering (SIGSTOP, a hung loop) is noticed as a disconnection.
KEEPALIVE_S = 5.0

#: Messages queued for one client before the server gives up on it and drops
#: the connection (the client sees a disconnection): a reader that stopped
#: reading must not grow the server's memory without bound.
SEND_QUEUE_LIMIT = 50_000

#: Operations: name -> what it does (arguments; reply fields).
OPS: dict[str, str] = {
    "hello": "first request of a connection (radio, version; radio, version, devices)",
    "scan": "start sending advertisement events (service_uuids or null; -)",
    "stop_scan": "stop them (-; -)",
    "connect": "connect to a device (address; name, mtu, services)",
    "disconnect": "hang up (-; -)",
    "read": "read a characteristic (handle; data)",
    "read_descriptor": "read a descriptor (handle; data)",
    "write": "write a characteristic (handle, data, response; -)",
    "write_descriptor": "write a descriptor (handle, data; -)",
    "start_notify": "enable notifications/indications (handle; -)",
    "stop_notify": "disable them (handle; -)",
    "ping": "keep-alive (-; -)",
    "devices": "control: the radio's devices (-; devices)",
    "measure": "control: take a reading now (address or null for all; count)",
    "push": "control: send exactly these measurement bytes (address, data; -)",
}

#: Error names in replies; the client raises the same exception the in-process
#: backend raises (device_sim.backend docstring).
ErrorName = Literal["device_not_found", "not_connected", "att", "bleak", "timeout",
                    "unknown_radio", "bad_request"]


class ProtocolError(Exception):
    """A malformed line or an unexpected message."""


@dataclass(frozen=True, slots=True)
class RadioAddress:
    """Where a remote virtual radio is served."""

    scheme: Literal["tcp", "unix"]
    radio: str
    host: str = ""
    port: int = 0
    path: str = ""
    timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S

    def __str__(self) -> str:
        query = ("" if self.timeout_s == DEFAULT_REQUEST_TIMEOUT_S
                 else f"?timeout={self.timeout_s:g}")
        if self.scheme == "unix":
            return f"unix://{self.path}{query}" + (f"#{self.radio}" if self.radio else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}" + (f"/{self.radio}" if self.radio else "") + query


def is_remote(radio: object) -> bool:
    """True when ``sim_radio`` names a radio served elsewhere (a URL), not a radio id."""
    return isinstance(radio, str) and "://" in radio


def parse_radio_url(url: str) -> RadioAddress:
    """``tcp://HOST:PORT/RADIO`` or ``unix:///PATH#RADIO``; ValueError says what is wrong."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    timeout = DEFAULT_REQUEST_TIMEOUT_S
    if "timeout" in query:
        try:
            timeout = float(query["timeout"][-1])
        except ValueError:
            raise ValueError(f"{url!r}: timeout must be a number of seconds") from None
        if timeout <= 0:
            raise ValueError(f"{url!r}: timeout must be positive")
    if parts.scheme == "tcp":
        try:
            port = parts.port
        except ValueError as err:
            raise ValueError(f"{url!r}: bad port ({err})") from None
        if not parts.hostname or port is None:
            raise ValueError(f"{url!r}: expected tcp://HOST:PORT/RADIO, "
                             "e.g. tcp://127.0.0.1:40123/hub-1")
        return RadioAddress("tcp", parts.path.strip("/"), host=parts.hostname, port=port,
                            timeout_s=timeout)
    if parts.scheme == "unix":
        path = parts.netloc + parts.path if parts.netloc else parts.path
        if not path:
            raise ValueError(f"{url!r}: expected unix:///PATH#RADIO, "
                             "e.g. unix:///tmp/hub-1.sock#hub-1")
        return RadioAddress("unix", parts.fragment, path=path, timeout_s=timeout)
    raise ValueError(f"{url!r}: a remote virtual radio is tcp://HOST:PORT/RADIO or "
                     "unix:///PATH#RADIO")


def encode(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message) + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = orjson.loads(line)
    except orjson.JSONDecodeError as err:
        raise ProtocolError(f"not JSON: {line[:80]!r}: {err}") from err
    if not isinstance(message, dict):
        raise ProtocolError(f"not a JSON object: {line[:80]!r}")
    return message
