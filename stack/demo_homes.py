"""The demo's simulated homes: one real edge agent per home, with virtual devices.

Run by ``homeward demo`` as a child process (``python -m stack.demo_homes``).
Each home has its own virtual radio (named after its hub id) holding a
blood-pressure cuff, a pulse oximeter, a thermometer and a scale; the edge
agent finds them through the simulator's bleak backend, exactly as it would
find real devices, and publishes to the demo's broker with the hub's own
credentials.  The first patient's cuff follows a deteriorating scenario so a
severe-hypertension alert fires within the first minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

from device_sim.radio import VirtualRadio
from device_sim.scenarios import Deteriorating
from edge.agent import EdgeAgent
from edge.publisher import BrokerParams
from homeward.kinds import Kind
from homeward.wire import PairedDevice

#: The devices in every home.
HOME_DEVICES = (Kind.BLOOD_PRESSURE, Kind.SPO2, Kind.TEMPERATURE, Kind.WEIGHT)
#: Readings for the deteriorating cuff to go from baseline to >= 180 mmHg.
DETERIORATION_READINGS = 5


def device_address(home: int, device: int) -> str:
    """Stable addresses, so a restarted demo finds the same pairings."""
    return f"D0:0D:E4:00:{home:02X}:{device:02X}"


async def run_homes(plan: dict[str, Any], interval: float) -> None:
    """``plan`` is the demo's homes.json: state_dir, mqtt {host, port}, homes [...]."""
    homes: list[dict[str, Any]] = plan["homes"]
    broker: dict[str, Any] = plan["mqtt"]
    agents: list[EdgeAgent] = []
    radios: list[VirtualRadio] = []
    for index, home in enumerate(homes):
        hub = str(home["hub_id"])
        radio = VirtualRadio(hub, seed=index, advertising_interval_s=0.2)
        paired = []
        for number, kind in enumerate(HOME_DEVICES):
            address = device_address(index + 1, number + 1)
            scenario = None
            if kind is Kind.BLOOD_PRESSURE and home.get("deteriorates"):
                scenario = Deteriorating(kind, seed=index, readings=DETERIORATION_READINGS)
            radio.add_device(kind, address=address, scenario=scenario, seed=index * 10 + number)
            paired.append(PairedDevice(address=address, kind=kind))
        radios.append(radio)
        agents.append(EdgeAgent(
            hub_id=hub,
            state_dir=Path(str(plan["state_dir"])) / "homes" / hub,
            broker=BrokerParams(host=str(broker["host"]), port=int(broker["port"]),
                                username=hub, password=str(home["password"])),
            ble_backend="sim",
            devices=paired,
        ))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for agent in agents:
        await agent.start()
    drivers = [asyncio.create_task(radio.run(timedelta(seconds=interval))) for radio in radios]
    try:
        await stop.wait()
    finally:
        for task in drivers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for agent in agents:
            await agent.stop()
        for radio in radios:
            radio.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plan", type=Path, required=True, help="homes.json written by the demo")
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    plan = json.loads(args.plan.read_text())
    asyncio.run(run_homes(plan, args.interval))


if __name__ == "__main__":
    main()
