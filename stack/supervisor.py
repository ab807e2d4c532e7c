"""Run platform processes (ingest, API, alert worker) as supervised children.

Used by ``homeward demo``.  Each child is a Python module run with ``-m``
(usually ``homeward <command>``) with its own environment; its output goes
to a log file in the state folder, and a child that dies is reported (and
restarted) rather than silently missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Child:
    """A child process ``python -m <module_args...>``."""

    name: str
    module_args: list[str]
    env: dict[str, str]
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *self.module_args],
                env={**os.environ, **self.env},
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us, and we stop children in order
            )
        self.started_at = time.monotonic()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Supervisor:
    children: list[Child] = field(default_factory=list)

    def add(self, child: Child) -> Child:
        self.children.append(child)
        child.start()
        return child

    def check(self) -> list[str]:
        """Restart children that died; returns a note for each restart."""
        notes = []
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                code = child.proc.returncode
                child.restarts += 1
                notes.append(f"{child.name} exited with {code}; restarting (see {child.log_file})")
                child.start()
        return notes

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()
