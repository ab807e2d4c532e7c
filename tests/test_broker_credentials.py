"""Hubs' broker credentials made and taken away while the broker runs (issue 11,
section 1's hubs; server.broker_credentials, docs/broker.md).

A real Mosquitto with the dynamic-security plugin: a provisioned hub connects and
publishes at once; revoked, it is disconnected on the spot and its password refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from homeward.wire import acks_topic, readings_topic
from server.broker_credentials import (
    HubCredentialsExist,
    hub_credentials_exist,
    provision_hub_credentials,
    revoke_hub_credentials,
)
from stack.services import MosquittoServer
from tests.broker_support import (
    INGEST,
    OBSERVER,
    PASSWORDS,
    Probe,
    dynsec_broker,
    settings_for,
)

pytestmark = pytest.mark.integration

REFUSED_LOGIN = ("Bad user name or password", "Not authorized")


@pytest.fixture
def broker(mosquitto_factory: Callable[..., MosquittoServer]) -> MosquittoServer:
    return dynsec_broker(mosquitto_factory)


def hub_publishes(broker: MosquittoServer, hub_id: str, password: str) -> Probe:
    """Log in as the hub, publish a reading message and check the observer got it."""
    observer = Probe(broker.port, OBSERVER, PASSWORDS[OBSERVER])
    try:
        assert observer.subscribe(readings_topic(hub_id)) == "Granted QoS 1"
        hub = Probe(broker.port, hub_id, password)
        assert hub.connack == "Success"
        assert hub.subscribe(acks_topic(hub_id)) == "Granted QoS 1"
        assert hub.publish(readings_topic(hub_id), b"[]") == "Success"
        deadline = time.monotonic() + 5
        while not observer.payloads(readings_topic(hub_id)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert observer.payloads(readings_topic(hub_id)) == [b"[]"]
        return hub
    finally:
        observer.close()


def login_refused(broker: MosquittoServer, hub_id: str, password: str) -> bool:
    probe = Probe(broker.port, hub_id, password)
    try:
        return probe.connack in REFUSED_LOGIN and not probe.connected
    finally:
        probe.close()


def test_a_provisioned_hub_connects_and_publishes_and_a_revoked_one_is_cut_off_at_once(
        broker: MosquittoServer) -> None:
    settings = settings_for(broker)
    assert not hub_credentials_exist("hub-new", settings=settings)
    assert login_refused(broker, "hub-new", "anything")

    password = provision_hub_credentials("hub-new", settings=settings)
    assert hub_credentials_exist("hub-new", settings=settings)
    hub = hub_publishes(broker, "hub-new", password)
    try:
        started = time.monotonic()
        assert revoke_hub_credentials("hub-new", settings=settings) is True
        assert hub.wait_disconnected(2), "the revoked hub is still connected"
        cut_off = time.monotonic() - started
        assert hub.disconnect_reason == "Administrative action"
    finally:
        hub.close()
    assert cut_off < 2
    assert login_refused(broker, "hub-new", password)
    assert not hub_credentials_exist("hub-new", settings=settings)
    assert revoke_hub_credentials("hub-new", settings=settings) is False  # idempotent


def test_provisioning_again_needs_replace_which_cuts_off_the_old_password(
        broker: MosquittoServer) -> None:
    settings = settings_for(broker)
    old = provision_hub_credentials("hub-re", settings=settings)
    with pytest.raises(HubCredentialsExist):
        provision_hub_credentials("hub-re", settings=settings)
    hub = hub_publishes(broker, "hub-re", old)  # the refusal changed nothing
    try:
        new = provision_hub_credentials("hub-re", replace=True, settings=settings)
        assert hub.wait_disconnected(2)
    finally:
        hub.close()
    assert new != old
    assert login_refused(broker, "hub-re", old)
    hub_publishes(broker, "hub-re", new).close()


def test_provisioned_and_revoked_credentials_survive_a_broker_restart(
        broker: MosquittoServer) -> None:
    settings = settings_for(broker)
    kept = provision_hub_credentials("hub-kept", settings=settings)
    gone = provision_hub_credentials("hub-gone", settings=settings)
    revoke_hub_credentials("hub-gone", settings=settings)
    broker.restart()
    hub_publishes(broker, "hub-kept", kept).close()
    assert login_refused(broker, "hub-gone", gone)


def test_server_users_and_topic_wildcards_are_never_hub_ids(broker: MosquittoServer) -> None:
    settings = settings_for(broker)
    for not_a_hub in (INGEST, "homeward-anything", "hub/+", "#", ""):
        with pytest.raises(ValueError):
            provision_hub_credentials(not_a_hub, settings=settings)
        with pytest.raises(ValueError):
            revoke_hub_credentials(not_a_hub, settings=settings)
    assert Probe(broker.port, INGEST, PASSWORDS[INGEST]).connack == "Success"


def test_only_the_provisioner_may_provision(broker: MosquittoServer) -> None:
    as_ingest = settings_for(broker, mqtt_provisioner_username=INGEST,
                             mqtt_provisioner_password=PASSWORDS[INGEST])
    with pytest.raises(ConnectionError, match="Not authorized"):
        provision_hub_credentials("hub-x", settings=as_ingest)
    wrong = settings_for(broker, mqtt_provisioner_password="wrong")
    with pytest.raises(ConnectionError):
        provision_hub_credentials("hub-x", settings=wrong)
    assert not hub_credentials_exist("hub-x", settings=settings_for(broker))
