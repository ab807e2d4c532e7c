"""The API tests' world: a seeded database and the app under a real uvicorn server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import uvicorn

from homeward.settings import Settings
from server import admin
from server.api import create_app
from stack.services.common import free_port

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
NURSE_PASSWORD = "correct horse"


@dataclass
class World:
    url: str
    token: str
    nurse_id: int
    patient: int
    other_patient: int  # on no care team: outside the nurse's scope
    alert: int
    admin_token: str = ""

    @property
    def admin(self) -> dict[str, str]:
        """Headers of the organisation's admin (hubs and the quarantine are admin-only)."""
        return {"Authorization": f"Bearer {self.admin_token}"}


def insert_alert(conn: psycopg.Connection, patient: int, *, severity: str = "red",
                 rule: str = "severe_bp") -> int:
    row = conn.execute(
        "INSERT INTO alert (patient_id, rule_id, rule, severity, summary, team_id, opened_at,"
        " updated_at, last_triggered_at) VALUES (%s, %s, '{}', %s, %s, 'heart-failure',"
        " now(), now(), now()) RETURNING id",
        (patient, rule, severity, f"{rule} for patient {patient}")).fetchone()
    assert row is not None
    return int(row[0])


def seed_world(db_url: str) -> World:
    """A team, a nurse (password NURSE_PASSWORD) and an admin, two patients (one on no
    team), a hub with three readings, one quarantined payload and one open alert."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        org = admin.create_organisation(conn, name="Trust")
        admin.create_team(conn, team_id="heart-failure", organisation_id=org,
                          name="Heart Failure", kind="heart_failure")
        nurse = admin.create_clinician(conn, username="nurse", display_name="Nina Nurse",
                                       teams=["heart-failure"], password=NURSE_PASSWORD)
        boss = admin.create_clinician(conn, username="admin", display_name="Ann Admin",
                                      role="admin", teams=["heart-failure"])
        patient = admin.create_patient(conn, display_name="Ada", teams=["heart-failure"])
        other = admin.create_patient(conn, display_name="Bob")
        admin.create_hub(conn, hub_id="hub-1")
        admin.enrol(conn, hub_id="hub-1", patient_id=patient, valid_from=T0)
        admin.pair_device(conn, hub_id="hub-1", address="AA:01", kind="spo2")
        for hours, kind, values in [(1, "spo2", {"spo2": 95, "pulse_rate": 70}),
                                    (2, "temperature", {"body_temperature": 37.2}),
                                    (30, "spo2", {"spo2": 93, "pulse_rate": 80})]:
            conn.execute(
                'INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values",'
                " received_at) VALUES (gen_random_uuid(), %s, %s, 'hub-1', %s, 'AA:01', %s,"
                " now())", (T0 + timedelta(hours=hours), kind, patient,
                            orjson.dumps(values).decode()))
        conn.execute("INSERT INTO quarantine (hub_id, topic, reason, payload) VALUES"
                     " ('hub-1', 'homeward/v1/hubs/hub-1/readings', 'not JSON', 'garbage')")
        alert = insert_alert(conn, patient)
    return World(db_url, nurse.api_token, nurse.id, patient, other, alert, boss.api_token)


@contextmanager
def running_api(settings: Settings, *,
                clock: Callable[[], datetime] | None = None) -> Iterator[str]:
    """The app under a real uvicorn server on a free port; yields its base URL.  ``clock``
    is the app's clock where routes take one (``app.state.clock``: hand-overs, tasks)."""
    port = free_port()
    app = create_app(settings)
    if clock is not None:
        app.state.clock = clock
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
