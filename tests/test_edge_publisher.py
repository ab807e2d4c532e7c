"""The hub's MQTT publisher against a real Mosquitto: PUBACK, last will, status, config, ACL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from edge.outbox import Outbox
from edge.publisher import Backoff, BrokerParams, Publisher
from edge.settings import EdgeSettings
from homeward.kinds import Kind
from homeward.wire import DeviceState, HubConfig, HubStatus, PairedDevice, config_topic
from stack.services import MosquittoServer
from stack.services.mosquitto import default_acl
from tests.edge_mqtt_support import Subscriber, make_reading
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

HUB = "hub-1"
READINGS = f"homeward/v1/hubs/{HUB}/readings"
STATUS = f"homeward/v1/hubs/{HUB}/status"
# No server in these tests confirms storage: the hub deletes on the broker's PUBACK.
FAST = EdgeSettings(stored_acks=False, reconnect_min_s=0.05, reconnect_max_s=0.3, batch_readings=50,
                    messages_per_second=200, keepalive_s=5)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.db") as box:
        yield box


@pytest.fixture
def publishers() -> Iterator[Callable[..., Publisher]]:
    started: list[Publisher] = []

    def start(**kwargs: object) -> Publisher:
        kwargs.setdefault("hub_id", HUB)
        kwargs.setdefault("settings", FAST)
        pub = Publisher(**kwargs)  # type: ignore[arg-type]
        pub.start()
        started.append(pub)
        return pub

    yield start
    for pub in started:
        pub.stop()


@pytest.fixture
def subscribers() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(broker: MosquittoServer, topics: list[str], **kwargs: object) -> Subscriber:
        sub = Subscriber(broker, topics, **kwargs)  # type: ignore[arg-type]
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


def test_a_reading_leaves_the_outbox_only_after_the_brokers_puback(
        mosquitto: MosquittoServer, outbox: Outbox, publishers, subscribers) -> None:
    # reconnecting waits at least 0.5 s: time for the server to subscribe after the restart
    slow_reconnect = FAST.model_copy(update={"reconnect_min_s": 1.0})
    pub = publishers(outbox=outbox, broker=BrokerParams(port=mosquitto.port),
                     settings=slow_reconnect)
    wait_for(lambda: pub.connected, what="publisher connected")
    assert mosquitto._proc is not None
    os.kill(mosquitto._proc.pid, signal.SIGSTOP)  # the broker freezes: no PUBACK can come
    try:
        reading = make_reading()
        outbox.add(reading)
        wait_for(lambda: pub.inflight_messages == 1, what="reading published")
        time.sleep(0.5)
        assert outbox.reading_ids() == [str(reading.id)]  # sent, not acknowledged: kept
    finally:
        mosquitto.kill()  # the frozen broker dies without ever acknowledging
    assert outbox.reading_ids() == [str(reading.id)]
    mosquitto.start()  # same port, nothing persisted; paho sends the message again
    server = subscribers(mosquitto, [READINGS])
    wait_for(lambda: outbox.depth == 0, what="outbox drained after the restart")
    wait_for(lambda: server.reading_ids() == [str(reading.id)], what="delivery to the server")
    assert pub.connections == 2


def test_readings_produced_while_the_broker_is_down_are_delivered_after_it_returns(
        mosquitto: MosquittoServer, outbox: Outbox, publishers, subscribers) -> None:
    server = subscribers(mosquitto, [READINGS], client_id="server", persistent=True)
    pub = publishers(outbox=outbox, broker=BrokerParams(port=mosquitto.port))
    wait_for(lambda: pub.connected)
    mosquitto.stop()
    readings = [make_reading(n=n) for n in range(120)]
    for r in readings:
        outbox.add(r)
    time.sleep(0.3)
    assert outbox.depth == 120
    mosquitto.start()
    wait_for(lambda: outbox.depth == 0, what="outbox drained")
    wait_for(lambda: len(set(server.reading_ids())) == 120, what="all delivered")
    assert server.reading_ids() == [str(r.id) for r in readings]  # in order, once each
    assert max(len(orjson.loads(p)) for p in server.payloads()) <= FAST.batch_readings


KILLED_PUBLISHER = textwrap.dedent("""
    import sys, time
    from edge.outbox import Outbox
    from edge.publisher import BrokerParams, Publisher
    from homeward.wire import HubStatus
    pub = Publisher(hub_id="hub-1", outbox=Outbox(sys.argv[2]),
                    broker=BrokerParams(port=int(sys.argv[1])),
                    status_source=lambda: HubStatus(state="online", agent="test"))
    pub.start()
    while not pub.connected:
        time.sleep(0.02)
    print("connected", flush=True)
    time.sleep(60)
""")


@pytest.mark.hazard("H-014")
def test_the_last_will_marks_a_killed_hub_offline_retained(
        mosquitto: MosquittoServer, tmp_path: Path, subscribers) -> None:
    proc = subprocess.Popen([sys.executable, "-c", KILLED_PUBLISHER, str(mosquitto.port),
                             str(tmp_path / "o.db")], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parent.parent)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "connected"
        watcher = subscribers(mosquitto, [STATUS])
        wait_for(lambda: any(b"online" in p for p in watcher.payloads()), what="online status")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    wait_for(lambda: watcher.payloads()[-1] == b'{"state":"offline"}', what="last will")
    late = subscribers(mosquitto, [STATUS])  # someone who looks later sees it retained
    wait_for(lambda: late.payloads() == [b'{"state":"offline"}'], what="retained offline")
    assert late.messages[0].retain


def test_the_online_status_is_retained_and_a_clean_stop_says_offline(
        mosquitto: MosquittoServer, outbox: Outbox, publishers, subscribers) -> None:
    seen = datetime(2026, 11, 22, 7, 59, tzinfo=UTC)
    status = HubStatus(state="online", ts=seen, agent="0.1.0",
                       devices=[DeviceState(address="AA:01", kind=Kind.SPO2, battery=80,
                                            last_seen=seen, connected=True)],
                       outbox_depth=3, outbox_nearly_full=False)
    watcher = subscribers(mosquitto, [STATUS])
    pub = publishers(outbox=outbox, broker=BrokerParams(port=mosquitto.port),
                     status_source=lambda: status)
    wait_for(lambda: watcher.payloads(), what="the status published")
    late = subscribers(mosquitto, [STATUS])
    wait_for(lambda: late.payloads(), what="retained status")
    assert late.messages[0].retain
    assert HubStatus.model_validate_json(late.payloads()[0]) == status
    pub.stop()
    wait_for(lambda: late.payloads()[-1] == b'{"state":"offline"}', what="offline on stop")


def test_a_config_change_is_applied_without_restart(
        mosquitto: MosquittoServer, outbox: Outbox, publishers, subscribers) -> None:
    server = subscribers(mosquitto, [])
    cuff = PairedDevice(address="C4:7C:8D:6A:3E:21", kind=Kind.BLOOD_PRESSURE)
    oxi = PairedDevice(address="00:A0:50:11:22:33", kind=Kind.SPO2)
    first = HubConfig(version=1, devices=[cuff])
    server.client.publish(config_topic(HUB), first.model_dump_json(), qos=1,
                          retain=True).wait_for_publish(5)
    configs: list[HubConfig] = []
    pub = publishers(outbox=outbox, broker=BrokerParams(port=mosquitto.port),
                     on_config=configs.append)
    wait_for(lambda: configs == [first], what="the retained config at connect")
    second = HubConfig(version=2, devices=[oxi])  # cuff removed, oximeter paired
    server.client.publish(config_topic(HUB), second.model_dump_json(), qos=1, retain=True)
    wait_for(lambda: configs == [first, second], what="the changed config")
    server.client.publish(config_topic(HUB), b"not json", qos=1, retain=True)
    time.sleep(0.3)
    assert configs == [first, second] and pub.connected  # a bad config is ignored, logged


def test_login_and_acl_of_a_hub(mosquitto_factory, outbox: Outbox, publishers,
                                subscribers) -> None:
    broker = mosquitto_factory(users={HUB: "hub-pw", "homeward-server": "srv-pw"},
                               acl=default_acl())
    server = subscribers(broker, ["homeward/v1/hubs/+/readings", "homeward/v1/hubs/+/status"],
                         username="homeward-server", password="srv-pw")
    wrong = publishers(outbox=outbox, broker=BrokerParams(port=broker.port, username=HUB,
                                                          password="nope"))
    outbox.add(make_reading())
    wait_for(lambda: wrong.last_error and "refused" in wrong.last_error, what="refusal")
    assert not wrong.connected and outbox.depth == 1
    wrong.stop()
    pub = publishers(outbox=outbox, broker=BrokerParams(port=broker.port, username=HUB,
                                                        password="hub-pw"),
                     status_source=lambda: HubStatus(state="online"))
    wait_for(lambda: outbox.depth == 0, what="delivery with the right password")
    wait_for(lambda: len(server.reading_ids()) == 1)
    assert {m.topic for m in server.messages} == {READINGS, STATUS}
    assert pub.connected


@pytest.mark.hazard("H-003")
def test_a_hub_publishing_outside_its_prefix_is_refused_and_keeps_its_readings(
        mosquitto_factory, outbox: Outbox, publishers, subscribers, caplog) -> None:
    broker = mosquitto_factory(users={HUB: "hub-pw", "homeward-server": "srv-pw"},
                               acl=default_acl())
    server = subscribers(broker, ["homeward/v1/hubs/+/readings"],
                         username="homeward-server", password="srv-pw")
    outbox.add(make_reading())
    # logs in as hub-1 but publishes on hub-2's topics: the broker's ACL says no
    pub = publishers(hub_id="hub-2", outbox=outbox,
                     broker=BrokerParams(port=broker.port, username=HUB, password="hub-pw"))
    wait_for(lambda: "refused a batch" in caplog.text, what="a refused PUBACK")
    time.sleep(0.3)
    assert outbox.depth == 1 and server.reading_ids() == []
    assert pub.window.messages_acked == 0


@pytest.mark.parametrize("attempt", range(8))
def test_backoff_grows_to_its_cap_with_jitter(attempt: int) -> None:
    import random

    backoff = Backoff(0.5, 8.0, random.Random(attempt))
    delays = [backoff.next_delay() for _ in range(attempt + 1)]
    nominal = min(8.0, 0.5 * 2**attempt)
    assert nominal / 2 <= delays[-1] <= nominal
    backoff.reset()
    assert backoff.next_delay() <= 0.5
