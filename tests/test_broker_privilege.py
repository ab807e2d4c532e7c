"""Least privilege at the broker (issue 11, section 4): each role may do its job and
nothing else (homeward.broker_roles, docs/broker.md).

A real Mosquitto with the production set-up (the dynamic-security plugin, a user per
server role, one role per hub) answers each attempt with an MQTT 5 reason code: a
subscription outside a role's rights is refused in the SUBACK, a publish in the
PUBACK.  A test-only observer that reads everything shows that a refused publish is
not delivered to anyone and an allowed one is.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from homeward.broker_roles import DYNSEC_CONTROL_TOPIC
from homeward.wire import (
    READINGS_SUBSCRIPTION,
    STATUS_SUBSCRIPTION,
    acks_topic,
    config_topic,
    readings_topic,
    status_topic,
)
from stack.services import MosquittoServer
from tests.broker_support import (
    CONFIG,
    INGEST,
    OBSERVER,
    PASSWORDS,
    PROVISIONER,
    Probe,
    dynsec_broker,
)

pytestmark = pytest.mark.integration

HUBS = {"hub-a": "a-pw", "hub-b": "b-pw"}
LOGINS = {**PASSWORDS, **HUBS}
GRANTED, REFUSED = "Granted QoS 1", "Not authorized"
CONTROL_RESPONSE = f"{DYNSEC_CONTROL_TOPIC}/response"

#: (user, topic filter, may subscribe?)
SUBSCRIPTIONS = [
    (INGEST, READINGS_SUBSCRIPTION, True),
    (INGEST, STATUS_SUBSCRIPTION, True),
    (INGEST, f"$share/ingest/{READINGS_SUBSCRIPTION}", True),
    (INGEST, f"$share/ingest/{STATUS_SUBSCRIPTION}", True),
    (INGEST, config_topic("+"), False),
    (INGEST, acks_topic("+"), False),
    (INGEST, "homeward/v1/#", False),
    (INGEST, "#", False),
    (INGEST, CONTROL_RESPONSE, False),
    (CONFIG, config_topic("+"), False),
    (CONFIG, READINGS_SUBSCRIPTION, False),
    (CONFIG, "#", False),
    (CONFIG, CONTROL_RESPONSE, False),
    ("hub-a", config_topic("hub-a"), True),
    ("hub-a", acks_topic("hub-a"), True),
    ("hub-a", config_topic("hub-b"), False),
    ("hub-a", acks_topic("hub-b"), False),
    ("hub-a", acks_topic("+"), False),
    ("hub-a", readings_topic("hub-a"), False),
    ("hub-a", status_topic("hub-b"), False),
    ("hub-a", CONTROL_RESPONSE, False),
    (PROVISIONER, CONTROL_RESPONSE, True),
    (PROVISIONER, READINGS_SUBSCRIPTION, False),
    (PROVISIONER, "#", False),
]

#: (user, topic, may publish?)
PUBLICATIONS = [
    (INGEST, acks_topic("hub-a"), True),
    (INGEST, readings_topic("hub-a"), False),
    (INGEST, status_topic("hub-a"), False),
    (INGEST, config_topic("hub-a"), False),
    (INGEST, "homeward/v1/other", False),
    (INGEST, DYNSEC_CONTROL_TOPIC, False),
    (CONFIG, config_topic("hub-a"), True),
    (CONFIG, acks_topic("hub-a"), False),
    (CONFIG, readings_topic("hub-a"), False),
    (CONFIG, status_topic("hub-a"), False),
    (CONFIG, DYNSEC_CONTROL_TOPIC, False),
    ("hub-a", readings_topic("hub-a"), True),
    ("hub-a", status_topic("hub-a"), True),
    ("hub-a", readings_topic("hub-b"), False),
    ("hub-a", status_topic("hub-b"), False),
    ("hub-a", config_topic("hub-a"), False),
    ("hub-a", acks_topic("hub-a"), False),
    ("hub-a", acks_topic("hub-b"), False),
    ("hub-a", DYNSEC_CONTROL_TOPIC, False),
    (PROVISIONER, readings_topic("hub-a"), False),
    (PROVISIONER, config_topic("hub-a"), False),
]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """One broker for the module: every case leaves nothing behind but retained
    messages on the two topics an allowed role may retain on, which no case reads."""
    started: list[MosquittoServer] = []

    def factory(**options: object) -> MosquittoServer:
        server = MosquittoServer(Path(tmp_path_factory.mktemp("mqtt")), **options)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield dynsec_broker(factory, HUBS)
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def observer(broker: MosquittoServer) -> Iterator[Probe]:
    probe = Probe(broker.port, OBSERVER, PASSWORDS[OBSERVER])
    assert probe.subscribe("homeward/#") == GRANTED
    yield probe
    probe.close()


@pytest.fixture
def login(broker: MosquittoServer) -> Iterator[Callable[[str], Probe]]:
    probes: list[Probe] = []

    def connect(user: str) -> Probe:
        probe = Probe(broker.port, user, LOGINS[user])
        assert probe.connack == "Success", f"{user} could not log in: {probe.connack}"
        probes.append(probe)
        return probe

    yield connect
    for probe in probes:
        probe.close()


@pytest.mark.parametrize(("user", "topic_filter", "allowed"), SUBSCRIPTIONS)
def test_each_role_subscribes_within_its_rights_only(
        login: Callable[[str], Probe], user: str, topic_filter: str, allowed: bool) -> None:
    assert login(user).subscribe(topic_filter) == (GRANTED if allowed else REFUSED)


@pytest.mark.hazard("H-016")
@pytest.mark.parametrize(("user", "topic", "allowed"), PUBLICATIONS)
def test_each_role_publishes_within_its_rights_only_and_refused_messages_reach_nobody(
        login: Callable[[str], Probe], observer: Probe, user: str, topic: str,
        allowed: bool) -> None:
    payload = f"from {user} {uuid.uuid4()}".encode()
    answer = login(user).publish(topic, payload)
    if allowed:
        assert answer in ("Success", "No matching subscribers")
    else:
        assert answer == REFUSED
    # QoS 1 from the broker to the observer: an allowed message arrives within moments.
    deadline = time.monotonic() + (5 if allowed else 0.3)
    while payload not in observer.payloads(topic) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (payload in observer.payloads(topic)) == allowed


@pytest.mark.hazard("H-016")
def test_a_hub_receives_its_own_config_and_acks_and_not_another_hubs(
        login: Callable[[str], Probe]) -> None:
    hub_a = login("hub-a")
    assert hub_a.subscribe(config_topic("hub-a")) == GRANTED
    assert hub_a.subscribe(acks_topic("hub-a")) == GRANTED
    config, ingest = login(CONFIG), login(INGEST)
    assert config.publish(config_topic("hub-b"), b'{"devices": []}') in (
        "Success", "No matching subscribers")
    assert ingest.publish(acks_topic("hub-b"), b'{"stored": []}') in (
        "Success", "No matching subscribers")
    assert config.publish(config_topic("hub-a"), b'{"devices": [1]}') == "Success"
    assert ingest.publish(acks_topic("hub-a"), b'{"stored": [1]}') == "Success"
    deadline = time.monotonic() + 5
    while len(hub_a.messages) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # room for anything that should not come
    assert sorted(m.topic for m in hub_a.messages) == [acks_topic("hub-a"),
                                                       config_topic("hub-a")]


def test_wrong_passwords_and_unknown_users_are_refused(broker: MosquittoServer) -> None:
    for user, password in ((INGEST, "wrong"), ("hub-a", HUBS["hub-b"]), ("hub-c", "x"),
                           ("", "")):
        probe = Probe(broker.port, user, password)
        try:
            assert probe.connack in ("Bad user name or password", "Not authorized")
            assert not probe.connected
        finally:
            probe.close()
