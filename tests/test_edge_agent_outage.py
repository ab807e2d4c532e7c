"""Issue 3, "done when": an outage of the broker and SIGKILLs of the agent lose nothing.

Readings keep being produced by a real agent process while the broker is
stopped for a while; the agent is SIGKILLed twice (once while messages are in
flight, once in the middle of the outage) and restarted on the same state
folder each time.  After the broker returns, a plain MQTT subscriber (the
server's place) has received every reading that any agent process committed:
de-duplicated by reading id, the set received equals the set produced, and
for each device the drain arrives in ``taken_at`` order.  Duplicates are
allowed (at-least-once; the server is idempotent on the id) and counted.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from edge.outbox import Outbox
from stack.services import MosquittoServer
from tests.edge_mqtt_support import Subscriber
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AGENT = textwrap.dedent("""
    import asyncio, signal, sys
    from dataclasses import dataclass
    from datetime import datetime
    from edge.agent import EdgeAgent
    from edge.publisher import BrokerParams
    from edge.settings import EdgeSettings
    from homeward.kinds import Kind

    @dataclass(frozen=True)
    class Measurement:          # the shape of an edge.gatt Measurement
        kind: Kind
        values: dict
        taken_at: datetime | None = None   # none: the hub's receive time
        flags: tuple = ()

    DEVICES = ["AA:00:00:00:00:01", "AA:00:00:00:00:02", "AA:00:00:00:00:03"]

    async def main() -> None:
        port, state_dir, produced_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
        hub, password = (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else ("hub-1", None)
        produced = open(produced_path, "a", buffering=1)
        settings = EdgeSettings(reconnect_min_s=0.05, reconnect_max_s=0.2, batch_readings=25,
                                messages_per_second=100, max_inflight_messages=5)
        agent = EdgeAgent(hub_id=hub, state_dir=state_dir,
                          broker=BrokerParams(port=port, username=password and hub,
                                              password=password),
                          ble_backend=None, settings=settings,
                          on_stored=lambda r: produced.write(f"{r.id} {r.device}\\n"))
        await agent.start()
        loop = asyncio.get_running_loop()
        producing, done = asyncio.Event(), asyncio.Event()
        producing.set()
        loop.add_signal_handler(signal.SIGUSR1, producing.clear)
        loop.add_signal_handler(signal.SIGTERM, done.set)
        print("ready", flush=True)
        n = 0
        while producing.is_set() and not done.is_set():
            for device in DEVICES:   # on_measurement returns once the reading is committed
                await agent.on_measurement(
                    device, Measurement(Kind.SPO2, {"spo2": 90 + n % 10, "pulse_rate": 70}), b"")
            n += 1
            await asyncio.sleep(0.01)
        await done.wait()
        await agent.stop()

    asyncio.run(main())
""")


class AgentProcess:
    """A real agent in its own process, producing readings until SIGUSR1 (SIGTERM stops it).

    With ``hub`` and ``password`` it logs in to the broker as that hub.
    """

    def __init__(self, broker: MosquittoServer, state_dir: Path, produced: Path,
                 hub: str | None = None, password: str | None = None) -> None:
        login = [hub, password] if hub and password else []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", AGENT, str(broker.port), str(state_dir), str(produced),
             *login],
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self) -> int:
        code = self.proc.wait(15)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


def produced_ids(path: Path) -> dict[str, str]:
    """id -> device of every reading an agent process reported committed."""
    pairs = (line.split() for line in path.read_text().splitlines())
    return {p[0]: p[1] for p in pairs if len(p) == 2}


def test_outage_and_sigkills_lose_nothing_and_drain_in_order(
        tmp_path: Path, mosquitto: MosquittoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # A plain subscriber stands in for the server and sends no stored-acks: the
    # agent processes delete on the broker's PUBACK.
    monkeypatch.setenv("HOMEWARD_EDGE_STORED_ACKS", "false")
    state, produced = tmp_path / "hub-1", tmp_path / "produced.txt"
    server = Subscriber(mosquitto, ["homeward/v1/hubs/hub-1/readings"], client_id="server",
                        persistent=True)
    agents = []
    try:
        agents.append(AgentProcess(mosquitto, state, produced))
        time.sleep(1.0)
        agents[-1].signal(signal.SIGKILL)  # while messages are in flight
        assert agents[-1].wait() == -signal.SIGKILL
        agents.append(AgentProcess(mosquitto, state, produced))
        time.sleep(0.7)
        mosquitto.stop()  # the home's internet goes down; readings keep coming
        outage_started = len(produced_ids(produced))
        time.sleep(1.0)
        agents[-1].signal(signal.SIGKILL)  # in the middle of the outage
        assert agents[-1].wait() == -signal.SIGKILL
        agents.append(AgentProcess(mosquitto, state, produced))
        time.sleep(1.0)
        during_outage = len(produced_ids(produced)) - outage_started
        mosquitto.start()
        time.sleep(0.5)
        agents[-1].signal(signal.SIGUSR1)  # stop producing; keep draining
        time.sleep(0.1)
        expected = produced_ids(produced)
        wait_for(lambda: set(expected) <= set(server.reading_ids()), timeout=30,
                 what="every committed reading at the subscriber")
        agents[-1].signal(signal.SIGTERM)
        assert agents[-1].wait() == 0
    finally:
        for agent in agents:
            if agent.proc.poll() is None:
                agent.proc.kill()
                agent.wait()
        server.close()

    received = server.readings()
    received_ids = [str(r.id) for r in received]
    assert during_outage > 100  # the outage really had readings piling up
    assert set(expected) <= set(received_ids)
    # a process killed between its commit and writing the id down: at most one per kill
    assert len(set(received_ids) - set(expected)) <= 2
    duplicates = len(received_ids) - len(set(received_ids))
    print(f"produced {len(expected)}, received {len(received_ids)} messages' readings, "
          f"{duplicates} duplicates (at-least-once; the server de-duplicates by id)")
    first_arrivals: dict[str, list[datetime]] = defaultdict(list)
    seen: set[str] = set()
    for reading in received:
        if str(reading.id) not in seen:
            seen.add(str(reading.id))
            first_arrivals[reading.device].append(reading.taken_at)
    assert len(first_arrivals) == 3
    for device, times in first_arrivals.items():
        assert times == sorted(times), f"{device} drained out of taken_at order"
    with Outbox(state / "outbox.db") as box:
        assert box.depth == 0  # everything acknowledged, nothing left behind
