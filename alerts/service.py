"""Wiring the alert process together: rules + routing -> engine, notifier, outbox, worker."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from alerts import handovers, shift_report, tasks
from alerts.channels import ChannelSettings, default_senders
from alerts.metrics import AlertMetrics
from alerts.notify import Notifier
from alerts.outbox import Outbox
from alerts.partitions import Partitions, parse_partition
from alerts.routing import RoutingTree, load_routing
from alerts.ruleset import RuleSet, load_ruleset
from alerts.worker import AlertEngine, Clock, Worker, utcnow

log = logging.getLogger(__name__)


class AlertService:
    """The clinical layer (engine) and the notification layer (notifier, outbox) together."""

    def __init__(self, ruleset: RuleSet, routing: RoutingTree, *, clock: Clock = utcnow,
                 outbox: Outbox | None = None, batch_size: int = 500,
                 partition: str = "0/1", metrics: AlertMetrics | None = None) -> None:
        self.metrics = metrics
        self.notifier = Notifier(routing,
                                 on_escalated=metrics.record_escalation if metrics else None)
        k, n = parse_partition(partition)
        self.engine = AlertEngine(ruleset, clock=clock, router=self.notifier.router,
                                  batch_size=batch_size, on_change=self.notifier.on_change,
                                  partitions=Partitions(k, n),
                                  on_failure=self.notifier.evaluation_failed)
        self.outbox = outbox or Outbox(default_senders(ChannelSettings()))
        if self.outbox.on_failure is None:
            self.outbox.on_failure = self.notifier.raise_system_alert
        if metrics is not None and self.outbox.on_attempt is None:
            self.outbox.on_attempt = metrics.record_attempt
        self.clock = clock
        #: The dashboard's address, for the links in shift reports (default
        #: HOMEWARD_DASHBOARD_URL).
        self.dashboard_url: str | None = None

    def tick_timers(self, conn: psycopg.Connection[Any], now: datetime | None = None) -> None:
        """Absence rules, leases, snoozes, escalations and reminders that are due; hand-overs
        unanswered and tasks overdue (alerts/handovers.py, alerts/tasks.py)."""
        now = now or self.clock()
        changes = self.engine.tick(conn, now)  # on_change runs inside its transactions
        if self.metrics is not None:
            self.metrics.record_changes(changes)  # committed by now
        # hand-overs first: an alert accepted meanwhile gets its new team's escalation,
        # not a reminder from the old one's.  A failure of either is logged and retried
        # next tick; it never stops the escalations below (H-021).
        for what, step in (("hand-overs", handovers.tick), ("tasks", tasks.tick)):
            try:
                step(conn, self.notifier, now)
            except psycopg.OperationalError:
                raise  # the database is down: the worker's own retry handles it
            except Exception:
                log.exception("%s tick failed; trying again next tick", what)
        self.notifier.tick(conn, now)
        self.send_shift_reports(conn, now)

    def send_shift_reports(self, conn: psycopg.Connection[Any], now: datetime) -> None:
        """The report of each team's shift that has just ended, to the team's e-mail
        (alerts/shift_report.py); a failure here never stops the timers above."""
        try:
            if self.dashboard_url is None:
                self.dashboard_url = ChannelSettings().dashboard_url
            shift_report.send_due(conn, now, dashboard_url=self.dashboard_url)
        except Exception:
            log.exception("shift reports failed; trying again next tick")

    def tick(self, conn: psycopg.Connection[Any], now: datetime | None = None) -> None:
        """Everything time-driven, then the outbox (the worker delivers in its own thread)."""
        now = now or self.clock()
        self.tick_timers(conn, now)
        self.outbox.deliver_due(conn, now)

    def deliver(self, conn: psycopg.Connection[Any], now: datetime | None = None) -> None:
        """Send what the last batch queued (the outbox), without the rest of the tick."""
        self.outbox.deliver_due(conn, now or self.clock())

    def step(self, conn: psycopg.Connection[Any], now: datetime | None = None) -> int:
        """Drain the queue, then tick: what the worker loop does, once (for tests)."""
        n = 0
        while True:
            batch = self.engine.process_batch(conn)
            if self.metrics is not None:
                self.metrics.record_batch(batch.readings, batch.changes, 0.0)
            n += batch.readings
            if batch.readings < self.engine.batch_size:
                break
        self.tick(conn, now)
        return n


def build_worker(url: str, *, rules: Path | None = None, routes: Path | None = None,
                 poll_interval: float = 1.0, tick_interval: float = 5.0,
                 batch_size: int = 500, partition: str = "0/1",
                 metrics: AlertMetrics | None = None) -> Worker:
    service = AlertService(load_ruleset(rules), load_routing(routes), batch_size=batch_size,
                           partition=partition, metrics=metrics)
    return Worker(url, service.engine, poll_interval=poll_interval, tick=service.tick_timers,
                  tick_interval=tick_interval, delivery=service.deliver,
                  delivery_interval=min(1.0, tick_interval), metrics=metrics)
