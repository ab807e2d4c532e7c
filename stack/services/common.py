"""Helpers shared by the local service runners."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import time
from pathlib import Path


class MissingBinaryError(RuntimeError):
    """A server binary is not installed; the message says what to install."""


def install_hint(debian_package: str) -> str:
    """The exact command that installs a Debian package here, as a sentence."""
    sudo = "" if os.geteuid() == 0 else "sudo "
    if shutil.which("apt-get"):
        return f"{sudo}apt-get install -y {debian_package}"
    if shutil.which("dnf"):
        return f"{sudo}dnf install -y {debian_package}"
    if shutil.which("brew"):
        return f"brew install {debian_package}"
    return f"install the '{debian_package}' package with your system's package manager"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def unprivileged_user() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise MissingBinaryError("running as root and no 'postgres' user exists to run PostgreSQL")


def chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def make_traversable(path: Path) -> None:
    """Let another account reach ``path``: add o+x to the folders on the way.

    Only needed as root, where PostgreSQL runs as its own account and a
    0700 temporary folder would hide its data folder from it.
    """
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & 0o001 and folder.stat().st_uid == os.geteuid():
            folder.chmod(mode | 0o001)
