"""The access model, route by route: every route of the OpenAPI document is listed here
with the scope it needs, so a new route without one fails ``test_every_route_is_classified``;
a clinician outside a patient's care team gets 404 for its patient, alert and hub ids,
and no successful read of it is audited; hubs and the quarantine are admin-only; the
live stream carries only in-scope alerts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from homeward.settings import Settings
from server import admin
from server.api import create_app
from tests.api_support import T0, running_api
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

#: (method, path) -> what scopes it.  "patient": {patient_id} in scope or 404;
#: "alert": {alert_id} in scope or 404; "list": a listing filtered to the scope;
#: "admin": admins only (403 for other roles); "self": the caller's own data;
#: "public": no patient data; the FHIR API's "observation", "device", "fhir-task" and
#: "communication": their ids' patient
#: in scope or 404; "search": the patients ``patient=`` names in scope or 404, the
#: results filtered to the scope; "invitation", "handover", "task": a care-team
#: invitation, hand-over or task about a patient outside the caller's scope (and not to
#: or from her teams) is 404; "body-patient": the body's ``patient_id`` in scope or 404;
#: "team": {team_id} one of the caller's teams (an admin: of her organisation) or 404.
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/health"): "public",
    ("GET", "/api/me"): "self",
    ("GET", "/api/alerts"): "list",
    ("GET", "/api/alerts/stream"): "list",
    ("GET", "/api/alerts/{alert_id}"): "alert",
    ("POST", "/api/alerts/{alert_id}/acknowledge"): "alert",
    ("POST", "/api/alerts/{alert_id}/resolve"): "alert",
    ("POST", "/api/alerts/{alert_id}/snooze"): "alert",
    ("POST", "/api/alerts/{alert_id}/notes"): "alert",
    ("GET", "/api/patients"): "list",
    ("GET", "/api/patients/{patient_id}"): "patient",
    ("GET", "/api/patients/{patient_id}/readings"): "patient",
    ("GET", "/api/patients/{patient_id}/series"): "patient",
    ("GET", "/api/patients/{patient_id}/timeline"): "patient",
    ("GET", "/api/patients/{patient_id}/audit"): "patient",
    ("POST", "/api/patients/{patient_id}/notes"): "patient",
    ("POST", "/api/patients/{patient_id}/status"): "patient",
    ("PUT", "/api/patients/{patient_id}/rules/{rule_id}"): "patient",
    # reports (server/api/routes/reports.py, docs/reports.md)
    ("GET", "/api/patients/{patient_id}/discharge-summary"): "patient",
    ("GET", "/api/patients/{patient_id}/discharge-summary.pdf"): "patient",
    ("GET", "/api/teams/{team_id}/shift-report"): "team",
    ("GET", "/api/teams/{team_id}/shift-report.csv"): "team",
    ("GET", "/api/teams/{team_id}/shift-report.pdf"): "team",
    # messages to the patient (server/api/routes/messages.py); the patient portal's own
    # pages (/my, server/api/routes/portal.py) are not in the OpenAPI document: their
    # scope is the signed-in patient alone, tests/test_patient_portal.py
    ("GET", "/api/patients/{patient_id}/messages"): "patient",
    ("POST", "/api/patients/{patient_id}/messages"): "patient",
    ("GET", "/api/hubs"): "admin",
    ("GET", "/api/quarantine"): "admin",
    ("GET", "/api/audit"): "admin",
    # the admin API (server/api/routes/admin.py): admins only, their organisations' ids
    ("GET", "/api/admin/teams"): "admin",
    ("POST", "/api/admin/teams"): "admin",
    ("PATCH", "/api/admin/teams/{team_id}"): "admin",
    ("PUT", "/api/admin/teams/{team_id}/shifts/{shift}"): "admin",
    ("DELETE", "/api/admin/teams/{team_id}/shifts/{shift}"): "admin",
    ("GET", "/api/admin/teams/{team_id}/rota"): "admin",
    ("PUT", "/api/admin/teams/{team_id}/rota"): "admin",
    ("GET", "/api/admin/clinicians"): "admin",
    ("POST", "/api/admin/clinicians"): "admin",
    ("PATCH", "/api/admin/clinicians/{clinician_id}"): "admin",
    ("POST", "/api/admin/clinicians/{clinician_id}/invite"): "admin",
    ("POST", "/api/admin/clinicians/{clinician_id}/token"): "admin",
    ("POST", "/api/admin/clinicians/{clinician_id}/deactivate"): "admin",
    ("GET", "/api/admin/patients"): "admin",
    ("POST", "/api/admin/patients"): "admin",
    ("PUT", "/api/admin/patients/{patient_id}/care-teams"): "admin",
    ("POST", "/api/admin/patients/{patient_id}/enrolments"): "admin",
    ("GET", "/api/admin/hubs"): "admin",
    ("POST", "/api/admin/hubs"): "admin",
    ("POST", "/api/admin/hubs/{hub_id}/devices"): "admin",
    ("DELETE", "/api/admin/hubs/{hub_id}/devices/{address}"): "admin",
    ("POST", "/api/admin/hubs/{hub_id}/config"): "admin",
    ("POST", "/api/admin/hubs/{hub_id}/credentials"): "admin",
    ("DELETE", "/api/admin/hubs/{hub_id}/credentials"): "admin",
    # working together (server/api/routes/collaboration.py)
    ("GET", "/api/patients/{patient_id}/care-team"): "patient",
    ("POST", "/api/patients/{patient_id}/care-team"): "patient",
    ("DELETE", "/api/patients/{patient_id}/care-team/{team_id}"): "patient",
    ("POST", "/api/patients/{patient_id}/handover"): "patient",
    ("POST", "/api/alerts/{alert_id}/handover"): "alert",
    ("GET", "/api/care-team-invitations"): "list",
    ("POST", "/api/care-team-invitations/{invitation_id}/accept"): "invitation",
    ("POST", "/api/care-team-invitations/{invitation_id}/decline"): "invitation",
    ("GET", "/api/handovers"): "list",
    ("GET", "/api/handovers/{handover_id}"): "handover",
    ("POST", "/api/handovers/{handover_id}/accept"): "handover",
    ("POST", "/api/handovers/{handover_id}/decline"): "handover",
    ("POST", "/api/tasks"): "body-patient",
    ("GET", "/api/tasks"): "list",
    ("GET", "/api/tasks/{task_id}"): "task",
    ("POST", "/api/tasks/{task_id}/claim"): "task",
    ("POST", "/api/tasks/{task_id}/complete"): "task",
    ("POST", "/api/tasks/{task_id}/decline"): "task",
    ("POST", "/api/tasks/{task_id}/cancel"): "task",
    # the FHIR API (server/api/routes/fhir.py): read-only, the same scope and audit
    ("GET", "/fhir/r4/metadata"): "public",
    ("GET", "/fhir/r4/Patient"): "search",
    ("GET", "/fhir/r4/Patient/{patient_id}"): "patient",
    ("GET", "/fhir/r4/Observation"): "search",
    ("GET", "/fhir/r4/Observation/{observation_id}"): "observation",
    ("GET", "/fhir/r4/Flag"): "search",
    ("GET", "/fhir/r4/Flag/{alert_id}"): "alert",
    ("GET", "/fhir/r4/Device"): "search",
    ("GET", "/fhir/r4/Device/{device_id}"): "device",
    ("GET", "/fhir/r4/CareTeam"): "search",
    ("GET", "/fhir/r4/CareTeam/{patient_id}"): "patient",
    ("GET", "/fhir/r4/Task"): "search",
    ("GET", "/fhir/r4/Task/{task_id}"): "fhir-task",
    ("GET", "/fhir/r4/Communication"): "search",
    ("GET", "/fhir/r4/Communication/{communication_id}"): "communication",
    # bulk export: a kick-off exports the scope (a Group: one of the caller's teams, or
    # 404); a job is its caller's own (another's is 404), tests/test_fhir_api.py
    ("GET", "/fhir/r4/Patient/$export"): "list",
    ("GET", "/fhir/r4/Group/{team_id}/$export"): "list",
    ("GET", "/fhir/r4/$export-status/{job_id}"): "self",
    ("DELETE", "/fhir/r4/$export-status/{job_id}"): "self",
    ("GET", "/fhir/r4/$export-file/{job_id}/{resource_type}"): "self",
}

#: A valid request for each route (query and body), so that a 404 means scope, not input.
QUERIES: dict[str, dict[str, str]] = {
    "/api/patients/{patient_id}/series": {"kind": "spo2", "metric": "spo2"},
}
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/alerts/{alert_id}/acknowledge"): {"note": "seen"},
    ("POST", "/api/alerts/{alert_id}/resolve"): {"outcome": "advice_given"},
    ("POST", "/api/alerts/{alert_id}/snooze"): {"minutes": 30},
    ("POST", "/api/alerts/{alert_id}/notes"): {"text": "called"},
    ("POST", "/api/patients/{patient_id}/notes"): {"text": "visited"},
    ("POST", "/api/patients/{patient_id}/status"): {"status": "admitted"},
    ("PUT", "/api/patients/{patient_id}/rules/{rule_id}"): {
        "overrides": {"above": 170}, "reason": "her usual is high"},
    ("POST", "/api/patients/{patient_id}/messages"): {"text": "please repeat your BP",
                                                      "needs_confirmation": True},
    ("POST", "/api/patients/{patient_id}/care-team"): {"team": "team-s"},
    ("POST", "/api/patients/{patient_id}/handover"): {"to_team": "team-s", "note": {
        "situation": "s", "background": "b", "assessment": "a", "recommendation": "r"}},
    ("POST", "/api/alerts/{alert_id}/handover"): {"to_team": "team-s", "note": {
        "situation": "s", "background": "b", "assessment": "a", "recommendation": "r"}},
    ("POST", "/api/care-team-invitations/{invitation_id}/decline"): {"reason": "no"},
    ("POST", "/api/handovers/{handover_id}/decline"): {"reason": "no"},
    ("POST", "/api/tasks/{task_id}/complete"): {"note": "done"},
    ("POST", "/api/tasks/{task_id}/decline"): {"reason": "no"},
    ("PATCH", "/api/admin/teams/{team_id}"): {"email": "team@example.nhs.uk"},
    ("PUT", "/api/admin/teams/{team_id}/shifts/{shift}"): {"starts": "08:00", "ends": "18:30"},
    ("PUT", "/api/admin/teams/{team_id}/rota"): {"shifts": [
        {"clinician": "a", "starts_at": "2026-03-02T08:00:00Z",
         "ends_at": "2026-03-02T18:00:00Z"}]},
    ("PATCH", "/api/admin/clinicians/{clinician_id}"): {"email": "someone@example.nhs.uk"},
    ("POST", "/api/admin/clinicians/{clinician_id}/invite"): {"hours": 1},
    ("PUT", "/api/admin/patients/{patient_id}/care-teams"): {"teams": ["team-a"]},
    ("POST", "/api/admin/patients/{patient_id}/enrolments"): {"hub_id": "hub-b"},
    ("POST", "/api/admin/hubs/{hub_id}/devices"): {"address": "AA:02", "kind": "spo2"},
}


def admin_path(path: str, world: Clinic) -> str:
    """An admin route's path with the North Trust's ids (team A, nurse A, patient A, hub B)."""
    return (path.replace("{team_id}", "team-a").replace("{shift}", "day")
            .replace("{clinician_id}", str(world.ids["nurse_a"]))
            .replace("{patient_id}", str(world.patient_a)).replace("{hub_id}", "hub-b")
            .replace("{address}", "AA:02"))


@dataclass
class Clinic:
    url: str
    tokens: dict[str, str]   # nurse_a, nurse_b, lead_a, admin, admin_other
    ids: dict[str, int]
    patient_a: int           # on team A's caseload only
    patient_b: int           # on team B's caseload only
    shared: int              # on both
    alert_a: int
    alert_b: int
    system_alert_b: int


def insert_alert(conn: psycopg.Connection, patient: int, team: str) -> int:
    row = conn.execute(
        "INSERT INTO alert (patient_id, rule_id, rule, severity, summary, team_id, opened_at,"
        " updated_at, last_triggered_at) VALUES (%s, 'bp_severe', '{}', 'red', 'BP 186/104',"
        " %s, now(), now(), now()) RETURNING id", (patient, team)).fetchone()
    assert row is not None
    return int(row[0])


def seed_clinic(db_url: str) -> Clinic:
    with psycopg.connect(db_url, autocommit=True) as conn:
        org = admin.create_organisation(conn, name="North Trust")
        other_org = admin.create_organisation(conn, name="South Trust")
        admin.create_team(conn, team_id="team-a", organisation_id=org, name="A", kind="copd")
        admin.create_team(conn, team_id="team-b", organisation_id=org, name="B",
                          kind="heart_failure")
        admin.create_team(conn, team_id="team-s", organisation_id=other_org, name="S",
                          kind="district_nursing")
        people = {
            "nurse_a": admin.create_clinician(conn, username="a", display_name="Nurse A",
                                              teams=["team-a"]),
            "nurse_b": admin.create_clinician(conn, username="b", display_name="Nurse B",
                                              teams=["team-b"]),
            "lead_a": admin.create_clinician(conn, username="la", display_name="Lead A",
                                             role="team_lead", teams=["team-a"]),
            "admin": admin.create_clinician(conn, username="adm", display_name="Admin",
                                            role="admin", teams=["team-a"]),
            "admin_other": admin.create_clinician(conn, username="adm2", role="admin",
                                                  display_name="Other Admin",
                                                  teams=["team-s"]),
        }
        patient_a = admin.create_patient(conn, display_name="Alice", teams=["team-a"],
                                         nhs_number="943 476 5919")
        patient_b = admin.create_patient(conn, display_name="Bert", teams=["team-b"])
        shared = admin.create_patient(conn, display_name="Sam", teams=["team-a", "team-b"])
        admin.create_hub(conn, hub_id="hub-b", organisation_id=org)
        admin.enrol(conn, hub_id="hub-b", patient_id=patient_b, valid_from=T0)
        conn.execute(
            'INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values",'
            " received_at) VALUES (gen_random_uuid(), now() - interval '1 hour', 'spo2',"
            " 'hub-b', %s, 'AA:01', %s, now())",
            (patient_b, orjson.dumps({"spo2": 91, "pulse_rate": 80}).decode()))
        alert_a = insert_alert(conn, patient_a, "team-a")
        alert_b = insert_alert(conn, patient_b, "team-b")
        row = conn.execute(
            "INSERT INTO alert (category, rule_id, rule, severity, summary, team_id, opened_at,"
            " updated_at, last_triggered_at) VALUES ('system', 'system.rota_gap.team-b', '{}',"
            " 'red', 'nobody on duty', 'team-b', now(), now(), now()) RETURNING id").fetchone()
        assert row is not None
    return Clinic(db_url, {k: v.api_token for k, v in people.items()},
                  {k: v.id for k, v in people.items()}, patient_a, patient_b, shared,
                  alert_a, alert_b, int(row[0]))


@pytest.fixture(scope="module")
def clinic(postgres_server: Any) -> Iterator[tuple[Clinic, str]]:
    """One seeded database and one API server for the module (the walk is read-mostly;
    tests that write use patients no other test asserts on)."""
    from tests.conftest import _TEMPLATE

    url = postgres_server.create_database(f"access{id(postgres_server)}", template=_TEMPLATE)
    world = seed_clinic(url)
    with running_api(Settings(database_url=url)) as base:
        yield world, base


def _call(base: str, token: str, method: str, path: str, params: dict[str, str] | None = None,
          body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.request(method, base + path, params=params, json=body, timeout=10,
                         headers={"Authorization": f"Bearer {token}"})


def test_every_route_is_classified() -> None:
    spec = create_app(Settings()).openapi()
    published = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert published == set(ROUTES), (
        "every route needs a scope in tests/test_access.py ROUTES: "
        f"new {sorted(published - set(ROUTES))}, gone {sorted(set(ROUTES) - published)}")


def _audited_ok(url: str, clinician: int, patient: int) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM access_audit WHERE clinician_id = %s AND"
                           " patient_id = %s AND outcome = 'ok'", (clinician, patient)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.hazard("H-015")
@pytest.mark.parametrize(("method", "path"), [k for k, v in ROUTES.items()
                                              if v in ("patient", "alert")])
def test_an_id_outside_the_callers_scope_is_404_and_no_read_is_audited(
        clinic: tuple[Clinic, str], method: str, path: str) -> None:
    world, base = clinic
    concrete = (path.replace("{patient_id}", str(world.patient_b))
                .replace("{alert_id}", str(world.alert_b)).replace("{rule_id}", "bp_severe"))
    response = _call(base, world.tokens["nurse_a"], method, concrete, QUERIES.get(path),
                     BODIES.get((method, path)))
    assert response.status_code == 404, response.text
    assert str(world.patient_b) not in response.text or "not found" in response.text
    assert _audited_ok(world.url, world.ids["nurse_a"], world.patient_b) == 0
    # the other organisation's admin is outside it too
    response = _call(base, world.tokens["admin_other"], method, concrete, QUERIES.get(path),
                     BODIES.get((method, path)))
    assert response.status_code == 404


@pytest.mark.parametrize(("method", "path"), [k for k, v in ROUTES.items() if v == "patient"
                                              and k[0] == "GET"])
def test_a_read_inside_the_scope_is_answered_and_audited(
        clinic: tuple[Clinic, str], method: str, path: str) -> None:
    world, base = clinic
    before = _audited_ok(world.url, world.ids["nurse_b"], world.patient_b)
    response = _call(base, world.tokens["nurse_b"], method,
                     path.replace("{patient_id}", str(world.patient_b)), QUERIES.get(path))
    assert response.status_code == 200, response.text
    # the row is written as the request ends, which may be just after the response
    wait_for(lambda: _audited_ok(world.url, world.ids["nurse_b"], world.patient_b)
             >= before + 1, 5, "the read's audit row")


@pytest.mark.parametrize(("method", "path"), [k for k, v in ROUTES.items() if v == "admin"])
def test_admin_only_routes_refuse_other_roles(clinic: tuple[Clinic, str], method: str,
                                              path: str) -> None:
    world, base = clinic
    concrete = admin_path(path, world)
    for who in ("nurse_a", "lead_a"):
        response = _call(base, world.tokens[who], method, concrete,
                         body=BODIES.get((method, path)))
        assert response.status_code == 403, response.text
    if method == "GET":  # the writes' effects: tests/test_admin_api.py
        assert _call(base, world.tokens["admin"], method, concrete).status_code == 200


@pytest.mark.parametrize(("method", "path"), [k for k, v in ROUTES.items() if v == "admin"
                                              and "{" in k[1]])
def test_admin_routes_answer_404_for_another_organisations_ids(
        clinic: tuple[Clinic, str], method: str, path: str) -> None:
    """South Trust's admin names North Trust's team, clinician, patient or hub: 404, and
    the refusal is audited as not_found."""
    world, base = clinic
    response = _call(base, world.tokens["admin_other"], method, admin_path(path, world),
                     body=BODIES.get((method, path)))
    assert response.status_code == 404, response.text
    wait_for(lambda: _outcomes(world.url, world.ids["admin_other"], method, path)
             == ["not_found"], 5, "the refusal's audit row")


@pytest.mark.hazard("H-015")
@pytest.mark.parametrize(("method", "path"), [k for k, v in ROUTES.items() if v == "team"])
def test_a_team_outside_the_callers_teams_is_404_and_audited(
        clinic: tuple[Clinic, str], method: str, path: str) -> None:
    """Nurse A asks for team B's report: 404, audited as not found; so does the other
    organisation's admin; nurse B, on team B, and the organisation's admin are answered."""
    world, base = clinic
    concrete = path.replace("{team_id}", "team-b")
    assert _call(base, world.tokens["nurse_a"], method, concrete).status_code == 404
    assert _call(base, world.tokens["admin_other"], method, concrete).status_code == 404
    wait_for(lambda: _outcomes(world.url, world.ids["nurse_a"], method, path)[-1:]
             == ["not_found"], 5, "the refusal's audit row")
    assert _audited_ok(world.url, world.ids["nurse_a"], world.patient_b) == 0
    for who in ("nurse_b", "admin"):
        response = _call(base, world.tokens[who], method, concrete)
        assert response.status_code == 200, (who, response.text)


def _fhir_path(path: str, world: Clinic) -> tuple[str, dict[str, str] | None]:
    """A FHIR route's path and query about patient B (her reading, her hub)."""
    with psycopg.connect(world.url) as conn:
        row = conn.execute("SELECT id::text FROM reading WHERE patient_id = %s LIMIT 1",
                           (world.patient_b,)).fetchone()
    assert row is not None
    concrete = path.replace("{observation_id}", row[0]).replace("{device_id}", "phg-hub-b")
    if "{task_id}" in path:
        concrete = concrete.replace("{task_id}", f"task-{_collaboration_ids(world)['task_id']}")
    if "{communication_id}" in path:
        with psycopg.connect(world.url, autocommit=True) as conn:
            message = conn.execute(
                "SELECT id FROM patient_message WHERE patient_id = %s LIMIT 1",
                (world.patient_b,)).fetchone() or conn.execute(
                "INSERT INTO patient_message (patient_id, direction, body, sent_at)"
                " VALUES (%s, 'from_patient', 'I feel better', now()) RETURNING id",
                (world.patient_b,)).fetchone()
        assert message is not None
        concrete = concrete.replace("{communication_id}", f"message-{message[0]}")
    return concrete, ({"patient": f"Patient/{world.patient_b}"} if "{" not in path else None)


@pytest.mark.hazard("H-015")
@pytest.mark.parametrize(("method", "path"), [
    k for k, v in ROUTES.items() if v in ("observation", "device", "search", "fhir-task",
                                          "communication")])
def test_fhir_reads_and_searches_about_another_teams_patient_are_404_and_audited(
        clinic: tuple[Clinic, str], method: str, path: str) -> None:
    """Nurse A names patient B's reading, hub or record: 404 (an OperationOutcome), audited
    as not found; nurse B, on B's team, is answered, audited as a read of B's record."""
    world, base = clinic
    concrete, params = _fhir_path(path, world)
    response = _call(base, world.tokens["nurse_a"], method, concrete, params)
    assert response.status_code == 404, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert _call(base, world.tokens["admin_other"], method, concrete, params
                 ).status_code == 404
    wait_for(lambda: _outcomes(world.url, world.ids["nurse_a"], method, path)[-1:]
             == ["not_found"], 5, "the refusal's audit row")
    assert _audited_ok(world.url, world.ids["nurse_a"], world.patient_b) == 0
    before = _audited_ok(world.url, world.ids["nurse_b"], world.patient_b)
    response = _call(base, world.tokens["nurse_b"], method, concrete, params)
    assert response.status_code == 200, response.text
    wait_for(lambda: _audited_ok(world.url, world.ids["nurse_b"], world.patient_b)
             >= before + 1, 5, "the read's audit row")


def _collaboration_ids(world: Clinic) -> dict[str, int]:
    """An invitation, a (declined) hand-over and a task about patient B, between team B and
    the South Trust's team S (rows as the lifecycle modules leave them)."""
    with psycopg.connect(world.url, autocommit=True) as conn:
        found = conn.execute("SELECT (SELECT id FROM care_team_invitation WHERE patient_id = %s"
                             " LIMIT 1), (SELECT id FROM handover WHERE patient_id = %s LIMIT 1),"
                             " (SELECT id FROM task WHERE patient_id = %s LIMIT 1)",
                             (world.patient_b,) * 3).fetchone()
        assert found is not None
        if found[0] is None:
            found = conn.execute(
                "WITH i AS (INSERT INTO care_team_invitation (patient_id, team_id, role,"
                " invited_team, invited_at) VALUES (%(p)s, 'team-s', 'contributor', 'team-b',"
                " now()) RETURNING id),"
                # declined: an open offer would show patient B to team S (and break
                # the other tests of this module's shared world)
                " h AS (INSERT INTO handover (kind, alert_id, patient_id, from_team, to_team,"
                " note, offered_at, respond_by, state, decided_at, decline_reason) VALUES"
                " ('alert', %(a)s, %(p)s, 'team-b', 'team-s', '{}', now(),"
                " now() + interval '1 hour', 'declined', now(), 'not ours') RETURNING id),"
                " t AS (INSERT INTO task (patient_id, team_id, title, due_at, requested_team,"
                " requested_at) VALUES (%(p)s, 'team-b', 'Call her', now() + interval '1 day',"
                " 'team-b', now()) RETURNING id)"
                " SELECT (SELECT id FROM i), (SELECT id FROM h), (SELECT id FROM t)",
                {"p": world.patient_b, "a": world.alert_b}).fetchone()
            assert found is not None
    return {"invitation_id": found[0], "handover_id": found[1], "task_id": found[2]}


@pytest.mark.hazard("H-015")
@pytest.mark.parametrize(("method", "path"), [
    k for k, v in ROUTES.items() if v in ("invitation", "handover", "task", "body-patient")])
def test_collaboration_ids_about_another_teams_patient_are_404_and_audited(
        clinic: tuple[Clinic, str], method: str, path: str) -> None:
    """Nurse A names an invitation, hand-over or task about patient B (team B's, offered
    to the South Trust's team S), or asks a task about B: 404, audited as not found."""
    world, base = clinic
    concrete = path
    for key, value in _collaboration_ids(world).items():
        concrete = concrete.replace("{" + key + "}", str(value))
    body = BODIES.get((method, path))
    if ROUTES[(method, path)] == "body-patient":
        body = {"patient_id": world.patient_b, "team": "team-b", "title": "Call her",
                "due": "2026-12-10T09:00:00Z"}
    response = _call(base, world.tokens["nurse_a"], method, concrete, body=body)
    assert response.status_code == 404, response.text
    wait_for(lambda: _outcomes(world.url, world.ids["nurse_a"], method, path)[-1:]
             == ["not_found"], 5, "the refusal's audit row")
    assert _audited_ok(world.url, world.ids["nurse_a"], world.patient_b) == 0


def _outcomes(url: str, clinician: int, method: str, path: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT outcome FROM access_audit WHERE clinician_id = %s AND action = %s ORDER BY id",
            (clinician, f"{method} {path}")).fetchall()]


@pytest.mark.hazard("H-015")
def test_listings_carry_only_the_callers_patients(clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    caseload_a = {r["id"] for r in _call(base, world.tokens["nurse_a"], "GET",
                                         "/api/patients").json()}
    caseload_b = {r["id"] for r in _call(base, world.tokens["nurse_b"], "GET",
                                         "/api/patients").json()}
    assert caseload_a == {world.patient_a, world.shared}
    assert caseload_b == {world.patient_b, world.shared}
    admin_sees = {r["id"] for r in _call(base, world.tokens["admin"], "GET",
                                         "/api/patients").json()}
    assert admin_sees == {world.patient_a, world.patient_b, world.shared}
    assert _call(base, world.tokens["admin_other"], "GET", "/api/patients").json() == []
    alerts_a = {a["id"] for a in _call(base, world.tokens["nurse_a"], "GET",
                                       "/api/alerts").json()}
    alerts_b = {a["id"] for a in _call(base, world.tokens["nurse_b"], "GET",
                                       "/api/alerts").json()}
    assert world.alert_b not in alerts_a and world.system_alert_b not in alerts_a
    assert {world.alert_b, world.system_alert_b} <= alerts_b and world.alert_a not in alerts_b


def test_the_caseload_searches_by_name_and_nhs_number(clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    for q in ("ali", "9434765919", "943 476"):
        rows = _call(base, world.tokens["nurse_a"], "GET", "/api/patients", {"q": q}).json()
        assert [r["id"] for r in rows] == [world.patient_a], q


def test_me_names_the_callers_role_and_teams(clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    me = _call(base, world.tokens["lead_a"], "GET", "/api/me").json()
    assert (me["role"], [t["id"] for t in me["teams"]]) == ("team_lead", ["team-a"])


def test_the_event_stream_carries_only_in_scope_alerts(clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    received: list[dict[str, Any]] = []
    connected = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", base + "/api/alerts/stream", timeout=20,
                          headers={"Authorization": f"Bearer {world.tokens['nurse_a']}"}) as r:
            for line in r.iter_lines():
                if line.startswith(": connected"):
                    connected.set()
                if line.startswith("data: "):
                    received.append(orjson.loads(line[6:]))
                    if any(e["patient_id"] == world.patient_a for e in received):
                        return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert connected.wait(10)
    time.sleep(0.5)  # the stream reads its scope on the first event
    nurse_b = world.tokens["nurse_b"]
    assert _call(base, nurse_b, "POST", f"/api/alerts/{world.alert_b}/notes",
                 body={"text": "B only"}).status_code == 201
    assert _call(base, nurse_b, "POST", f"/api/alerts/{world.system_alert_b}/notes",
                 body={"text": "B's system alert"}).status_code == 201
    assert _call(base, world.tokens["nurse_a"], "POST", f"/api/alerts/{world.alert_a}/notes",
                 body={"text": "A's"}).status_code == 201
    thread.join(15)
    assert not thread.is_alive(), "nurse A's own alert event never arrived"
    assert {e["alert_id"] for e in received} == {world.alert_a}


@pytest.mark.hazard("H-009", "H-015")
def test_a_team_an_alert_is_routed_to_outside_the_care_team_can_act_on_it(db_url: str) -> None:
    """The default routing sends night-time alerts to out-of-hours, which is on no care
    team: its nurse sees the alert and, while it is active, its patient's record; a
    third team sees neither; once resolved the record is out of her scope again, the
    alert she handled is not."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        org = admin.create_organisation(conn, name="North Trust")
        for team in ("team-a", "ooh", "team-c"):
            admin.create_team(conn, team_id=team, organisation_id=org, name=team,
                              kind="out_of_hours" if team == "ooh" else "district_nursing")
        olu = admin.create_clinician(conn, username="olu", display_name="Olu",
                                     teams=["ooh"])
        cat = admin.create_clinician(conn, username="cat", display_name="Cat",
                                     teams=["team-c"])
        patient = admin.create_patient(conn, display_name="Alice", teams=["team-a"])
        night = insert_alert(conn, patient, "ooh")
    with running_api(Settings(database_url=db_url)) as base:
        def get(token: str, path: str) -> int:
            return _call(base, token, "GET", path).status_code

        assert night in {a["id"] for a in _call(base, olu.api_token, "GET",
                                                "/api/alerts").json()}
        for path in (f"/api/alerts/{night}", f"/api/patients/{patient}",
                     f"/api/patients/{patient}/readings"):
            assert get(olu.api_token, path) == 200, path
            assert get(cat.api_token, path) == 404, path
        assert _call(base, olu.api_token, "POST", f"/api/alerts/{night}/acknowledge",
                     body={"note": "phoned her"}).status_code == 200
        assert _audited_ok(db_url, olu.id, patient) >= 1
        assert _call(base, olu.api_token, "POST", f"/api/alerts/{night}/resolve",
                     body={"outcome": "advice_given"}).status_code == 200
        assert get(olu.api_token, f"/api/patients/{patient}") == 404
        assert get(olu.api_token, f"/api/alerts/{night}") == 200
