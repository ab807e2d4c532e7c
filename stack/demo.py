"""``homeward demo``: the whole platform on one machine with embedded defaults.

A private PostgreSQL and Mosquitto run from the system's binaries in a state
folder (default ``./.homeward/``); the ingest, the API/dashboard and the alert
engine run as supervised child processes; a cohort of simulated homes (each a
real edge agent talking to virtual Bluetooth devices) runs in one more child.
``demo.json`` in the state folder tells a tester how to talk to it from
outside.  Ctrl-C stops everything in order: homes, workers, broker, database.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import typer

from stack.services.common import MissingBinaryError

DEMO_ORGANISATION = "Homeward Demo Community Trust"
#: The demo's community teams, and the out-of-hours service that the default
#: routing tree (alerts/rules/routes.yaml) sends night-time and system alerts to.
DEMO_TEAMS = (
    ("district-nursing", "District Nursing", "district_nursing"),
    ("heart-failure", "Heart Failure Service", "heart_failure"),
)
OUT_OF_HOURS_TEAM = ("out-of-hours", "Out-of-Hours Service", "out_of_hours")
#: A GP practice in an organisation of its own, on no care team yet: invite it from a
#: patient's page (docs/collaboration.md); its lead, the demo's ``gp``, accepts.
DEMO_GP_ORGANISATION = "Riverside GP Practice"
GP_TEAM = ("riverside-gp", "Riverside GP Practice", "gp_practice")
#: The demo nurse is on the rota of every team, first line and senior cover,
#: for this long from each start: no rota gap, so no "nobody on duty" alert.
ROTA_DAYS = 30
#: (display name, care teams, deteriorates?) — one home per patient.  Ada is on both
#: teams' caseloads: the patient the two nurses share.
DEMO_PATIENTS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("Ada Lovelace", ("heart-failure", "district-nursing"), True),
    ("Alan Turing", ("district-nursing",), False),
    ("Grace Hopper", ("district-nursing",), False),
    ("Tim Berners-Lee", ("heart-failure",), False),
)
SPARE_PATIENT = "Spare Patient (for testers)"
#: The first demo patient's sign-in address for the patient portal (/my); the demo has
#: no mail server, so e-mails to patients go to PATIENT_MAIL_FILE in the state folder.
DEMO_PATIENT_EMAIL = "ada.lovelace@example.org"
PATIENT_MAIL_FILE = "patient-mail.jsonl"
SPARE_TEAMS = ("district-nursing",)
CLINICIAN_USERNAME = "nurse"


@dataclass(frozen=True)
class DemoClinician:
    username: str
    display_name: str
    role: str
    teams: tuple[str, ...]


#: The demo's people: two nurses on different teams whose caseloads overlap in Ada, a
#: team lead, an admin, and a GP of another organisation on no care team yet.  The
#: first is ``clinician`` in demo.json.
DEMO_CLINICIANS = (
    DemoClinician(CLINICIAN_USERNAME, "Nina Nurse (District Nursing)", "nurse",
                  ("district-nursing", "out-of-hours")),
    DemoClinician("nurse-hf", "Harry Hart (Heart Failure)", "nurse", ("heart-failure",)),
    DemoClinician("lead", "Lena Lead (District Nursing lead)", "team_lead",
                  ("district-nursing",)),
    DemoClinician("admin", "Adam Admin", "admin", ()),
    DemoClinician("gp", "Dr Gita Patel (Riverside GP Practice)", "team_lead",
                  (GP_TEAM[0],)),
)
#: The broker makes a client's username its client id (docs/broker.md), so each
#: server process that talks MQTT has a user of its own, with its role's rights only
#: (homeward.broker_roles): the ingest's, the config publisher's (the API and the admin
#: commands), and the provisioner's, which makes and revokes hubs' logins.
INGEST_MQTT_USER = "homeward-ingest"
API_MQTT_USER = "homeward-api"
PROVISIONER_MQTT_USER = "homeward-provisioner"
SERVER_MQTT_USERS = (INGEST_MQTT_USER, API_MQTT_USER, PROVISIONER_MQTT_USER)
#: The database role the ingest, API and alert engine connect as: it reads and writes
#: rows and nothing more.  The migrations run as the owner, PostgresServer.user.
APP_DB_ROLE = "homeward_app"


def _token(length: int) -> str:
    return secrets.token_urlsafe(length)


@dataclass
class DemoSecrets:
    """Credentials made on the first run and kept in the state folder (0600).

    A state folder from an older demo keeps what it has and gains what it lacks.
    """

    clinician_password: str
    api_token: str
    #: Signs the dashboard's session cookies (HOMEWARD_SECRET_KEY); one per state folder.
    secret_key: str
    #: The database owner's (migrations, seed) and the application role's passwords.
    database_password: str
    database_app_password: str
    server_mqtt_passwords: dict[str, str]
    hub_passwords: dict[str, str]
    #: The other demo clinicians' credentials: username -> {"password", "api_token"}.
    clinicians: dict[str, dict[str, str]] = field(default_factory=dict)

    def credentials(self, username: str) -> tuple[str, str]:
        """(password, api_token) of a demo clinician."""
        if username == CLINICIAN_USERNAME:
            return self.clinician_password, self.api_token
        found = self.clinicians[username]
        return found["password"], found["api_token"]

    @classmethod
    def load_or_create(cls, path: Path, hub_ids: list[str]) -> DemoSecrets:
        data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        known_mqtt: dict[str, str] = data.get("server_mqtt_passwords", {})
        known_hubs: dict[str, str] = data.get("hub_passwords", {})
        found = cls(
            clinician_password=data.get("clinician_password") or _token(9),
            api_token=data.get("api_token") or _token(24),
            secret_key=data.get("secret_key") or _token(32),
            database_password=data.get("database_password") or _token(18),
            database_app_password=data.get("database_app_password") or _token(18),
            server_mqtt_passwords={user: known_mqtt.get(user) or _token(18)
                                   for user in SERVER_MQTT_USERS},
            hub_passwords={**known_hubs,
                           **{hub: _token(12) for hub in hub_ids if hub not in known_hubs}},
            clinicians={c.username: data.get("clinicians", {}).get(c.username)
                        or {"password": _token(9), "api_token": _token(24)}
                        for c in DEMO_CLINICIANS if c.username != CLINICIAN_USERNAME},
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private_json(path, asdict(found))
        return found


def hub_ids(homes: int) -> list[str]:
    return [f"demo-hub-{i + 1}" for i in range(homes)]


SPARE_HUB = "demo-hub-spare"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        state_dir: Path = typer.Option(Path(".homeward"), envvar="HOMEWARD_STATE_DIR",
                                       help="Where the demo keeps its database, broker and logs."),
        api_port: int = typer.Option(8000, envvar="HOMEWARD_API_PORT",
                                     help="Port of the dashboard and API."),
        homes: int = typer.Option(len(DEMO_PATIENTS), min=1, max=len(DEMO_PATIENTS),
                                  help="Number of simulated homes."),
        interval: float = typer.Option(5.0, min=0.5,
                                       help="Seconds between readings in each simulated home."),
        reset: bool = typer.Option(False, help="Delete the state folder first."),
        no_live: bool = typer.Option(False, "--no-live",
                                     help="Plain log lines instead of a live terminal table."),
    ) -> None:
        """Run the whole platform locally: database, broker, ingest, API, alerts, homes."""
        from stack.demo_run import run_demo

        try:
            code = run_demo(state_dir=state_dir.absolute(), api_port=api_port, homes=homes,
                            interval=interval, reset=reset, live=not no_live)
        except MissingBinaryError as err:
            typer.secho(str(err), fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from err
        raise typer.Exit(code)


def write_private_json(path: Path, info: dict[str, Any]) -> None:
    """Write ``info`` to ``path`` readable by its owner only (0600 from the first byte)."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, path)



def install_stop_handlers() -> dict[str, bool]:
    """SIGINT/SIGTERM set a flag the main loop checks, so shutdown runs in order."""
    stop = {"requested": False}

    def handler(signum: int, frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def wait_until(predicate: Any, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False
