"""The alert engine process (``homeward alerts``): evaluation_queue -> rules -> alerts.

Each batch is one transaction::

    SELECT ... FROM evaluation_queue ORDER BY seq FOR UPDATE SKIP LOCKED LIMIT n
    evaluate every applicable rule over each reading's window (in taken_at order)
    open / update / auto-resolve alerts (+ alert_event rows and NOTIFY alert_event)
    DELETE the queue rows
    COMMIT

so a reading's evaluation and its alert changes commit together or not at
all: a SIGKILL at any moment leaves the rows in the queue for the next run
(at-least-once evaluation, exactly-once effect, since the queue row and the
alert change share the transaction).  Several workers can run side by side:
SKIP LOCKED hands each its own rows, and the partial unique index keeps one
active alert per (patient, rule).

The worker LISTENs on ``evaluation_queue`` (ingest NOTIFYs in its commit) and
polls every ``poll_interval`` seconds as a fallback; between batches it runs
the scheduler tick (timers: escalations, leases, snoozes, missed readings,
hubs gone silent), so timers fire even when no readings arrive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from alerts.evaluators import evaluate
from alerts.lifecycle import AlertChange, apply_finding
from alerts.model import Rule, WindowReading
from alerts.ruleset import RuleSet
from alerts.settings_store import load_settings, rules_for
from alerts.window import Window

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: (conn, patient_id, rule, severity, at) -> (team_id, route detail)
Router = Callable[[psycopg.Connection[Any], int, Rule, str, datetime],
                  tuple[str | None, dict[str, Any] | None]]


def utcnow() -> datetime:
    return datetime.now(UTC)


def first_care_team(conn: psycopg.Connection[Any], patient_id: int, rule: Rule, severity: str,
                    at: datetime) -> tuple[str | None, dict[str, Any] | None]:
    """The simplest router: the patient's first care team (by team id)."""
    row = conn.execute("SELECT team_id FROM patient_team WHERE patient_id = %s"
                       " ORDER BY team_id LIMIT 1", (patient_id,)).fetchone()
    return (row[0] if row else None), None


@dataclass
class QueueItem:
    seq: int
    reading_id: str
    taken_at: datetime
    patient_id: int | None
    kind: str


@dataclass
class BatchResult:
    readings: int = 0
    changes: list[AlertChange] = field(default_factory=list)


@dataclass
class AlertEngine:
    """Evaluates queued readings against a rule set inside one transaction per batch."""

    ruleset: RuleSet
    clock: Clock = utcnow
    router: Router = first_care_team
    batch_size: int = 500

    def process_batch(self, conn: psycopg.Connection[Any]) -> BatchResult:
        result = BatchResult()
        with conn.transaction():
            rows = conn.execute(
                "SELECT seq, reading_id, taken_at, patient_id, kind FROM evaluation_queue"
                " ORDER BY seq FOR UPDATE SKIP LOCKED LIMIT %s", (self.batch_size,)).fetchall()
            if not rows:
                return result
            items = [QueueItem(r[0], str(r[1]), r[2], r[3], r[4]) for r in rows]
            result.readings = len(items)
            result.changes = self._evaluate(conn, [i for i in items if i.patient_id is not None])
            conn.execute("DELETE FROM evaluation_queue WHERE seq = ANY(%s)",
                         ([i.seq for i in items],))
        return result

    def _evaluate(self, conn: psycopg.Connection[Any], items: list[QueueItem]) -> list[AlertChange]:
        if not items:
            return []
        max_window = max((r.window for r in self.ruleset.rules), default=timedelta(days=1))
        spans: dict[int, list[datetime]] = {}
        for i in items:
            assert i.patient_id is not None
            lo_hi = spans.setdefault(i.patient_id, [i.taken_at, i.taken_at])
            lo_hi[0] = min(lo_hi[0], i.taken_at)
            lo_hi[1] = max(lo_hi[1], i.taken_at)
        pids = list(spans)
        history: dict[int, list[WindowReading]] = defaultdict(list)
        for pid, rid, kind, taken_at, values, flags in conn.execute(
                "SELECT r.patient_id, r.id, r.kind, r.taken_at, r.\"values\", r.flags"
                " FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS w(pid, lo, hi)"
                " JOIN reading r ON r.patient_id = w.pid AND r.taken_at >= w.lo"
                " AND r.taken_at <= w.hi ORDER BY r.patient_id, r.taken_at, r.id",
                (pids, [spans[p][0] - max_window for p in pids], [spans[p][1] for p in pids])):
            history[pid].append(WindowReading(str(rid), kind, taken_at, values, tuple(flags)))
        settings = load_settings(conn, pids)
        status = dict(conn.execute("SELECT id, status FROM patient WHERE id = ANY(%s)",
                                   (pids,)).fetchall())
        changes: list[AlertChange] = []
        now = self.clock()
        for item in sorted(items, key=lambda i: (i.taken_at, i.seq)):
            assert item.patient_id is not None
            pid = item.patient_id
            rules = [r for r in rules_for(self.ruleset, settings.get(pid, []), item.taken_at)
                     if item.kind in r.reading_kinds]
            for rule in rules:
                lo = item.taken_at - rule.window
                window = Window(tuple(r for r in history[pid] if lo <= r.taken_at <= item.taken_at))
                finding = evaluate(rule, window, item.taken_at)
                if finding is None:
                    continue
                team_id, route = (None, None)
                if finding.firing:
                    team_id, route = self.router(conn, pid, rule,
                                                 str(finding.severity or rule.severity), now)
                inhibited = (f"patient {status.get(pid)}"
                             if status.get(pid) in ("admitted", "away") else None)
                change = apply_finding(conn, patient_id=pid, rule=rule, finding=finding,
                                       at=now, team_id=team_id, route=route,
                                       inhibited_by=inhibited)
                if change is not None:
                    changes.append(change)
        return changes


@dataclass
class Worker:
    """The long-running loop: LISTEN, drain the queue, tick the scheduler, repeat."""

    url: str
    engine: AlertEngine
    poll_interval: float = 1.0
    tick: Callable[[psycopg.Connection[Any], datetime], object] | None = None
    tick_interval: float = 5.0
    stop_event: threading.Event = field(default_factory=threading.Event)
    evaluated: int = 0

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as listen_conn, \
                psycopg.connect(self.url, autocommit=True) as conn:
            listen_conn.execute("LISTEN evaluation_queue")
            log.info("alert engine listening (poll every %.1fs)", self.poll_interval)
            last_tick = 0.0
            while not self.stop_event.is_set():
                while True:
                    batch = self.engine.process_batch(conn)
                    self.evaluated += batch.readings
                    if batch.readings < self.engine.batch_size:
                        break
                if self.tick is not None and time.monotonic() - last_tick >= self.tick_interval:
                    last_tick = time.monotonic()
                    try:
                        self.tick(conn, self.engine.clock())
                    except Exception:
                        log.exception("scheduler tick failed; retrying next tick")
                self._wait(listen_conn)

    def _wait(self, listen_conn: psycopg.Connection[Any]) -> None:
        """Sleep until a NOTIFY arrives or the poll interval passes."""
        for _ in listen_conn.notifies(timeout=self.poll_interval, stop_after=1):
            pass
