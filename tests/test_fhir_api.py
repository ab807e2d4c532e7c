"""The FHIR R4 API (/fhir/r4) as a FHIR client uses it: reads, searches, paging, errors.

One seeded database and one real uvicorn server for the module.  Every resource
the server answers is validated with the fhir.resources R4B models; the scope
walk (404 for every FHIR read and search outside the caller's scope, and the
audit) is in tests/test_access.py with every other route.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.careteam import CareTeam
from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.task import Task

from homeward.settings import Settings
from server import admin
from tests.api_support import running_api

pytestmark = pytest.mark.integration

MODELS: dict[str, Any] = {"Patient": Patient, "Observation": Observation, "Device": Device,
                          "Flag": Flag, "CareTeam": CareTeam, "Bundle": Bundle,
                          "OperationOutcome": OperationOutcome,
                          "CapabilityStatement": CapabilityStatement, "Task": Task,
                          "Communication": Communication}
FHIR_JSON = "application/fhir+json"
T0 = datetime(2026, 11, 2, 7, 30, tzinfo=UTC)  # a Monday, GMT
CUFF, OXIMETER = "C4:7C:8D:6A:3E:21", "A0:B1:C2:D3:E4:F5"
NHS_A = "9434765919"
BP_PANEL, HEART_RATE, SPO2, GLUCOSE = "85354-9", "8867-4", "59408-5", "14743-9"


@dataclass
class Ward:
    url: str
    base: str
    nurse: str          # on team COPD (North)
    other_nurse: str    # on team HF (North): not patient A's
    system: str         # North's FHIR system client
    south_system: str   # South's
    patient_a: int
    patient_b: int
    bp_ids: list[str]   # patient A's blood pressures, oldest first
    alert: int
    system_alert: int


def _insert_reading(conn: psycopg.Connection, patient: int, at: datetime, kind: str,
                    device: str, values: dict[str, float], flags: list[str] | None = None
                    ) -> str:
    reading_id = str(uuid.uuid4())
    conn.execute(
        'INSERT INTO reading (id, taken_at, kind, hub_id, patient_id, device, "values", flags,'
        " received_at) VALUES (%s, %s, %s, 'hub-a', %s, %s, %s, %s, %s)",
        (reading_id, at, kind, patient, device, orjson.dumps(values).decode(), flags or [],
         at + timedelta(seconds=5)))
    return reading_id


def seed(url: str) -> tuple[Ward, dict[str, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        north = admin.create_organisation(conn, name="North Trust")
        south = admin.create_organisation(conn, name="South Trust")
        admin.create_team(conn, team_id="copd", organisation_id=north, name="COPD team",
                          kind="copd")
        admin.create_team(conn, team_id="hf", organisation_id=north, name="Heart failure",
                          kind="heart_failure")
        admin.create_team(conn, team_id="south-dn", organisation_id=south,
                          name="South district nursing", kind="district_nursing")
        nurse = admin.create_clinician(conn, username="nurse", display_name="N",
                                       teams=["copd"])
        other = admin.create_clinician(conn, username="other", display_name="O", teams=["hf"])
        system = admin.create_system_client(conn, username="gp-system",
                                            display_name="GP system", organisation_id=north)
        south_system = admin.create_system_client(conn, username="south-gp",
                                                  display_name="South GP",
                                                  organisation_id=south)
        a = admin.create_patient(conn, display_name="Alice Able", teams=["copd"],
                                 nhs_number=NHS_A)
        b = admin.create_patient(conn, display_name="Bert Brown", teams=["hf"])
        admin.create_hub(conn, hub_id="hub-a", organisation_id=north)
        admin.enrol(conn, hub_id="hub-a", patient_id=a, valid_from=T0 - timedelta(days=30))
        admin.pair_device(conn, hub_id="hub-a", address=CUFF, kind="blood_pressure",
                          name="Cuff")
        admin.pair_device(conn, hub_id="hub-a", address=OXIMETER, kind="spo2")
        bp_ids = [_insert_reading(conn, a, T0 + timedelta(hours=12 * n), "blood_pressure",
                                  CUFF, {"systolic": 130 + n, "diastolic": 80,
                                         "mean_arterial_pressure": 97, "pulse_rate": 70})
                  for n in range(10)]
        spo2 = _insert_reading(conn, a, T0 + timedelta(hours=1), "spo2", OXIMETER,
                               {"spo2": 91, "pulse_rate": 88})
        _insert_reading(conn, a, T0 + timedelta(hours=2), "glucose", OXIMETER,
                        {"blood_glucose": 3.4})
        _insert_reading(conn, b, T0 + timedelta(hours=3), "spo2", OXIMETER,
                        {"spo2": 97, "pulse_rate": 60})
        row = conn.execute(
            "INSERT INTO alert (patient_id, rule_id, rule, severity, summary, team_id,"
            " opened_at, updated_at, last_triggered_at, readings) VALUES (%s, 'spo2_low',"
            " '{\"title\": \"Low oxygen saturation\"}', 'red', 'SpO2 91 %%', 'copd', %s, %s,"
            " %s, %s) RETURNING id",
            (a, T0 + timedelta(hours=1), T0 + timedelta(hours=1), T0 + timedelta(hours=1),
             orjson.dumps([{"id": spo2, "kind": "spo2",
                           "values": {"spo2": 91, "pulse_rate": 88}}]).decode()
             )).fetchone()
        assert row is not None
        sys_row = conn.execute(
            "INSERT INTO alert (category, rule_id, rule, severity, summary, team_id, opened_at,"
            " updated_at, last_triggered_at) VALUES ('system', 'system.rota_gap.copd', '{}',"
            " 'red', 'nobody on duty', 'copd', now(), now(), now()) RETURNING id").fetchone()
        assert sys_row is not None
        # working together: a task, a (declined) hand-over and a message about patient A
        conn.execute(
            "INSERT INTO task (patient_id, team_id, title, detail, priority, due_at,"
            " requested_by, requested_team, requested_at, alert_id) VALUES (%s, 'copd',"
            " 'Call her about the low SpO2', 'Ask about breathlessness', 'urgent', %s, %s,"
            " 'copd', %s, %s)", (a, T0 + timedelta(hours=3), nurse.id, T0 + timedelta(hours=1),
                                 row[0]))
        conn.execute(
            "INSERT INTO handover (kind, alert_id, patient_id, from_team, to_team, note, state,"
            " offered_by, offered_at, respond_by, decided_by, decided_at, decline_reason)"
            " VALUES ('alert', %s, %s, 'copd', 'hf', %s, 'declined', %s, %s, %s, %s, %s,"
            " 'not a heart failure patient')",
            (row[0], a, orjson.dumps({"situation": "SpO2 91", "background": "COPD",
                                      "assessment": "stable", "recommendation": "review"}
                                     ).decode(), nurse.id, T0 + timedelta(hours=1),
             T0 + timedelta(hours=1, minutes=30), other.id, T0 + timedelta(hours=1, minutes=5)))
        conn.execute(
            "INSERT INTO patient_message (patient_id, direction, clinician_id, team_id,"
            " alert_id, body, needs_confirmation, sent_at) VALUES (%s, 'to_patient', %s,"
            " 'copd', %s, 'Please repeat your oxygen reading in 15 minutes', true, %s)",
            (a, nurse.id, row[0], T0 + timedelta(hours=1, minutes=2)))
    ward = Ward(url, "", nurse.api_token, other.api_token, system.api_token,
                south_system.api_token, a, b, bp_ids, int(row[0]), int(sys_row[0]))
    return ward, {"spo2": spo2}


@pytest.fixture(scope="module")
def ward(postgres_server: Any) -> Iterator[Ward]:
    from tests.conftest import _TEMPLATE

    url = postgres_server.create_database(f"fhirapi{id(postgres_server)}", template=_TEMPLATE)
    world, _ = seed(url)
    with running_api(Settings(database_url=url)) as base:
        world.base = base + "/fhir/r4"
        yield world


def get(ward: Ward, path: str, token: str | None = None, params: Any = None,
        headers: dict[str, str] | None = None, status: int = 200) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token or ward.nurse}"} if token != "" else {}
    response = httpx.get(ward.base + path if path.startswith("/") else path, params=params,
                         headers={**auth, **(headers or {})}, timeout=10)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = response.json()
    valid(body)
    return body


def valid(resource: dict[str, Any]) -> dict[str, Any]:
    MODELS[resource["resourceType"]].model_validate(resource)
    for entry in resource.get("entry", ()):
        valid(entry["resource"])
    return resource


def resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", ())]


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((x["url"] for x in bundle["link"] if x["relation"] == relation), None)


# -- metadata ----------------------------------------------------------------------------------

def test_the_capability_statement_lists_what_is_supported(ward: Ward) -> None:
    statement = get(ward, "/metadata", token="")
    assert statement["fhirVersion"] == "4.0.1"
    rest = statement["rest"][0]
    by_type = {r["type"]: r for r in rest["resource"]}
    assert set(by_type) == {"Patient", "Observation", "Flag", "Device", "CareTeam", "Task",
                            "Communication", "Group"}
    params = {p["name"] for p in by_type["Observation"]["searchParam"]}
    assert params == {"patient", "subject", "code", "category", "date", "_lastUpdated"}
    assert {p["name"] for p in by_type["Patient"]["searchParam"]} == {"_id", "identifier"}
    assert [o["name"] for o in by_type["Group"]["operation"]] == ["export"]


# -- reads -----------------------------------------------------------------------------------

def test_reads_of_patient_observation_flag_device_and_care_team(ward: Ward) -> None:
    patient = get(ward, f"/Patient/{ward.patient_a}")
    assert patient["identifier"] == [{"system": "https://fhir.nhs.uk/Id/nhs-number",
                                      "value": NHS_A}]
    bp = get(ward, f"/Observation/{ward.bp_ids[0]}")
    assert bp["code"]["coding"][0] == {"system": "http://loinc.org", "code": BP_PANEL}
    assert bp["effectiveDateTime"] == "2026-11-02T07:30:00Z"
    assert bp["meta"]["lastUpdated"]
    pulse = get(ward, f"/Observation/{ward.bp_ids[0]}-pulse")
    assert pulse["derivedFrom"] == [{"reference": f"Observation/{ward.bp_ids[0]}"}]
    flag = get(ward, f"/Flag/{ward.alert}")
    assert flag["status"] == "active" and flag["subject"]["reference"] == \
        f"Patient/{ward.patient_a}"
    device = get(ward, bp["device"]["reference"].replace("Device", "/Device"))
    assert device["identifier"][0]["value"] == "C4-7C-8D-6A-3E-21"
    hub = get(ward, device["parent"]["reference"].replace("Device", "/Device"))
    assert hub["identifier"] == [{"value": "hub-a"}]
    team = get(ward, f"/CareTeam/{ward.patient_a}")
    assert [p["member"]["display"] for p in team["participant"]] == ["COPD team"]


@pytest.mark.parametrize("path", [
    "/Patient/999999", "/Patient/abc", "/Observation/not-a-reading",
    f"/Observation/{uuid.UUID(int=7)}", "/Device/phd-nowhere.AABBCCDDEEFF", "/Flag/0",
])
def test_an_unknown_id_is_a_404_operation_outcome(ward: Ward, path: str) -> None:
    body = get(ward, path, status=404)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "not-found"


def test_a_system_alert_is_no_flag(ward: Ward) -> None:
    body = get(ward, f"/Flag/{ward.system_alert}", status=404)
    assert "system alert" in body["issue"][0]["diagnostics"]


def test_without_credentials_the_answer_is_a_401_operation_outcome(ward: Ward) -> None:
    body = get(ward, f"/Patient/{ward.patient_a}", token="", status=401)
    assert body["issue"][0]["code"] == "login"


# -- search ----------------------------------------------------------------------------------

def test_patient_search_by_nhs_number(ward: Ward) -> None:
    found = get(ward, "/Patient", params={
        "identifier": f"https://fhir.nhs.uk/Id/nhs-number|{NHS_A}"})
    assert [r["id"] for r in resources(found)] == [str(ward.patient_a)]
    assert resources(get(ward, "/Patient", params={"identifier": NHS_A}))
    # another system's value with the same digits is not an NHS number
    assert not resources(get(ward, "/Patient", params={"identifier": f"urn:other|{NHS_A}"}))
    # out of scope looks the same as unknown: an empty searchset
    assert not resources(get(ward, "/Patient", token=ward.other_nurse,
                             params={"identifier": NHS_A}))


def _observations(ward: Ward, params: dict[str, str], token: str | None = None,
                  headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every page of a search, following next links."""
    out: list[dict[str, Any]] = []
    bundle = get(ward, "/Observation", token=token, params=params, headers=headers)
    while True:
        out += resources(bundle)
        following = link(bundle, "next")
        if following is None:
            return out
        bundle = get(ward, following, token=token)


def test_blood_pressures_over_a_date_range_page_by_page(ward: Ward) -> None:
    params = {"patient": f"Patient/{ward.patient_a}", "code": f"http://loinc.org|{BP_PANEL}",
              "date": "ge2026-11-03", "_count": "2"}
    found = _observations(ward, {**params, "date": "ge2026-11-03"} | {"_count": "2"})
    # 2026-11-03 is GMT: from 00:00Z, the readings at 07:30 and 19:30 of 3 to 6 November
    assert [r["id"] for r in found] == ward.bp_ids[2:]
    ranged = _observations(ward, {**params, "date": "ge2026-11-03"} | {"_count": "3"},
                           headers=None)
    assert ranged == found
    two_days = httpx.get(ward.base + "/Observation", timeout=10, params=[
        ("patient", str(ward.patient_a)), ("code", BP_PANEL), ("date", "ge2026-11-03"),
        ("date", "lt2026-11-05")], headers={"Authorization": f"Bearer {ward.nurse}"}).json()
    assert [r["id"] for r in resources(two_days)] == ward.bp_ids[2:6]


def test_last_updated_is_when_the_server_stored_the_reading(ward: Ward) -> None:
    with psycopg.connect(ward.url) as conn:
        row = conn.execute("SELECT committed_at FROM reading WHERE id = %s",
                           (ward.bp_ids[5],)).fetchone()
    assert row is not None
    after = _observations(ward, {"patient": str(ward.patient_a), "code": BP_PANEL,
                                 "_lastUpdated": f"gt{row[0].isoformat()}"})
    assert [r["id"] for r in after] == ward.bp_ids[6:]
    assert all(r["meta"]["lastUpdated"] > row[0].isoformat()[:19] for r in after)


def test_newest_first(ward: Ward) -> None:
    found = _observations(ward, {"patient": str(ward.patient_a), "code": BP_PANEL,
                                 "_sort": "-date", "_count": "4"})
    assert [r["id"] for r in found] == ward.bp_ids[::-1]


def test_a_reading_and_its_pulse_rate_never_split_wrongly_across_pages(ward: Ward) -> None:
    """Each blood pressure gives two Observations; pages of 3 cut readings in half."""
    every = _observations(ward, {"patient": str(ward.patient_a), "_count": "3"})
    ids = [r["id"] for r in every]
    assert len(ids) == len(set(ids))
    expected = {i for b in ward.bp_ids for i in (b, f"{b}-pulse")}
    assert expected <= set(ids)
    assert len(ids) == 10 * 2 + 2 + 1  # + the oximetry reading and its pulse, + glucose
    one_page = _observations(ward, {"patient": str(ward.patient_a), "_count": "1000"})
    assert [r["id"] for r in one_page] == ids


def test_heart_rate_and_category_searches(ward: Ward) -> None:
    pulses = _observations(ward, {"patient": str(ward.patient_a), "code": HEART_RATE})
    assert len(pulses) == 11 and all(r["id"].endswith("-pulse") for r in pulses)
    lab = _observations(ward, {"patient": str(ward.patient_a), "category": "laboratory"})
    [glucose] = lab
    assert GLUCOSE in [c["code"] for c in glucose["code"]["coding"]]
    either = _observations(ward, {"patient": str(ward.patient_a),
                                  "code": f"{SPO2},{GLUCOSE}"})
    assert len(either) == 2


def test_an_unknown_parameter_is_ignored_and_left_out_of_self(ward: Ward) -> None:
    bundle = get(ward, "/Observation", params={"patient": str(ward.patient_a),
                                               "code": GLUCOSE, "colour": "blue"})
    assert len(resources(bundle)) == 1
    self_link = link(bundle, "self")
    assert self_link is not None and "colour" not in self_link and "code=" in self_link


@pytest.mark.parametrize("params", [
    {"colour": "blue"}, {"code:text": "glucose"}, {"date": "2026-13-01"},
    {"date": "sa2026-11-01"}, {"_count": "ten"}, {"_sort": "code"},
    {"_cursor": "rubbish"}, {"patient": "Group/1"},
])
def test_strict_handling_answers_400_with_an_operation_outcome(ward: Ward,
                                                               params: dict[str, str]) -> None:
    body = get(ward, "/Observation", params=params, headers={"Prefer": "handling=strict"},
               status=400)
    assert body["issue"][0]["code"] == "invalid"
    assert body["issue"][0]["diagnostics"]


def test_flags_by_patient_and_status(ward: Ward) -> None:
    active = get(ward, "/Flag", params={"patient": str(ward.patient_a), "status": "active"})
    [flag] = resources(active)
    details = [e["valueReference"]["reference"] for e in flag["extension"]
               if e["url"].endswith("flag-detail")]
    assert len(details) == 2  # the oximetry reading and its pulse rate
    for reference in details:
        get(ward, reference.replace("Observation", "/Observation"))
    assert not resources(get(ward, "/Flag", params={"patient": str(ward.patient_a),
                                                    "status": "inactive"}))


def test_devices_and_care_teams_of_a_patient(ward: Ward) -> None:
    devices = resources(get(ward, "/Device", params={"patient": str(ward.patient_a)}))
    assert sorted(d["id"] for d in devices) == sorted(
        ["phd-hub-a.C47C8D6A3E21", "phd-hub-a.A0B1C2D3E4F5", "phg-hub-a"])
    assert get(ward, "/Device", status=400)["issue"][0]["diagnostics"].endswith("patient=")
    teams = resources(get(ward, "/CareTeam", params={"patient": str(ward.patient_a)}))
    assert [t["subject"]["reference"] for t in teams] == [f"Patient/{ward.patient_a}"]


def test_tasks_hand_overs_and_messages_are_tasks_and_communications(ward: Ward) -> None:
    found = resources(get(ward, "/Task", params={"patient": str(ward.patient_a)}))
    by_id = {t["id"].split("-")[0]: t for t in found}
    assert set(by_id) == {"task", "handover"}
    task = by_id["task"]
    assert (task["status"], task["intent"], task["priority"]) == ("requested", "order",
                                                                  "urgent")
    assert task["owner"]["identifier"] == {"value": "copd"}
    assert task["focus"] == {"reference": f"Flag/{ward.alert}"}
    assert task["restriction"]["period"]["end"] == "2026-11-02T10:30:00Z"
    handover = by_id["handover"]
    assert handover["status"] == "rejected" and handover["intent"] == "proposal"
    assert [n["text"].split(":")[0] for n in handover["note"]] == [
        "Situation", "Background", "Assessment", "Recommendation", "Declined"]
    assert get(ward, f"/Task/{task['id']}") == task
    [message] = resources(get(ward, "/Communication", params={"patient": str(ward.patient_a)}))
    assert message["payload"] == [{"contentString":
                                   "Please repeat your oxygen reading in 15 minutes"}]
    assert message["recipient"] == [{"reference": f"Patient/{ward.patient_a}"}]
    assert get(ward, f"/Communication/{message['id']}") == message
    # outside the scope, as every other read
    get(ward, f"/Task/{task['id']}", token=ward.south_system, status=404)
    get(ward, f"/Communication/{message['id']}", token=ward.south_system, status=404)
    get(ward, "/Task/task-abc", status=404)


# -- the system client -------------------------------------------------------------------------

@pytest.mark.hazard("H-015")
def test_a_system_client_reads_its_organisation_and_nothing_else(ward: Ward) -> None:
    both = resources(get(ward, "/Patient", token=ward.system))
    assert {r["id"] for r in both} == {str(ward.patient_a), str(ward.patient_b)}
    assert not resources(get(ward, "/Patient", token=ward.south_system))
    get(ward, f"/Patient/{ward.patient_a}", token=ward.south_system, status=404)
    # and only the FHIR API: no dashboard API, no writes through it
    response = httpx.get(ward.base.removesuffix("/fhir/r4") + "/api/alerts", timeout=10,
                         headers={"Authorization": f"Bearer {ward.system}"})
    assert response.status_code == 403


# -- a FHIR client that is not ours ------------------------------------------------------------

def test_fhirpy_pages_a_date_range_exactly_once_while_readings_arrive(ward: Ward) -> None:
    """fhirpy (PyPI) searches one patient's blood pressures over two days, 25 a page,
    following the next links itself; new readings arrive, in the range and out of it,
    between every two pages.  It gets exactly the readings stored when the search
    began, none twice; the same search started afterwards finds the new ones too."""
    from fhirpy import SyncFHIRClient

    start = datetime(2026, 11, 20, tzinfo=UTC)
    with psycopg.connect(ward.url, autocommit=True) as conn:
        patient = admin.create_patient(conn, display_name="Cara Cole", teams=["copd"])
        admin.enrol(conn, hub_id="hub-a", patient_id=patient, valid_from=start)
        stored = [_insert_reading(conn, patient, start + timedelta(minutes=20 * n),
                                  "blood_pressure", CUFF, {"systolic": 120 + n % 40,
                                                           "diastolic": 80})
                  for n in range(3 * 24 * 3)]  # every 20 minutes for three days
    expected = [r for n, r in enumerate(stored) if 3 * 24 <= n < 3 * 24 * 3]  # days 2, 3

    client = SyncFHIRClient(ward.base, authorization=f"Bearer {ward.nurse}")
    search = (client.resources("Observation")
              .search(patient=f"Patient/{patient}", code=f"http://loinc.org|{BP_PANEL}")
              .search(date__ge="2026-11-21").search(date__lt="2026-11-23").limit(25))
    seen: list[str] = []
    arrived: list[str] = []
    with psycopg.connect(ward.url, autocommit=True) as conn:
        for resource in search:
            seen.append(resource["id"])
            if len(seen) % 25 == 1:  # a page has been read: readings arrive meanwhile
                for at in (start + timedelta(days=1, minutes=7 + len(seen)),  # behind
                           start + timedelta(days=2, hours=23, minutes=len(seen) % 50),  # ahead
                           start + timedelta(days=5)):  # outside the range
                    arrived.append(_insert_reading(conn, patient, at, "blood_pressure", CUFF,
                                                   {"systolic": 150, "diastolic": 90}))
    assert len(seen) == len(set(seen)) == len(expected) == 144
    assert seen == expected
    again = [r["id"] for r in search]
    in_range = [a for n, a in enumerate(arrived) if n % 3 != 2]
    assert sorted(again) == sorted(expected + in_range)


# -- bulk export -------------------------------------------------------------------------------

def _kick_off(ward: Ward, path: str, token: str, params: Any = None) -> str:
    response = httpx.get(ward.base + path, params=params, timeout=10, headers={
        "Authorization": f"Bearer {token}", "Prefer": "respond-async",
        "Accept": FHIR_JSON})
    assert response.status_code == 202, response.text
    return response.headers["content-location"]


def _ndjson(url: str, token: str) -> list[dict[str, Any]]:
    response = httpx.get(url, timeout=30, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+ndjson")
    return [valid(orjson.loads(line)) for line in response.content.splitlines()]


def _readings_in_scope(ward: Ward, patients: list[int], until: str,
                       since: str | None = None) -> set[str]:
    with psycopg.connect(ward.url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT id::text FROM reading WHERE patient_id = ANY(%s) AND committed_at <= %s"
            " AND (%s::timestamptz IS NULL OR committed_at > %s)",
            (patients, until, since, since))}


def test_a_bulk_export_of_the_callers_patients(ward: Ward) -> None:
    status = _kick_off(ward, "/Patient/$export", ward.system)
    manifest = httpx.get(status, timeout=10,
                         headers={"Authorization": f"Bearer {ward.system}"}).json()
    assert manifest["requiresAccessToken"] is True
    files = {o["type"]: o["url"] for o in manifest["output"]}
    assert set(files) == {"Patient", "Observation", "Flag", "Device", "CareTeam", "Task",
                          "Communication"}
    patients = _ndjson(files["Patient"], ward.system)
    ids = sorted(int(p["id"]) for p in patients)
    assert {ward.patient_a, ward.patient_b} <= set(ids)  # the whole organisation
    observations = _ndjson(files["Observation"], ward.system)
    main = {o["id"] for o in observations if "derivedFrom" not in o}
    assert main == _readings_in_scope(ward, ids, manifest["transactionTime"])
    for o in observations:
        if "derivedFrom" in o:
            assert o["derivedFrom"][0]["reference"].removeprefix("Observation/") in main
    flags = _ndjson(files["Flag"], ward.system)
    assert [f["id"] for f in flags] == [str(ward.alert)]
    # another client cannot read the job
    other = httpx.get(status, timeout=10, headers={"Authorization": f"Bearer {ward.nurse}"})
    assert other.status_code == 404


def test_a_group_export_is_one_teams_patients_and_audits_each(ward: Ward) -> None:
    get(ward, "/Group/hf/$export", status=404)  # not the nurse's team
    status = _kick_off(ward, "/Group/copd/$export", ward.nurse,
                       {"_type": "Patient,Observation"})
    manifest = httpx.get(status, timeout=10,
                         headers={"Authorization": f"Bearer {ward.nurse}"}).json()
    assert [o["type"] for o in manifest["output"]] == ["Patient", "Observation"]
    patients = _ndjson(manifest["output"][0]["url"], ward.nurse)
    assert ward.patient_b not in {int(p["id"]) for p in patients}
    assert ward.patient_a in {int(p["id"]) for p in patients}
    with psycopg.connect(ward.url) as conn:
        audited = {r[0] for r in conn.execute(
            "SELECT patient_id FROM access_audit WHERE action = %s AND outcome = 'ok'"
            " AND patient_id IS NOT NULL AND resource LIKE %s",
            ("GET /fhir/r4/$export-file/{job_id}/{resource_type}",
             f"%{status.rsplit('/', 1)[1]}/Patient"))}
    assert audited == {int(p["id"]) for p in patients}


def test_an_export_since_the_last_one_carries_exactly_what_changed(ward: Ward) -> None:
    first = httpx.get(_kick_off(ward, "/Patient/$export", ward.nurse,
                                {"_type": "Observation"}), timeout=10,
                      headers={"Authorization": f"Bearer {ward.nurse}"}).json()
    with psycopg.connect(ward.url, autocommit=True) as conn:
        new = _insert_reading(conn, ward.patient_a, T0 + timedelta(days=3), "glucose",
                              OXIMETER, {"blood_glucose": 5.5})
    second = httpx.get(_kick_off(ward, "/Patient/$export", ward.nurse,
                                 {"_type": "Observation", "_since": first["transactionTime"]}),
                       timeout=10, headers={"Authorization": f"Bearer {ward.nurse}"}).json()
    found = _ndjson(second["output"][0]["url"], ward.nurse)
    assert [o["id"] for o in found] == [new]


@pytest.mark.parametrize("params", [{"_type": "Encounter"}, {"_since": "yesterday"},
                                    {"_outputFormat": "text/csv"}])
def test_an_export_it_cannot_honour_is_a_400(ward: Ward, params: dict[str, str]) -> None:
    body = get(ward, "/Patient/$export", params=params, status=400)
    assert body["issue"][0]["code"] == "invalid"


def test_a_cancelled_export_is_gone(ward: Ward) -> None:
    status = _kick_off(ward, "/Patient/$export", ward.nurse)
    auth = {"Authorization": f"Bearer {ward.nurse}"}
    assert httpx.delete(status, headers=auth, timeout=10).status_code == 202
    assert httpx.get(status, headers=auth, timeout=10).status_code == 404
