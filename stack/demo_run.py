"""The body of ``homeward demo`` (see homeward/demo.py for the command)."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.live import Live
from rich.table import Table

from homeward.broker_roles import Role
from homeward.wire import readings_topic
from server.broker_dynsec import initial_state
from stack.demo import (
    API_MQTT_USER,
    APP_DB_ROLE,
    CLINICIAN_USERNAME,
    DEMO_CLINICIANS,
    DEMO_GP_ORGANISATION,
    DEMO_ORGANISATION,
    DEMO_PATIENT_EMAIL,
    DEMO_PATIENTS,
    DEMO_TEAMS,
    GP_TEAM,
    INGEST_MQTT_USER,
    OUT_OF_HOURS_TEAM,
    PATIENT_MAIL_FILE,
    PROVISIONER_MQTT_USER,
    ROTA_DAYS,
    SERVER_MQTT_USERS,
    SPARE_HUB,
    SPARE_PATIENT,
    SPARE_TEAMS,
    DemoSecrets,
    hub_ids,
    install_stop_handlers,
    port_is_free,
    wait_until,
    write_private_json,
)
from stack.services import MosquittoServer, PostgresServer, free_port
from stack.supervisor import Child, Supervisor

console = Console()


def seed(conn: psycopg.Connection[Any], secrets: DemoSecrets, homes: int) -> dict[str, int]:
    """Create the demo organisation once; returns patient id per hub."""
    from alerts import notify
    from server import admin

    hubs = hub_ids(homes)
    existing = conn.execute("SELECT id FROM organisation WHERE name = %s",
                            (DEMO_ORGANISATION,)).fetchone()
    teams = [*DEMO_TEAMS, OUT_OF_HOURS_TEAM]
    if existing is None:
        org = admin.create_organisation(conn, name=DEMO_ORGANISATION)
        for team_id, name, kind in teams:
            admin.create_team(conn, team_id=team_id, organisation_id=org, name=name, kind=kind)
        with conn.transaction():
            for team_id, _, _ in DEMO_TEAMS:
                notify.set_fallback(conn, team_id, OUT_OF_HOURS_TEAM[0])
        org_id = org
    else:
        org_id = int(existing[0])
    gp_org = _ensure_gp_practice(conn)
    _ensure_clinicians(conn, secrets, org_id, {GP_TEAM[0]: gp_org})
    _ensure_rota(conn, [t[0] for t in teams])
    since = datetime.now(UTC) - timedelta(days=30)
    patients: dict[str, int] = {}
    for hub, name, care in _patients_wanted(hubs):
        row = conn.execute("SELECT patient_id FROM enrolment"
                           " WHERE hub_id = %s AND valid_to IS NULL", (hub,)).fetchone()
        if row is not None:
            patients[hub] = int(row[0])
            for team in care:  # an older state folder gains the shared patient's second team
                conn.execute("INSERT INTO patient_team (patient_id, team_id) VALUES (%s, %s)"
                             " ON CONFLICT DO NOTHING", (patients[hub], team))
            continue
        patient = admin.create_patient(conn, display_name=name, teams=list(care))
        if conn.execute("SELECT 1 FROM hub WHERE id = %s", (hub,)).fetchone() is None:
            admin.create_hub(conn, hub_id=hub, organisation_id=org_id)
        admin.enrol(conn, hub_id=hub, patient_id=patient, valid_from=since)
        patients[hub] = patient
    # the first patient signs in to the patient portal (/my) with a code by e-mail
    if hubs and conn.execute("SELECT email IS NULL FROM patient WHERE id = %s",
                             (patients[hubs[0]],)).fetchone() == (True,):
        from server.patient_auth import set_email

        set_email(conn, patients[hubs[0]], DEMO_PATIENT_EMAIL)
    # the demo's hubs are its organisation's (the admin API finds them); an older state
    # folder's hubs were made before hubs had one
    conn.execute("UPDATE hub SET organisation_id = %s WHERE organisation_id IS NULL"
                 " AND id = ANY(%s)", (org_id, [*hubs, SPARE_HUB]))
    return patients


def _patients_wanted(hubs: list[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(hub, patient name, care teams) of each demo home, and of the spare hub."""
    wanted = [(hub, name, care) for hub, (name, care, _) in zip(hubs, DEMO_PATIENTS, strict=False)]
    return [*wanted, (SPARE_HUB, SPARE_PATIENT, SPARE_TEAMS)]


def _ensure_gp_practice(conn: psycopg.Connection[Any]) -> int:
    """The GP practice's organisation and team (an older state folder gains them)."""
    from server import admin

    row = conn.execute("SELECT id FROM organisation WHERE name = %s",
                       (DEMO_GP_ORGANISATION,)).fetchone()
    org = int(row[0]) if row else admin.create_organisation(conn, name=DEMO_GP_ORGANISATION)
    if conn.execute("SELECT 1 FROM team WHERE id = %s", (GP_TEAM[0],)).fetchone() is None:
        admin.create_team(conn, team_id=GP_TEAM[0], organisation_id=org, name=GP_TEAM[1],
                          kind=GP_TEAM[2])
    return org


def _ensure_clinicians(conn: psycopg.Connection[Any], secrets: DemoSecrets, org: int,
                       team_orgs: dict[str, int]) -> None:
    """Create the demo clinicians that do not exist yet (an older state folder had one);
    each belongs to her first team's organisation in ``team_orgs``, else to ``org``."""
    from server import admin

    for person in DEMO_CLINICIANS:
        if conn.execute("SELECT 1 FROM clinician WHERE username = %s",
                        (person.username,)).fetchone() is not None:
            continue
        password, token = secrets.credentials(person.username)
        made = admin.create_clinician(conn, username=person.username,
                                      display_name=person.display_name, role=person.role,
                                      teams=list(person.teams), password=password,
                                      api_token=token)
        own = team_orgs.get(person.teams[0], org) if person.teams else org
        conn.execute("UPDATE clinician SET organisation_id = %s WHERE id = %s", (own, made.id))


def _ensure_rota(conn: psycopg.Connection[Any], teams: list[str]) -> None:
    """Put the demo nurse on every team's rota (both levels) from now, unless already on."""
    from alerts import notify

    now = datetime.now(UTC)
    row = conn.execute("SELECT id FROM clinician WHERE username = %s",
                       (CLINICIAN_USERNAME,)).fetchone()
    assert row is not None
    with conn.transaction():
        for team in teams:
            for level in (0, 1):
                if not notify.on_duty(conn, team, level, now + timedelta(days=1)):
                    notify.add_shift(conn, team_id=team, clinician_id=int(row[0]), level=level,
                                     starts_at=now - timedelta(hours=1),
                                     ends_at=now + timedelta(days=ROTA_DAYS))


STATUS_SQL = """
SELECT (SELECT count(*) FROM reading),
       (SELECT count(*) FROM reading WHERE committed_at > now() - interval '1 minute'),
       (SELECT count(*) FROM quarantine),
       (SELECT count(*) FROM hub WHERE state = 'online'),
       (SELECT count(*) FROM alert WHERE state IN ('open', 'acknowledged')),
       (SELECT count(*) FROM alert WHERE state IN ('open', 'acknowledged') AND severity = 'red')
"""


def status_table(row: tuple[Any, ...], children: Supervisor, api: str, started: float) -> Table:
    readings, last_minute, quarantined, online, alerts, red = row
    table = Table(title=f"Homeward demo — {api}  (Ctrl-C to stop)", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("running for", f"{time.monotonic() - started:,.0f} s")
    table.add_row("readings stored", f"{readings:,} ({last_minute:,} in the last minute)")
    table.add_row("quarantined", f"{quarantined:,}")
    table.add_row("hubs online", f"{online:,}")
    table.add_row("active alerts", f"{alerts:,} ({red:,} red)")
    table.add_row("processes", ", ".join(
        f"{c.name} {'up' if c.running else 'DOWN'}" + (f" ({c.restarts} restarts)" if c.restarts
                                                       else "") for c in children.children))
    return table


def run_demo(*, state_dir: Path, api_port: int, homes: int, interval: float, reset: bool,
             live: bool) -> int:
    if reset and state_dir.exists():
        shutil.rmtree(state_dir)
    if not port_is_free(api_port):
        console.print(f"[red]Port {api_port} is in use; pass --api-port with a free port.[/red]")
        return 2
    state_dir.mkdir(parents=True, exist_ok=True)
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    hubs = hub_ids(homes)
    secrets = DemoSecrets.load_or_create(state_dir / "secrets.json", [*hubs, SPARE_HUB])
    stop = install_stop_handlers()

    pg = PostgresServer(state_dir / "postgres", password=secrets.database_password)
    # Logins and rights in the dynamic-security plugin, as in production: hubs
    # provisioned while the demo runs (`homeward admin hub provision`) stay across restarts.
    broker = MosquittoServer(state_dir / "mosquitto", dynsec=initial_state(
        {user: (secrets.server_mqtt_passwords[user], [role])
         for user, role in zip(SERVER_MQTT_USERS, (Role.INGEST, Role.CONFIG, Role.PROVISIONER),
                               strict=True)},
        hubs=secrets.hub_passwords))
    children = Supervisor()
    started = time.monotonic()
    try:
        with console.status("starting PostgreSQL ..."):
            pg.start()
        console.print(f"PostgreSQL 127.0.0.1:{pg.port}, passwords required"
                      f" (TimescaleDB: {'yes' if pg.timescaledb else 'no'})")
        with console.status("starting Mosquitto ..."):
            broker.start()
        console.print(f"Mosquitto 127.0.0.1:{broker.port}")
        from server.migrate import grant_application_role, migrate

        applied = migrate(pg.url)
        console.print(f"schema: {len(applied)} migration(s) applied")
        app_url = pg.ensure_login_role(APP_DB_ROLE, secrets.database_app_password)
        grant_application_role(pg.url, APP_DB_ROLE)
        with psycopg.connect(pg.url) as conn:
            patients = seed(conn, secrets, homes)

        env = {
            "HOMEWARD_DATABASE_URL": app_url,
            "HOMEWARD_MQTT_HOST": "127.0.0.1",
            "HOMEWARD_MQTT_PORT": str(broker.port),
            "HOMEWARD_API_HOST": "127.0.0.1",
            "HOMEWARD_API_PORT": str(api_port),
            "HOMEWARD_SECRET_KEY": secrets.secret_key,
            # no mail server: e-mails to patients (sign-in codes) are written here (0600)
            "HOMEWARD_PATIENT_MAIL_FILE": str((state_dir / PATIENT_MAIL_FILE).resolve()),
        }
        # Each process serves its metrics on a port of its own (free ones: a demo never
        # fights a production process on the default ports); demo.json lists them.
        metrics = {name: free_port() for name in ("ingest", "alerts", "api")}
        env.update({f"HOMEWARD_{name.upper()}_METRICS_HOST": "127.0.0.1" for name in metrics})
        env.update({f"HOMEWARD_{name.upper()}_METRICS_PORT": str(port)
                    for name, port in metrics.items()})
        children.add(Child("ingest", ["stack", "ingest"],
                           {**env, **mqtt_login(secrets, INGEST_MQTT_USER),
                            "HOMEWARD_INGEST_CLIENT_ID": INGEST_MQTT_USER}, logs / "ingest.log"))
        children.add(Child("alerts", ["stack", "alerts"], env, logs / "alerts.log"))
        children.add(Child("api", ["stack", "serve"], {**env, **mqtt_login(secrets, API_MQTT_USER),
                                                       **provisioner_login(secrets)},
                           logs / "api.log"))
        api = f"http://127.0.0.1:{api_port}"
        with console.status("waiting for the API ..."):
            if not wait_until(lambda: _healthy(api), timeout=60):
                console.print(f"[red]The API did not come up; see {logs / 'api.log'}[/red]")
                return 1

        plan = {
            "state_dir": str(state_dir),
            "mqtt": {"host": "127.0.0.1", "port": broker.port},
            "homes": [{"hub_id": hub, "password": secrets.hub_passwords[hub],
                       "deteriorates": deteriorates}
                      for hub, (_, _, deteriorates) in zip(hubs, DEMO_PATIENTS, strict=False)],
        }
        plan_file = state_dir / "homes.json"
        write_private_json(plan_file, plan)
        children.add(Child("homes", ["stack.demo_homes", "--plan", str(plan_file),
                                     "--interval", str(interval)],
                           {k: env[k] for k in ("HOMEWARD_MQTT_HOST", "HOMEWARD_MQTT_PORT")},
                           logs / "homes.log"))

        info = {
            "dashboard_url": f"{api}/",
            "api_url": f"{api}/api",
            # any clinician's api_token reads her scope as FHIR R4 (docs/fhir.md)
            "fhir_base_url": f"{api}/fhir/r4",
            "openapi_url": f"{api}/docs",
            "clinician": {"username": CLINICIAN_USERNAME,
                          "password": secrets.clinician_password,
                          "api_token": secrets.api_token},
            "clinicians": [{"username": c.username, "display_name": c.display_name,
                            "password": secrets.credentials(c.username)[0],
                            "api_token": secrets.credentials(c.username)[1],
                            "role": c.role, "teams": list(c.teams)} for c in DEMO_CLINICIANS],
            "patients": [{"id": patients[hub], "name": name, "teams": list(care)}
                         for hub, name, care in _patients_wanted(hubs)],
            "mqtt": {"host": "127.0.0.1", "port": broker.port,
                     # the logins `homeward admin hub provision|revoke` and device pairing use
                     "users": {user: secrets.server_mqtt_passwords[user]
                               for user in (API_MQTT_USER, PROVISIONER_MQTT_USER)}},
            "database_url": app_url,
            "spare_hub": {
                "id": SPARE_HUB,
                "username": SPARE_HUB,
                "password": secrets.hub_passwords[SPARE_HUB],
                "patient_id": patients[SPARE_HUB],
                "readings_topic": readings_topic(SPARE_HUB),
            },
            "hubs": [{"id": hub, "patient_id": patients[hub]} for hub in hubs],
            # the patient portal: sign in at sign_in_url with email; the code is in the
            # body of the newest line of mail_file (no mail server in the demo)
            **({"patient_login": {
                "patient_id": patients[hubs[0]], "name": DEMO_PATIENTS[0][0],
                "email": DEMO_PATIENT_EMAIL, "sign_in_url": f"{api}/my/sign-in",
                "mail_file": str((state_dir / PATIENT_MAIL_FILE).resolve()),
                "how": "ask for a code at sign_in_url with email; each e-mail to the "
                       "patient is one JSON line of mail_file: the newest one's body "
                       "holds the code"}} if hubs else {}),
            "logs": str(logs),
            # Prometheus endpoints by process, and the workers' readiness (/healthz).
            "metrics": {name: f"http://127.0.0.1:{port}/metrics"
                        for name, port in metrics.items()},
            "readiness": {name: f"http://127.0.0.1:{metrics[name]}/healthz"
                          for name in ("ingest", "alerts")},
        }
        write_private_json(state_dir / "demo.json", info)
        console.print(f"Dashboard {api}/  (login {CLINICIAN_USERNAME} / "
                      f"{secrets.clinician_password}); details in {state_dir / 'demo.json'}")
        _watch(app_url, children, api, started, stop, live)
        return 0
    finally:
        console.print("stopping ...")
        children.stop_all()
        broker.stop()
        pg.stop()
        console.print("stopped.")


def mqtt_login(secrets: DemoSecrets, user: str) -> dict[str, str]:
    """The environment that logs a server process in to the broker as ``user``."""
    return {"HOMEWARD_MQTT_USERNAME": user,
            "HOMEWARD_MQTT_PASSWORD": secrets.server_mqtt_passwords[user]}


def provisioner_login(secrets: DemoSecrets) -> dict[str, str]:
    """The environment that lets a process make and revoke hubs' broker logins."""
    return {"HOMEWARD_MQTT_PROVISIONER_USERNAME": PROVISIONER_MQTT_USER,
            "HOMEWARD_MQTT_PROVISIONER_PASSWORD":
                secrets.server_mqtt_passwords[PROVISIONER_MQTT_USER]}


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _watch(url: str, children: Supervisor, api: str, started: float, stop: dict[str, bool],
           live: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        def snapshot() -> Table:
            row = conn.execute(STATUS_SQL).fetchone()
            assert row is not None
            return status_table(tuple(row), children, api, started)

        if live:
            with Live(snapshot(), console=console, refresh_per_second=2) as view:
                while not stop["requested"]:
                    time.sleep(1)
                    for note in children.check():
                        console.print(f"[yellow]{note}[/yellow]")
                    view.update(snapshot())
        else:
            last = 0.0
            while not stop["requested"]:
                time.sleep(1)
                for note in children.check():
                    console.print(note)
                if time.monotonic() - last >= 10:
                    row = conn.execute(STATUS_SQL).fetchone()
                    assert row is not None
                    console.print(json.dumps(dict(zip(
                        ["readings", "last_minute", "quarantined", "hubs_online", "alerts",
                         "red_alerts"], row, strict=True))))
                    last = time.monotonic()
