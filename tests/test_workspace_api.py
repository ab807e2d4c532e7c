"""The care-team workspace API as a nurse uses it: the caseload in attention order, a
patient's record, chart series, notes, status changes, personal thresholds, alert
actions that are safe to retry, and the audit of all of it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from pydantic import TypeAdapter

from homeward.settings import Settings
from server.api.routes.record import CaseloadRow
from tests.api_support import running_api
from tests.test_access import Clinic, seed_clinic
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def clinic(db_url: str) -> Iterator[tuple[Clinic, str]]:
    world = seed_clinic(db_url)
    with running_api(Settings(database_url=db_url)) as base:
        yield world, base


def as_(world: Clinic, base: str, who: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=10,
                        headers={"Authorization": f"Bearer {world.tokens[who]}"})


def _events(url: str, alert_id: int) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT event FROM alert_event WHERE alert_id = %s ORDER BY id", (alert_id,))]


def _readings(url: str, patient: int, rows: list[tuple[datetime, str, dict[str, Any]]]) -> None:
    with psycopg.connect(url) as conn:
        for taken_at, kind, values in rows:
            conn.execute(
                'INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values",'
                " received_at) VALUES (gen_random_uuid(), %s, %s, 'hub-b', %s, 'AA:01', %s,"
                " now())", (taken_at, kind, patient, orjson.dumps(values).decode()))


def test_the_caseload_row_has_what_a_nurse_triages_by(clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    now = datetime.now(UTC)
    _readings(world.url, world.patient_b, [
        (now - timedelta(hours=2), "blood_pressure",
         {"systolic": 186, "diastolic": 104, "pulse_rate": 96}),
        (now - timedelta(hours=3), "temperature", {"body_temperature": 38.4})])
    with as_(world, base, "nurse_b") as nurse:
        rows = nurse.get("/api/patients").json()
    # encoded without the response model (for speed), so held to it here
    TypeAdapter(list[CaseloadRow]).validate_python(rows)
    assert all(set(r) == set(CaseloadRow.model_fields) for r in rows)
    # attention order: the patient with the open red alert comes first
    assert [r["id"] for r in rows] == [world.patient_b, world.shared]
    top = rows[0]
    assert (top["open_alerts"], top["highest_severity"]) == (1, "red")
    assert top["latest"]["blood_pressure"]["values"]["systolic"] == 186
    assert top["latest"]["spo2"]["values"]["spo2"] == 91
    # NEWS2 from the latest readings of the day: SpO2 91 (3), systolic 186 (0), pulse
    # 80 from the oximeter (0), temperature 38.4 (1); respiratory rate missing -> partial
    assert top["news2"] == {"total": 4, "partial": True, "response": "low-medium"}
    assert top["hub"]["id"] == "hub-b" and top["teams"][0]["id"] == "team-b"


def test_a_patient_note_lands_on_the_timeline_once(clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    with as_(world, base, "nurse_b") as nurse:
        path = f"/api/patients/{world.shared}/notes"
        first = nurse.post(path, json={"text": "Phoned: feeling better", "team": "team-b"})
        again = nurse.post(path, json={"text": "Phoned: feeling better", "team": "team-b"})
        assert first.status_code == again.status_code == 201
        assert first.json()["id"] == again.json()["id"]  # a retry is not a second note
    with as_(world, base, "nurse_a") as other_team:  # the shared record, seen by team A
        timeline = other_team.get(f"/api/patients/{world.shared}/timeline").json()
    notes = [e for e in timeline if e["type"] == "note"]
    assert [(n["author"], n["team_id"], n["detail"]["text"]) for n in notes] == [
        ("Nurse B", "team-b", "Phoned: feeling better")]


def test_alert_actions_are_safe_to_retry(clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    alert = world.alert_b
    with as_(world, base, "nurse_b") as nurse:
        for action, body, status in (("acknowledge", {"note": "calling"}, 200),
                                     ("snooze", {"minutes": 30, "note": "at GP"}, 200),
                                     ("notes", {"text": "left a message"}, 201)):
            for _ in range(2):  # each sent twice, as a double click or a resend would
                assert nurse.post(f"/api/alerts/{alert}/{action}",
                                  json=body).status_code == status
        assert _events(world.url, alert) == ["acknowledged", "snoozed", "note"]
        snoozed = nurse.get(f"/api/alerts/{alert}").json()
        until = datetime.fromisoformat(snoozed["snoozed_until"])
        assert timedelta(minutes=29) < until - datetime.now(UTC) <= timedelta(minutes=30)
        assert nurse.post(f"/api/alerts/{alert}/snooze", json={}).status_code == 422
        assert nurse.post(f"/api/alerts/{alert}/resolve",
                          json={"outcome": "advice_given"}).status_code == 200
        for action, body in (("resolve", {"outcome": "advice_given"}), ("snooze",
                             {"minutes": 5}), ("acknowledge", {})):
            assert nurse.post(f"/api/alerts/{alert}/{action}", json=body).status_code == 409
    assert _events(world.url, alert).count("resolved") == 1


def test_status_away_needs_an_end_and_discharge_closes_the_episode(
        clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    with as_(world, base, "nurse_b") as nurse:
        path = f"/api/patients/{world.patient_b}/status"
        assert nurse.post(path, json={"status": "away"}).status_code == 422
        back = (datetime.now(UTC) + timedelta(days=3)).isoformat()
        away = nurse.post(path, json={"status": "away", "expected_end": back,
                                      "note": "at her daughter's"})
        assert away.status_code == 200 and away.json()["previous"] == "active"
        out = nurse.post(path, json={"status": "discharged", "note": "back to GP care"})
        assert out.status_code == 200
        assert out.json()["resolved_alerts"] == [world.alert_b]
        detail = nurse.get(f"/api/patients/{world.patient_b}").json()
        alert = nurse.get(f"/api/alerts/{world.alert_b}").json()
    assert detail["status"] == "discharged"
    assert [s["status"] for s in detail["status_history"]] == ["discharged", "away"]
    assert detail["hubs"][0]["valid_to"] is not None  # the enrolment ended
    assert (alert["state"], alert["outcome"]) == ("resolved", "discharged")
    with psycopg.connect(world.url) as conn:  # a reading after discharge has no patient
        row = conn.execute("SELECT count(*) FROM enrolment WHERE hub_id = 'hub-b' AND"
                           " (valid_to IS NULL OR valid_to > now())").fetchone()
    assert row == (0,)


@pytest.mark.hazard("H-007", "H-017")
def test_a_personal_threshold_needs_a_reason_and_keeps_its_history(
        clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    now = datetime.now(UTC)
    path = f"/api/patients/{world.patient_b}/rules/bp_severe"
    with as_(world, base, "nurse_b") as nurse:
        assert nurse.put(path, json={"overrides": {}}).status_code == 422  # no reason
        assert nurse.put(f"/api/patients/{world.patient_b}/rules/no_such_rule",
                         json={"reason": "x"}).status_code == 422
        today = nurse.put(path, json={"enabled": False, "reason": "palliative: no BP alerts"})
        assert today.status_code == 200, today.text
        back = nurse.put(path, json={"enabled": True, "reason": "should have applied",
                                     "valid_from": (now - timedelta(days=3)).isoformat()})
        assert back.status_code == 200
        detail = nurse.get(f"/api/patients/{world.patient_b}").json()
    rows = sorted(detail["rule_settings"], key=lambda r: r["valid_from"])
    assert [r["enabled"] for r in rows] == [True, False]
    assert rows[0]["valid_to"] == rows[1]["valid_from"]  # no overlap
    assert rows[1]["note"] == "palliative: no BP alerts" and rows[1]["set_by_name"] == "Nurse B"


def test_series_picks_its_resolution_by_range(clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    now = datetime.now(UTC).replace(microsecond=0)
    _readings(world.url, world.patient_b, [(now - timedelta(minutes=10 * i), "spo2",
                                            {"spo2": 90 + i % 5, "pulse_rate": 70})
                                           for i in range(1, 300)])
    with as_(world, base, "nurse_b") as nurse:
        def get(days: float) -> dict[str, Any]:
            response = nurse.get(f"/api/patients/{world.patient_b}/series", params={
                "kind": "spo2", "metric": "spo2", "to": now.isoformat(),
                "from": (now - timedelta(days=days)).isoformat()})
            assert response.status_code == 200, response.text
            return response.json()  # type: ignore[no-any-return]

        day, week, quarter = get(1), get(7), get(90)
    # every 10 minutes back to exactly 24 h ago (144), and the seeded reading of an hour ago
    assert day["resolution"] == "raw" and len(day["points"]) == 145
    assert week["resolution"] == "hour"
    assert sum(p["n"] for p in week["points"]) == 300  # every reading counted once
    assert all(p["min"] <= p["mean"] <= p["max"] for p in week["points"])
    assert quarter["resolution"] == "day" and len(quarter["points"]) <= 91


@pytest.mark.hazard("H-015")
def test_the_audit_shows_who_opened_the_record(clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    with as_(world, base, "nurse_b") as nurse:
        nurse.get(f"/api/patients/{world.patient_b}", headers={"X-Request-ID": "req-42"})
        nurse.get(f"/api/patients/{world.patient_b}/series",
                  params={"kind": "spo2", "metric": "spo2"})
        # rows are written as each request ends, which may be just after its response
        wait_for(lambda: "GET /api/patients/{patient_id}/series" in {
            r["action"] for r in nurse.get(f"/api/patients/{world.patient_b}/audit").json()},
            5, "the audit rows of both reads")
        mine = nurse.get(f"/api/patients/{world.patient_b}/audit").json()
        assert nurse.get("/api/audit").status_code == 403
    with as_(world, base, "nurse_a") as outsider:
        assert outsider.get(f"/api/patients/{world.patient_b}").status_code == 404
    with as_(world, base, "admin") as boss:
        wait_for(lambda: boss.get("/api/audit", params={"clinician": world.ids["nurse_a"]}
                                  ).json(), 5, "nurse A's refused attempt in the audit")
        rows = boss.get("/api/audit", params={"patient": world.patient_b}).json()
        by_clinician = boss.get("/api/audit",
                                params={"clinician": world.ids["nurse_a"]}).json()
    opened = [r for r in mine if r["action"] == "GET /api/patients/{patient_id}"]
    assert opened and opened[-1]["request_id"] == "req-42"
    assert opened[-1]["display_name"] == "Nurse B" and opened[-1]["outcome"] == "ok"
    assert {r["action"] for r in rows} >= {"GET /api/patients/{patient_id}",
                                           "GET /api/patients/{patient_id}/series"}
    # nurse A's refused attempt is recorded without naming the patient she probed
    assert [(r["outcome"], r["patient_id"]) for r in by_clinician] == [("not_found", None)]


def test_a_dense_day_is_answered_in_minute_buckets_not_cut_short(
        clinic: tuple[Clinic, str]) -> None:
    world, base = clinic
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(world.url, autocommit=True) as conn:  # 7 h of 1 Hz oximetry
        conn.execute(
            'INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values",'
            " received_at) SELECT gen_random_uuid(), %s - s * interval '1 second', 'spo2',"
            " 'hub-b', %s, 'AA:01', jsonb_build_object('spo2', 90 + s %% 7), now()"
            " FROM generate_series(1, 25200) s", (now, world.patient_b))
    with as_(world, base, "nurse_b") as nurse:
        day = nurse.get(f"/api/patients/{world.patient_b}/series", params={
            "kind": "spo2", "metric": "spo2", "to": now.isoformat(),
            "from": (now - timedelta(days=1)).isoformat()}).json()
    assert day["resolution"] == "minute"
    assert sum(p["n"] for p in day["points"]) == 25200 + 1  # and the seeded reading
    assert day["points"][-1]["t"] >= (now - timedelta(minutes=1)).isoformat()
