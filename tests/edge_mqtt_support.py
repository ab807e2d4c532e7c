"""Test helpers for the edge tests: a plain MQTT subscriber, polling, readings.

A real paho client against the real broker (no mocks): what a server sees.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from homeward.kinds import Kind
from homeward.wire import Reading, decode_readings
from stack.services import MosquittoServer

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def make_reading(device: str = "AA:01", n: int = 0) -> Reading:
    return Reading(id=uuid.uuid4(), kind=Kind.SPO2, taken_at=T0 + timedelta(seconds=n),
                   device=device, values={"spo2": 97, "pulse_rate": 60 + n % 40})


class Subscriber:
    """Collects every message on ``topics``; ``persistent`` keeps a QoS 1 session."""

    def __init__(self, broker: MosquittoServer, topics: list[str], *, client_id: str = "",
                 persistent: bool = False, username: str | None = None,
                 password: str | None = None) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topics = topics
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"sub-{uuid.uuid4().hex[:8]}",
                                  clean_session=not persistent)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscriber did not subscribe"

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any,
                    props: Any) -> None:
        if self._topics:
            client.subscribe([(t, 1) for t in self._topics])
        else:
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def payloads(self, topic: str | None = None) -> list[bytes]:
        with self._lock:
            return [bytes(m.payload) for m in self.messages if topic is None or m.topic == topic]

    def payloads_on_readings(self) -> list[bytes]:
        with self._lock:
            return [bytes(m.payload) for m in self.messages if m.topic.endswith("/readings")]

    def reading_ids(self) -> list[str]:
        """Every reading id received, in arrival order, duplicates included."""
        ids = []
        for payload in self.payloads_on_readings():
            decoded = decode_readings(payload)
            assert not decoded.rejects, decoded.rejects
            ids += [str(r.id) for r in decoded.readings]
        return ids

    def readings(self) -> list[Reading]:
        out: list[Reading] = []
        for payload in self.payloads_on_readings():
            out += decode_readings(payload).readings
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
