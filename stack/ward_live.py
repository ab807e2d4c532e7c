"""The live run of a virtual ward: virtual devices, real edge agents, a private broker, the
ingest, PostgreSQL and the alert service, on the same stepped clock as the fast run.

Each patient's home is a virtual radio holding their devices (``device_sim``) and a real
:class:`~edge.agent.EdgeAgent` that finds them through the simulator's bleak backend,
reads them over GATT, and publishes to a private Mosquitto with the hub's own login (the
ACL confines it to its topics).  The ingest (:class:`~server.ingest.Ingest`, in this
process) stores what arrives.  At each step the devices take the readings of that step
(a malformed one sends garbage bytes instead), the run waits until every reading is
stored, then the engine evaluates and the tick runs with the clock at the step's time,
exactly as in :mod:`stack.ward_fast`.

Devices, agents and ingest share the simulated clock, so a reading's ``taken_at`` is the
cohort's to the second.  The ingest checks a reading's age against the real clock, so a
cohort must lie within the last 400 days.  The clock stands still while a step is
processed: it is accelerated by as much as the machine allows, not by a fixed factor.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import tempfile
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from alerts.routing import RoutingTree
from alerts.ruleset import RuleSet
from alerts.service import AlertService
from device_sim.cohort import Cohort, SimPatient, SimReading
from device_sim.faults import Fault
from device_sim.peripheral import VirtualPeripheral
from device_sim.radio import VirtualRadio
from edge.agent import EdgeAgent
from edge.ble import BleTiming
from edge.publisher import BrokerParams
from edge.settings import EdgeSettings
from homeward.kinds import Kind
from homeward.wire import PairedDevice
from server.ingest import Ingest, IngestConfig
from server.migrate import migrate
from stack.services import MosquittoServer, PostgresServer
from stack.services.mosquitto import default_acl
from stack.ward_run import (
    DEFAULT_STEP,
    LOW_BATTERY,
    Nurses,
    Progress,
    RunResult,
    SimClock,
    collect,
    run_steps,
)
from stack.ward_world import device_address, hub_id, seed_world

T = TypeVar("T")
log = logging.getLogger(__name__)
SERVER_USER = "homeward-server"
#: Bytes no GATT parser accepts as a measurement: what a "malformed" device sends.
GARBAGE = b"\xff"
#: How long a step may wait for its readings to be stored.
STEP_TIMEOUT_S = 60.0


class LiveWardError(RuntimeError):
    pass


class _Loop:
    """An asyncio loop in a thread: the homes live there, the run drives them from outside."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ward-homes",
                                       daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _radio(patient: SimPatient, clock: SimClock) -> VirtualRadio:
    radio = VirtualRadio(hub_id(patient), clock=clock, seed=patient.number,
                         advertising_interval_s=0.05)
    for kind in patient.devices:
        faults = []
        fault = patient.faults.get(kind)
        if fault == "low_battery":
            faults.append(Fault("low_battery", battery=LOW_BATTERY))
        elif fault == "wrong_clock":
            faults.append(Fault("wrong_clock", clock_offset_s=patient.clock_offset_s))
        radio.add_device(kind, address=device_address(patient, kind), faults=faults,
                         seed=patient.number)
    return radio


def _device_time(device: VirtualPeripheral, at: datetime) -> datetime:
    """``at`` (aware UTC) as the device's own clock shows it: naive local, maybe wrong."""
    return at.astimezone(device.zone).replace(tzinfo=None) + device.clock_offset


def run_live(cohort: Cohort, ruleset: RuleSet, routing: RoutingTree, *,
             step: timedelta = DEFAULT_STEP, nurses: Nurses | None = None,
             progress: Progress | None = None, workdir: Path | None = None) -> RunResult:
    """Start the private servers and the homes, run ``cohort``, stop everything."""
    if cohort.spec.start_at < datetime.now(cohort.spec.start_at.tzinfo) - timedelta(days=399):
        raise LiveWardError("a live run's cohort must start within the last 400 days "
                            "(the ingest refuses older readings): pass a later --start")
    with tempfile.TemporaryDirectory(prefix="homeward-ward-", dir=workdir) as tmp:
        root = Path(tmp)
        pg = PostgresServer(root / "pg", durable=False)
        pg.start()
        try:
            url = pg.create_database("ward")
            migrate(url)
            return _run(root, url, cohort, ruleset, routing, step, nurses or Nurses(), progress)
        finally:
            pg.stop()


def _run(root: Path, url: str, cohort: Cohort, ruleset: RuleSet, routing: RoutingTree,
         step: timedelta, nurses: Nurses, progress: Progress | None) -> RunResult:
    began = time.monotonic()
    clock = SimClock(cohort.spec.start_at)
    passwords = {hub_id(p): secrets.token_urlsafe(16) for p in cohort.patients}
    server_password = secrets.token_urlsafe(16)
    broker = MosquittoServer(root / "mqtt", users={SERVER_USER: server_password, **passwords},
                             acl=default_acl((SERVER_USER,)))
    broker.start()
    loop = _Loop()
    radios: list[VirtualRadio] = []
    agents: list[EdgeAgent] = []
    ingest: Ingest | None = None
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            world = seed_world(conn, cohort, ruleset)
            ingest = Ingest(IngestConfig(database_url=url, mqtt_port=broker.port,
                                         mqtt_username=SERVER_USER,
                                         mqtt_password=server_password, batch_ms=5))
            ingest.start()
            devices: dict[tuple[str, Kind], VirtualPeripheral] = {}
            for patient in cohort.patients:
                radio = _radio(patient, clock)
                radios.append(radio)
                for kind in patient.devices:
                    found = radio.get(device_address(patient, kind))
                    assert found is not None
                    devices[patient.key, kind] = found
                agents.append(_agent(root, broker, patient, passwords[hub_id(patient)], clock))
            for agent in agents:
                loop.run(agent.start())
            _wait_batteries(conn, cohort)
            service = AlertService(ruleset, routing, clock=clock)
            expected = [0]

            def deliver(taken: list[SimReading], now: datetime) -> None:
                if taken:
                    loop.run(_take(devices, taken))
                    expected[0] += sum(not r.malformed for r in taken)
                    _wait_stored(conn, expected[0], now)

            run_steps(conn, cohort, world, service, clock, step=step, nurses=nurses,
                      deliver=deliver, progress=progress)
            return collect(conn, world, seconds=time.monotonic() - began)
    finally:
        for agent in agents:
            try:
                loop.run(agent.stop(), timeout=20)
            except Exception:  # stopping the rest matters more
                log.exception("stopping the edge agent of %s", agent.hub_id)
        for radio in radios:
            radio.close()
        loop.close()
        if ingest is not None:
            ingest.stop()
        broker.stop()


def _agent(root: Path, broker: MosquittoServer, patient: SimPatient, password: str,
           clock: SimClock) -> EdgeAgent:
    hub = hub_id(patient)
    return EdgeAgent(
        hub_id=hub, state_dir=root / "homes" / hub,
        broker=BrokerParams(port=broker.port, username=hub, password=password),
        ble_backend="sim",
        devices=[PairedDevice(address=device_address(patient, k), kind=k)
                 for k in patient.devices],
        settings=EdgeSettings(coalesce_s=0, reconnect_min_s=0.05, reconnect_max_s=0.5,
                              status_interval_s=5, messages_per_second=200),
        ble_timing=BleTiming(scan_window_s=1.0, reconnect_initial_s=0.05,
                             reconnect_max_s=0.5),
        clock=clock)


async def _take(devices: dict[tuple[str, Kind], VirtualPeripheral],
                taken: list[SimReading]) -> None:
    for r in taken:
        device = devices[r.patient, r.kind]
        if r.malformed:
            device.push(GARBAGE)
        else:
            device.measure(dict(r.values), at=_device_time(device, r.taken_at))


def _wait_batteries(conn: psycopg.Connection[Any], cohort: Cohort) -> None:
    """Until every hub has reported every device's battery (the first tick judges them)."""
    want = sum(len(p.devices) for p in cohort.patients)
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM hub h, jsonb_array_elements(h.last_status->'devices') d"
            " WHERE d->>'battery' IS NOT NULL").fetchone()
        if row is not None and row[0] >= want:
            return
        time.sleep(0.2)
    raise LiveWardError(f"the homes did not report their {want} devices' batteries within "
                        f"{STEP_TIMEOUT_S:.0f} s: is the broker reachable?")


def _wait_stored(conn: psycopg.Connection[Any], expected: int, now: datetime) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    stored = 0
    while time.monotonic() < deadline:
        row = conn.execute("SELECT count(*) FROM reading").fetchone()
        stored = int(row[0]) if row else 0
        if stored >= expected:
            if stored > expected:
                raise LiveWardError(f"{stored} readings stored by {now}, {expected} taken: "
                                    "a reading was duplicated")
            return
        time.sleep(0.02)
    raise LiveWardError(f"step {now}: {stored} of {expected} readings stored after "
                        f"{STEP_TIMEOUT_S:.0f} s")
