"""A backup taken under load restores with every committed reading (issue 11).

The real ``homeward ingest`` stores readings a QoS 1 publisher keeps sending while
``homeward db backup`` (pg_dump, custom format) runs against the private PostgreSQL.
pg_dump reads one snapshot taken as it starts, so every reading committed before it
started must be in the restored database, once; nothing that was never stored may be;
and since a reading, its identity row and its evaluation-queue row commit together,
the restored tables agree with each other (no half transaction in a backup).
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from homeward.wire import readings_topic
from server.backup import dump, restore
from server.migrate import migrate
from stack.services import MosquittoServer, PostgresServer
from tests.ingest_support import IngestProcess, Publisher, reading
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PER_MESSAGE = 50
HUBS = 4


def scalar(url: str, query: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def ids(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [str(r[0]) for r in conn.execute("SELECT id FROM reading")]


@pytest.mark.hazard("H-020")
def test_backup_under_load_restores_every_committed_reading(
        db_url: str, mosquitto: MosquittoServer, postgres_server: PostgresServer,
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    ingest = IngestProcess(db_url, mosquitto.port, tmp_path / "ingest.log",
                           client_id="ingest-backup-test")
    request.node.homeward_logs = [*getattr(request.node, "homeward_logs", []),
                                  ("ingest", lambda: ingest.log.read_text()[-4000:])]
    ingest.start()
    pub = Publisher(mosquitto.port)
    stop = threading.Event()
    published: list[str] = []

    def publish() -> None:
        n = 0
        while not stop.is_set():
            batch = [reading() for _ in range(PER_MESSAGE)]
            pub.publish(readings_topic(f"hub-{n % HUBS}"), batch, wait=n % 10 == 9)
            published.extend(r["id"] for r in batch)
            n += 1
            time.sleep(0.005)

    publisher = threading.Thread(target=publish, daemon=True)
    try:
        def probe() -> object:
            first = reading()
            published.append(first["id"])
            pub.publish(readings_topic("hub-probe"), first)
            return scalar(db_url, "SELECT count(*) FROM reading")

        wait_for(probe, timeout=30, what="the ingest storing a first reading", step=0.2)
        publisher.start()
        wait_for(lambda: int(scalar(db_url, "SELECT count(*) FROM reading")) > 5000,  # type: ignore[call-overload]
                 timeout=60, what="5,000 readings stored")

        committed_before = set(ids(db_url))            # every one committed before the dump
        started = scalar(db_url, "SELECT clock_timestamp()")
        backup = dump(db_url, tmp_path / "homeward.dump", bindir=postgres_server.bindir)
        ended = scalar(db_url, "SELECT clock_timestamp()")
        with psycopg.connect(db_url) as conn:
            during = conn.execute("SELECT count(*) FROM reading WHERE committed_at > %s"
                                  " AND committed_at < %s", (started, ended)).fetchone()
        assert during is not None and during[0] > 0, "the ingest was not writing during the dump"
    finally:
        stop.set()
        if publisher.is_alive():
            publisher.join(10)
        pub.close()
        ingest.stop()
    source = set(ids(db_url))

    target = postgres_server.create_database(f"restored_{uuid.uuid4().hex[:8]}",
                                             template="template0")
    restore(backup, target, bindir=postgres_server.bindir)

    restored = ids(target)
    print(f"committed before the dump {len(committed_before)}, committed during it"
          f" {during[0]}, restored {len(restored)}, stored by the end {len(source)},"
          f" dump {backup.stat().st_size} bytes in {(ended - started).total_seconds():.2f} s")  # type: ignore[operator]
    assert len(restored) == len(set(restored)), "a reading restored twice"
    assert committed_before <= set(restored), (
        f"{len(committed_before - set(restored))} readings committed before the dump are missing")
    assert set(restored) <= source <= set(published), "a reading nobody published"
    # one snapshot: each reading's identity and queue rows came with it, none without it
    for table in ("reading_identity", "evaluation_queue"):
        assert scalar(target, f"SELECT count(*) FROM {table}") == len(restored), table
    assert scalar(target, "SELECT count(*) FROM reading r LEFT JOIN reading_identity i"
                          " ON i.id = r.id WHERE i.id IS NULL") == 0
    # the restored database is a working Homeward database: schema up to date, guards on
    assert migrate(target) == []
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("INSERT INTO access_audit (role, action, resource, outcome)"
                     " VALUES ('system', 'restore.check', 'x', 'ok')")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM access_audit")
