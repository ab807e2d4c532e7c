"""The ingest's Prometheus metrics (docs/observability.md); served by homeward.telemetry.

Counters are read from :class:`server.ingest.IngestCounters` when scraped
(:class:`IngestCollector`), so the hot path pays nothing for them beyond the
integer additions it already made; the batch histogram costs one ``observe``
per database transaction.  The hubs' outbox depths come from the ``hub`` table
(each hub's last retained status), aggregated in SQL at scrape time and cached
a few seconds: a fleet of any size gives the same few series, never one per hub
(:class:`HubOutboxCollector`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from homeward.telemetry import LATENCY_BUCKETS, Cached, process_registry

log = logging.getLogger("homeward.ingest")

#: IngestCounters field -> (metric name without ``_total``, help, scale).
COUNTERS: dict[str, tuple[str, str, float]] = {
    "messages": ("homeward_ingest_messages", "MQTT messages received", 1),
    "readings_received": ("homeward_ingest_readings_received",
                          "Valid readings received (readings in), per reading not message", 1),
    "stored": ("homeward_ingest_readings_stored", "Readings newly stored (committed)", 1),
    "duplicates": ("homeward_ingest_readings_duplicate",
                   "Readings received again and stored once (same id, same content)", 1),
    "quarantined": ("homeward_ingest_readings_quarantined",
                    "Rejects sent to quarantine (invalid items, conflicts), whether kept in "
                    "full, sampled or only counted beyond the hub's hourly quota", 1),
    "quarantine_not_kept": ("homeward_ingest_quarantine_not_kept",
                            "Rejects beyond their hub's hourly quota: counted, not kept", 1),
    "poison_quarantined": ("homeward_ingest_poison_quarantined",
                           "Messages the database refused, quarantined whole after their tries",
                           1),
    "statuses": ("homeward_ingest_statuses", "Hub status messages stored", 1),
    "unknown_hub_statuses": ("homeward_ingest_unknown_hub_statuses",
                             "Status messages from hubs the server does not know", 1),
    "batches": ("homeward_ingest_batches", "Database transactions written", 1),
    "db_errors": ("homeward_ingest_db_outages", "Database outages met (each retried)", 1),
    "acks_skipped": ("homeward_ingest_acks_skipped",
                     "Acknowledgements skipped: the message came on an earlier connection", 1),
    "refusals": ("homeward_ingest_refusals", "Transactions the database refused", 1),
    "suspects_set_aside": ("homeward_ingest_suspects_set_aside",
                           "Messages set aside as suspects after a refusal", 1),
    "suspects_recognised": ("homeward_ingest_suspects_recognised",
                            "Known suspect messages recognised again by digest", 1),
}
#: Milliseconds in the database by phase, exported in seconds with a ``phase`` label.
PHASES = {"copy_ms": "copy", "insert_ms": "insert", "commit_ms": "commit"}

#: Upper bounds of the outbox-depth buckets (readings waiting in a hub's outbox).
OUTBOX_BUCKETS = (0, 10, 100, 1_000, 10_000, 100_000)

_DEPTH = "(last_status->>'outbox_depth')::numeric::bigint"
OUTBOX_SQL = (
    "SELECT state, count(*), coalesce(sum(d), 0), coalesce(max(d), 0),"
    " count(*) FILTER (WHERE nearly_full), "
    + ", ".join(f"count(*) FILTER (WHERE d <= {b})" for b in OUTBOX_BUCKETS)
    + f" FROM (SELECT state, {_DEPTH} AS d,"
    " coalesce((last_status->>'outbox_nearly_full')::boolean, false) AS nearly_full"
    " FROM hub WHERE jsonb_typeof(last_status->'outbox_depth') = 'number') h GROUP BY state")


class IngestCollector(Collector):
    """The ingest's running totals and its current state, read at scrape time."""

    def __init__(self, counters: Callable[[], Mapping[str, int]],
                 gauges: Callable[[], Mapping[str, float]]) -> None:
        self.counters = counters
        self.gauges = gauges

    def describe(self) -> Iterator[Metric]:
        return iter(())  # names are fixed; no need to collect at registration

    def collect(self) -> Iterator[Metric]:
        values = self.counters()
        for field, (name, doc, scale) in COUNTERS.items():
            yield CounterMetricFamily(name, doc, value=values.get(field, 0) * scale)
        db = CounterMetricFamily("homeward_ingest_db_seconds",
                                 "Seconds spent in the database, by phase of the batch",
                                 labels=["phase"])
        for field, phase in PHASES.items():
            db.add_metric([phase], values.get(field, 0) / 1000)
        yield db
        now = self.gauges()
        for name, doc in (
                ("homeward_ingest_pending_messages", "Messages received, not yet in a batch"),
                ("homeward_ingest_held_messages",
                 "Messages held unacknowledged (written or waiting to be)"),
                ("homeward_ingest_suspects", "Suspect messages set aside, waiting to retry"),
                ("homeward_ingest_mqtt_connected", "1 while connected to the broker"),
                ("homeward_ingest_db_ok", "1 unless the last database write met an outage")):
            key = name.removeprefix("homeward_ingest_")
            if key in now:
                yield GaugeMetricFamily(name, doc, value=now[key])


class HubOutboxCollector(Collector):
    """Readings waiting in hubs' outboxes, as the hubs last reported them (status
    ``outbox_depth``), by hub state: how many hubs are at or under each depth, the sum,
    the deepest, and how many say their outbox is nearly full."""

    def __init__(self, database_url: str, ttl: float = 5.0) -> None:
        self.database_url = database_url
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._rows = Cached(self._query, ttl)

    def _query(self) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.database_url, autocommit=True,
                                                 connect_timeout=3,
                                                 application_name="homeward-metrics")
                return [tuple(r) for r in self._conn.execute(OUTBOX_SQL).fetchall()]
            except psycopg.Error:
                self.close()
                raise

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        try:
            rows = self._rows.get()
        except psycopg.Error as err:
            log.debug("hub outbox metrics unavailable: %s", err)
            return
        hubs = GaugeMetricFamily("homeward_hub_outbox_hubs",
                                 "Hubs reporting an outbox depth at or under le",
                                 labels=["state", "le"])
        total = GaugeMetricFamily("homeward_hub_outbox_readings",
                                  "Readings waiting in hubs' outboxes (sum of reported depths)",
                                  labels=["state"])
        deepest = GaugeMetricFamily("homeward_hub_outbox_depth_max",
                                    "The deepest reported outbox", labels=["state"])
        full = GaugeMetricFamily("homeward_hub_outbox_nearly_full",
                                 "Hubs reporting their outbox nearly full", labels=["state"])
        for state, count, depth_sum, depth_max, nearly_full, *under in rows:
            for bound, n in zip(OUTBOX_BUCKETS, under, strict=True):
                hubs.add_metric([state, str(bound)], n)
            hubs.add_metric([state, "+Inf"], count)
            total.add_metric([state], float(depth_sum))
            deepest.add_metric([state], float(depth_max))
            full.add_metric([state], nearly_full)
        yield from (hubs, total, deepest, full)


class IngestMetrics:
    """The ingest process's registry: process metrics, the counters, the batch histogram
    and (with a database URL) the hubs' outbox depths."""

    def __init__(self, counters: Callable[[], Mapping[str, int]],
                 gauges: Callable[[], Mapping[str, float]], *,
                 database_url: str | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or process_registry()
        self.registry.register(IngestCollector(counters, gauges))
        self.batch_seconds = Histogram(
            "homeward_ingest_batch_seconds",
            "Database time of one ingest transaction (COPY, insert, commit)",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_readings = Histogram(
            "homeward_ingest_batch_readings", "Readings in one ingest transaction",
            buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000), registry=self.registry)
        self.outbox: HubOutboxCollector | None = None
        if database_url is not None:
            self.outbox = HubOutboxCollector(database_url)
            self.registry.register(self.outbox)

    def observe_batch(self, seconds: float, readings: int) -> None:
        self.batch_seconds.observe(seconds)
        self.batch_readings.observe(readings)

    def close(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
