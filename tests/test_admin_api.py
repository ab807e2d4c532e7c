"""The admin API under a real uvicorn server on a real PostgreSQL (and Mosquitto for
pairing): an organisation set up from its first admin, invitations that set a password
once and expire, deactivation and token rotation that take effect at once, devices
that reach the hub as its retained config, and every write audited."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from homeward.settings import Settings
from server import admin, invites
from stack.services import MosquittoServer
from tests.api_support import running_api
from tests.broker_support import CONFIG, PASSWORDS, Probe, dynsec_broker, settings_for
from tests.test_admin_cli import RetainedConfig
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

PASSWORD = "a sensible passphrase"


@dataclass
class Trust:
    base: str
    db_url: str
    admin_id: int
    api: httpx.Client          # as the admin
    broker: MosquittoServer

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=10,
                            headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def trust(db_url: str, mosquitto: MosquittoServer) -> Iterator[Trust]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        made = admin.bootstrap(conn, organisation="North Trust", username="ann",
                               display_name="Ann Admin")
    settings = Settings(database_url=db_url, mqtt_port=mosquitto.port)
    with running_api(settings) as base, httpx.Client(
            base_url=base, timeout=10,
            headers={"Authorization": f"Bearer {made.admin.api_token}"}) as api:
        yield Trust(base, db_url, made.admin.id, api, mosquitto)


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def setup_team_and_nurse(t: Trust, *, password: str | None = PASSWORD) -> dict[str, Any]:
    ok(t.api.post("/api/admin/teams", json={"id": "copd", "name": "COPD", "kind": "copd",
                                            "email": "copd@example.nhs.uk"}), 201)
    body: dict[str, Any] = {"username": "nina", "display_name": "Nina Nurse",
                            "teams": ["copd"]}
    if password:
        body["password"] = password
    return dict(ok(t.api.post("/api/admin/clinicians", json=body), 201))


def test_an_admin_sets_up_teams_clinicians_patients_and_hubs(trust: Trust) -> None:
    t = trust
    team = ok(t.api.post("/api/admin/teams", json={
        "id": "hf", "name": "Heart Failure", "kind": "heart_failure",
        "webhook_url": "https://hooks.example/hf", "escalation_policy": "urgent"}), 201)
    assert (team["escalation_policy"], team["members"], team["shifts"]) == ("urgent", 0, [])
    team = ok(t.api.put("/api/admin/teams/hf/shifts/night",
                        json={"starts": "20:00", "ends": "08:00"}))
    assert team["shifts"] == [{"name": "night", "starts": "20:00", "ends": "08:00",
                               "timezone": "Europe/London"}]
    made = ok(t.api.post("/api/admin/clinicians", json={
        "username": "lee", "display_name": "Lee Lead", "role": "team_lead", "teams": ["hf"],
        "password": PASSWORD}), 201)
    assert made["invite_url"] is None and made["clinician"]["teams"] == ["hf"]
    lee = made["clinician"]["id"]
    changed = ok(t.api.patch(f"/api/admin/clinicians/{lee}", json={"role": "nurse"}))
    assert changed["role"] == "nurse"
    patient = ok(t.api.post("/api/admin/patients", json={
        "display_name": "Alice", "nhs_number": "943 476 5919", "teams": ["hf"],
        "lead": "hf", "date_of_birth": "1941-02-03"}), 201)
    assert (patient["nhs_number"], patient["care_teams"], patient["lead_team"]) == (
        "9434765919", ["hf"], "hf")
    hub = ok(t.api.post("/api/admin/hubs", json={"id": "hub-9"}), 201)
    assert hub["devices"] == [] and hub["organisation_id"] is not None
    enrolment = ok(t.api.post(f"/api/admin/patients/{patient['id']}/enrolments",
                              json={"hub_id": "hub-9"}), 201)
    assert enrolment["hub_id"] == "hub-9"
    assert [p["hub_id"] for p in ok(t.api.get("/api/admin/patients"))] == ["hub-9"]
    # and the nurse sees her caseload through the ordinary API
    with t.client(made["api_token"]) as lee_api:
        assert [p["id"] for p in ok(lee_api.get("/api/patients"))] == [patient["id"]]


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), [
    ("post", "/api/admin/patients", {"display_name": "P", "teams": ["copd"],
                                     "nhs_number": "943 476 5918"}, 422, "Modulus 11"),
    ("post", "/api/admin/patients", {"display_name": "P", "teams": ["ghost"]}, 404,
     "unknown team 'ghost'"),
    ("post", "/api/admin/clinicians", {"username": "nina", "display_name": "Again",
                                       "password": PASSWORD}, 409, "username taken"),
    ("post", "/api/admin/clinicians", {"username": "zed", "display_name": "Zed",
                                       "teams": ["ghost"]}, 404, "unknown team 'ghost'"),
    ("post", "/api/admin/teams", {"id": "copd", "name": "X", "kind": "copd"}, 409,
     "team id taken"),
    ("post", "/api/admin/teams", {"id": "x", "name": "X", "kind": "copd",
                                  "escalation_policy": "nope"}, 404,
     "unknown escalation policy"),
    ("patch", "/api/admin/teams/copd", {"fallback_team": "copd"}, 409, "its own fallback"),
    ("patch", "/api/admin/teams/copd", {"name": None}, 422, "name cannot be empty"),
    ("patch", "/api/admin/teams/copd", {"name": "\x00"}, 422, "should match pattern"),
    ("post", "/api/admin/clinicians", {"username": "zed", "display_name": " \x00 "}, 422,
     "should match pattern"),
    ("post", "/api/admin/hubs/hub-0/credentials", None, 409,
     "HOMEWARD_MQTT_PROVISIONER_PASSWORD is not set"),
    ("post", "/api/admin/hubs", {"id": "homeward-api"}, 422, "bad hub id"),
    ("put", "/api/admin/teams/copd/rota", {"shifts": [
        {"clinician": "ghost", "starts_at": "2026-03-02T08:00:00Z",
         "ends_at": "2026-03-02T18:00:00Z"}]}, 404, "unknown clinician 'ghost'"),
])
def test_refusals_say_what_is_wrong(trust: Trust, method: str, path: str,
                                    body: dict[str, Any] | None, status: int, words: str
                                    ) -> None:
    setup_team_and_nurse(trust)
    ok(trust.api.post("/api/admin/hubs", json={"id": "hub-0"}), 201)
    response = trust.api.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert words in response.text


def test_an_invitation_sets_a_password_once(trust: Trust) -> None:
    made = setup_team_and_nurse(trust, password=None)
    link = made["invite_url"]
    assert "/invite/" in link
    path = "/invite/" + link.rsplit("/invite/", 1)[1]
    with httpx.Client(base_url=trust.base, timeout=10) as browser:
        page = browser.get(path)
        assert page.status_code == 200 and "Welcome, Nina Nurse" in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert browser.post("/login", data={"username": "nina", "password": PASSWORD}
                            ).status_code == 401  # no password yet
        differ = browser.post(path, data={"password": PASSWORD, "confirm": PASSWORD + "x"})
        assert differ.status_code == 422 and "differ" in differ.text
        short = browser.post(path, data={"password": "short", "confirm": "short"})
        assert short.status_code == 422
        done = browser.post(path, data={"password": PASSWORD, "confirm": PASSWORD})
        assert done.status_code == 200 and "Your password is set" in done.text
        signed_in = browser.post("/login", data={"username": "nina", "password": PASSWORD},
                                 follow_redirects=False)
        assert signed_in.status_code == 303
        # one time: the same link again is gone, and cannot change the password
        again = httpx.post(trust.base + path, data={"password": "another long passphrase",
                                                    "confirm": "another long passphrase"})
        assert again.status_code == 410 and "expired or been used" in again.text
        assert httpx.get(trust.base + path).status_code == 410
    assert httpx.post(trust.base + "/login", data={
        "username": "nina", "password": "another long passphrase"}).status_code == 401


def test_an_invitation_expires(trust: Trust) -> None:
    made = setup_team_and_nurse(trust, password=None)
    with psycopg.connect(trust.db_url, autocommit=True) as conn:
        token = invites.create_invite(conn, clinician_id=made["clinician"]["id"],
                                      ttl=timedelta(hours=1),
                                      now=datetime.now(UTC) - timedelta(hours=2))
    page = httpx.post(f"{trust.base}/invite/{token}",
                      data={"password": PASSWORD, "confirm": PASSWORD})
    assert page.status_code == 410
    assert httpx.get(f"{trust.base}/invite/not-a-token").status_code == 410
    # a fresh one from the admin API works
    fresh = ok(trust.api.post(f"/api/admin/clinicians/{made['clinician']['id']}/invite",
                              json={"hours": 2}), 201)
    path = "/invite/" + fresh["invite_url"].rsplit("/invite/", 1)[1]
    assert httpx.post(trust.base + path, data={"password": PASSWORD, "confirm": PASSWORD}
                      ).status_code == 200


@pytest.mark.hazard("H-015")
def test_a_deactivated_clinician_can_neither_sign_in_nor_use_her_token(trust: Trust) -> None:
    made = setup_team_and_nurse(trust)
    nurse_id = made["clinician"]["id"]
    with trust.client(made["api_token"]) as nina:
        assert nina.get("/api/me").status_code == 200
        gone = ok(trust.api.post(f"/api/admin/clinicians/{nurse_id}/deactivate"))
        assert (gone["active"], gone["has_password"]) == (False, False)
        assert nina.get("/api/me").status_code == 401
    assert httpx.post(trust.base + "/login", data={"username": "nina", "password": PASSWORD}
                      ).status_code == 401
    assert trust.api.post(f"/api/admin/clinicians/{nurse_id}/token").status_code == 409
    assert trust.api.post(f"/api/admin/clinicians/{nurse_id}/invite",
                          json={}).status_code == 409
    # an admin cannot lock herself out through the API
    me = trust.admin_id
    assert trust.api.post(f"/api/admin/clinicians/{me}/deactivate").status_code == 409
    assert trust.api.patch(f"/api/admin/clinicians/{me}", json={"role": "nurse"}
                           ).status_code == 409


@pytest.mark.hazard("H-015")
def test_rotating_a_token_invalidates_the_old_one(trust: Trust) -> None:
    made = setup_team_and_nurse(trust)
    new = ok(trust.api.post(f"/api/admin/clinicians/{made['clinician']['id']}/token"))
    with trust.client(made["api_token"]) as old, trust.client(new["api_token"]) as fresh:
        assert old.get("/api/me").status_code == 401
        assert fresh.get("/api/me").json()["username"] == "nina"


def test_pair_and_unpair_through_the_api_reach_the_hub(trust: Trust) -> None:
    ok(trust.api.post("/api/admin/hubs", json={"id": "hub-5"}), 201)
    seen = RetainedConfig(trust.broker.port, "hub-5")
    try:
        first = ok(trust.api.post("/api/admin/hubs/hub-5/devices", json={
            "address": "C4:7C:8D:6A:3E:21", "kind": "blood_pressure", "name": "Cuff"}))
        assert first["devices"] == [{"address": "C4:7C:8D:6A:3E:21",
                                     "kind": "blood_pressure", "name": "Cuff"}]
        assert seen.next(1)["devices"] == first["devices"]
        ok(trust.api.post("/api/admin/hubs/hub-5/devices",
                          json={"address": "AA:01", "kind": "spo2"}))
        assert len(seen.next(2)["devices"]) == 2
        after = ok(trust.api.delete("/api/admin/hubs/hub-5/devices/C4:7C:8D:6A:3E:21"))
        assert seen.next(3)["devices"] == after["devices"] == [
            {"address": "AA:01", "kind": "spo2", "name": None}]
    finally:
        seen.close()
    assert trust.api.delete("/api/admin/hubs/hub-5/devices/C4:7C:8D:6A:3E:21"
                            ).status_code == 404


def test_a_rota_put_and_got_is_the_same_rota(trust: Trust) -> None:
    setup_team_and_nurse(trust)
    shifts = [{"clinician": "nina", "level": 0, "starts_at": "2026-03-02T08:00:00Z",
               "ends_at": "2026-03-02T18:00:00Z"},
              {"clinician": "nina", "level": 1, "starts_at": "2026-03-03T08:00:00Z",
               "ends_at": "2026-03-03T18:00:00Z"}]
    for _ in range(2):  # putting it twice replaces, not doubles
        ok(trust.api.put("/api/admin/teams/copd/rota", json={"shifts": shifts}))
    got = ok(trust.api.get("/api/admin/teams/copd/rota",
                           params={"from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"}))
    assert [(s["level"], s["starts_at"]) for s in got] == [
        (0, "2026-03-02T08:00:00Z"), (1, "2026-03-03T08:00:00Z")]
    ok(trust.api.put("/api/admin/teams/copd/rota", json={"shifts": got}))
    assert ok(trust.api.get("/api/admin/teams/copd/rota", params={
        "from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"})) == got


def test_every_admin_write_is_audited_with_its_outcome(trust: Trust) -> None:
    setup_team_and_nurse(trust)
    trust.api.post("/api/admin/teams", json={"id": "copd", "name": "X", "kind": "copd"})

    def rows() -> list[tuple[str, str]]:
        with psycopg.connect(trust.db_url) as conn:
            return [(r[0], r[1]) for r in conn.execute(
                "SELECT action, outcome FROM access_audit WHERE clinician_id = %s"
                " ORDER BY id", (trust.admin_id,)).fetchall()]

    wait_for(lambda: len(rows()) == 3, 5, "three audit rows")
    assert rows() == [("POST /api/admin/teams", "ok"), ("POST /api/admin/clinicians", "ok"),
                      ("POST /api/admin/teams", "refused")]


def test_hub_credentials_through_the_api(db_url: str,
                                         mosquitto_factory: Callable[..., MosquittoServer]
                                         ) -> None:
    """Provisioned: the bundle's password logs in; again: 409 unless replace, which
    refuses the old password; revoked: refused, and recorded."""
    broker = dynsec_broker(mosquitto_factory)
    with psycopg.connect(db_url, autocommit=True) as conn:
        made = admin.bootstrap(conn, organisation="T", username="ann", display_name="Ann")
    settings = settings_for(broker, CONFIG, PASSWORDS[CONFIG], database_url=db_url)
    with running_api(settings) as base, httpx.Client(
            base_url=base, timeout=15,
            headers={"Authorization": f"Bearer {made.admin.api_token}"}) as api:
        ok(api.post("/api/admin/hubs", json={"id": "hub-3"}), 201)
        first = ok(api.post("/api/admin/hubs/hub-3/credentials"), 201)
        assert (first["hub_id"], first["broker_url"]) == (
            "hub-3", f"mqtt://127.0.0.1:{broker.port}")
        assert _login(broker, "hub-3", first["password"]) == "Success"
        assert api.post("/api/admin/hubs/hub-3/credentials").status_code == 409
        second = ok(api.post("/api/admin/hubs/hub-3/credentials",
                             params={"replace": "true"}), 201)
        assert _login(broker, "hub-3", first["password"]) != "Success"
        assert _login(broker, "hub-3", second["password"]) == "Success"
        revoked = ok(api.delete("/api/admin/hubs/hub-3/credentials"))
        assert revoked["revoked_at"] is not None
        assert _login(broker, "hub-3", second["password"]) != "Success"
        assert api.post("/api/admin/hubs/nope/credentials").status_code == 404


def _login(broker: MosquittoServer, username: str, password: str) -> str | None:
    probe = Probe(broker.port, username, password)
    try:
        return probe.connack
    finally:
        probe.close()
