"""Shared fixtures: a private PostgreSQL and private Mosquitto brokers.

PostgreSQL starts once per test session (per xdist worker) from the system's
binaries, in a temporary folder on a free port, with TimescaleDB preloaded
when the extension is installed.  Every test that asks for ``db_url`` gets a
fresh, migrated database cloned from a template, so tests never see each
other's rows.  Brokers are cheap (a few ms) and can carry a password file and
an ACL per test through ``mosquitto_factory``.  When a test fails, the tails
of the logs of the servers it used are attached to its report.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from homeward.services import MosquittoServer, PostgresServer
from server.migrate import migrate

_TEMPLATE = "homeward_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path_factory.mktemp("pg") / "data", durable=False)
    server.start()
    try:
        template_url = server.create_database(_TEMPLATE)
        migrate(template_url)
        # TimescaleDB's background scheduler connects to every database it may; a session
        # on the template makes CREATE DATABASE ... TEMPLATE fail ("being accessed by other
        # users"), so once migrated nobody may connect to it.
        with psycopg.connect(server.admin_url(), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{_TEMPLATE}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = %s", (_TEMPLATE,))
        yield server
    finally:
        server.stop(mode="immediate")


@pytest.fixture
def db_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh migrated database for this test."""
    request.node.homeward_logs = [*getattr(request.node, "homeward_logs", []),
                                  ("postgres", postgres_server.log_tail)]
    return postgres_server.create_database(f"t{next(_counter)}", template=_TEMPLATE)


@pytest.fixture
def mosquitto_factory(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[..., MosquittoServer]]:
    """Start brokers with the given options (users, acl, ...); all stopped after the test."""
    started: list[MosquittoServer] = []

    def start(**options: object) -> MosquittoServer:
        broker = MosquittoServer(tmp_path_factory.mktemp("mqtt"), **options)  # type: ignore[arg-type]
        broker.start()
        started.append(broker)
        request.node.homeward_logs = [*getattr(request.node, "homeward_logs", []),
                                      (f"mosquitto:{broker.port}", broker.log_tail)]
        return broker

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., MosquittoServer]) -> MosquittoServer:
    """An anonymous broker for this test."""
    return mosquitto_factory()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:
    report = yield
    if report.failed:
        for name, log_tail in getattr(item, "homeward_logs", []):
            report.sections.append((f"{name} log (tail)", log_tail()))
    return report


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
