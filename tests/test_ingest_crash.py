"""Issue 2, done when: SIGKILL the ingest while readings flow, restart it, and
every reading published is stored exactly once.

``homeward ingest`` runs as a real subprocess against a private broker and
database; a QoS 1 publisher keeps publishing throughout; the ingest is killed
with SIGKILL twice mid-stream and restarted with the same client id (its
persistent session).  Afterwards the table holds each published id once, and
each is queued for evaluation once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from homeward.wire import readings_topic
from stack.services import MosquittoServer
from tests.ingest_support import IngestProcess, Publisher, one, reading
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

READINGS = 24_000
PER_MESSAGE = 40
HUBS = 8


@pytest.fixture
def ingest_process(db_url: str, mosquitto: MosquittoServer, tmp_path: Path,
                   request: pytest.FixtureRequest) -> Iterator[IngestProcess]:
    proc = IngestProcess(db_url, mosquitto.port, tmp_path / "ingest.log",
                         client_id="ingest-crash-test")
    request.node.homeward_logs = [*getattr(request.node, "homeward_logs", []),
                                  ("ingest", lambda: proc.log.read_text()[-4000:])]
    yield proc
    proc.stop()


def count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.hazard("H-001", "H-002")
def test_sigkill_under_load_loses_nothing_and_duplicates_nothing(
        db_url: str, mosquitto: MosquittoServer, ingest_process: IngestProcess) -> None:
    ingest_process.start()
    # The first reading stored proves the ingest's persistent subscription exists.
    pub = Publisher(mosquitto.port)
    probe = reading()
    deadline = time.monotonic() + 30
    while count(db_url, "SELECT count(*) FROM reading") == 0:
        pub.publish(readings_topic("hub-probe"), probe)
        assert time.monotonic() < deadline, ingest_process.log.read_text()
        time.sleep(0.2)

    published: list[str] = []
    done = threading.Event()

    def publish_all() -> None:
        infos = []
        for n in range(READINGS // PER_MESSAGE):
            batch = [reading() for _ in range(PER_MESSAGE)]
            infos.append(pub.publish(readings_topic(f"hub-{n % HUBS}"), batch, wait=False))
            published.extend(r["id"] for r in batch)
            if n % 20 == 19:
                time.sleep(0.02)  # about 3 s of steady flow
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()
        done.set()

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    for _ in range(2):
        # Kill while readings are arriving (some stored and unacked, some in flight).
        before = count(db_url, "SELECT count(*) FROM reading")
        def grew(b: int = before) -> bool:
            return count(db_url, "SELECT count(*) FROM reading") > b + 1000

        wait_for(grew, timeout=30)
        ingest_process.kill()
        time.sleep(0.3)
        ingest_process.start()
    publisher.join(60)
    assert done.is_set(), "the publisher did not get every PUBACK"
    pub.close()

    expected = len(published) + 1
    wait_for(lambda: count(db_url, "SELECT count(*) FROM reading") >= expected, timeout=60)
    time.sleep(0.5)  # anything still to come would be a duplicate
    with psycopg.connect(db_url) as conn:
        total, distinct = one(conn.execute("SELECT count(*), count(DISTINCT id) FROM reading"))
        queued, queued_distinct = one(conn.execute(
            "SELECT count(*), count(DISTINCT reading_id) FROM evaluation_queue"))
        stored_ids = {str(r[0]) for r in conn.execute("SELECT id FROM reading")}
    assert total == distinct == expected
    assert queued == queued_distinct == expected
    assert stored_ids == {*published, probe["id"]}
    log = ingest_process.log.read_text()
    assert log.count("session present: True") >= 2, log  # both restarts resumed the session
