"""Which patients this alert engine evaluates: buckets of patients held by advisory locks.

Patients fall into :data:`BUCKETS` buckets (``patient_id % BUCKETS``).  An engine
configured as partition ``k`` of ``n`` (default 0 of 1: every bucket) evaluates a
bucket only while its evaluation connection holds the session-level advisory lock
``(LOCK_CLASS, bucket)``, so two engines never evaluate one patient at once, and the
engine that holds a bucket sees every queued reading of its patients: that is what
lets it keep their recent readings in memory (:mod:`alerts.patient_windows`).

- A second engine with the same partition is a hot standby: it finds the locks taken,
  claims nothing of those buckets, and tries again every ``retry`` seconds; when the
  first engine dies (SIGKILL included) PostgreSQL ends its session, frees its locks,
  and the standby takes the buckets over (and loads those patients' windows afresh).
- A lock is never released while the session lives, so an engine's set of buckets
  only grows; a new session (reconnect) starts from nothing.
- Queued readings without a patient are claimed by any engine (see
  ``alerts.worker.attribute_late``); once attributed to a patient of a bucket it does
  not hold, the engine queues them again, for the holder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

#: Patients are hashed into this many buckets (a bucket is the unit of ownership).
BUCKETS = 64
#: The first key of the bucket locks (an arbitrary constant: "HW" + 1).
LOCK_CLASS = 0x4857_0001


def parse_partition(text: str) -> tuple[int, int]:
    """``"k/n"`` -> (k, n) with 0 <= k < n <= BUCKETS."""
    try:
        k_text, n_text = text.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise ValueError(f"a partition is k/n (e.g. 0/2), not {text!r}") from None
    if not (0 <= k < n <= BUCKETS):
        raise ValueError(f"partition {text!r}: need 0 <= k < n <= {BUCKETS}")
    return k, n


def bucket_of(patient_id: int) -> int:
    return patient_id % BUCKETS


@dataclass
class Partitions:
    """The buckets this engine's connection holds (and tries to get)."""

    index: int = 0
    count: int = 1
    #: How often to try again for buckets of the partition held by another session.
    retry: float = 1.0
    held: set[int] = field(default_factory=set)
    backend_pid: int | None = None
    _tried_at: float = field(default=-1e9, repr=False)

    def wanted(self) -> list[int]:
        return [b for b in range(BUCKETS) if b % self.count == self.index]

    def complete(self) -> bool:
        return len(self.held) == len(self.wanted())

    def refresh(self, conn: psycopg.Connection[Any]) -> tuple[bool, set[int]]:
        """Take the partition's free buckets (at most every ``retry`` s while some are missing).

        Returns (new session?, buckets newly taken).  Call outside a transaction block:
        the locks are session-level, and a failed transaction must not lose them.
        """
        reset = conn.info.backend_pid != self.backend_pid
        if reset:
            self.held, self.backend_pid, self._tried_at = set(), conn.info.backend_pid, -1e9
        missing = [b for b in self.wanted() if b not in self.held]
        now = time.monotonic()
        if not missing or now - self._tried_at < self.retry:
            return reset, set()
        self._tried_at = now
        got = {int(r[0]) for r in conn.execute(
            "SELECT b FROM unnest(%s::int[]) AS b WHERE pg_try_advisory_lock(%s::int, b)",
            (missing, LOCK_CLASS)).fetchall()}
        self.held |= got
        return reset, got

    def claim_filter(self) -> list[int] | None:
        """The buckets to claim queued readings of; None: all of them."""
        if len(self.held) == BUCKETS:
            return None
        return sorted(self.held)
