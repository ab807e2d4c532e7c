"""A private Mosquitto broker: its own config, port, password file and ACL."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

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


def default_acl(server_users: tuple[str, ...] = ("homeward-server",)) -> str:
    """The production ACL: a hub writes only below its own prefix (DESIGN.md)."""
    lines = []
    for user in server_users:
        lines += [f"user {user}", "topic readwrite homeward/v1/#", ""]
    lines += [
        "# every other user is a hub whose username is its hub id",
        "pattern write homeward/v1/hubs/%u/readings",
        "pattern readwrite homeward/v1/hubs/%u/status",
        "pattern read homeward/v1/hubs/%u/config",
        "pattern read homeward/v1/hubs/%u/acks",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class MosquittoServer:
    """A broker in ``state_dir`` on 127.0.0.1:``port``.

    With ``users`` (name → password) it requires a login and, unless
    ``username_as_client_id`` is off, makes every client's id its username
    (``use_username_as_clientid``): one session per identity, so no client can
    take over another's persistent session by naming its client id
    (docs/broker.md).  With ``acl`` (the text of an ACL file) it enforces it.
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
    binary: Path = field(default_factory=find_mosquitto)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).absolute()
        self.conf_file = self.state_dir / "mosquitto.conf"
        self.log_file = self.state_dir / "mosquitto.log"

    def _write_config(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "data").mkdir(exist_ok=True)
        user = pwd.getpwuid(os.geteuid()).pw_name
        lines = [
            f"listener {self.port} 127.0.0.1",
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
        if self.users is not None:
            pw_file = self.state_dir / "passwd"
            pw_file.write_text("")
            pw_file.chmod(0o600)
            passwd_tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
            for name, password in self.users.items():
                subprocess.run([passwd_tool, "-b", str(pw_file), name, password], check=True,
                               capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw_file}"]
            if self.username_as_client_id:
                lines.append("use_username_as_clientid true")
        else:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            acl_file = self.state_dir / "acl"
            acl_file.write_text(self.acl)
            acl_file.chmod(0o600)
            lines.append(f"acl_file {acl_file}")
        self.conf_file.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 15.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._write_config()
        stderr_file = self.state_dir / "mosquitto.stderr"
        with stderr_file.open("ab") as err:
            self._proc = subprocess.Popen([str(self.binary), "-c", str(self.conf_file)],
                                          stdout=subprocess.DEVNULL, stderr=err)
        if not wait_for_port(self.port, timeout):
            code = self._proc.poll()
            self.stop()
            raise RuntimeError(f"Mosquitto did not start on port {self.port} (exit {code}):\n"
                               f"{tail(stderr_file)}\n{tail(self.log_file)}")

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
        while time.monotonic() < deadline and wait_for_port(self.port, 0.05):
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
