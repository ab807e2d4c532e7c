"""The tester's two terminals, as two processes: `homeward sim devices --announce FILE` and
`homeward edge --ble sim --sim-radio URL`, with a real broker; readings reach it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from homeward.kinds import Kind
from stack.services import MosquittoServer
from tests.edge_mqtt_support import Subscriber
from tests.test_sim_remote import REPO, sim_devices

pytestmark = pytest.mark.integration


def test_edge_command_collects_from_sim_devices_in_another_process(
        tmp_path: Path, mosquitto: MosquittoServer) -> None:
    server = Subscriber(mosquitto, ["homeward/v1/hubs/+/readings"])
    with sim_devices(tmp_path, "--socket", str(tmp_path / "hub-cli.sock"), "--radio", "hub-cli",
                     "--glucose", "1", "--temperature", "1", "--stored", "4",
                     "--every", "0.3") as (_devices, announced):
        url = announced["url"]
        assert url == f"unix://{tmp_path}/hub-cli.sock#hub-cli"
        log = (tmp_path / "edge.log").open("wb")
        env = {**os.environ, "HOMEWARD_EDGE_RECONNECT_MIN_S": "0.05",
               "HOMEWARD_EDGE_STATUS_INTERVAL_S": "1"}
        edge = subprocess.Popen(
            [sys.executable, "-m", "stack", "edge", "--ble", "sim", "--sim-radio", url,
             "--hub-id", "hub-cli", "--host", "127.0.0.1", "--port", str(mosquitto.port),
             "--state-dir", str(tmp_path / "hub")], cwd=REPO, env=env, stdout=log,
            stderr=subprocess.STDOUT)
        try:
            kinds = {d["address"]: Kind(d["kind"]) for d in announced["devices"]}
            deadline = time.monotonic() + 20
            while True:
                seen = Counter(r.device for r in server.readings())
                # the meter's 4 stored records (RACP) and more; live thermometer readings
                if all(seen[a] >= 5 for a in kinds):
                    break
                assert edge.poll() is None, (tmp_path / "edge.log").read_text()
                assert time.monotonic() < deadline, (seen, (tmp_path / "edge.log").read_text())
                time.sleep(0.1)
            edge.send_signal(signal.SIGTERM)
            assert edge.wait(10) == 0, (tmp_path / "edge.log").read_text()
        finally:
            if edge.poll() is None:
                edge.kill()
                edge.wait(10)
            log.close()
            readings = server.readings()
            server.close()
    assert "Using the 2 virtual devices" in (tmp_path / "edge.log").read_text()
    assert {r.kind for r in readings} == {Kind.GLUCOSE, Kind.TEMPERATURE}
    assert all(r.kind is kinds[r.device] for r in readings)
