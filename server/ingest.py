"""``homeward ingest``: MQTT readings and hub status into PostgreSQL, nothing lost.

Delivery contract.  The ingest holds a persistent MQTT session (fixed client
id, MQTT 5 ``clean_start=False`` with a session expiry) and acknowledges every
QoS 1 message *manually*, only after the transaction holding its readings,
its rejects and its status update has committed.  A crash (even SIGKILL)
therefore loses nothing: the broker redelivers every unacknowledged message
on reconnect, and the database stores a redelivered reading once because its
id is the primary key (``INSERT ... ON CONFLICT DO NOTHING``).

Threads.  paho's network thread receives messages and decodes each one into
COPY lines (:mod:`server.ingest_rows`); the writer thread takes what has
accumulated (up to ``ingest_batch_readings`` readings, waiting at most
``ingest_batch_ms`` for a batch to fill), writes it (:mod:`server.ingest_writer`,
usually one transaction) and then acknowledges the batch's messages.  While the
writer waits on PostgreSQL the network thread keeps decoding, so the two
overlap.  A heartbeat thread records what the ingest holds
(:mod:`server.ingest_health`, read by ``/health``).

Poison.  An outage is told from a refusal by SQLSTATE, not by exception class
(:mod:`server.ingest_failures`: psycopg raises 53200 ``out of shared memory`` as
``OperationalError``, like a lost connection).  An outage holds everything; a
refused transaction is split until the culprit message is alone, and that one
is set aside, retried alone with back-off between the other batches, counted
by digest in ``ingest_suspect`` before each try, and quarantined whole after
``attempt_limit`` tries (:mod:`server.ingest_poison`).  Transactions touch at
most 32 TimescaleDB chunks (:mod:`server.ingest_chunks`), so a long backlog is
written in parts, with live batches going first.  docs/ingest.md has the
arithmetic.

Back-pressure.  The broker sends at most ``receive_maximum`` unacknowledged
messages (MQTT 5 Receive Maximum, which Mosquitto honours for v5 clients in
place of its ``max_inflight_messages``); the rest wait in the session queue on
the broker.  So the window bounds the ingest's memory, and a database outage
simply stops acknowledgements: the writer retries the same batch with
back-off, the broker stops sending once the window is full, and a restart
gets everything again.

Message ids are only meaningful on the connection that delivered them: after
a reconnect the broker redelivers unacknowledged messages with new ids, so
acks for messages from an earlier connection are skipped (their redelivered
copies are stored idempotently and acked instead).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from homeward.logs import log_context
from homeward.settings import Settings
from homeward.telemetry import Readiness, fresh
from homeward.wire import (
    DEFAULT_BOUNDS,
    READINGS_SUBSCRIPTION,
    STATUS_SUBSCRIPTION,
    ReadingBounds,
    acks_topic,
)
from server.ingest_chunks import reading_chunk_interval
from server.ingest_health import Heartbeat, Holding
from server.ingest_poison import ATTEMPT_LIMIT, Settler
from server.ingest_rows import Prepared, prepare
from server.ingest_writer import DEFAULT_QUOTA, BatchResult, BatchWriter, QuarantineQuota
from server.metrics import IngestMetrics

log = logging.getLogger("homeward.ingest")

#: The broker keeps the session (subscriptions and unacknowledged messages)
#: this long while the ingest is away: a week covers any outage we would wait out.
SESSION_EXPIRY_SECONDS = 7 * 24 * 3600
#: Database retry back-off: first wait, and the cap (seconds).
DB_RETRY_FIRST = 0.2
DB_RETRY_MAX = 10.0
#: The longest one statement of the writer may run (ms).  A batch takes tens of
#: milliseconds; a statement still running after 5 s is stuck on something (a
#: lock, thousands of new chunks), and is cancelled (SQLSTATE 57014) so that the
#: batch is split and the other readings are not held behind it for long.
STATEMENT_TIMEOUT_MS = 5000


@dataclass
class IngestCounters:
    """Running totals since start; readings counts are per reading, not per message."""

    messages: int = 0
    readings_received: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    #: Rejects beyond their hub's hourly quota: counted in quarantine_hourly, not kept.
    quarantine_not_kept: int = 0
    statuses: int = 0
    unknown_hub_statuses: int = 0
    batches: int = 0
    db_errors: int = 0
    acks_skipped: int = 0
    #: Transactions the database refused (not outages), messages set aside as
    #: suspects, suspects recognised again by digest, and suspects quarantined whole.
    refusals: int = 0
    suspects_set_aside: int = 0
    suspects_recognised: int = 0
    poison_quarantined: int = 0
    #: Milliseconds spent in the database, by phase (where the time goes).
    copy_ms: int = 0
    insert_ms: int = 0
    commit_ms: int = 0

    def add(self, result: BatchResult) -> None:
        self.readings_received += result.readings
        self.stored += result.stored
        self.duplicates += result.duplicates
        self.quarantined += result.quarantined
        self.quarantine_not_kept += result.quarantine_not_kept
        self.statuses += result.statuses
        self.unknown_hub_statuses += result.unknown_hub_statuses
        self.batches += 1
        self.copy_ms += round(result.copy_s * 1000)
        self.insert_ms += round(result.insert_s * 1000)
        self.commit_ms += round(result.commit_s * 1000)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class IngestConfig:
    database_url: str
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_tls: bool = False
    mqtt_ca_file: str | None = None
    #: A client certificate and key, for a TLS listener that requires one.
    mqtt_cert_file: str | None = None
    mqtt_key_file: str | None = None
    client_id: str = "homeward-ingest"
    share_group: str | None = None
    batch_readings: int = 5000
    batch_ms: int = 20
    #: MQTT 5 Receive Maximum: unacknowledged messages the broker may send us.
    receive_maximum: int = 10000
    log_every_s: float = 10.0
    #: Poison isolation: tries of a refused message alone before it is quarantined,
    #: the first wait before a retry, and the writer's statement timeout (ms; 0: none).
    attempt_limit: int = ATTEMPT_LIMIT
    retry_first_s: float = 0.5
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS
    heartbeat_every_s: float = 5.0
    #: The taken_at accepted (age, days per message) and each hub's quarantine quota.
    bounds: ReadingBounds = DEFAULT_BOUNDS
    quarantine_quota: QuarantineQuota = DEFAULT_QUOTA

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> IngestConfig:
        values: dict[str, Any] = {
            "database_url": settings.database_url,
            "mqtt_host": settings.mqtt_host,
            "mqtt_port": settings.mqtt_port,
            "mqtt_username": settings.mqtt_username,
            "mqtt_password": settings.mqtt_password,
            "mqtt_tls": settings.mqtt_tls,
            "mqtt_ca_file": str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None,
            "mqtt_cert_file": str(settings.mqtt_cert_file) if settings.mqtt_cert_file else None,
            "mqtt_key_file": str(settings.mqtt_key_file) if settings.mqtt_key_file else None,
            "client_id": settings.ingest_client_id,
            "share_group": settings.ingest_share_group,
            "batch_readings": settings.ingest_batch_readings,
            "batch_ms": settings.ingest_batch_ms,
            "bounds": ReadingBounds(
                max_age=timedelta(days=settings.ingest_max_reading_age_days),
                max_days_per_message=settings.ingest_max_days_per_message),
            "quarantine_quota": QuarantineQuota(
                rows=settings.ingest_quarantine_per_hub_hour,
                bytes=settings.ingest_quarantine_bytes_per_hub_hour,
                sample_every=settings.ingest_quarantine_sample_every),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def subscriptions(self) -> list[str]:
        topics = [READINGS_SUBSCRIPTION, STATUS_SUBSCRIPTION]
        if self.share_group:
            return [f"$share/{self.share_group}/{t}" for t in topics]
        return topics


class Ingest:
    """The ingest service: :meth:`start` it (threads), :meth:`stop` it, or :meth:`run`."""

    def __init__(self, config: IngestConfig,
                 on_batch: Callable[[BatchResult], None] | None = None) -> None:
        self.config = config
        self.counters = IngestCounters()
        self._on_batch = on_batch
        #: False while the writer is in a database outage (retrying with back-off).
        self.db_ok = True
        self._pending: deque[Prepared] = deque()
        self._pending_readings = 0
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._ack_lock = threading.Lock()
        self._epoch = 0
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._writer_thread: threading.Thread | None = None
        self._writer: BatchWriter | None = None
        self._last_log = time.monotonic()
        self.settler = Settler(writer=self._connected_writer, ack=self._ack,
                               on_result=self._on_result, attempt_limit=config.attempt_limit,
                               retry_first=config.retry_first_s)
        self._heartbeat = Heartbeat(config.database_url, config.client_id, self._holding,
                                    on_beat=self.settler.book.refresh,
                                    every=config.heartbeat_every_s)
        self.client = self._make_client()
        self.metrics = IngestMetrics(self.counters.as_dict, self._gauges,
                                     database_url=config.database_url)

    # -- MQTT ----------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                             client_id=cfg.client_id, protocol=mqtt.MQTTv5, manual_ack=True)
        if cfg.mqtt_username:
            client.username_pw_set(cfg.mqtt_username, cfg.mqtt_password)
        if cfg.mqtt_tls:
            client.tls_set(ca_certs=cfg.mqtt_ca_file, certfile=cfg.mqtt_cert_file,
                           keyfile=cfg.mqtt_key_file)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connection refused: %s", reason)
            return
        with self._ack_lock:
            self._epoch += 1
        self._connected.set()
        log.info("connected to MQTT %s:%s as %s (session present: %s)", self.config.mqtt_host,
                 self.config.mqtt_port, self.config.client_id, flags.session_present)
        # retainHandling=1: retained status only for a new subscription, not on
        # every reconnect of a resumed session.
        options = SubscribeOptions(qos=1, retainHandling=1)
        client.subscribe([(t, options) for t in self.config.subscriptions()])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any,
                      properties: Any) -> None:
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("MQTT subscription refused: %s", failed)
            return
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        with self._ack_lock:
            self._epoch += 1
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("MQTT disconnected (%s); paho reconnects", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        msg = Prepared(mid=message.mid, qos=message.qos, epoch=self._epoch, topic=message.topic,
                       payload=bytes(message.payload), received_at=datetime.now(UTC))
        try:
            prepare(msg, self.config.bounds)
        except Exception as err:  # prepare never raises by design; keep the loop alive anyway
            with log_context(topic=msg.topic, mqtt_mid=msg.mid):
                log.exception("could not prepare a message on %s", msg.topic)
            msg.quarantine.append((msg.received_at, None, msg.topic, None,
                                   f"ingest error: {err!r}", None, msg.payload))
        self.counters.messages += 1
        with self._cond:
            self._pending.append(msg)
            self._pending_readings += msg.readings
            if len(self._pending) == 1 or self._pending_readings >= self.config.batch_readings:
                self._cond.notify()

    # -- writer ----------------------------------------------------------------
    def _take_batch(self, wait_s: float | None = None) -> list[Prepared]:
        """The next batch; [] when stopping with nothing left, or after ``wait_s``."""
        cfg = self.config
        give_up = None if wait_s is None else time.monotonic() + wait_s
        with self._cond:
            while not self._pending:
                if self._stopping.is_set():
                    return []
                left = 0.5 if give_up is None else min(0.5, give_up - time.monotonic())
                if left <= 0:
                    return []
                self._cond.wait(left)
            # Let a batch fill for up to batch_ms after its first message arrived.
            deadline = self._pending[0].arrived + cfg.batch_ms / 1000
            while self._pending_readings < cfg.batch_readings and not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch: list[Prepared] = []
            taken = 0
            while self._pending and (not batch or taken + self._pending[0].readings
                                     <= cfg.batch_readings):
                msg = self._pending.popleft()
                taken += msg.readings
                batch.append(msg)
            self._pending_readings -= taken
            return batch

    def _connected_writer(self) -> BatchWriter:
        """The writer's connection, (re)connected when needed; raises psycopg errors."""
        if self._writer is None:
            writer = BatchWriter.connect(self.config.database_url,
                                         quota=self.config.quarantine_quota)
            try:
                if self.config.statement_timeout_ms:
                    writer.conn.execute("SELECT set_config('statement_timeout', %s, false)",
                                        (f"{self.config.statement_timeout_ms}ms",))
                    writer.conn.commit()
                interval = reading_chunk_interval(writer.conn)
            except BaseException:
                writer.close()
                raise
            self.settler.chunk_interval_s = (None if interval is None
                                             else int(interval.total_seconds()))
            self._writer = writer
        return self._writer

    def _on_result(self, result: BatchResult) -> None:
        self.counters.add(result)
        self.metrics.observe_batch(result.copy_s + result.insert_s + result.commit_s,
                                   result.readings)
        if self._on_batch is not None:
            self._on_batch(result)

    def _holding(self) -> Holding:
        """What this ingest holds unacknowledged (for the heartbeat)."""
        held = self.settler.held()
        with contextlib.suppress(IndexError):
            held.append(self._pending[0])
        oldest = min((m.received_at for m in held), default=None)
        return Holding(oldest, len(held) + max(len(self._pending) - 1, 0),
                       self.settler.suspects())

    def _ack(self, batch: list[Prepared]) -> None:
        """After the commit: PUBACK each message, and name its readings back to its hub
        (``.../acks``), so a hub that waits for that can forget them."""
        with self._ack_lock:
            epoch = self._epoch
            for msg in batch:
                if msg.hub is not None and msg.ids:
                    self.client.publish(acks_topic(msg.hub),
                                        orjson.dumps({"stored": msg.ids}), qos=1)
                if msg.qos == 0:
                    continue
                if msg.epoch != epoch:
                    self.counters.acks_skipped += 1  # redelivered on the new connection
                    continue
                self.client.ack(msg.mid, msg.qos)

    def _writer_loop(self) -> None:
        """Take batches and settle them (server.ingest_poison.Settler): every message
        is stored and acknowledged, or quarantined and acknowledged; an outage holds
        everything and is retried with back-off."""
        delay = DB_RETRY_FIRST
        settler = self.settler
        while True:
            # While a backlog is being written part by part, new batches go before
            # its remaining parts: two transactions a turn, the new one first.
            busy = settler.busy()
            batch = self._take_batch(wait_s=0 if busy else settler.next_due())
            if batch:
                settler.add(batch, first=True)
            elif not busy and self._stopping.is_set():
                return  # suspects still set aside stay unacknowledged
            ok = settler.drain(max_transactions=2)
            self.db_ok = ok
            self._sync_counters()
            self._maybe_log()
            if ok:
                delay = DB_RETRY_FIRST
                continue
            err = settler.last_outage
            self.counters.db_errors += 1
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            log.warning("database unavailable (%s); retrying in %.1f s with %d message(s) "
                        "held unacknowledged", first_line, delay, len(settler.held()))
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            if self._stopping.wait(delay):
                return  # stopping during an outage: leave them unacked
            delay = min(delay * 2, DB_RETRY_MAX)

    def _sync_counters(self) -> None:
        stats, c = self.settler.stats, self.counters
        c.refusals, c.suspects_set_aside = stats.refusals, stats.set_aside
        c.suspects_recognised, c.poison_quarantined = stats.recognised, stats.poison_quarantined

    def _gauges(self) -> dict[str, float]:
        """The ingest's state now, for the metrics (read from the scrape's thread)."""
        out = {"pending_messages": float(len(self._pending)),
               "mqtt_connected": float(self._connected.is_set()),
               "db_ok": float(self.db_ok)}
        with contextlib.suppress(RuntimeError):  # a collection changed while read
            out["held_messages"] = float(len(self.settler.held()))
            out["suspects"] = float(self.settler.suspects())
        return out

    def readiness(self, stale_s: float = 30.0) -> Readiness:
        """Ready while the heartbeat is fresh (the database answers it), the last write
        met no outage, the broker connection and subscription are up and the writer runs."""
        beat = self._heartbeat.last_beat_at
        writer = self._writer_thread
        return Readiness(
            {"heartbeat": fresh(beat, stale_s), "database": self.db_ok,
             "broker": self._connected.is_set() and self._subscribed.is_set(),
             "writer": writer is not None and writer.is_alive()},
            {"client_id": self.config.client_id, "stale_limit_seconds": stale_s,
             "heartbeat_age_seconds": None if beat is None
             else round(time.monotonic() - beat, 3)})

    def _maybe_log(self) -> None:
        now = time.monotonic()
        if now - self._last_log >= self.config.log_every_s:
            self._last_log = now
            c = self.counters
            log.info("ingest: messages=%d readings=%d stored=%d duplicates=%d quarantined=%d "
                     "statuses=%d batches=%d db_errors=%d pending=%d", c.messages,
                     c.readings_received, c.stored, c.duplicates, c.quarantined, c.statuses,
                     c.batches, c.db_errors, len(self._pending),
                     extra={"counters": c.as_dict(), "pending": len(self._pending)})

    # -- lifecycle ---------------------------------------------------------------
    def start(self, *, wait_subscribed: float | None = 30.0) -> None:
        """Connect to the database and the broker and start the threads."""
        writer = self._connected_writer()
        # Known suspects before the first message, so a redelivered one is recognised.
        try:
            self.settler.book.refresh(writer.conn)
            writer.conn.commit()
        except psycopg.Error as err:  # e.g. migration 0103 not applied yet
            writer.conn.rollback()
            log.warning("no suspect messages loaded (%s); run `homeward db migrate`", err)
        self._heartbeat.start()
        self._writer_thread = threading.Thread(target=self._writer_loop,
                                               name="homeward-ingest-writer", daemon=True)
        self._writer_thread.start()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
        props.ReceiveMaximum = self.config.receive_maximum
        self.client.connect_async(self.config.mqtt_host, self.config.mqtt_port, keepalive=30,
                                  clean_start=False, properties=props)
        self.client.loop_start()
        if wait_subscribed is not None and not self._subscribed.wait(wait_subscribed):
            raise TimeoutError(f"ingest did not subscribe at {self.config.mqtt_host}:"
                               f"{self.config.mqtt_port} within {wait_subscribed} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Write what has arrived, acknowledge it, and disconnect."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._writer_thread is not None:
            self._writer_thread.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()
        self._heartbeat.stop()
        self.metrics.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def run(self) -> None:
        """Run until SIGINT/SIGTERM."""
        import signal

        stop = threading.Event()

        def handler(signum: int, frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        self.start(wait_subscribed=None)
        while not stop.wait(1.0):
            if self._writer_thread is not None and not self._writer_thread.is_alive():
                raise RuntimeError("the ingest writer stopped unexpectedly")
        log.info("stopping: %s", self.counters.as_dict())
        self.stop()

    @property
    def subscribed(self) -> threading.Event:
        return self._subscribed

    def pending(self) -> int:
        return len(self._pending)
