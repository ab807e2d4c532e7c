"""The hub's MQTT publisher: drains the outbox to the broker, at least once.

One thread owns the paho client (callback API v2, MQTT 5) and drives its
network loop by hand (``client.loop``), so every paho call, every callback and
the outbox bookkeeping of :class:`~edge.drain.DrainWindow` happen on that one
thread; other threads talk to it only through :meth:`Publisher.request_status`
and :meth:`Publisher.stop`, and through the outbox, which the thread polls
every ``idle_poll_s`` (50 ms) while connected.

Delivery is *at least once*:

- readings are published as JSON-array batches at QoS 1 on
  ``homeward/v1/hubs/{hub}/readings``; a reading is deleted from the outbox
  only in ``on_publish``, i.e. after the broker's PUBACK for the message that
  carried it (``mid`` → outbox seqs);
- when the connection drops, paho keeps the unacknowledged messages and sends
  them again (DUP) after reconnecting; when the agent process dies, the
  readings are still in the outbox and are published again, with the same
  reading ids, by the next process.  Either way a reading may reach the broker
  twice; the server stores a reading id once, which makes the whole path
  exactly once in the database.

The session is persistent (MQTT 5 ``clean_start=False`` with a session expiry)
so the broker keeps the config subscription across outages.  The last will
publishes ``{"state": "offline"}`` retained on the status topic when the hub
vanishes; a clean :meth:`~Publisher.stop` publishes it itself.  Reconnection
uses exponential back-off with jitter, so the hubs of a town do not all
reconnect in the same second after a broker restart.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError

from edge.drain import DrainWindow, TokenBucket
from edge.outbox import Outbox, join_batch
from edge.settings import EdgeSettings
from homeward.wire import (
    HubConfig,
    HubStatus,
    StoredAck,
    acks_topic,
    config_topic,
    readings_topic,
    status_topic,
)

log = logging.getLogger(__name__)

OFFLINE_STATUS = b'{"state":"offline"}'


@dataclass(frozen=True, slots=True)
class BrokerParams:
    """Where and as whom the hub connects (the hub id is its MQTT username)."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    #: A client certificate and key, for a TLS listener that requires one.
    cert_file: Path | None = None
    key_file: Path | None = None


class Backoff:
    """Exponential delays between ``first`` and ``cap`` seconds, each with "equal jitter".

    A delay d becomes uniform(d/2, d): never zero (no hammering), never all
    hubs at once (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/).
    """

    def __init__(self, first: float, cap: float, rng: random.Random | None = None) -> None:
        self.first, self.cap = first, max(first, cap)
        self._rng = rng or random.Random()  # noqa: S311 -- jitter, not cryptography
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return self._rng.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


class Publisher:
    """Publishes the outbox of one hub to one broker, from its own thread."""

    def __init__(
        self,
        *,
        hub_id: str,
        outbox: Outbox,
        broker: BrokerParams,
        settings: EdgeSettings | None = None,
        status_source: Callable[[], HubStatus] | None = None,
        on_config: Callable[[HubConfig], None] | None = None,
        client_id: str | None = None,
        idle_poll_s: float = 0.05,
        rng: random.Random | None = None,
    ) -> None:
        self.hub_id = hub_id
        self.outbox = outbox
        self.broker = broker
        self.settings = settings or EdgeSettings()
        self.status_source = status_source
        self.on_config = on_config
        self.client_id = client_id or hub_id
        self.idle_poll_s = idle_poll_s
        self.window = DrainWindow(
            outbox, batch_readings=self.settings.batch_readings,
            max_inflight=self.settings.max_inflight_messages,
            bucket=TokenBucket(self.settings.messages_per_second),
            stored_ack_timeout_s=(self.settings.stored_ack_timeout_s
                                  if self.settings.stored_acks else None),
            coalesce_s=self.settings.coalesce_s)
        self.backoff = Backoff(self.settings.reconnect_min_s, self.settings.reconnect_max_s, rng)
        self.connected = False
        self.connections = 0  # successful CONNACKs so far
        self.last_error: str | None = None
        self._topic_readings = readings_topic(hub_id)
        self._topic_status = status_topic(hub_id)
        self._topic_config = config_topic(hub_id)
        self._topic_acks = acks_topic(hub_id)
        self._status_wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = self._make_client()
        self._socket_open = False
        self._ever_connected = False
        self._offline_mid: int | None = None
        self._offline_acked = threading.Event()

    # -- public, thread-safe ------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.hub_id}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish the offline status (when connected), disconnect, and end the thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout + 1.0)
            self._thread = None

    def request_status(self) -> None:
        """Publish a fresh status (from ``status_source``) as soon as connected."""
        self._status_wanted.set()

    @property
    def inflight_messages(self) -> int:
        return len(self.window.inflight)

    # -- the network thread ---------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5)
        if self.broker.username is not None:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            b = self.broker
            client.tls_set(ca_certs=str(b.ca_file) if b.ca_file else None,
                           certfile=str(b.cert_file) if b.cert_file else None,
                           keyfile=str(b.key_file) if b.key_file else None)
        client.will_set(self._topic_status, OFFLINE_STATUS, qos=1, retain=True)
        # our own bound is max_inflight_messages; leave paho room for status messages
        client.max_inflight_messages_set(self.settings.max_inflight_messages + 4)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.session_expiry_s
        return props

    def _run(self) -> None:
        client = self._client
        while not self._stopping.is_set():
            if not self._socket_open:
                try:
                    if self._ever_connected:
                        client.reconnect()
                    else:
                        client.connect(self.broker.host, self.broker.port,
                                       keepalive=self.settings.keepalive_s, clean_start=False,
                                       properties=self._connect_properties())
                        self._ever_connected = True
                    self._socket_open = True
                except (OSError, ValueError) as err:
                    self._note_error(f"cannot connect to {self.broker.host}:{self.broker.port}: "
                                     f"{err}")
                    self._stopping.wait(self.backoff.next_delay())
                    continue
            rc = client.loop(timeout=self.idle_poll_s)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._socket_open = False
                self.connected = False
                self._stopping.wait(self.backoff.next_delay())
                continue
            if self.connected:
                try:
                    self._pump(client)
                except Exception:  # a bug here must not end the thread; the outbox keeps all
                    log.exception("hub %s: publishing failed", self.hub_id)
                    self._stopping.wait(1.0)
        self._shutdown(client)

    def _pump(self, client: mqtt.Client) -> None:
        if self._status_wanted.is_set():
            self._status_wanted.clear()
            self._publish_status(client)
        if self.window.resend_unconfirmed():
            log.warning("hub %s: readings the broker acknowledged are still unconfirmed by "
                        "the server; sending everything held again (resend %d)",
                        self.hub_id, self.window.resends)
        while (batch := self.window.next_batch()) is not None:
            info = client.publish(self._topic_readings, join_batch(r.payload for r in batch),
                                  qos=1)
            # paho keeps the message even when rc says the socket just went away: it is
            # sent again on reconnect, and its PUBACK then deletes these readings.
            self.window.sent(info.mid, batch)

    def _publish_status(self, client: mqtt.Client) -> None:
        if self.status_source is None:
            return
        try:
            status = self.status_source()
        except Exception:
            log.exception("hub %s: building the status failed", self.hub_id)
            return
        client.publish(self._topic_status, status.model_dump_json(exclude_none=True), qos=1,
                       retain=True)

    def _shutdown(self, client: mqtt.Client) -> None:
        if self.connected:
            info = client.publish(self._topic_status, OFFLINE_STATUS, qos=1, retain=True)
            self._offline_mid = info.mid
            for _ in range(40):  # up to ~2 s for the PUBACK
                if self._offline_acked.is_set() or client.loop(timeout=0.05) != 0:
                    break
            client.disconnect()
            client.loop(timeout=0.1)
        elif self._socket_open:
            client.disconnect()
        self.connected = False
        self._socket_open = False

    def _note_error(self, message: str) -> None:
        if message != self.last_error:
            log.warning("hub %s: %s", self.hub_id, message)
        self.last_error = message

    # -- paho callbacks (on the network thread) ----------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self.connected = False
            self._note_error(f"broker refused the connection: {reason_code}")
            return
        self.connected = True
        self.connections += 1
        self.last_error = None
        self.backoff.reset()
        log.info("hub %s: connected to %s:%s (session present: %s)", self.hub_id,
                 self.broker.host, self.broker.port, flags.session_present)
        client.subscribe(self._topic_config, qos=1)
        if self.settings.stored_acks:
            client.subscribe(self._topic_acks, qos=1)
        self._status_wanted.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        if self.connected:
            log.log(logging.INFO if self._stopping.is_set() else logging.WARNING,
                    "hub %s: disconnected (%s); %d messages await a PUBACK",
                    self.hub_id, reason_code, len(self.window.inflight))
        self.connected = False

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        if mid == self._offline_mid:
            self._offline_acked.set()
            return
        if mid not in self.window.inflight:
            return  # a status message
        if reason_code.is_failure:
            log.error("hub %s: broker refused a batch of readings (%s); they stay in the "
                      "outbox and are sent again", self.hub_id, reason_code)
            self.window.refused(mid)
            return
        self.window.acked(mid)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self._topic_acks:
            self._on_stored_ack(message.payload)
            return
        if message.topic != self._topic_config:
            return
        if not message.payload:
            log.warning("hub %s: the retained config was cleared; keeping the current one",
                        self.hub_id)
            return
        try:
            config = HubConfig.model_validate_json(message.payload)
        except ValidationError as err:
            log.error("hub %s: ignoring a bad config message: %s", self.hub_id, err)
            return
        if self.on_config is not None:
            try:
                self.on_config(config)
            except Exception:
                log.exception("hub %s: applying the config failed", self.hub_id)

    def _on_stored_ack(self, payload: bytes | bytearray) -> None:
        """The server committed these readings (or quarantined them): forget them."""
        try:
            ids = StoredAck.model_validate_json(payload).stored
        except ValidationError as err:
            log.error("hub %s: ignoring a bad stored-ack: %s", self.hub_id, err)
            return
        self.outbox.delete_ids(ids)
        self.window.confirmed()
