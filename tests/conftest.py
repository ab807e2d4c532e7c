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
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from homeward.kinds import Kind
from server import admin
from server.migrate import migrate
from stack.services import MosquittoServer, PostgresServer, free_port
from stack.services.mosquitto import default_acl
from stack.supervisor import Child, Supervisor

pytest_plugins = ["tests.hazard_evidence"]

_TEMPLATE = "homeward_template"
_counter = itertools.count()

# Processes the tests start (`homeward ingest`, `alerts`, `serve`) inherit this environment:
# they serve no metrics unless a test gives them a port, so parallel tests never contend
# for the default ports (docs/observability.md).
for _name in ("INGEST", "ALERTS", "API"):
    os.environ.setdefault(f"HOMEWARD_{_name}_METRICS_PORT", "0")


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


# -- the whole server side, as separate processes ----------------------------------------

HUB = "hub-e2e"
CUFF = "C4:7C:8D:6A:3E:21"
SERVER_USER = "homeward-server"
NURSE_PASSWORD = "correct horse battery staple"


@pytest.fixture
def platform(db_url: str, mosquitto_factory: Callable[..., MosquittoServer], tmp_path: Path,
             request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A seeded database (a team, a nurse, a patient enrolled on hub HUB with a paired cuff),
    a broker with per-hub passwords under the production ACL, and `homeward ingest`,
    `homeward alerts` and `homeward serve` running as separate processes."""
    with psycopg.connect(db_url) as conn:
        org = admin.create_organisation(conn, name="E2E Trust")
        admin.create_team(conn, team_id="district-nursing", organisation_id=org,
                          name="District Nursing", kind="district_nursing")
        nurse = admin.create_clinician(conn, username="nurse", display_name="Nurse",
                                       teams=["district-nursing"], password=NURSE_PASSWORD)
        patient = admin.create_patient(conn, display_name="Patient E2E",
                                       teams=["district-nursing"])
        admin.create_hub(conn, hub_id=HUB)
        # enrolled an hour ago: the readings of the tests are after it, and a hub not heard
        # from in 4 h of its enrolment would raise its own hub-offline alert
        admin.enrol(conn, hub_id=HUB, patient_id=patient,
                    valid_from=datetime.now(UTC) - timedelta(hours=1))
        admin.pair_device(conn, hub_id=HUB, address=CUFF, kind=Kind.BLOOD_PRESSURE)
    broker = mosquitto_factory(users={SERVER_USER: "server-pw", HUB: "hub-pw"},
                               acl=default_acl((SERVER_USER,)))
    api_port = free_port()
    metrics_ports = {"ingest": free_port(), "alerts": free_port(), "api": free_port()}
    env = {
        "HOMEWARD_DATABASE_URL": db_url,
        "HOMEWARD_MQTT_PORT": str(broker.port),
        "HOMEWARD_MQTT_USERNAME": SERVER_USER,
        "HOMEWARD_MQTT_PASSWORD": "server-pw",
        "HOMEWARD_API_PORT": str(api_port),
        "HOMEWARD_INGEST_CLIENT_ID": f"ingest-{api_port}",
        **{f"HOMEWARD_{name.upper()}_METRICS_PORT": str(port)
           for name, port in metrics_ports.items()},
    }
    children = Supervisor()
    for name, args in (("ingest", ["ingest"]), ("alerts", ["alerts"]), ("api", ["serve"])):
        child = children.add(Child(name, ["stack", *args], env, tmp_path / f"{name}.log"))
        request.node.homeward_logs = [*getattr(request.node, "homeward_logs", []),
                                      (name, lambda f=child.log_file: f.read_text()[-4000:])]
    api = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "API did not become healthy"
        time.sleep(0.2)
    try:
        yield {"api": api, "token": nurse.api_token, "patient": patient, "broker": broker,
               "state": tmp_path / "hub", "hub": HUB, "hub_password": "hub-pw",
               "device": CUFF, "nurse_password": NURSE_PASSWORD, "children": children,
               "db_url": db_url,
               "metrics": {name: f"http://127.0.0.1:{port}/metrics"
                           for name, port in metrics_ports.items()}}
    finally:
        children.stop_all()
