"""The REST API and dashboard against a real PostgreSQL (and a real broker for /health)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import orjson
import psycopg
import pytest

from alerts import store
from homeward.settings import Settings
from stack.services import MosquittoServer
from tests.api_support import T0, World, running_api, seed_world

pytestmark = pytest.mark.integration


@pytest.fixture
def world(db_url: str) -> World:
    return seed_world(db_url)


@pytest.fixture
def client(world: World, mosquitto: MosquittoServer) -> Iterator[httpx.Client]:
    with running_api(Settings(database_url=world.url, mqtt_port=mosquitto.port)) as base, \
            httpx.Client(base_url=base, follow_redirects=True, timeout=10) as c:
        c.headers["Authorization"] = f"Bearer {world.token}"
        yield c


PROTECTED = [  # every API call but /health needs credentials
    ("GET", "/api/alerts"), ("GET", "/api/alerts/1"), ("POST", "/api/alerts/1/acknowledge"),
    ("POST", "/api/alerts/1/resolve"), ("GET", "/api/patients/1/readings"),
    ("GET", "/api/quarantine"), ("GET", "/api/hubs"), ("GET", "/api/alerts/stream"),
]


def test_every_api_call_needs_a_valid_token(client: httpx.Client) -> None:
    for method, path in PROTECTED:
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer not-a-token"}):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "authentication required" in response.json()["detail"]


def test_readings_over_a_time_range(client: httpx.Client, world: World) -> None:
    path = f"/api/patients/{world.patient}/readings"
    day = {"from": T0.isoformat(), "to": (T0 + timedelta(days=1)).isoformat()}
    body = client.get(path, params=day).json()
    assert [(r["kind"], r["values"]) for r in body["readings"]] == [
        ("spo2", {"spo2": 95, "pulse_rate": 70}), ("temperature", {"body_temperature": 37.2})]
    assert body["count"] == 2
    only_spo2 = client.get(path, params={**day, "to": (T0 + timedelta(days=2)).isoformat(),
                                         "kind": "spo2"}).json()
    assert [r["values"]["spo2"] for r in only_spo2["readings"]] == [95, 93]
    # a patient outside the nurse's care teams is a 404, like an unknown one; a bad range 422
    assert client.get(f"/api/patients/{world.other_patient}/readings",
                      params=day).status_code == 404
    assert client.get("/api/patients/999999/readings", params=day).status_code == 404
    bad = client.get(path, params={"from": day["to"], "to": day["from"]})
    assert bad.status_code == 422 and "before" in bad.json()["detail"][0]["msg"]
    assert client.get(path, params={"kind": "mood"}).status_code == 422
    assert client.get(path, params={"from": "yesterday"}).status_code == 422


def test_alert_list_acknowledge_resolve_and_wrong_transitions(client: httpx.Client,
                                                              world: World) -> None:
    listed = client.get("/api/alerts").json()
    assert [a["id"] for a in listed] == [world.alert]
    assert listed[0]["state"] == "open" and listed[0]["patient_name"] == "Ada"
    assert client.get("/api/alerts", params={"team": "district-nursing"}).json() == []

    acked = client.post(f"/api/alerts/{world.alert}/acknowledge", json={"note": "calling"})
    assert acked.status_code == 200, acked.text
    assert acked.json()["state"] == "acknowledged"
    assert acked.json()["acknowledged_by"] == world.nurse_id

    assert client.post(f"/api/alerts/{world.alert}/resolve",
                       json={"outcome": "made-up"}).status_code == 422
    assert client.post(f"/api/alerts/{world.alert}/resolve", json={}).status_code == 422
    resolved = client.post(f"/api/alerts/{world.alert}/resolve",
                           json={"outcome": "advice_given", "note": "fine"})
    assert resolved.status_code == 200 and resolved.json()["state"] == "resolved"
    events = [e["event"] for e in client.get(f"/api/alerts/{world.alert}").json()["events"]]
    assert events[-2:] == ["acknowledged", "resolved"]

    again = client.post(f"/api/alerts/{world.alert}/acknowledge")
    assert again.status_code == 409 and "resolved" in again.json()["detail"]
    assert client.post(f"/api/alerts/{world.alert}/resolve",
                       json={"outcome": "advice_given"}).status_code == 409
    assert client.get("/api/alerts").json() == []
    assert [a["id"] for a in client.get("/api/alerts", params={"state": "all"}).json()] == [
        world.alert]
    for method, path in [("GET", "/api/alerts/424242"),
                         ("POST", "/api/alerts/424242/acknowledge")]:
        response = client.request(method, path)
        assert response.status_code == 404 and "424242" in response.json()["detail"]


def test_quarantine_and_hubs(client: httpx.Client, world: World) -> None:
    assert client.get("/api/quarantine").status_code == 403  # admin-only
    (q,) = client.get("/api/quarantine", headers=world.admin).json()
    assert (q["hub_id"], q["reason"], q["payload_preview"], q["payload_bytes"]) == (
        "hub-1", "not JSON", "garbage", 7)
    (hub,) = client.get("/api/hubs", headers=world.admin).json()
    assert hub["id"] == "hub-1" and hub["state"] == "unknown"
    assert hub["devices"] == [{"address": "AA:01", "kind": "spo2", "name": None}]


def test_health_reports_database_and_broker(client: httpx.Client, mosquitto: MosquittoServer,
                                            world: World) -> None:
    healthy = client.get("/health").json()
    assert {k: healthy[k] for k in ("database", "broker", "status", "degraded")} == {
        "database": "ok", "broker": "ok", "status": "ok", "degraded": []}
    mosquitto.stop()
    down = client.get("/health")
    assert down.status_code == 503 and down.json()["broker"].startswith("error")
    assert down.json()["degraded"] == ["broker"]


def test_openapi_is_served(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/api/alerts", "/api/alerts/{alert_id}/acknowledge",
            "/api/patients/{patient_id}/readings", "/health"} <= set(spec["paths"])
    assert "swagger-ui" in client.get("/docs").text.lower()


def test_dashboard_login_lists_open_alerts(client: httpx.Client, world: World) -> None:
    client.headers.pop("Authorization")
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    wrong = client.post("/login", data={"username": "nurse", "password": "wrong"})
    assert wrong.status_code == 401 and "Wrong username" in wrong.text
    page = client.post("/login", data={"username": "nurse", "password": "correct horse"})
    assert page.status_code == 200 and "Nina Nurse" in page.text
    assert f'data-alert-id="{world.alert}"' in page.text
    assert "severe_bp for patient" in page.text
    # the session cookie also works for the JSON API the page refreshes from
    assert [a["id"] for a in client.get("/api/alerts").json()] == [world.alert]
    client.post("/logout")
    client.cookies.clear()
    by_token = client.post("/login", data={"token": world.token})
    assert by_token.status_code == 200 and "Nina Nurse" in by_token.text


def test_alert_events_stream_over_sse(world: World, mosquitto: MosquittoServer) -> None:
    """The stream relays the alert engine's NOTIFY alert_event as SSE events."""
    settings = Settings(database_url=world.url, mqtt_port=mosquitto.port)
    headers = {"Authorization": f"Bearer {world.token}"}
    with running_api(settings) as base, \
            httpx.stream("GET", f"{base}/api/alerts/stream", headers=headers,
                         timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == ": connected"
        with psycopg.connect(world.url, autocommit=True) as conn:
            store.acknowledge(conn, world.alert, clinician_id=world.nurse_id)
        got = []
        for line in lines:
            got.append(line)
            if line.startswith("data:"):
                break
        assert "event: alert" in got
        event = orjson.loads(got[-1].removeprefix("data:"))
        assert (event["alert_id"], event["event"]) == (world.alert, "acknowledged")
