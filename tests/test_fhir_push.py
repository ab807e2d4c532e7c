# ruff: noqa: F811  -- pytest fixtures imported from tests/test_alerts_support.py
"""The FHIR push channel of the notification outbox (alerts/fhir_push.py, server/fhir/push.py).

A real local HTTP server stands in for the FHIR endpoint: it answers 503 first, then
201 with a transaction-response.  The Bundle that arrives is validated with the
fhir.resources R4B models; the outbox's attempts are read back from the database.
The pure builder is checked on a table of alerts and evidence.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient

from alerts import store
from server.fhir.push import patient_full_url, transaction_bundle
from tests.test_alerts_support import (  # noqa: F401 -- fixtures
    MONDAY,
    Clock,
    build_world,
    conn,
    make_service,
    vitals,
)

NHS = "https://fhir.nhs.uk/Id/nhs-number"
NHS_NUMBER = "9434765919"
FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
MODELS: dict[str, Any] = {"Bundle": Bundle, "Flag": Flag, "Observation": Observation,
                          "Patient": Patient}


# -- helpers ------------------------------------------------------------------------------

def valid(resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` after validating it, and for a Bundle each entry's resource, with the
    R4B model of its type."""
    MODELS[resource["resourceType"]].model_validate(resource)
    for entry in resource.get("entry", ()):
        MODELS[entry["resource"]["resourceType"]].model_validate(entry["resource"])
    return resource


def requests_of(bundle: dict[str, Any]) -> list[str]:
    return [f"{e['request']['method']} {e['request']['url']}" for e in bundle["entry"]]


def by_type(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return own + [r for v in node.values() for r in references(v)]
    if isinstance(node, list):
        return [r for v in node for r in references(v)]
    return []


def assert_self_contained(bundle: dict[str, Any], base: str) -> None:
    """Every fullUrl unique; every reference to a Patient or Observation resolves to an
    entry of the Bundle (Devices are referenced, not included)."""
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(urls) == len(set(urls))
    for entry in bundle["entry"]:
        for ref in references(entry["resource"]):
            if ref.startswith("Device/"):
                continue
            resolved = ref if ref.startswith("urn:uuid:") else f"{base}/{ref}"
            assert resolved in urls, f"{ref} in {entry['fullUrl']} resolves to no entry"


# -- the FHIR endpoint: a real HTTP server ------------------------------------------------

class FhirEndpoint:
    """Records every POST (headers, raw body, the status it answered); answers 503 to the
    first ``fail_first`` of them and 201 with a transaction-response Bundle after."""

    def __init__(self, fail_first: int = 1) -> None:
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    status = 503 if len(outer.received) < outer.fail_first else 201
                    outer.received.append((dict(self.headers), body, status))
                if status == 503:
                    self.send_response(503)
                    self.send_header("Retry-After", "1")
                    self.end_headers()
                    return
                entries = json.loads(body)["entry"]
                answer = json.dumps({"resourceType": "Bundle", "type": "transaction-response",
                                     "entry": [{"response": {"status": "201 Created"}}
                                               for _ in entries]}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir/r4"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def bundles(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body, _ in self.received]


@pytest.fixture
def fhir_endpoint(monkeypatch: pytest.MonkeyPatch):
    server = FhirEndpoint()
    server.thread.start()
    monkeypatch.setenv("HOMEWARD_FHIR_PUSH_URL", server.base)
    monkeypatch.setenv("HOMEWARD_FHIR_PUSH_TOKEN", "push-token")
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def fhir_attempts(conn, reason: str | None = None):
    return conn.execute(
        "SELECT a.ok, a.error, a.response FROM notification_attempt a JOIN notification n"
        " ON n.id = a.notification_id WHERE n.channel = 'fhir'"
        " AND (%(r)s::text IS NULL OR n.reason = %(r)s) ORDER BY a.id", {"r": reason}).fetchall()


def fhir_notifications(conn):
    return conn.execute("SELECT reason, state, attempts, idempotency_key, last_error"
                        " FROM notification WHERE channel = 'fhir' ORDER BY id").fetchall()


def world_with_nhs_number(conn) -> dict[str, Any]:
    world: dict[str, Any] = build_world(conn)
    conn.execute("UPDATE patient SET nhs_number = %s, date_of_birth = %s WHERE id = %s",
                 (NHS_NUMBER, date(1948, 3, 2), world["patient"]))
    return world


# -- through the outbox, to a real server ------------------------------------------------

@pytest.mark.integration
def test_an_opened_alert_is_pushed_retried_after_a_503_and_every_attempt_recorded(
        conn, fhir_endpoint):
    world = world_with_nhs_number(conn)
    clock = Clock(MONDAY + timedelta(hours=10))
    svc = make_service(clock)
    vitals(conn, world["patient"], clock.now, sys_=186, pulse=80)
    svc.step(conn)                                   # opened; push attempt 1: 503
    (alert,) = store.list_alerts(conn)
    assert [s for _, _, s in fhir_endpoint.received] == [503]
    ((ok, error, _),) = fhir_attempts(conn)
    assert not ok and f"POST {fhir_endpoint.base}: HTTP 503" in error
    (reason, state, attempts, key, _), = fhir_notifications(conn)
    assert (reason, state, attempts) == ("opened", "pending", 1)

    svc.tick(conn, clock.advance(seconds=29))        # back-off 30 s: not yet
    assert len(fhir_endpoint.received) == 1
    svc.tick(conn, clock.advance(seconds=1))         # attempt 2: 201
    assert [s for _, _, s in fhir_endpoint.received] == [503, 201]
    assert [(ok, response) for ok, _, response in fhir_attempts(conn)] == [
        (False, None), (True, "HTTP 201")]
    assert fhir_notifications(conn)[0][:3] == ("opened", "delivered", 2)

    (h1, body1, _), (h2, body2, _) = fhir_endpoint.received
    assert body1 == body2                            # the same bytes on the retry
    assert h1["Idempotency-Key"] == h2["Idempotency-Key"] == key
    assert key.startswith(f"alert-{alert['id']}-event-") and key.endswith(
        f"-fhir-{fhir_endpoint.base}")
    assert h2["Content-Type"].startswith("application/fhir+json")
    assert h2["Authorization"] == "Bearer push-token"

    bundle = valid(json.loads(body2))
    assert bundle["type"] == "transaction"
    (reading_id,) = [r[0] for r in conn.execute("SELECT id FROM reading")]
    assert requests_of(bundle) == ["POST Patient", f"PUT Flag/{alert['id']}",
                                   f"PUT Observation/{reading_id}",
                                   f"PUT Observation/{reading_id}-pulse"]
    (person,) = by_type(bundle, "Patient")
    assert person["request"]["ifNoneExist"] == f"identifier={NHS}|{NHS_NUMBER}"
    assert person["resource"]["identifier"] == [{"system": NHS, "value": NHS_NUMBER}]
    assert person["fullUrl"] == patient_full_url(NHS_NUMBER)
    (the_flag,) = by_type(bundle, "Flag")
    assert the_flag["fullUrl"] == f"{fhir_endpoint.base}/Flag/{alert['id']}"
    resource = the_flag["resource"]
    assert resource["status"] == "active"
    assert resource["subject"] == {"reference": person["fullUrl"]}
    assert "Severe hypertension" in resource["code"]["text"]
    assert "systolic 186" in resource["code"]["text"]
    assert [e["valueReference"]["reference"] for e in resource["extension"]
            if e["url"] == FLAG_DETAIL] == [f"Observation/{reading_id}",
                                            f"Observation/{reading_id}-pulse"]
    for observation in by_type(bundle, "Observation"):
        assert observation["resource"]["subject"] == {"reference": person["fullUrl"]}
    main = by_type(bundle, "Observation")[0]["resource"]
    systolic = [c for c in main["component"]
                if {"system": "http://loinc.org", "code": "8480-6"} in c["code"]["coding"]]
    assert [c["valueQuantity"]["value"] for c in systolic] == [186]
    assert_self_contained(bundle, fhir_endpoint.base)

    svc.tick(conn, clock.advance(minutes=30))        # delivered: never sent again
    assert len(fhir_endpoint.received) == 2


@pytest.mark.integration
def test_each_push_is_the_alert_as_its_event_left_it_and_a_repeat_trigger_is_not_pushed(
        conn, fhir_endpoint):
    """The opened push fails once and is only retried after the alert was re-triggered,
    acknowledged and resolved: it still says what was true when it opened."""
    world = world_with_nhs_number(conn)
    clock = Clock(MONDAY + timedelta(hours=10))
    svc = make_service(clock)
    vitals(conn, world["patient"], clock.now, sys_=186)
    svc.step(conn)                                   # opened; its push: 503
    (alert,) = store.list_alerts(conn)
    vitals(conn, world["patient"], clock.advance(minutes=5), sys_=190)
    svc.engine.process_batch(conn)                   # retriggered: not pushed
    assert [r[0] for r in fhir_notifications(conn)] == ["opened"]
    store.acknowledge(conn, alert["id"], clinician_id=world["amy"], now=clock.advance(minutes=1))
    store.resolve(conn, alert["id"], clinician_id=world["amy"], outcome="advice_given",
                  now=clock.advance(minutes=1))
    svc.deliver(conn)                                # the retry, then the two new pushes
    rows = fhir_notifications(conn)
    assert [(r[0], r[1], r[2]) for r in rows] == [("opened", "delivered", 2),
                                                  ("acknowledged", "delivered", 1),
                                                  ("resolved", "delivered", 1)]
    assert len({r[3] for r in rows}) == 3            # one key per event
    assert [ok for ok, _, _ in fhir_attempts(conn, "opened")] == [False, True]
    failed, opened, acknowledged, resolved = fhir_endpoint.bundles()
    assert failed == opened
    flags = [by_type(b, "Flag")[0]["resource"] for b in (opened, acknowledged, resolved)]
    assert [f["status"] for f in flags] == ["active", "active", "inactive"]
    assert "Acknowledged by clinician" not in flags[0]["text"]["div"]
    assert "Acknowledged by clinician" in flags[1]["text"]["div"]
    assert "end" in flags[2]["period"] and "end" not in flags[1]["period"]
    assert "systolic 186" in flags[0]["code"]["text"]
    assert "systolic 190" in flags[1]["code"]["text"]
    # the evidence: one reading (and its pulse rate) when it opened, both by the acknowledgement
    assert len(by_type(opened, "Observation")) == 2
    assert len(by_type(acknowledged, "Observation")) == 4
    for bundle in (opened, acknowledged, resolved):
        valid(bundle)
        assert_self_contained(bundle, fhir_endpoint.base)


@pytest.mark.integration
def test_a_patient_without_an_nhs_number_is_not_pushed_and_the_failure_is_recorded(
        conn, fhir_endpoint):
    world = build_world(conn)                        # no NHS number
    clock = Clock(MONDAY + timedelta(hours=10))
    svc = make_service(clock)
    vitals(conn, world["patient"], clock.now, sys_=186)
    svc.step(conn)
    (alert,) = store.list_alerts(conn)
    assert alert["state"] == "open"                  # the alert itself is untouched
    ((reason, state, attempts, _, error),) = fhir_notifications(conn)
    assert (reason, state, attempts) == ("opened", "failed", 0)
    assert "has no NHS number" in error
    assert fhir_endpoint.received == []
    got = store.get_alert(conn, alert["id"])
    assert got is not None
    assert {"dashboard", "fhir"} <= {n["channel"] for n in got["notifications"]}


@pytest.mark.integration
def test_without_a_push_url_nothing_is_queued(conn, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HOMEWARD_FHIR_PUSH_URL", raising=False)
    world = world_with_nhs_number(conn)
    clock = Clock(MONDAY + timedelta(hours=10))
    svc = make_service(clock)
    vitals(conn, world["patient"], clock.now, sys_=186)
    svc.step(conn)
    (alert,) = store.list_alerts(conn)
    store.resolve(conn, alert["id"], clinician_id=world["amy"], outcome="advice_given",
                  now=clock.advance(minutes=1))
    assert fhir_notifications(conn) == []


# -- the pure builder ----------------------------------------------------------------------

BASE = "https://ehr.example.nhs.uk/fhir/R4"
OPENED = datetime(2026, 11, 22, 8, 1, tzinfo=UTC)
TAKEN = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
PATIENT_ROW = {"id": 42, "nhs_number": NHS_NUMBER, "display_name": "Ada Lovelace",
               "date_of_birth": date(1950, 12, 10), "status": "active"}
R1, R2, R3 = (uuid.UUID(int=n) for n in (1, 2, 3))
READINGS = {
    R1: {"kind": "blood_pressure",
         "values": {"systolic": 186, "diastolic": 90, "mean_arterial": 122, "pulse_rate": 71}},
    R2: {"kind": "temperature", "values": {"body_temperature": 38.4}},
    R3: {"kind": "spo2", "values": {"spo2": 91, "pulse_rate": 104}},
}


def reading_row(rid: uuid.UUID, **changes: Any) -> dict[str, Any]:
    return {"id": rid, "taken_at": TAKEN, "hub_id": "hub-0001", "device": "C4:7C:8D:6A:3E:21",
            "flags": [], "received_at": TAKEN + timedelta(seconds=3), "patient_id": 42,
            **READINGS[rid], **changes}


def alert_row(state: str = "open", **changes: Any) -> dict[str, Any]:
    closed = state in ("resolved", "auto_resolved")
    return {"id": 501, "category": "clinical", "patient_id": 42, "rule_id": "bp_severe",
            "rule": {"id": "bp_severe", "title": "Severe hypertension"}, "severity": "red",
            "state": state, "summary": "systolic 186", "opened_at": OPENED,
            "resolved_at": OPENED + timedelta(hours=1) if closed else None,
            "acknowledged_by": None, "acknowledged_at": None, **changes}


@pytest.mark.parametrize(("state", "evidence", "requests", "status"), [
    ("open", [R1], ["POST Patient", "PUT Flag/501", f"PUT Observation/{R1}",
                    f"PUT Observation/{R1}-pulse"], "active"),
    ("acknowledged", [R2, R3], ["POST Patient", "PUT Flag/501", f"PUT Observation/{R2}",
                                f"PUT Observation/{R3}", f"PUT Observation/{R3}-pulse"],
     "active"),
    ("resolved", [R2, R2], ["POST Patient", "PUT Flag/501", f"PUT Observation/{R2}"],
     "inactive"),                                    # a reading given twice counts once
    ("auto_resolved", [], ["POST Patient", "PUT Flag/501"], "inactive"),
])
def test_the_bundle_is_a_transaction_of_patient_flag_and_evidence(state, evidence, requests,
                                                                  status):
    bundle = valid(transaction_bundle(alert_row(state), [reading_row(r) for r in evidence],
                                      PATIENT_ROW, base_url=BASE + "/"))
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    assert requests_of(bundle) == requests
    person, the_flag, *observations = bundle["entry"]
    assert person == {
        "fullUrl": patient_full_url(NHS_NUMBER),
        "resource": {"resourceType": "Patient",
                     "identifier": [{"system": NHS, "value": NHS_NUMBER}], "active": True,
                     "name": [{"text": "Ada Lovelace"}], "birthDate": "1950-12-10"},
        "request": {"method": "POST", "url": "Patient",
                    "ifNoneExist": f"identifier={NHS}|{NHS_NUMBER}"}}
    assert person["fullUrl"].startswith("urn:uuid:")
    assert "id" not in person["resource"]            # the receiver's own id is kept
    assert the_flag["fullUrl"] == f"{BASE}/Flag/501"
    assert the_flag["resource"]["status"] == status
    assert [e["valueReference"]["reference"] for e in the_flag["resource"]["extension"]
            if e["url"] == FLAG_DETAIL] == [e["request"]["url"] for e in observations]
    for entry in (the_flag, *observations):
        assert entry["fullUrl"] == f"{BASE}/{entry['request']['url']}"
        assert entry["resource"]["subject"] == {"reference": person["fullUrl"]}
    assert "Patient/42" not in orjson.dumps(bundle).decode()   # our id means nothing there
    assert_self_contained(bundle, BASE)


def test_the_same_rows_make_the_same_bytes():
    rows = [reading_row(R1), reading_row(R3)]
    first = orjson.dumps(transaction_bundle(alert_row(), rows, PATIENT_ROW, base_url=BASE))
    again = orjson.dumps(transaction_bundle(alert_row(), rows, PATIENT_ROW, base_url=BASE))
    assert first == again
    assert patient_full_url(NHS_NUMBER) != patient_full_url("9434765870")


@pytest.mark.parametrize(("alert", "evidence", "person", "message"), [
    (alert_row(category="system", patient_id=None), [], PATIENT_ROW, "not a clinical alert"),
    (alert_row(), [], {**PATIENT_ROW, "nhs_number": None}, "has no NHS number"),
    (alert_row(), [], {**PATIENT_ROW, "id": 43}, "not patient 43"),
    (alert_row(), [reading_row(R1, patient_id=43)], PATIENT_ROW, "patient 43's"),
])
def test_no_bundle_that_could_land_on_the_wrong_patient(alert, evidence, person, message):
    with pytest.raises(ValueError, match=message):
        transaction_bundle(alert, evidence, person, base_url=BASE)
