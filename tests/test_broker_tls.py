"""MQTT over TLS end to end (issue 11, section 4), with certificates the test makes.

A private Mosquitto with only a TLS listener and the production rights (dynamic
security, a user per role): a hub provisioned over TLS, the real edge agent with a
virtual cuff, the real ingest and the config publisher all connect over TLS, and a
reading taken by the cuff is stored.  A client that does not trust the broker's CA
is refused, and so is plain MQTT on the TLS port.  A listener that requires client
certificates takes the ingest's (HOMEWARD_MQTT_CERT_FILE/KEY_FILE) and refuses it
without one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from device_sim.radio import VirtualRadio
from edge.agent import EdgeAgent
from edge.publisher import BrokerParams
from homeward.kinds import Kind
from homeward.settings import Settings
from server import admin
from server.broker_credentials import provision_hub_credentials
from server.hub_config import publish_hub_config
from server.ingest import Ingest, IngestConfig
from stack.services import MosquittoServer
from stack.services.mosquitto import BrokerTls
from tests.broker_support import (
    CONFIG,
    INGEST,
    PASSWORDS,
    PROVISIONER,
    Probe,
    dynsec_broker,
    tls_context_refuses,
)
from tests.tls_support import Authority, issue, make_authority

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

HUB = "hub-tls"
CUFF = "C4:7C:8D:6A:3E:99"


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return make_authority(tmp_path / "ca")


def tls_broker(factory: Callable[..., MosquittoServer], ca: Authority, folder: Path, *,
               require_certificate: bool = False) -> MosquittoServer:
    cert, key = issue(ca, folder, "broker", server=True)
    return dynsec_broker(factory, plain=False,
                         tls=BrokerTls(ca.cert_file, cert, key, require_certificate))


def tls_settings(broker: MosquittoServer, ca: Authority, user: str | None = None,
                 **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mqtt_host": "127.0.0.1", "mqtt_port": broker.tls_port, "mqtt_tls": True,
        "mqtt_ca_file": ca.cert_file, "mqtt_username": user,
        "mqtt_password": PASSWORDS.get(user or ""),
        "mqtt_provisioner_username": PROVISIONER,
        "mqtt_provisioner_password": PASSWORDS[PROVISIONER]}
    return Settings(**{**values, **overrides})


@pytest.fixture
def ingest_over_tls(db_url: str, authority: Authority,
                    mosquitto_factory: Callable[..., MosquittoServer], tmp_path: Path
                    ) -> Iterator[tuple[MosquittoServer, Ingest]]:
    broker = tls_broker(mosquitto_factory, authority, tmp_path)
    service = Ingest(IngestConfig.from_settings(
        tls_settings(broker, authority, INGEST, database_url=db_url),
        client_id=INGEST, batch_ms=5))
    service.start()
    yield broker, service
    service.stop()


async def poll(check: Callable[[], Any], what: str, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = await asyncio.to_thread(check)
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: nothing over TLS after {seconds} s")


def stored_readings(db_url: str) -> list[tuple[str, str, dict[str, float]]]:
    with psycopg.connect(db_url) as conn:
        return [(hub, device, values) for hub, device, values in conn.execute(
            "SELECT hub_id, device, values FROM reading")]


def test_a_cuff_reading_travels_over_tls_from_edge_to_database(
        db_url: str, authority: Authority,
        ingest_over_tls: tuple[MosquittoServer, Ingest], tmp_path: Path) -> None:
    broker, _ = ingest_over_tls
    with psycopg.connect(db_url) as conn:
        admin.create_hub(conn, hub_id=HUB)
        admin.pair_device(conn, hub_id=HUB, address=CUFF, kind=Kind.BLOOD_PRESSURE)
        password = provision_hub_credentials(HUB, settings=tls_settings(broker, authority))
        # The config publisher's user, over TLS: the hub learns its cuff from the server.
        publish_hub_config(conn, HUB, settings=tls_settings(broker, authority, CONFIG))

    async def scenario() -> list[tuple[str, str, dict[str, float]]]:
        with VirtualRadio(HUB, advertising_interval_s=0.05) as radio:
            cuff = radio.add_device(Kind.BLOOD_PRESSURE, address=CUFF)
            agent = EdgeAgent(
                hub_id=HUB, state_dir=tmp_path / "hub", ble_backend="sim",
                broker=BrokerParams(host="127.0.0.1", port=broker.tls_port, username=HUB,
                                    password=password, tls=True, ca_file=authority.cert_file))
            async with agent:
                # The retained config arrives over TLS, and the hub connects to the cuff.
                await poll(lambda: [d.address for d in agent.devices] == [CUFF], "config")
                cuff.measure({"systolic": 131.0, "diastolic": 84.0, "mean_arterial": 100.0,
                              "pulse_rate": 66.0}, at=cuff.device_time() - timedelta(minutes=1))

                def stored_and_acknowledged() -> list[tuple[str, str, dict[str, float]]]:
                    found = stored_readings(db_url)
                    outbox = agent.outbox
                    return found if found and outbox is not None and outbox.depth == 0 else []

                return await poll(stored_and_acknowledged, "the reading stored and acked")

    ((hub, device, values),) = asyncio.run(scenario())
    assert (hub, device, values["systolic"]) == (HUB, CUFF, 131.0)


def test_a_client_that_does_not_trust_the_ca_is_refused(
        authority: Authority, mosquitto_factory: Callable[..., MosquittoServer],
        tmp_path: Path) -> None:
    broker = tls_broker(mosquitto_factory, authority, tmp_path)
    stranger = make_authority(tmp_path / "stranger", "Someone Else's CA")

    assert tls_context_refuses(broker.tls_port, authority.cert_file) is None
    error = tls_context_refuses(broker.tls_port, stranger.cert_file)
    assert error is not None and "certificate verify failed" in str(error)

    trusting = Probe(broker.tls_port, INGEST, PASSWORDS[INGEST], tls=True,
                     ca_file=authority.cert_file)
    try:
        assert trusting.connack == "Success"
    finally:
        trusting.close()
    plain = Probe(broker.tls_port, INGEST, PASSWORDS[INGEST])  # MQTT without TLS
    try:
        assert plain.connack != "Success" and not plain.connected
    finally:
        plain.close()


def test_a_listener_that_requires_client_certificates_takes_the_ingests(
        db_url: str, authority: Authority, mosquitto_factory: Callable[..., MosquittoServer],
        tmp_path: Path) -> None:
    broker = tls_broker(mosquitto_factory, authority, tmp_path, require_certificate=True)
    cert, key = issue(authority, tmp_path, "ingest-client", server=False)
    with_cert = Ingest(IngestConfig.from_settings(
        tls_settings(broker, authority, INGEST, database_url=db_url, mqtt_cert_file=cert,
                     mqtt_key_file=key), client_id=INGEST))
    try:
        with_cert.start(wait_subscribed=15)
    finally:
        with_cert.stop()
    without = Ingest(IngestConfig.from_settings(
        tls_settings(broker, authority, INGEST, database_url=db_url), client_id=INGEST))
    try:
        with pytest.raises(TimeoutError):
            without.start(wait_subscribed=3)
        assert not without.client.is_connected()
    finally:
        without.stop()
