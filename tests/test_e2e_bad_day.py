"""A bad day, end to end: every component is killed or restarted under load.

A real edge agent process keeps producing readings while, in turn, the
ingest is SIGKILLed and restarted, the broker goes down (the home's internet
drops) and comes back, the agent is SIGKILLed in the middle of the outage and
restarted on the same outbox, and the ingest is SIGKILLed once more.  Then
every reading any agent process committed is in PostgreSQL exactly once.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from homeward.supervisor import Child
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


def test_kills_and_outages_lose_nothing_and_duplicate_nothing(platform: dict[str, Any],
                                                              tmp_path: Path) -> None:
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
        broker.stop()  # the home's internet drops; readings keep coming
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
