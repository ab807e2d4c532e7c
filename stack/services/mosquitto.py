"""A private Mosquitto broker: its own config, port, logins and rights, and TLS.

Logins and rights come either from a password file and an ACL file (``users``,
``acl``: :func:`default_acl`) or, as in production, from the dynamic-security
plugin (``dynsec``: a state from :func:`server.broker_dynsec.initial_state`), whose
clients can be created and removed while the broker runs (docs/broker.md).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from homeward.broker_roles import GRANTS, Role
from server.broker_dynsec import merged, write_state
from stack.services.common import (
    MissingBinaryError,
    free_port,
    install_hint,
    tail,
    wait_for_port,
)


def find_mosquitto() -> Path:
    for candidate in (os.environ.get("HOMEWARD_MOSQUITTO"), shutil.which("mosquitto"),
                      "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto",
                      "/opt/homebrew/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise MissingBinaryError(
        "The Mosquitto broker was not found. Install it with: " + install_hint("mosquitto")
    )


def find_dynsec_plugin() -> Path:
    for candidate in (os.environ.get("HOMEWARD_MOSQUITTO_DYNSEC"),
                      "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
                      "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
                      "/usr/lib/mosquitto_dynamic_security.so",
                      "/usr/local/lib/mosquitto_dynamic_security.so",
                      "/opt/homebrew/lib/mosquitto_dynamic_security.so"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise MissingBinaryError("Mosquitto's dynamic-security plugin was not found (it ships with "
                             "the broker). Install it with: " + install_hint("mosquitto"))


#: What a server user given by name only may do in :func:`default_acl`: both server
#: workers' rights (the tests' one server user runs the ingest and publishes configs).
SERVER_ROLES = (Role.INGEST, Role.CONFIG)


def default_acl(server_users: Mapping[str, Iterable[Role]] | Iterable[str]
                = ("homeward-server",)) -> str:
    """An ACL file with each server user's rights by role (``homeward.broker_roles``),
    and every other user a hub whose username is its hub id, confined to its topics.

    A user given by name only has :data:`SERVER_ROLES`.  Production uses the
    dynamic-security plugin with the same rights; an ACL file suits a broker whose
    users are fixed when it starts (most tests).
    """
    users = (dict(server_users) if isinstance(server_users, Mapping)
             else dict.fromkeys(server_users, SERVER_ROLES))
    lines = []
    for user, roles in users.items():
        lines.append(f"user {user}")
        lines += [f"topic {g.access} {g.topic}" for role in roles for g in GRANTS[Role(role)]]
        lines.append("")
    lines.append("# every other user is a hub whose username is its hub id")
    lines += [f"pattern {g.access} {g.topic.replace('{hub}', '%u')}" for g in GRANTS[Role.HUB]]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class BrokerTls:
    """A TLS listener's files: the CA that signed the clients' certificates (and the
    broker's), the broker's certificate and key; with ``require_certificate`` a client
    must present a certificate signed by ``ca_file``."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_certificate: bool = False


@dataclass
class MosquittoServer:
    """A broker in ``state_dir`` on 127.0.0.1:``port``.

    With ``users`` (name → password) it requires a login and, unless
    ``username_as_client_id`` is off, makes every client's id its username
    (``use_username_as_clientid``): one session per identity, so no client can
    take over another's persistent session by naming its client id
    (docs/broker.md).  With ``acl`` (the text of an ACL file) it enforces it.
    With ``dynsec`` (a dynamic-security state) logins and rights are the plugin's
    instead (the client id bound to the username as above); the state is merged into the
    plugin's file on each start, so clients created while it ran stay.
    With ``tls`` a TLS listener serves on ``tls_port``; ``plain=False`` leaves out
    the plain listener on ``port``.
    Messages queued for persistent sessions are kept without limit and written
    to disk every ``autosave_interval`` seconds and on a clean shutdown.
    """

    state_dir: Path
    port: int = field(default_factory=free_port)
    users: dict[str, str] | None = None
    acl: str | None = None
    persistence: bool = True
    autosave_interval: int = 1
    max_inflight: int = 1000
    username_as_client_id: bool = True
    dynsec: Mapping[str, Any] | None = None
    tls: BrokerTls | None = None
    tls_port: int = field(default_factory=free_port)
    plain: bool = True
    binary: Path = field(default_factory=find_mosquitto)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).absolute()
        self.conf_file = self.state_dir / "mosquitto.conf"
        self.log_file = self.state_dir / "mosquitto.log"
        self.dynsec_file = self.state_dir / "dynamic-security.json"
        if not self.plain and self.tls is None:
            raise ValueError("a broker without its plain listener needs tls")

    @property
    def listen_port(self) -> int:
        """The port that answers first: the plain listener's, else the TLS one's."""
        return self.port if self.plain else self.tls_port

    def _write_config(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "data").mkdir(exist_ok=True)
        user = pwd.getpwuid(os.geteuid()).pw_name
        #: Options of each listener (mosquitto.conf(5) "Listeners"); the others are global.
        per_listener: list[str] = []
        lines = [
            f"user {user}",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
            f"max_inflight_messages {self.max_inflight}",
            "max_queued_messages 0",
            "max_queued_bytes 0",
            "max_packet_size 16777216",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.state_dir / 'data'}/",
            f"autosave_interval {self.autosave_interval}",
        ]
        if self.dynsec is not None:
            state = dict(self.dynsec)
            if self.dynsec_file.exists():
                state = merged(json.loads(self.dynsec_file.read_text()), state)
            write_state(self.dynsec_file, state)
            lines += ["allow_anonymous false", f"plugin {find_dynsec_plugin()}",
                      f"plugin_opt_config_file {self.dynsec_file}"]
            if self.username_as_client_id:
                per_listener.append("use_username_as_clientid true")
        elif self.users is not None:
            pw_file = self.state_dir / "passwd"
            pw_file.write_text("")
            pw_file.chmod(0o600)
            passwd_tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
            for name, password in self.users.items():
                subprocess.run([passwd_tool, "-b", str(pw_file), name, password], check=True,
                               capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw_file}"]
            if self.username_as_client_id:
                per_listener.append("use_username_as_clientid true")
        else:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            acl_file = self.state_dir / "acl"
            acl_file.write_text(self.acl)
            acl_file.chmod(0o600)
            lines.append(f"acl_file {acl_file}")
        if self.plain:
            lines += [f"listener {self.port} 127.0.0.1", *per_listener]
        if self.tls is not None:
            lines += [f"listener {self.tls_port} 127.0.0.1", *per_listener,
                      f"cafile {self.tls.ca_file}", f"certfile {self.tls.cert_file}",
                      f"keyfile {self.tls.key_file}", "tls_version tlsv1.2",
                      f"require_certificate {'true' if self.tls.require_certificate else 'false'}"]
        self.conf_file.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 15.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._write_config()
        stderr_file = self.state_dir / "mosquitto.stderr"
        with stderr_file.open("ab") as err:
            self._proc = subprocess.Popen([str(self.binary), "-c", str(self.conf_file)],
                                          stdout=subprocess.DEVNULL, stderr=err)
        if not wait_for_port(self.listen_port, timeout):
            code = self._proc.poll()
            self.stop()
            raise RuntimeError(f"Mosquitto did not start on port {self.listen_port}"
                               f" (exit {code}):\n{tail(stderr_file)}\n{tail(self.log_file)}")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: the broker loses what it had not yet saved."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def restart(self) -> None:
        self.stop()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and wait_for_port(self.listen_port, 0.05):
            time.sleep(0.05)
        self.start()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_file, lines)

    def __enter__(self) -> MosquittoServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
