"""The alert worker's Prometheus metrics (docs/observability.md); served by homeward.telemetry.

Counted after the fact they describe is settled: alerts opened (by team and
severity) from the changes a batch or a tick returns once its transaction has
committed, escalations after the notifier's tick has committed, notification
attempts and failures (by channel) when the send was tried (a send happens
whether or not its row commits).  The evaluation backlog and lag, and the
notifications waiting in the outbox, are read from the database at scrape time
(one cached query, :class:`QueueCollector`).

Label values come from configuration, never from readings: ``team`` is a team id
(tens, set by the organisation), ``severity`` and ``channel`` are small fixed
sets, ``event`` an alert lifecycle event.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alerts.lifecycle import AlertChange
from homeward.telemetry import LATENCY_BUCKETS, Cached, label_value, process_registry

log = logging.getLogger(__name__)

QUEUE_SQL = """
SELECT (SELECT count(*) FROM evaluation_queue),
       (SELECT extract(epoch FROM now() - enqueued_at)::float8 FROM evaluation_queue
         ORDER BY seq LIMIT 1)
"""
PENDING_SQL = "SELECT channel, count(*) FROM notification WHERE state = 'pending' GROUP BY 1"


class QueueCollector(Collector):
    """Readings waiting for evaluation and the age of the oldest (the engine's lag), and
    notifications waiting for delivery by channel, from the database when scraped."""

    def __init__(self, database_url: str, ttl: float = 5.0) -> None:
        self.database_url = database_url
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._values = Cached(self._query, ttl)

    def _query(self) -> tuple[int, float | None, list[tuple[str, int]]]:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.database_url, autocommit=True,
                                                 connect_timeout=3,
                                                 application_name="homeward-metrics")
                row = self._conn.execute(QUEUE_SQL).fetchone()
                pending = [(str(c), int(n)) for c, n in self._conn.execute(PENDING_SQL)]
            except psycopg.Error:
                self.close()
                raise
        assert row is not None
        return int(row[0]), (None if row[1] is None else max(0.0, float(row[1]))), pending

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        try:
            backlog, oldest, pending = self._values.get()
        except psycopg.Error as err:
            log.debug("queue metrics unavailable: %s", err)
            return
        yield GaugeMetricFamily("homeward_evaluation_backlog_readings",
                                "Readings committed and waiting for the alert engine",
                                value=backlog)
        yield GaugeMetricFamily("homeward_evaluation_lag_seconds",
                                "How long the oldest waiting reading has waited (0: none)",
                                value=oldest or 0.0)
        waiting = GaugeMetricFamily("homeward_notifications_pending",
                                    "Notifications waiting in the outbox (due or backing off)",
                                    labels=["channel"])
        for channel, n in pending:
            waiting.add_metric([channel], n)
        yield waiting


class AlertMetrics:
    """The alert worker's registry and the hooks the engine, notifier and outbox call."""

    def __init__(self, *, database_url: str | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or process_registry()
        self.readings = Counter("homeward_alerts_readings_evaluated",
                                "Queued readings the engine claimed and evaluated", registry=r)
        self.batch_seconds = Histogram("homeward_alerts_batch_seconds",
                                       "Time of one evaluation transaction (claim, evaluate, "
                                       "alert changes, commit)", buckets=LATENCY_BUCKETS,
                                       registry=r)
        self.opened = Counter("homeward_alerts_opened", "Alerts opened, by team and severity",
                              ["team", "severity"], registry=r)
        self.changes = Counter("homeward_alert_changes",
                               "Alert changes made by the engine, by lifecycle event",
                               ["event"], registry=r)
        self.escalated = Counter("homeward_alerts_escalated",
                                 "Escalations to the next level, by the team that held the "
                                 "alert unacknowledged", ["team"], registry=r)
        self.attempts = Counter("homeward_notification_attempts",
                                "Notification delivery attempts, by channel", ["channel"],
                                registry=r)
        self.failures = Counter("homeward_notification_failures",
                                "Notification delivery attempts that failed, by channel",
                                ["channel"], registry=r)
        self.given_up = Counter("homeward_notifications_failed",
                                "Notifications given up after their last attempt (a system "
                                "alert is raised), by channel", ["channel"], registry=r)
        self.send_seconds = Histogram("homeward_notification_send_seconds",
                                      "Time of one delivery attempt, by channel", ["channel"],
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.queue: QueueCollector | None = None
        if database_url is not None:
            self.queue = QueueCollector(database_url)
            r.register(self.queue)

    def record_batch(self, readings: int, changes: Iterable[AlertChange],
                     seconds: float) -> None:
        """A committed evaluation batch."""
        if readings:
            self.readings.inc(readings)
            self.batch_seconds.observe(seconds)
        self.record_changes(changes)

    def record_changes(self, changes: Iterable[AlertChange]) -> None:
        """Alert changes whose transaction has committed."""
        for change in changes:
            self.changes.labels(label_value(change.event)).inc()
            if change.event == "opened":
                self.opened.labels(label_value(change.team_id),
                                   label_value(change.severity)).inc()

    def record_escalation(self, team_id: str | None) -> None:
        self.escalated.labels(label_value(team_id)).inc()

    def record_attempt(self, channel: str, ok: bool, seconds: float, gave_up: bool) -> None:
        label = label_value(channel)
        self.attempts.labels(label).inc()
        self.send_seconds.labels(label).observe(seconds)
        if not ok:
            self.failures.labels(label).inc()
        if gave_up:
            self.given_up.labels(label).inc()

    def close(self) -> None:
        if self.queue is not None:
            self.queue.close()
