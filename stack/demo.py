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
from dataclasses import dataclass
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
#: The demo nurse is on the rota of every team, first line and senior cover,
#: for this long from each start: no rota gap, so no "nobody on duty" alert.
ROTA_DAYS = 30
#: (display name, care team, deteriorates?) — one home per patient.
DEMO_PATIENTS = (
    ("Ada Lovelace", "heart-failure", True),
    ("Alan Turing", "district-nursing", False),
    ("Grace Hopper", "district-nursing", False),
    ("Tim Berners-Lee", "heart-failure", False),
)
SPARE_PATIENT = "Spare Patient (for testers)"
CLINICIAN_USERNAME = "nurse"
SERVER_MQTT_USER = "homeward-server"


@dataclass
class DemoSecrets:
    """Credentials made on the first run and kept in the state folder (0600)."""

    server_mqtt_password: str
    clinician_password: str
    api_token: str
    hub_passwords: dict[str, str]

    @classmethod
    def load_or_create(cls, path: Path, hub_ids: list[str]) -> DemoSecrets:
        if path.exists():
            data = json.loads(path.read_text())
            found = cls(**data)
            for hub in hub_ids:
                found.hub_passwords.setdefault(hub, secrets.token_urlsafe(12))
        else:
            found = cls(
                server_mqtt_password=secrets.token_urlsafe(18),
                clinician_password=secrets.token_urlsafe(9),
                api_token=secrets.token_urlsafe(24),
                hub_passwords={hub: secrets.token_urlsafe(12) for hub in hub_ids},
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(found.__dict__, indent=2))
        path.chmod(0o600)
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
        api_port: int = typer.Option(8000, help="Port of the dashboard and API."),
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


def write_demo_json(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.chmod(0o600)
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
