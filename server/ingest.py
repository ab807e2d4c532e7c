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
``ingest_batch_ms`` for a batch to fill), writes it in one transaction
(:mod:`server.ingest_writer`) and then acknowledges the batch's messages in
arrival order.  While the writer waits on PostgreSQL the network thread keeps
decoding, so the two overlap.

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

from homeward.settings import Settings
from homeward.wire import (
    DEFAULT_BOUNDS,
    READINGS_SUBSCRIPTION,
    STATUS_SUBSCRIPTION,
    ReadingBounds,
    acks_topic,
)
from server.ingest_rows import Prepared, prepare
from server.ingest_writer import DEFAULT_QUOTA, BatchResult, BatchWriter, QuarantineQuota

log = logging.getLogger("homeward.ingest")

#: The broker keeps the session (subscriptions and unacknowledged messages)
#: this long while the ingest is away: a week covers any outage we would wait out.
SESSION_EXPIRY_SECONDS = 7 * 24 * 3600
#: Database retry back-off: first wait, and the cap (seconds).
DB_RETRY_FIRST = 0.2
DB_RETRY_MAX = 10.0


@dataclass
class IngestCounters:
    """Running totals since start; readings counts are per reading, not per message."""

    messages: int = 0
    readings_received: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    statuses: int = 0
    unknown_hub_statuses: int = 0
    batches: int = 0
    db_errors: int = 0
    acks_skipped: int = 0
    #: Milliseconds spent in the database, by phase (where the time goes).
    copy_ms: int = 0
    insert_ms: int = 0
    commit_ms: int = 0

    def add(self, result: BatchResult) -> None:
        self.readings_received += result.readings
        self.stored += result.stored
        self.duplicates += result.duplicates
        self.quarantined += result.quarantined
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
    client_id: str = "homeward-ingest"
    share_group: str | None = None
    batch_readings: int = 5000
    batch_ms: int = 20
    #: MQTT 5 Receive Maximum: unacknowledged messages the broker may send us.
    receive_maximum: int = 10000
    log_every_s: float = 10.0
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
        self.client = self._make_client()

    # -- MQTT ----------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                             client_id=cfg.client_id, protocol=mqtt.MQTTv5, manual_ack=True)
        if cfg.mqtt_username:
            client.username_pw_set(cfg.mqtt_username, cfg.mqtt_password)
        if cfg.mqtt_tls:
            client.tls_set(ca_certs=cfg.mqtt_ca_file)
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
    def _take_batch(self) -> list[Prepared]:
        cfg = self.config
        with self._cond:
            while not self._pending:
                if self._stopping.is_set():
                    return []
                self._cond.wait(0.5)
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

    def _write_with_retry(self, batch: list[Prepared]) -> BatchResult | None:
        """Write the batch, waiting out database outages; None if stopped meanwhile."""
        delay = DB_RETRY_FIRST
        while True:
            try:
                if self._writer is None:
                    self._writer = BatchWriter.connect(self.config.database_url,
                                                       quota=self.config.quarantine_quota)
                try:
                    return self._writer.write(batch)
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    raise
                except psycopg.Error as err:
                    # Not an outage: something in the batch is refused.  Write
                    # message by message so one bad message cannot stall the others.
                    self.counters.db_errors += 1
                    log.error("batch refused by the database (%s); writing message by "
                              "message", err)
                    return self._write_one_by_one(batch)
            except (psycopg.OperationalError, psycopg.InterfaceError) as err:
                self.counters.db_errors += 1
                first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
                log.warning("database unavailable (%s); retrying in %.1f s with %d message(s) "
                            "held unacknowledged", first_line, delay, len(batch))
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
            if self._stopping.wait(delay):
                return None
            delay = min(delay * 2, DB_RETRY_MAX)

    def _write_one_by_one(self, batch: list[Prepared]) -> BatchResult | None:
        totals = [0, 0, 0, 0, 0, 0]
        for msg in batch:
            assert self._writer is not None
            try:
                result = self._writer.write([msg])
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise
            except psycopg.Error as err:
                reason = f"database refused the message: {str(err).strip()[:500]}"
                msg.copy_data, msg.readings, msg.status = b"", 0, None
                msg.quarantine = [(msg.received_at, None, msg.topic, None, reason, None,
                                   msg.payload)]
                result = self._writer.write([msg])
            for i, v in enumerate((result.messages, result.readings, result.stored,
                                   result.quarantined, result.statuses,
                                   result.unknown_hub_statuses)):
                totals[i] += v
        return BatchResult(*totals)

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
        while True:
            batch = self._take_batch()
            if not batch:
                if self._stopping.is_set():
                    return
                continue
            result = self._write_with_retry(batch)
            if result is None:  # stopping during an outage: leave them unacked
                return
            self._ack(batch)
            self.counters.add(result)
            if self._on_batch is not None:
                self._on_batch(result)
            self._maybe_log()

    def _maybe_log(self) -> None:
        now = time.monotonic()
        if now - self._last_log >= self.config.log_every_s:
            self._last_log = now
            c = self.counters
            log.info("ingest: messages=%d readings=%d stored=%d duplicates=%d quarantined=%d "
                     "statuses=%d batches=%d db_errors=%d pending=%d", c.messages,
                     c.readings_received, c.stored, c.duplicates, c.quarantined, c.statuses,
                     c.batches, c.db_errors, len(self._pending))

    # -- lifecycle ---------------------------------------------------------------
    def start(self, *, wait_subscribed: float | None = 30.0) -> None:
        """Connect to the database and the broker and start the threads."""
        self._writer = BatchWriter.connect(self.config.database_url,
                                           quota=self.config.quarantine_quota)
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
