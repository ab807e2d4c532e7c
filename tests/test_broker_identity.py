"""One session per identity at the broker (issue 7, part 3).

A client's session is keyed by its client id.  Were the client id free to
choose, a hub's credentials could name the ingest's id (or another hub's):
the broker closes the real client and, on a clean start, wipes its persistent
session, with the QoS 1 messages queued in it.  Our brokers bind the client id
to the username (``use_username_as_clientid``, docs/broker.md), so such a
client is renamed to its own username and takes nobody's session.

Each test runs a real Mosquitto (with the production rights: the dynamic-security
plugin, a user per server role, a role per hub), the real ingest and
a hub publishing QoS 1 readings one a message, while an impostor with another
hub's valid credentials connects, again and again, under the victim's client
id.  Each test fails on a broker without the binding
(``MosquittoServer(username_as_client_id=False)``): the victim is knocked off
and readings the broker had acknowledged are lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from homeward.wire import acks_topic, readings_topic
from server.ingest import Ingest, IngestConfig
from stack.services import MosquittoServer
from tests.broker_support import dynsec_broker
from tests.ingest_support import reading

pytestmark = pytest.mark.integration

INGEST_USER = "homeward-ingest"  # also its client id (homeward.settings.ingest_client_id)
PASSWORDS = {INGEST_USER: "ingest-pw", "hub-a": "a-pw", "hub-b": "b-pw"}
#: Readings hub-a publishes: before, during and after the impostor's attempts.
BEFORE, DURING, AFTER = 50, 200, 50
#: Seconds between two readings while the impostor is at work (DURING of them).
SPACING = 0.01


@dataclass
class Client:
    """A paho client with its loop running that counts its disconnects."""

    paho: mqtt.Client
    connected: threading.Event = field(default_factory=threading.Event)
    disconnects: int = 0
    unacknowledged: int = 0
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def connect(broker: MosquittoServer, username: str, client_id: str, *,
            subscribe: str | None = None, wait: bool = True) -> Client:
    """Log in as ``username`` under ``client_id``.  With ``subscribe`` it is a persistent
    MQTT 5 session (what a hub keeps for its acks); without, a clean start that
    discards any session the id had (what an impostor does)."""
    paho = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                       protocol=mqtt.MQTTv5)
    paho.username_pw_set(username, PASSWORDS[username])
    paho.max_inflight_messages_set(100)
    paho.max_queued_messages_set(0)
    paho.reconnect_delay_set(min_delay=1, max_delay=1)
    client = Client(paho)

    def on_connect(c: mqtt.Client, u: Any, flags: Any, reason: Any, p: Any) -> None:
        if reason.is_failure:
            return
        client.connected.set()
        if subscribe is not None:
            c.subscribe(subscribe, qos=1)

    def on_disconnect(c: mqtt.Client, u: Any, flags: Any, reason: Any, p: Any) -> None:
        client.disconnects += 1
        client.connected.clear()

    paho.on_connect = on_connect
    paho.on_disconnect = on_disconnect
    paho.on_message = lambda c, u, m: client.messages.append(m)
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600 if subscribe is not None else 0
    paho.connect("127.0.0.1", broker.port, clean_start=subscribe is None,
                 properties=properties)
    paho.loop_start()
    if wait:
        assert client.connected.wait(10), f"{username} could not connect"
    return client


DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto"


@pytest.fixture
def secured_broker(mosquitto_factory: Callable[..., MosquittoServer]) -> MosquittoServer:
    """Per-hub logins and the production rights (tests/broker_support.py)."""
    return dynsec_broker(mosquitto_factory, {hub: PASSWORDS[hub] for hub in ("hub-a", "hub-b")})


def test_the_production_broker_binds_client_ids_to_usernames_like_the_private_one() -> None:
    """Every listener of deploy/mosquitto binds them (a listener option in mosquitto.conf)."""
    lines = [line.strip() for line in (DEPLOY / "mosquitto.conf").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    listeners = [i for i, line in enumerate(lines) if line.startswith("listener ")]
    assert listeners
    for start, end in zip(listeners, [*listeners[1:], len(lines)], strict=True):
        assert "use_username_as_clientid true" in lines[start:end], lines[start]
    assert any(line.startswith("plugin ") and "dynamic_security" in line for line in lines)


@pytest.fixture
def ingest(db_url: str, secured_broker: MosquittoServer) -> Iterator[tuple[Ingest, list[float]]]:
    """The real ingest, logged in as its own user, and the times it was disconnected."""
    service = Ingest(IngestConfig(database_url=db_url, mqtt_port=secured_broker.port,
                                  mqtt_username=INGEST_USER,
                                  mqtt_password=PASSWORDS[INGEST_USER],
                                  client_id=INGEST_USER, batch_ms=5))
    disconnects: list[float] = []
    own_callback = service.client.on_disconnect
    assert own_callback is not None

    def counting(*args: Any) -> None:
        disconnects.append(time.monotonic())
        own_callback(*args)

    service.client.on_disconnect = counting
    service.start()
    yield service, disconnects
    service.stop()


def publish_while_an_impostor_connects(broker: MosquittoServer, hub: Client,
                                       impostor_user: str, victim_id: str) -> list[str]:
    """Hub-a publishes BEFORE + DURING + AFTER readings (QoS 1, one a message); during
    the middle ones ``impostor_user`` connects as ``victim_id``, and its paho reconnects
    each second as an impostor's would.  Returns the ids of all readings sent."""
    topic = readings_topic("hub-a")
    sent: list[tuple[str, mqtt.MQTTMessageInfo]] = []

    def send(count: int, spacing: float = 0.0) -> None:
        for _ in range(count):
            item = reading()
            sent.append((item["id"], hub.paho.publish(topic, orjson.dumps(item), qos=1)))
            time.sleep(spacing)

    send(BEFORE)
    impostor = connect(broker, impostor_user, victim_id, wait=False)
    try:
        send(DURING, SPACING)
    finally:
        impostor.close()
    send(AFTER)
    hub.unacknowledged = sum(not acknowledged(info) for _, info in sent)
    return [reading_id for reading_id, _ in sent]


def acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    """Whether the broker sent PUBACK (paho raises for a publish the client never sent)."""
    try:
        info.wait_for_publish(15)
        return info.is_published()
    except (RuntimeError, ValueError):  # not connected: the hub was knocked off
        return False


def settles(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Whether ``predicate`` holds within ``timeout`` s (the assertion after says what)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stored_ids(db_url: str) -> list[str]:
    with psycopg.connect(db_url) as conn:
        return [str(row[0]) for row in conn.execute("SELECT id FROM reading")]


def acked_ids(hub: Client) -> list[str]:
    return [i for m in list(hub.messages) for i in orjson.loads(m.payload)["stored"]]


def damage(sent: list[str], stored: list[str], hub: Client, ingest_disconnects: list[float],
           stored_acks: list[str] | None = None) -> dict[str, int]:
    """What the impostor cost, all of which must be zero."""
    found = {
        "ingest disconnects": len(ingest_disconnects),
        "hub disconnects": hub.disconnects,
        "readings the broker did not acknowledge": hub.unacknowledged,
        "readings lost": len(set(sent) - set(stored)),
        "readings stored twice": len(stored) - len(set(stored)),
    }
    if stored_acks is not None:
        found["stored-acks lost"] = len(set(sent) - set(stored_acks))
    return found


def test_a_hub_using_the_ingests_client_id_loses_nobody_s_session_or_readings(
        db_url: str, secured_broker: MosquittoServer,
        ingest: tuple[Ingest, list[float]]) -> None:
    service, ingest_disconnects = ingest
    hub = connect(secured_broker, "hub-a", "hub-a")
    try:
        sent = publish_while_an_impostor_connects(secured_broker, hub, "hub-b",
                                                  service.config.client_id)
        settles(lambda: len(stored_ids(db_url)) >= len(sent))
        found = damage(sent, stored_ids(db_url), hub, ingest_disconnects)
    finally:
        hub.close()
    assert found == dict.fromkeys(found, 0)


@pytest.mark.hazard("H-016")
def test_a_hub_using_another_hubs_client_id_cannot_take_its_session(
        db_url: str, secured_broker: MosquittoServer,
        ingest: tuple[Ingest, list[float]]) -> None:
    _, ingest_disconnects = ingest
    hub = connect(secured_broker, "hub-a", "hub-a", subscribe=acks_topic("hub-a"))
    try:
        sent = publish_while_an_impostor_connects(secured_broker, hub, "hub-b", "hub-a")
        settles(lambda: set(acked_ids(hub)) >= set(sent))
        found = damage(sent, stored_ids(db_url), hub, ingest_disconnects, acked_ids(hub))
    finally:
        hub.close()
    assert found == dict.fromkeys(found, 0)
