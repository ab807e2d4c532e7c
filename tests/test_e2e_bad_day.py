"""A bad day, end to end: every component is killed or restarted under load.

A real edge agent process keeps producing readings while, in turn, the
ingest is SIGKILLed and restarted, the broker goes down (stopped, or
SIGKILLed) and comes back, the agent is SIGKILLed in the middle of the outage and
restarted on the same outbox, and the ingest is SIGKILLed once more.  Then
every reading any agent process committed is in PostgreSQL exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from edge.agent import EdgeAgent
from edge.publisher import BrokerParams
from edge.settings import EdgeSettings
from homeward.kinds import Kind
from homeward.wire import Reading, new_reading_id
from stack.supervisor import Child
from tests.test_edge_agent_outage import AgentProcess, produced_ids
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


def _kill_and_restart(child: Child, pause: float = 0.5) -> None:
    assert child.proc is not None and child.running
    child.proc.kill()
    child.proc.wait()
    time.sleep(pause)
    child.start()


def _stored(db_url: str, hub: str) -> tuple[int, set[str]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT id::text FROM reading WHERE hub_id = %s", (hub,)).fetchall()
    return len(rows), {r[0] for r in rows}


@pytest.mark.hazard("H-007", "H-020")
@pytest.mark.parametrize("broker_down", ["stop", "kill"])
def test_kills_and_outages_lose_nothing_and_duplicate_nothing(
        platform: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        broker_down: str) -> None:
    """``broker_down``: the broker stops cleanly, or is SIGKILLed, losing what it had
    acknowledged but not yet saved.  The hub keeps each reading until the server's
    stored-ack names it (HOMEWARD_EDGE_STORED_ACKS), and sends again what is not
    confirmed in time, so even that loses nothing."""
    monkeypatch.setenv("HOMEWARD_EDGE_STORED_ACKS", "true")
    monkeypatch.setenv("HOMEWARD_EDGE_STORED_ACK_TIMEOUT_S", "3")
    broker = platform["broker"]
    ingest = next(c for c in platform["children"].children if c.name == "ingest")
    state, produced = tmp_path / "hub", tmp_path / "produced.txt"

    def start_agent() -> AgentProcess:
        return AgentProcess(broker, state, produced, platform["hub"], platform["hub_password"])

    agents = [start_agent()]
    try:
        time.sleep(1.5)
        _kill_and_restart(ingest)  # with messages in flight to the ingest
        time.sleep(1.0)
        getattr(broker, broker_down)()  # the home's internet drops; readings keep coming
        time.sleep(1.0)
        agents[-1].signal(signal.SIGKILL)  # the hub loses power mid-outage
        assert agents[-1].wait() == -signal.SIGKILL
        agents.append(start_agent())
        time.sleep(1.0)
        broker.start()
        time.sleep(1.5)
        _kill_and_restart(ingest)  # while the backlog drains
        time.sleep(1.0)
        agents[-1].signal(signal.SIGUSR1)  # stop producing; keep draining
        time.sleep(0.2)
        expected = set(produced_ids(produced))
        wait_for(lambda: expected <= _stored(platform["db_url"], platform["hub"])[1],
                 timeout=60, what="every committed reading in PostgreSQL")
        agents[-1].signal(signal.SIGTERM)
        assert agents[-1].wait() == 0
    finally:
        for agent in agents:
            if agent.proc.poll() is None:
                agent.proc.kill()
                agent.wait()

    rows, ids = _stored(platform["db_url"], platform["hub"])
    assert len(expected) > 300  # the run really carried load
    assert rows == len(ids)  # nothing stored twice
    assert expected <= ids  # nothing lost
    # An agent killed between its outbox commit and writing the id to the
    # test's log leaves a reading the test did not see produced: one per kill.
    assert len(ids - expected) <= 1


@pytest.mark.hazard("H-001")
def test_a_broker_crash_after_its_puback_loses_nothing_with_stored_acks(
        platform: dict[str, Any], tmp_path: Path) -> None:
    """The sharpest case: the ingest is down, so the broker only queues the readings;
    it PUBACKs them to the hub and is SIGKILLed before it saves them.  The hub still
    holds them (no stored-ack yet) and sends them again after the timeout."""
    ingest = next(c for c in platform["children"].children if c.name == "ingest")
    assert ingest.proc is not None
    ingest.proc.kill()
    ingest.proc.wait()
    broker = platform["broker"]
    settings = EdgeSettings(stored_acks=True, stored_ack_timeout_s=2.0, reconnect_min_s=0.1,
                            reconnect_max_s=0.5)
    readings = [Reading(id=new_reading_id(), kind=Kind.SPO2,
                        taken_at=datetime.now(UTC) - timedelta(seconds=60 - n),
                        device=platform["device"], values={"spo2": 95, "pulse_rate": 70 + n})
                for n in range(50)]

    async def scenario() -> None:
        agent = EdgeAgent(hub_id=platform["hub"], state_dir=tmp_path / "hub", ble_backend=None,
                          settings=settings,
                          broker=BrokerParams(port=broker.port, username=platform["hub"],
                                              password=platform["hub_password"]))
        async with agent:
            for reading in readings:
                await agent.submit(reading)
            publisher = agent.publisher
            assert publisher is not None
            await asyncio.to_thread(wait_for, lambda: publisher.window.readings_acked >= 50,
                                    15, "the broker's PUBACKs")
            assert agent.outbox is not None and agent.outbox.depth == 50  # still held
            broker.kill()  # before its autosave: the queued messages die with it
            broker.start()
            ingest.start()
            await asyncio.to_thread(
                wait_for, lambda: len(_stored(platform["db_url"], platform["hub"])[1]) >= 50,
                30, "every reading in PostgreSQL")
            await asyncio.to_thread(wait_for, lambda: agent.outbox is not None
                                    and agent.outbox.depth == 0, 15, "the stored-acks")

    asyncio.run(scenario())
    rows, ids = _stored(platform["db_url"], platform["hub"])
    assert rows == len(ids) == 50 and ids == {str(r.id) for r in readings}
