"""A production-shaped private broker (dynamic security, a user per server role) and a
probe client that reports the broker's MQTT 5 reason codes.

``OBSERVER`` is a test-only user that may read everything: it shows whether a publish
the broker acknowledged was delivered.
"""

from __future__ import annotations

import os
import pwd
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from homeward.broker_roles import DEFAULT_USERS, Role
from homeward.settings import Settings
from server.broker_dynsec import client_entry, initial_state
from stack.services import MosquittoServer, free_port
from stack.services.common import tail, wait_for_port
from stack.services.mosquitto import find_dynsec_plugin, find_mosquitto

INGEST = DEFAULT_USERS[Role.INGEST]
CONFIG = DEFAULT_USERS[Role.CONFIG]
PROVISIONER = DEFAULT_USERS[Role.PROVISIONER]
OBSERVER = "test-observer"
PASSWORDS = {INGEST: "ingest-pw", CONFIG: "config-pw", PROVISIONER: "provisioner-pw",
             OBSERVER: "observer-pw"}
ROLES = {INGEST: [Role.INGEST], CONFIG: [Role.CONFIG], PROVISIONER: [Role.PROVISIONER]}
#: The server users' passwords as `homeward broker init` reads them.
ENVIRONMENT = {"HOMEWARD_MQTT_INGEST_PASSWORD": PASSWORDS[INGEST],
               "HOMEWARD_MQTT_API_PASSWORD": PASSWORDS[CONFIG],
               "HOMEWARD_MQTT_PROVISIONER_PASSWORD": PASSWORDS[PROVISIONER]}
DEPLOY_CONF = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto" / "mosquitto.conf"


@contextmanager
def deployed_broker(folder: Path, certs: Path, data: Path) -> Iterator[int]:
    """deploy/mosquitto/mosquitto.conf running as written, its container paths moved to
    ``certs`` and ``data`` and its listener onto a free local port; yields the port."""
    port = free_port()
    conf = (DEPLOY_CONF.read_text()
            .replace("/mosquitto/certs/", f"{certs}/").replace("/mosquitto/data/", f"{data}/")
            .replace("/usr/lib/mosquitto_dynamic_security.so", str(find_dynsec_plugin()))
            .replace("listener 8883", f"listener {port} 127.0.0.1"))
    conf += f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
    (folder / "mosquitto.conf").write_text(conf)
    log = folder / "mosquitto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(find_mosquitto()), "-c", str(folder / "mosquitto.conf")],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_for_port(port, 15), tail(log)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def production_state(hubs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The server users with their roles, ``hubs`` (id -> password), and the observer."""
    state = initial_state({user: (PASSWORDS[user], roles) for user, roles in ROLES.items()},
                          hubs)
    state["roles"].append({"rolename": "test-observer", "acls": [
        {"acltype": "subscribePattern", "topic": "#", "allow": True},
        {"acltype": "publishClientReceive", "topic": "#", "allow": True}]})
    state["clients"].append(client_entry(OBSERVER, PASSWORDS[OBSERVER], ["test-observer"]))
    return state


def dynsec_broker(factory: Callable[..., MosquittoServer], hubs: Mapping[str, str] | None = None,
                  **options: Any) -> MosquittoServer:
    return factory(dynsec=production_state(hubs), **options)


def settings_for(broker: MosquittoServer, username: str | None = None,
                 password: str | None = None, **overrides: Any) -> Settings:
    """Settings that reach ``broker``'s plain listener as ``username``, and provision
    as the provisioner."""
    values: dict[str, Any] = {
        "mqtt_host": "127.0.0.1", "mqtt_port": broker.port, "mqtt_username": username,
        "mqtt_password": password, "mqtt_provisioner_username": PROVISIONER,
        "mqtt_provisioner_password": PASSWORDS[PROVISIONER]}
    return Settings(**{**values, **overrides})


class Probe:
    """An MQTT 5 client that records what the broker answers: CONNACK, SUBACK and PUBACK
    reason codes (as their names, "Success", "Not authorized", ...), the messages it
    receives and how it was disconnected."""

    def __init__(self, port: int, username: str, password: str, *,
                 ca_file: Path | None = None, tls: bool = False) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"probe-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set(ca_certs=str(ca_file) if ca_file else None)
        self.connack: str | None = None
        self.disconnect_reason: str | None = None
        self.messages: list[mqtt.MQTTMessage] = []
        self._answered = threading.Event()
        self._disconnected = threading.Event()
        self._acks: dict[int, str] = {}
        self._lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 0
        self.client.connect("127.0.0.1", port, keepalive=10, clean_start=True,
                            properties=properties)
        self.client.loop_start()
        self._answered.wait(10)

    def _on_connect(self, c: mqtt.Client, u: Any, f: Any, reason: Any, p: Any) -> None:
        self.connack = str(reason)
        self._answered.set()

    def _on_disconnect(self, c: mqtt.Client, u: Any, f: Any, reason: Any, p: Any) -> None:
        self.disconnect_reason = str(reason)
        self._answered.set()  # a refused CONNECT may end here without on_connect
        self._disconnected.set()

    def _on_subscribe(self, c: mqtt.Client, u: Any, mid: int, codes: list[Any], p: Any) -> None:
        with self._lock:
            self._acks[mid] = str(codes[0])

    def _on_publish(self, c: mqtt.Client, u: Any, mid: int, reason: Any, p: Any) -> None:
        with self._lock:
            self._acks[mid] = str(reason)

    def _on_message(self, c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def _answer(self, mid: int, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if mid in self._acks:
                    return self._acks.pop(mid)
            time.sleep(0.01)
        raise TimeoutError(f"no answer to packet {mid}")

    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    def subscribe(self, topic_filter: str) -> str:
        """The SUBACK's reason code ("Granted QoS 1" or "Not authorized")."""
        _, mid = self.client.subscribe(topic_filter, qos=1)
        assert mid is not None
        return self._answer(mid)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> str:
        """The PUBACK's reason code ("Success", "No matching subscribers", "Not authorized")."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return self._answer(info.mid)

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [bytes(m.payload) for m in self.messages if m.topic == topic]

    def wait_disconnected(self, timeout: float) -> bool:
        return self._disconnected.wait(timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def tls_context_refuses(port: int, ca_file: Path) -> ssl.SSLError | None:
    """The error of a TLS handshake with the broker by a client trusting only ``ca_file``
    (None: it succeeded)."""
    import socket

    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1"):
            return None
    except ssl.SSLError as err:
        return err
