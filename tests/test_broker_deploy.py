"""deploy/mosquitto/mosquitto.conf runs as written, after its init step (`homeward
broker init`): server users log in over TLS with their role's rights, and a hub only
once provisioned.  The container's paths are moved into a temporary folder and the
listener onto a free local port; nothing else in the file is changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from homeward.settings import Settings
from homeward.wire import READINGS_SUBSCRIPTION, config_topic
from server.broker_credentials import provision_hub_credentials
from server.broker_dynsec import client_entry, hub_role
from stack.cli import app
from tests.broker_support import (
    CONFIG,
    ENVIRONMENT,
    INGEST,
    PASSWORDS,
    PROVISIONER,
    Probe,
    deployed_broker,
)
from tests.tls_support import issue, make_authority

pytestmark = pytest.mark.integration



@pytest.fixture
def production_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """(TLS port, CA file) of the production config, running."""
    certs, data = tmp_path / "certs", tmp_path / "data"
    data.mkdir()
    ca = make_authority(certs)
    cert, key = issue(ca, certs, "server", server=True)
    assert (cert.name, key.name) == ("server.crt", "server.key")

    result = CliRunner().invoke(app, ["broker", "init", str(data / "dynamic-security.json")],
                                env=ENVIRONMENT)
    assert result.exit_code == 0, result.output
    with deployed_broker(tmp_path, certs, data) as port:
        yield port, ca.cert_file


def test_the_production_broker_serves_each_role_its_rights_over_tls(
        production_broker: tuple[int, Path]) -> None:
    port, ca_file = production_broker
    ingest = Probe(port, INGEST, PASSWORDS[INGEST], tls=True, ca_file=ca_file)
    config = Probe(port, CONFIG, PASSWORDS[CONFIG], tls=True, ca_file=ca_file)
    try:
        assert ingest.subscribe(READINGS_SUBSCRIPTION) == "Granted QoS 1"
        assert ingest.subscribe("#") == "Not authorized"
        assert config.publish(config_topic("hub-1"), b"{}") in ("Success",
                                                                 "No matching subscribers")
        assert config.subscribe(READINGS_SUBSCRIPTION) == "Not authorized"
    finally:
        ingest.close()
        config.close()

    stranger = Probe(port, "hub-1", "guess", tls=True, ca_file=ca_file)
    stranger.close()
    assert stranger.connack != "Success"
    settings = Settings(mqtt_host="127.0.0.1", mqtt_port=port, mqtt_tls=True,
                        mqtt_ca_file=ca_file, mqtt_provisioner_username=PROVISIONER,
                        mqtt_provisioner_password=PASSWORDS[PROVISIONER])
    password = provision_hub_credentials("hub-1", settings=settings)
    hub = Probe(port, "hub-1", password, tls=True, ca_file=ca_file)
    try:
        assert hub.connack == "Success"
        assert hub.subscribe(config_topic("hub-1")) == "Granted QoS 1"
    finally:
        hub.close()


def test_broker_init_again_keeps_the_hubs_and_needs_every_password(tmp_path: Path) -> None:
    state = tmp_path / "dynamic-security.json"
    runner = CliRunner()
    assert runner.invoke(app, ["broker", "init", str(state)], env=ENVIRONMENT).exit_code == 0
    data = json.loads(state.read_text())
    data["clients"].append(client_entry("hub-9", "pw", ["hub:hub-9"]))
    data["roles"].append(hub_role("hub-9"))
    state.write_text(json.dumps(data))
    again = runner.invoke(app, ["broker", "init", str(state)],
                          env={**ENVIRONMENT, "HOMEWARD_MQTT_API_PASSWORD": "rotated"})
    assert again.exit_code == 0, again.output
    assert "1 hub(s) kept" in again.output
    users = [c["username"] for c in json.loads(state.read_text())["clients"]]
    assert sorted(users) == sorted([INGEST, CONFIG, PROVISIONER, "hub-9"])
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    missing = runner.invoke(app, ["broker", "init", str(tmp_path / "other.json")],
                            env={**ENVIRONMENT, "HOMEWARD_MQTT_PROVISIONER_PASSWORD": None})
    assert missing.exit_code != 0
    assert "HOMEWARD_MQTT_PROVISIONER_PASSWORD" in missing.output
    assert not (tmp_path / "other.json").exists()
