"""`homeward demo` as a tester meets it: one command, then demo.json to talk to it.

One real demo runs for the whole module, started as a tester would leave it
running, with the API port from ``HOMEWARD_API_PORT`` alone.  The tests
publish a reading with `mosquitto_pub` and the spare hub's credentials from
demo.json and check both that reading's alert and the deteriorating patient's
alert through the API; check that the demo is safe to leave running (a secret
key of its own, a database that wants passwords, an application role that is
not a superuser); and last, that Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from server.api.deps import SESSION_COOKIE
from stack.demo import APP_DB_ROLE, DemoSecrets
from stack.services import free_port
from stack.services.common import wait_for_port
from tests.ingest_support import one
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.xdist_group("demo")]

@dataclass
class RunningDemo:
    state: Path
    api_port: int
    process: subprocess.Popen[bytes]
    out_file: Path
    info: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None

    @property
    def secrets(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state / "secrets.json").read_text())
        return data

    def stop(self) -> int:
        """Ctrl-C, once; the exit code."""
        if self.exit_code is None:
            self.process.send_signal(signal.SIGINT)
            self.exit_code = self.process.wait(60)
        return self.exit_code


@pytest.fixture(scope="module")
def demo() -> Iterator[RunningDemo]:
    # Not below /tmp/pytest-of-<user>: as root, PostgreSQL runs as its own account, and
    # any pytest starting meanwhile resets that folder to 0700 (PostgresServer._run).
    folder = Path(tempfile.mkdtemp(prefix="homeward-demo-test-"))
    api_port = free_port()
    out_file = folder / "demo.out"
    with out_file.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "stack", "demo", "--state-dir", str(folder / "state"),
             "--interval", "1", "--no-live"],
            env={**os.environ, "HOMEWARD_API_PORT": str(api_port)},
            stdout=out, stderr=subprocess.STDOUT)
    running = RunningDemo(folder / "state", api_port, process, out_file)
    try:
        demo_json = running.state / "demo.json"
        try:
            running.info = wait_for(lambda: process.poll() is None and demo_json.exists()
                                    and json.loads(demo_json.read_text()), 90, "demo.json")
        except AssertionError as err:
            raise AssertionError(f"{err}\n{out_file.read_text()[-4000:]}") from None
        yield running
    finally:
        running.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_demo_people_have_caseloads_that_differ_and_overlap_in_one_patient(
        demo: RunningDemo) -> None:
    info = demo.info
    people = {c["username"]: c for c in info["clinicians"]}
    assert info["clinicians"][0]["api_token"] == info["clinician"]["api_token"]
    assert sorted(c["role"] for c in info["clinicians"]) == ["admin", "nurse", "nurse",
                                                             "team_lead", "team_lead"]

    care_teams = {p["id"]: set(p["teams"]) for p in info["patients"]}

    def caseload(username: str) -> set[int]:
        """Her care-team patients.  An alert routed to her team (the other tests raise
        some) also shows her its patient while it is active (H-009): left out here."""
        response = httpx.get(f"{info['api_url']}/patients", timeout=10, headers={
            "Authorization": f"Bearer {people[username]['api_token']}"})
        response.raise_for_status()
        mine = set(people[username]["teams"])
        return {row["id"] for row in response.json()
                if people[username]["role"] == "admin" or care_teams[row["id"]] & mine}

    nurses = [c["username"] for c in info["clinicians"] if c["role"] == "nurse"]
    first, second = caseload(nurses[0]), caseload(nurses[1])
    shared = first & second
    assert len(shared) == 1 and first != second
    (ada,) = [p for p in info["patients"] if p["id"] in shared]
    assert len(ada["teams"]) == 2
    # the GP practice, another organisation, is on no care team yet: it sees nobody
    gp = people["gp"]
    assert gp["teams"] == ["riverside-gp"]
    response = httpx.get(f"{info['api_url']}/patients/{info['patients'][0]['id']}",
                         timeout=10, headers={"Authorization": f"Bearer {gp['api_token']}"})
    assert response.status_code == 404
    admin = next(c["username"] for c in info["clinicians"] if c["role"] == "admin")
    assert caseload(admin) == {p["id"] for p in info["patients"]} == first | second
    hubs = httpx.get(f"{info['api_url']}/admin/hubs", timeout=10, headers={
        "Authorization": f"Bearer {people[admin]['api_token']}"})
    hubs.raise_for_status()  # the demo's hubs are its organisation's, so its admin's
    assert {h["id"] for h in hubs.json()} >= {h["id"] for h in info["hubs"]} != set()


def test_demo_end_to_end_with_mosquitto_pub(demo: RunningDemo) -> None:
    info = demo.info
    auth = {"Authorization": f"Bearer {info['clinician']['api_token']}"}

    def alerts_for(patient: int) -> list[dict[str, Any]]:
        response = httpx.get(f"{info['api_url']}/alerts", headers=auth, timeout=5)
        response.raise_for_status()
        return [a for a in response.json()
                if a["patient_id"] == patient and a["rule_id"] == "bp_severe"]

    # The deteriorating patient of the first home raises an alert on its own.
    first = info["hubs"][0]["patient_id"]
    wait_for(lambda: alerts_for(first), 60, "the deteriorating patient's alert")

    # A tester's reading, in the DESIGN.md format, from any MQTT client.
    spare = info["spare_hub"]
    reading = {"v": 1, "id": str(uuid.uuid4()), "kind": "blood_pressure",
               "taken_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "device": "spare-cuff", "values": {"systolic": 186, "diastolic": 104}}
    subprocess.run(
        ["mosquitto_pub", "-h", info["mqtt"]["host"], "-p", str(info["mqtt"]["port"]),
         "-u", spare["username"], "-P", spare["password"], "-q", "1",
         "-t", spare["readings_topic"], "-m", json.dumps(reading)],
        check=True, timeout=10)
    (alert,) = wait_for(lambda: alerts_for(spare["patient_id"]), 30, "the spare hub's alert")
    assert alert["severity"] == "red"
    assert [r["id"] for r in alert["readings"]] == [reading["id"]]

    # The same reading and alert, as FHIR R4, with the same token.
    fhir = info["fhir_base_url"]
    observation = httpx.get(f"{fhir}/Observation/{reading['id']}", headers=auth, timeout=5)
    assert observation.status_code == 200, observation.text
    systolic = observation.json()["component"][0]
    assert (systolic["code"]["coding"][0]["code"], systolic["valueQuantity"]["value"]) == (
        "8480-6", 186)
    flags = httpx.get(f"{fhir}/Flag", params={"patient": spare["patient_id"],
                                              "status": "active"}, headers=auth, timeout=5)
    assert str(alert["id"]) in [e["resource"]["id"] for e in flags.json()["entry"]]

    # The clinician login in demo.json opens the dashboard.
    page = httpx.post(f"{info['dashboard_url']}login", follow_redirects=True, timeout=5,
                      data={"username": info["clinician"]["username"],
                            "password": info["clinician"]["password"]})
    assert page.status_code == 200 and "Severe hypertension" in page.text


def test_demo_patient_login_signs_the_first_patient_in_to_the_portal(
        demo: RunningDemo) -> None:
    """demo.json's patient_login: ask for a code at sign_in_url, read it from mail_file
    (the demo has no mail server; the file is the owner's alone), and the portal shows
    the first patient's own readings."""
    login = demo.info["patient_login"]
    assert (login["patient_id"], login["name"]) == (demo.info["patients"][0]["id"],
                                                    "Ada Lovelace")
    with httpx.Client(timeout=10) as client:
        asked = client.post(login["sign_in_url"], data={"email": login["email"]})
        assert asked.status_code == 303, asked.text
        mail = Path(login["mail_file"])
        code = wait_for(lambda: mail.exists() and re.search(
            r"code is (\d{4} \d{4})", json.loads(mail.read_text().splitlines()[-1])["body"]),
            10, "the sign-in code in the mail file").group(1)
        assert stat.S_IMODE(mail.stat().st_mode) == 0o600
        site = login["sign_in_url"].removesuffix("/my/sign-in")
        signed_in = client.post(f"{site}/my/sign-in/code", data={"code": code},
                                follow_redirects=True)
    assert signed_in.status_code == 200, signed_in.text
    assert "Signed in as <strong>Ada Lovelace</strong>" in signed_in.text


def test_demo_honours_HOMEWARD_API_PORT(demo: RunningDemo) -> None:
    api = f"http://127.0.0.1:{demo.api_port}"
    assert demo.info["api_url"] == f"{api}/api"
    assert httpx.get(f"{api}/health", timeout=5).status_code == 200


@pytest.mark.parametrize("how", ["--api-port", "HOMEWARD_API_PORT"])
def test_a_busy_api_port_is_refused_whether_given_by_option_or_environment(
        tmp_path: Path, how: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        option, env_port = {"--api-port": (["--api-port", str(port)], free_port()),
                            "HOMEWARD_API_PORT": ([], port)}[how]
        env = {**os.environ, "HOMEWARD_API_PORT": str(env_port)}  # the option wins
        done = subprocess.run(
            [sys.executable, "-m", "stack", "demo", "--state-dir", str(tmp_path), "--no-live",
             *option], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"Port {port} is in use" in done.stdout


def test_demo_secret_key_is_random_per_state_folder_and_a_forged_cookie_is_refused(
        demo: RunningDemo, tmp_path: Path) -> None:
    alerts = f"{demo.info['api_url']}/alerts"
    site = demo.info["api_url"].removesuffix("/api")

    def status_with(cookie: str) -> int:
        return httpx.get(alerts, cookies={SESSION_COOKIE: cookie}, timeout=5).status_code

    # sessions live on the server: a cookie it never issued (the old signed form with the
    # default key included) names nobody, whatever it says
    assert status_with("1.4102444800.forged-with-dev") == 401
    with httpx.Client(timeout=10) as browser:
        signed_in = browser.post(f"{site}/login", data={
            "username": demo.info["clinician"]["username"],
            "password": demo.info["clinician"]["password"]})
        assert signed_in.status_code == 303  # to the queue
        assert status_with(browser.cookies[SESSION_COOKIE]) == 200  # one it issued does
    key = demo.secrets["secret_key"]
    assert stat.S_IMODE((demo.state / "secrets.json").stat().st_mode) == 0o600
    keys = [DemoSecrets.load_or_create(tmp_path / name / "secrets.json", []).secret_key
            for name in ("a", "b", "a")]
    assert keys[0] == keys[2] != keys[1]  # kept per folder, different between folders
    assert len(key) >= 32 and key not in keys


def test_demo_database_refuses_a_connection_without_password(demo: RunningDemo) -> None:
    url = psycopg.conninfo.conninfo_to_dict(demo.info["database_url"])
    attempts = {  # how a local process might try to get in
        "owner, TCP, no password": {"host": "127.0.0.1", "user": "homeward"},
        "app role, TCP, no password": {"host": "127.0.0.1", "user": APP_DB_ROLE},
        "owner, Unix socket, no password": {"host": str(demo.state / "postgres"),
                                            "user": "homeward"},
        "owner, TCP, wrong password": {"host": "127.0.0.1", "user": "homeward",
                                       "password": "dev"},
    }
    refused = {}
    for name, params in attempts.items():
        try:
            psycopg.connect(psycopg.conninfo.make_conninfo(
                port=url["port"], dbname=url["dbname"], connect_timeout=5, **params)).close()
            refused[name] = False
        except psycopg.OperationalError as err:
            refused[name] = "password" in str(err)
    assert refused == dict.fromkeys(attempts, True)
    hba = (demo.state / "postgres" / "pg_hba.conf").read_text().split()
    assert "trust" not in hba and "scram-sha-256" in hba


def test_demo_application_role_is_not_a_superuser(demo: RunningDemo) -> None:
    with psycopg.connect(demo.info["database_url"]) as conn:
        name, *rights = one(conn.execute(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication,"
            " rolbypassrls FROM pg_roles WHERE rolname = current_user"))
        # Every process of the demo (ingest, alerts, API, status) connects as that role.
        users = {r[0] for r in conn.execute(
            "SELECT usename FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND datname = current_database()")}
        assert (name, rights, users) == (APP_DB_ROLE, [False] * 5, {APP_DB_ROLE})
        assert one(conn.execute("SELECT count(*) >= 0 FROM reading")) == (True,)
        for ddl in ("CREATE TABLE intruder (x int)", "ALTER TABLE reading DISABLE TRIGGER ALL",
                    "TRUNCATE access_audit", "DROP TABLE alert_event"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(ddl)


def test_demo_json_lists_a_metrics_endpoint_per_process_and_each_answers(
        demo: RunningDemo) -> None:
    endpoints = demo.info["metrics"]
    assert set(endpoints) == {"ingest", "alerts", "api"}
    wanted = {"ingest": "homeward_ingest_readings_stored_total",
              "alerts": "homeward_alerts_readings_evaluated_total",
              "api": "homeward_api_requests_in_flight"}

    def answer(url: str) -> httpx.Response | None:
        try:
            response = httpx.get(url, timeout=5)
        except httpx.HTTPError:
            return None
        return response if response.status_code == 200 else None

    for name, url in endpoints.items():
        text = wait_for(lambda u=url: answer(u), 30, f"{name} metrics").text
        assert wanted[name] in text and "process_cpu_seconds_total" in text
    for name, url in demo.info["readiness"].items():
        assert wait_for(lambda u=url: answer(u), 30, f"{name} ready").json()["status"] == "ok"


def test_ctrl_c_stops_everything_cleanly(demo: RunningDemo) -> None:
    """Runs last (file order, one xdist group): it stops the module's demo."""
    code = demo.stop()
    output = demo.out_file.read_text()
    assert code == 0, output
    assert "stopped." in output
    assert not (demo.state / "postgres" / "postmaster.pid").exists()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and wait_for_port(demo.info["mqtt"]["port"], 0.1):
        time.sleep(0.1)
    assert not wait_for_port(demo.info["mqtt"]["port"], 0.5)
    assert not wait_for_port(demo.api_port, 0.5)


def test_a_state_folder_from_an_older_demo_keeps_its_secrets_and_gains_the_new_ones(
        tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"server_mqtt_password": "old", "clinician_password": "pw",
                                "api_token": "tok", "hub_passwords": {"demo-hub-1": "h1"}}))
    found = DemoSecrets.load_or_create(path, ["demo-hub-1", "demo-hub-2"])
    assert (found.clinician_password, found.api_token) == ("pw", "tok")
    assert found.hub_passwords["demo-hub-1"] == "h1" and found.hub_passwords["demo-hub-2"]
    assert all(len(value) >= 24 for value in (found.secret_key, found.database_password,
                                              found.database_app_password))
    assert DemoSecrets.load_or_create(path, ["demo-hub-1"]) == found
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
