"""A hub's provisioning bundle: what a new hub needs to reach the broker as itself.

``homeward admin hub provision`` writes one (JSON); ``homeward edge --bundle
FILE`` reads it.  It holds the hub's password, so it is written with mode 0600
and belongs on the hub only.  ``broker_url`` is ``mqtt://host:port`` or
``mqtts://host:port`` (TLS); ``ca_pem`` is the certificate authority the hub
checks the broker's certificate against (absent: the system's).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

BUNDLE_VERSION = 1
SCHEMES = {"mqtt": (False, 1883), "mqtts": (True, 8883)}


class HubBundle(BaseModel):
    model_config = ConfigDict(extra="forbid")

    v: int = BUNDLE_VERSION
    hub_id: str = Field(min_length=1, max_length=64)
    broker_url: str
    password: str = Field(min_length=1)
    ca_pem: str | None = None

    def broker(self) -> tuple[str, int, bool]:
        """(host, port, tls) from ``broker_url``."""
        return parse_broker_url(self.broker_url)


def parse_broker_url(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError(f"broker URL {url!r}: use mqtt://HOST:PORT or mqtts://HOST:PORT")
    tls, default_port = SCHEMES[parts.scheme]
    return parts.hostname, parts.port or default_port, tls


def broker_url(host: str, port: int, tls: bool) -> str:
    return f"{'mqtts' if tls else 'mqtt'}://{host}:{port}"


def write_bundle(bundle: HubBundle, path: Path) -> Path:
    """Write the bundle readable by its owner only (it holds a password)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(bundle.model_dump_json(indent=2, exclude_none=True) + "\n")
    return path


def read_bundle(path: Path) -> HubBundle:
    return HubBundle.model_validate_json(path.read_text(encoding="utf-8"))
