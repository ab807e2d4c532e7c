# ruff: noqa: F811  -- pytest fixtures imported from tests/test_alerts_support.py
"""Working together, as scenarios on an injected clock: the real API (uvicorn) and the
real alert service share one clock and one database; e-mail goes to a real SMTP server.

- An out-of-hours nurse hands an alert to the COPD team at 07:55 with an SBAR note;
  nobody accepts within the COPD team's 30 minutes, so it escalates there; a COPD nurse
  accepts; each step is on the shared timeline, for both teams.
- A GP practice of another organisation: 404 before it is on the care team, the shared
  timeline once it accepts the invitation, 404 again once removed; the audit shows all.
- An overdue task escalates through the owning team's policy and reaches a person by
  e-mail.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest

from alerts import store
from alerts.sample_data import add_clinician, add_team
from homeward.settings import Settings
from server import admin
from tests.api_support import running_api
from tests.test_alerts_support import (  # noqa: F401 -- fixtures
    MONDAY,
    Clock,
    build_world,
    conn,
    make_service,
    smtp_server,
    vitals,
)

pytestmark = pytest.mark.integration

SBAR = {"situation": "SpO2 85 % on air at 07:45, usual 92 %",
        "background": "COPD, on the COPD team's caseload; rescue pack at home",
        "assessment": "Probable exacerbation; not in distress on the phone",
        "recommendation": "COPD nurse to call her this morning and review the rescue pack"}


@dataclass
class Scene:
    db_url: str
    api: str
    clock: Clock
    world: dict[str, Any]
    tokens: dict[str, str]

    def call(self, who: str, method: str, path: str, body: Any = None,
             params: Any = None) -> httpx.Response:
        return httpx.request(method, self.api + path, json=body, params=params, timeout=10,
                             headers={"Authorization": f"Bearer {self.tokens[who]}"})

    def ok(self, who: str, method: str, path: str, body: Any = None, params: Any = None,
           status: int = 200) -> Any:
        response = self.call(who, method, path, body, params)
        assert response.status_code == status, response.text
        return response.json() if response.content else None


@pytest.fixture
def scene(db_url: str, conn: psycopg.Connection) -> Iterator[Scene]:
    world = build_world(conn)
    tokens = {name: admin.rotate_api_token(conn, clinician_id=world[name])
              for name in ("amy", "ben", "olu")}
    clock = Clock(MONDAY + timedelta(hours=7, minutes=50))  # Monday 07:50, GMT
    with running_api(Settings(database_url=db_url), clock=clock) as api:
        yield Scene(db_url, api, clock, world, tokens)


def subject(mail: Any) -> str:
    """A mail's subject unfolded (a long header is folded onto several lines)."""
    return " ".join(str(mail["Subject"]).split())


def _types(timeline: list[dict[str, Any]], prefix: str) -> list[str]:
    return [e["type"] for e in reversed(timeline) if e["type"].startswith(prefix)]


@pytest.mark.hazard("H-018")
def test_an_unanswered_hand_over_escalates_at_the_receiving_team_and_is_then_accepted(
        scene: Scene, conn: psycopg.Connection, smtp_server: Any) -> None:
    svc = make_service(scene.clock, smtp_server.port)
    patient = scene.world["patient"]
    vitals(conn, patient, scene.clock.now - timedelta(minutes=5), spo2=85)
    svc.step(conn)
    (alert,) = [a for a in store.list_alerts(conn) if a["rule_id"] == "spo2_low"]
    assert alert["team_id"] == "out-of-hours"  # before 08:00 the routing tree says so

    # 07:55 Olu (out of hours) hands it over to the COPD team, with an SBAR note.
    scene.clock.set(MONDAY + timedelta(hours=7, minutes=55))
    offered = scene.ok("olu", "POST", f"/api/alerts/{alert['id']}/handover",
                       {"to_team": "copd-north", "note": SBAR}, status=201)
    assert offered["state"] == "offered"
    assert offered["respond_by"].startswith("2026-11-23T08:25")
    # Both teams' queues show it; the COPD team may read the record to decide.
    assert [h["id"] for h in scene.ok("amy", "GET", "/api/handovers",
                                      params={"state": "offered"})] == [offered["id"]]
    assert [h["id"] for h in scene.ok("olu", "GET", "/api/handovers")] == [offered["id"]]
    scene.ok("amy", "GET", f"/api/patients/{patient}/timeline")
    # Only the receiving team answers; the sender cannot accept its own offer.
    assert scene.call("olu", "POST", f"/api/handovers/{offered['id']}/accept"
                      ).status_code == 403

    # 08:10: not accepted yet, so the out-of-hours team still holds it and its
    # escalation keeps running.
    scene.clock.set(MONDAY + timedelta(hours=8, minutes=10))
    svc.step(conn)
    held = store.get_alert(conn, alert["id"])
    assert held["team_id"] == "out-of-hours" and held["escalation_level"] >= 1

    # 08:26: past the COPD team's 30 minutes: it escalates at the COPD team, where Amy
    # is on duty from 08:00, and Olu is told.
    scene.clock.set(MONDAY + timedelta(hours=8, minutes=26))
    svc.step(conn)
    (escalation,) = [a for a in store.list_alerts(conn)
                     if a["rule_id"] == f"system.handover_unanswered.{offered['id']}"]
    assert escalation["team_id"] == "copd-north" and escalation["state"] == "open"
    assert escalation["patient_id"] == patient
    assert any("Hand-over waiting" in subject(m) for m in smtp_server.to("amy@example.nhs.uk"))
    assert any(subject(m).startswith("Hand-over not yet accepted")
               for m in smtp_server.to("olu@example.nhs.uk"))

    # 08:40 Amy accepts: the alert is the COPD team's now, under its escalation.
    scene.clock.set(MONDAY + timedelta(hours=8, minutes=40))
    accepted = scene.ok("amy", "POST", f"/api/handovers/{offered['id']}/accept")
    assert accepted["state"] == "accepted"
    assert store.get_alert(conn, alert["id"])["team_id"] == "copd-north"
    assert store.get_alert(conn, escalation["id"])["state"] == "auto_resolved"
    svc.step(conn)
    moved = store.get_alert(conn, alert["id"])
    assert moved["escalation_level"] == 0
    assert [e["event"] for e in moved["events"]][-2:] == ["handed_over", "handed_over"]
    assert moved["events"][-1]["detail"]["team_id"] == "copd-north"  # level 0 of copd-north
    olu_subjects = [subject(m) for m in smtp_server.to("olu@example.nhs.uk")]
    assert any(x.startswith("Hand-over accepted") for x in olu_subjects), "\n".join(olu_subjects)
    # A second answer is refused: it was answered.
    assert scene.call("amy", "POST", f"/api/handovers/{offered['id']}/decline",
                      {"reason": "late"}).status_code == 409

    # The shared timeline shows each step, with team and organisation, to both teams.
    for who in ("olu", "amy"):
        timeline = scene.ok(who, "GET", f"/api/patients/{patient}/timeline")
        assert _types(timeline, "handover.") == ["handover.offered", "handover.escalated",
                                                 "handover.accepted"], who
        steps = {e["type"]: e for e in timeline if e["type"].startswith("handover.")}
        assert steps["handover.offered"]["team_id"] == "out-of-hours"
        assert steps["handover.offered"]["detail"]["note"] == SBAR
        assert steps["handover.accepted"]["author"] == "Amy"
        assert steps["handover.accepted"]["organisation"] == "Test Trust"


@pytest.mark.hazard("H-018")
def test_a_declined_hand_over_stays_with_the_sender(scene: Scene,
                                                    conn: psycopg.Connection) -> None:
    svc = make_service(scene.clock)
    vitals(conn, scene.world["patient"], scene.clock.now, spo2=85)
    svc.step(conn)
    (alert,) = [a for a in store.list_alerts(conn) if a["rule_id"] == "spo2_low"]
    offered = scene.ok("olu", "POST", f"/api/alerts/{alert['id']}/handover",
                       {"to_team": "copd-north", "note": SBAR}, status=201)
    assert scene.call("amy", "POST", f"/api/handovers/{offered['id']}/decline",
                      {"reason": ""}).status_code == 422
    declined = scene.ok("amy", "POST", f"/api/handovers/{offered['id']}/decline",
                        {"reason": "She is under the respiratory ward since Friday"})
    assert declined["state"] == "declined"
    assert store.get_alert(conn, alert["id"])["team_id"] == "out-of-hours"
    # a hand-over needs all four parts of the note
    thin = {**SBAR, "assessment": "  "}
    assert scene.call("olu", "POST", f"/api/alerts/{alert['id']}/handover",
                      {"to_team": "copd-north", "note": thin}).status_code == 422


def _audit(db_url: str, clinician: int, patient: int) -> list[tuple[str, str]]:
    with psycopg.connect(db_url) as c:
        return [(r[0], r[1]) for r in c.execute(
            "SELECT action, outcome FROM access_audit WHERE clinician_id = %s"
            " AND (patient_id = %s OR patient_id IS NULL) AND action LIKE %s ORDER BY id",
            (clinician, patient, "%/timeline"))]


@pytest.mark.hazard("H-015")
def test_a_gp_practice_of_another_organisation_sees_the_patient_only_while_on_the_care_team(
        scene: Scene, conn: psycopg.Connection) -> None:
    patient = scene.world["patient"]
    gp_org = admin.create_organisation(conn, name="Riverside Practice")
    admin.create_team(conn, team_id="riverside-gp", organisation_id=gp_org,
                      name="Riverside GP", kind="gp_practice")
    gp = admin.create_clinician(conn, username="dr-gill", display_name="Dr Gill",
                                role="team_lead", teams=["riverside-gp"])
    scene.tokens["gill"] = gp.api_token
    path = f"/api/patients/{patient}/timeline"

    assert scene.call("gill", "GET", path).status_code == 404  # not on the care team
    invitation = scene.ok("amy", "POST", f"/api/patients/{patient}/care-team",
                          {"team": "riverside-gp", "role": "contributor",
                           "note": "Please follow her inhaler review"}, status=201)
    assert invitation["state"] == "offered"  # another organisation: an invitation
    assert scene.call("gill", "GET", path).status_code == 404  # not yet accepted
    scene.clock.set(scene.clock.now + timedelta(hours=1))
    mine = scene.ok("gill", "GET", "/api/care-team-invitations", params={"state": "offered"})
    assert [i["id"] for i in mine] == [invitation["id"]]
    # a nurse of the inviting team cannot answer for the GP practice
    assert scene.call("amy", "POST", f"/api/care-team-invitations/{invitation['id']}/accept"
                      ).status_code in (403, 404)
    scene.ok("gill", "POST", f"/api/care-team-invitations/{invitation['id']}/accept")
    timeline = scene.ok("gill", "GET", path)
    assert "care_team.joined" in _types(timeline, "care_team.")
    teams = scene.ok("gill", "GET", f"/api/patients/{patient}/care-team")
    assert {t["team_id"]: t["organisation"] for t in teams}["riverside-gp"] == \
        "Riverside Practice"

    scene.clock.set(scene.clock.now + timedelta(days=1))
    removed = scene.call("amy", "DELETE", f"/api/patients/{patient}/care-team/riverside-gp")
    assert removed.status_code == 204, removed.text
    assert scene.call("gill", "GET", path).status_code == 404
    assert _audit(scene.db_url, gp.id, patient) == [
        ("GET /api/patients/{patient_id}/timeline", "not_found"),
        ("GET /api/patients/{patient_id}/timeline", "not_found"),
        ("GET /api/patients/{patient_id}/timeline", "ok"),
        ("GET /api/patients/{patient_id}/timeline", "not_found")]
    # and the record keeps who joined and left, for everyone on the care team
    left = scene.ok("amy", "GET", path)
    assert _types(left, "care_team.") == ["care_team.invited", "care_team.joined",
                                          "care_team.left"]


@pytest.mark.hazard("H-018")
def test_an_overdue_task_escalates_by_email_and_closes_when_done(
        scene: Scene, conn: psycopg.Connection, smtp_server: Any) -> None:
    svc = make_service(scene.clock, smtp_server.port)
    patient = scene.world["patient"]
    scene.clock.set(MONDAY + timedelta(hours=9))
    due = MONDAY + timedelta(hours=10)
    # Olu is not on the care team (the patient is not in his scope): 404
    assert scene.call("olu", "POST", "/api/tasks", {
        "patient_id": patient, "team": "copd-north", "title": "Review",
        "due": due.isoformat()}).status_code == 404
    # a task for a team outside the care team is refused
    add_team(conn, "gp-elsewhere", kind="gp_practice")
    assert scene.call("ben", "POST", "/api/tasks", {
        "patient_id": patient, "team": "gp-elsewhere", "title": "Review",
        "due": due.isoformat()}).status_code == 422
    task = scene.ok("ben", "POST", "/api/tasks", {
        "patient_id": patient, "team": "copd-north", "title": "Review the rescue pack",
        "detail": "She used it twice this week", "due": due.isoformat(),
        "priority": "urgent"}, status=201)
    assert task["state"] == "requested" and task["overdue"] is False
    queue = scene.ok("amy", "GET", "/api/tasks", params={"team": "copd-north",
                                                        "state": "open"})
    assert [t["id"] for t in queue] == [task["id"]]
    scene.ok("amy", "POST", f"/api/tasks/{task['id']}/claim")

    scene.clock.set(due + timedelta(minutes=1))  # overdue
    svc.step(conn)
    (overdue,) = [a for a in store.list_alerts(conn)
                  if a["rule_id"] == f"system.task_overdue.{task['id']}"]
    assert overdue["team_id"] == "copd-north" and overdue["severity"] == "red"
    mails = [m for m in smtp_server.to("amy@example.nhs.uk") if "Task overdue" in subject(m)]
    assert len(mails) == 1 and "Review the rescue pack" in subject(mails[0])
    svc.step(conn)  # once: not raised again
    assert len([a for a in store.list_alerts(conn)
                if a["rule_id"] == f"system.task_overdue.{task['id']}"]) == 1

    assert scene.call("amy", "POST", f"/api/tasks/{task['id']}/complete",
                      {"note": ""}).status_code == 422
    done = scene.ok("amy", "POST", f"/api/tasks/{task['id']}/complete",
                    {"note": "Called her; pack restocked; GP informed"})
    assert done["state"] == "completed"
    assert store.get_alert(conn, overdue["id"])["state"] == "auto_resolved"
    timeline = scene.ok("ben", "GET", f"/api/patients/{patient}/timeline")
    assert _types(timeline, "task.") == ["task.requested", "task.claimed", "task.completed"]
    assert scene.call("ben", "POST", f"/api/tasks/{task['id']}/cancel").status_code == 409


def test_a_lead_hand_over_moves_the_lead_and_keeps_the_sender_on_the_care_team(
        scene: Scene, conn: psycopg.Connection) -> None:
    patient = scene.world["patient"]
    conn.execute("UPDATE patient_team SET lead = true WHERE patient_id = %s"
                 " AND team_id = 'copd-north'", (patient,))
    hf = add_team(conn, "hf-north", kind="heart_failure")
    nia = add_clinician(conn, "nia", teams=[hf])
    scene.tokens["nia"] = admin.rotate_api_token(conn, clinician_id=nia)
    offered = scene.ok("amy", "POST", f"/api/patients/{patient}/handover",
                       {"to_team": "hf-north", "note": SBAR}, status=201)
    assert offered["kind"] == "lead"
    assert scene.call("amy", "DELETE", f"/api/patients/{patient}/care-team/copd-north"
                      ).status_code == 409  # the lead cannot leave
    scene.ok("nia", "POST", f"/api/handovers/{offered['id']}/accept")
    roles = {t["team_id"]: t["role"]
             for t in scene.ok("nia", "GET", f"/api/patients/{patient}/care-team")}
    assert roles["hf-north"] == "lead" and roles["copd-north"] == "contributor"


def test_an_admin_answers_only_for_her_own_organisations_teams(
        scene: Scene, conn: psycopg.Connection) -> None:
    """The sending organisation's admin sees the hand-over (her team sent it) but cannot
    accept it for a team of another organisation; that team's admin can."""
    svc = make_service(scene.clock)
    vitals(conn, scene.world["patient"], scene.clock.now, spo2=85)
    svc.step(conn)
    (alert,) = [a for a in store.list_alerts(conn) if a["rule_id"] == "spo2_low"]
    other_org = admin.create_organisation(conn, name="Hillside Trust")
    admin.create_team(conn, team_id="hillside-copd", organisation_id=other_org,
                      name="Hillside COPD", kind="copd")
    home = admin.create_clinician(conn, username="home-admin", display_name="Home Admin",
                                  role="admin", teams=["out-of-hours"])
    away = admin.create_clinician(conn, username="away-admin", display_name="Away Admin",
                                  role="admin", organisation_id=other_org)
    scene.tokens |= {"home": home.api_token, "away": away.api_token}
    offered = scene.ok("olu", "POST", f"/api/alerts/{alert['id']}/handover",
                       {"to_team": "hillside-copd", "note": SBAR}, status=201)
    assert scene.call("home", "GET", f"/api/handovers/{offered['id']}").status_code == 200
    assert scene.call("home", "POST", f"/api/handovers/{offered['id']}/accept"
                      ).status_code == 403
    assert scene.ok("away", "POST", f"/api/handovers/{offered['id']}/accept"
                    )["state"] == "accepted"
