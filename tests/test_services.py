"""The private servers the suite and the demo rely on."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from stack.services import MosquittoServer, PostgresServer
from stack.services.mosquitto import default_acl

pytestmark = pytest.mark.integration


def test_database_is_migrated_and_private(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migration ORDER BY name")]
    assert names[0] == "0001_core.sql"


def test_each_test_gets_its_own_database(db_url: str, postgres_server: PostgresServer) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO organisation (name) VALUES ('only here')")
    other = postgres_server.create_database("another")
    with psycopg.connect(other) as conn, pytest.raises(psycopg.errors.UndefinedTable):
        conn.execute("SELECT * FROM organisation")


def _pub(broker: MosquittoServer, user: str, password: str, topic: str) -> int:
    return subprocess.run(
        ["mosquitto_pub", "-p", str(broker.port), "-u", user, "-P", password,
         "-t", topic, "-m", "{}", "-q", "1"],
        capture_output=True, check=False, timeout=10,
    ).returncode


def test_broker_enforces_passwords(mosquitto_factory) -> None:  # type: ignore[no-untyped-def]
    broker = mosquitto_factory(users={"hub-1": "s3cret"})
    assert _pub(broker, "hub-1", "s3cret", "homeward/v1/hubs/hub-1/readings") == 0
    assert _pub(broker, "hub-1", "wrong", "homeward/v1/hubs/hub-1/readings") != 0


def test_acl_lets_a_hub_write_only_below_its_own_prefix(mosquitto_factory) -> None:  # type: ignore[no-untyped-def]
    broker = mosquitto_factory(
        users={"hub-1": "a", "hub-2": "b", "homeward-server": "c"}, acl=default_acl()
    )
    received = subprocess.Popen(
        ["mosquitto_sub", "-p", str(broker.port), "-u", "homeward-server", "-P", "c",
         "-t", "homeward/v1/hubs/+/readings", "-v", "-W", "3"],
        stdout=subprocess.PIPE, text=True,
    )
    import time

    time.sleep(0.5)
    _pub(broker, "hub-1", "a", "homeward/v1/hubs/hub-1/readings")
    _pub(broker, "hub-1", "a", "homeward/v1/hubs/hub-2/readings")  # not its own: dropped
    out, _ = received.communicate(timeout=10)
    assert out.split() == ["homeward/v1/hubs/hub-1/readings", "{}"]


def test_broker_restart_keeps_port(mosquitto: MosquittoServer) -> None:
    port = mosquitto.port
    mosquitto.restart()
    assert mosquitto.is_running() and mosquitto.port == port


@pytest.fixture
def outside_pytest_tmp() -> Iterator[Path]:
    """A folder not below /tmp/pytest-of-<user>: as root, PostgreSQL runs as its own
    account, and any pytest starting meanwhile resets that folder to 0700."""
    folder = Path(tempfile.mkdtemp(prefix="homeward-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_cluster_made_without_passwords_requires_them_once_given_one(
        outside_pytest_tmp: Path) -> None:
    """A demo state folder from before passwords: its next start switches it over."""
    tmp_path = outside_pytest_tmp
    old = PostgresServer(tmp_path / "data", durable=False, timescaledb=False)
    old.start()
    old.stop()
    server = PostgresServer(tmp_path / "data", port=old.port, durable=False, timescaledb=False,
                            password="s3cret")
    server.start()
    try:
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("homeward",)
        without = server.url_for("homeward", None)
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(without).close()
    finally:
        server.stop()
