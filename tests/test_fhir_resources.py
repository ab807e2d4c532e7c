"""FHIR R4 export (server/fhir): stored rows -> FHIR resources, read as examples.

Every resource built here is validated with the fhir.resources R4B models
(structure, cardinality, datatypes: no profile or invariant checking); the
tables below check the R4 vital-signs rules the models do not enforce
(../shared/reference/fhir.md section 5).  The expected codes are restated here
from the specification on purpose: they test the code tables, not echo them.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.careteam import CareTeam
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.flag import Flag
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from hypothesis import given
from hypothesis import strategies as st

from homeward.kinds import METRIC_BY_NAME, Kind
from homeward.wire import HUB_ID_PATTERN, Reading, decode_readings, encode_readings
from server.fhir import (
    care_team,
    device,
    device_id,
    flag,
    hub_device,
    hub_device_id,
    observations,
    operation_outcome,
    parse_observation_id,
    patient,
    pulse_observation_id,
    searchset,
)

MODELS: dict[str, Any] = {"Patient": Patient, "Observation": Observation, "Device": Device,
                          "Flag": Flag, "CareTeam": CareTeam, "Bundle": Bundle,
                          "OperationOutcome": OperationOutcome}
LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
DAR = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")

HUB = "hub-0001"
CUFF = "C4:7C:8D:6A:3E:21"
TAKEN = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
RECEIVED = TAKEN + timedelta(seconds=4)
PATIENT = 42

#: One valid reading of every kind (values pass homeward.kinds.check_values).
EXAMPLES: dict[Kind, dict[str, float]] = {
    Kind.BLOOD_PRESSURE: {"systolic": 128, "diastolic": 82, "mean_arterial": 97,
                          "pulse_rate": 71},
    Kind.SPO2: {"spo2": 96, "pulse_rate": 88, "perfusion_index": 2.5},
    Kind.TEMPERATURE: {"body_temperature": 37.8},
    Kind.WEIGHT: {"body_weight": 81.35},
    Kind.GLUCOSE: {"blood_glucose": 6.4},
    Kind.RESPIRATORY_RATE: {"respiratory_rate": 18},
}


def json_rules(node: Any, where: str = "") -> None:
    """FHIR JSON rules the R4B models let through (probed: a 65-character id, ``"note": []``
    and a ``div`` without the XHTML namespace all validate): no empty strings, arrays or
    objects; every ``id`` a FHIR id; narrative in the XHTML namespace."""
    if isinstance(node, dict):
        assert node, f"empty object at {where}"
        for key, value in node.items():
            if key == "id":
                assert FHIR_ID.fullmatch(value), f"bad id {value!r} at {where}"
            if key == "div":
                assert value.startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
            json_rules(value, f"{where}.{key}")
    elif isinstance(node, list):
        assert node, f"empty array at {where}"
        for i, item in enumerate(node):
            json_rules(item, f"{where}[{i}]")
    elif isinstance(node, str):
        assert node.strip(), f"empty string at {where}"


def valid(resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` after checking it is JSON and a valid R4B resource of its type."""
    json.dumps(resource)
    json_rules(resource)
    MODELS[resource["resourceType"]].model_validate(resource)
    return resource


def wire_reading(kind: Kind, values: dict[str, float], *, flags: tuple[str, ...] = (),
                 taken_at: datetime = TAKEN, device: str = CUFF) -> Reading:
    """A reading as the ingest decodes it from the readings topic."""
    sent = Reading(id=uuid.uuid4(), kind=kind, taken_at=taken_at, device=device,
                   values=values, flags=flags)
    decoded = decode_readings(encode_readings([sent]))
    assert not decoded.rejects
    return decoded.readings[0]


def stored_row(reading: Reading, *, hub: str = HUB) -> dict[str, Any]:
    """The ``reading`` row the ingest stores (values through jsonb, flags as text[])."""
    return {"id": reading.id, "taken_at": reading.taken_at, "kind": reading.kind.value,
            "hub_id": hub, "device": reading.device,
            "values": json.loads(orjson.dumps(reading.values)), "flags": list(reading.flags),
            "raw": reading.raw, "received_at": RECEIVED}


def export(kind: Kind, values: dict[str, float] | None = None, **kw: Any) -> list[dict[str, Any]]:
    """The validated Observations of one reading of ``kind``."""
    row = stored_row(wire_reading(kind, EXAMPLES[kind] if values is None else values, **kw))
    return [valid(o) for o in observations(row, patient_id=PATIENT)]


def codes(concept: dict[str, Any], system: str) -> list[str]:
    return [c["code"] for c in concept.get("coding", []) if c["system"] == system]


def by_code(resources: list[dict[str, Any]], loinc: str) -> dict[str, Any]:
    (found,) = [r for r in resources if loinc in codes(r["code"], LOINC)]
    return found


# -- Vital-signs rules the models do not check -------------------------------------------

@pytest.mark.parametrize(("kind", "category", "loinc", "mdc", "profile"), [
    (Kind.BLOOD_PRESSURE, "vital-signs", ["85354-9"], ["150020"], "bp"),
    (Kind.SPO2, "vital-signs", ["2708-6", "59408-5"], ["150456"], "oxygensat"),
    (Kind.TEMPERATURE, "vital-signs", ["8310-5"], ["150364"], "bodytemp"),
    (Kind.WEIGHT, "vital-signs", ["29463-7"], ["188736"], "bodyweight"),
    (Kind.RESPIRATORY_RATE, "vital-signs", ["9279-1"], ["151562"], "resprate"),
    # Glucose is not an R4 vital sign: point-of-care laboratory, no vital-signs profile.
    (Kind.GLUCOSE, "laboratory", ["14743-9"], ["160184"], None),
])
def test_main_observation_category_code_and_profile(kind, category, loinc, mdc, profile):
    main = export(kind)[0]
    assert main["status"] == "final"
    assert main["category"] == [{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
        "code": category, "display": {"vital-signs": "Vital Signs",
                                      "laboratory": "Laboratory"}[category]}]}]
    assert codes(main["code"], LOINC) == loinc
    assert codes(main["code"], MDC) == mdc
    if profile is None:
        assert "meta" not in main
    else:
        assert main["meta"]["profile"] == [f"http://hl7.org/fhir/StructureDefinition/{profile}",
                                           "http://hl7.org/fhir/StructureDefinition/vitalsigns"]


@pytest.mark.parametrize(("kind", "metric", "loinc", "ucum"), [
    (Kind.BLOOD_PRESSURE, "systolic", "8480-6", "mm[Hg]"),
    (Kind.BLOOD_PRESSURE, "diastolic", "8462-4", "mm[Hg]"),
    (Kind.BLOOD_PRESSURE, "mean_arterial", "8478-0", "mm[Hg]"),
    (Kind.BLOOD_PRESSURE, "pulse_rate", "8867-4", "/min"),
    (Kind.SPO2, "spo2", "59408-5", "%"),
    (Kind.SPO2, "pulse_rate", "8867-4", "/min"),
    (Kind.TEMPERATURE, "body_temperature", "8310-5", "Cel"),
    (Kind.WEIGHT, "body_weight", "29463-7", "kg"),
    (Kind.GLUCOSE, "blood_glucose", "14743-9", "mmol/L"),
    (Kind.RESPIRATORY_RATE, "respiratory_rate", "9279-1", "/min"),
])
def test_ucum_unit_per_metric(kind, metric, loinc, ucum):
    resources = export(kind)
    holders = [*resources, *(c for r in resources for c in r.get("component", []))]
    (holder,) = [h for h in holders if loinc in codes(h["code"], LOINC)]
    quantity = holder["valueQuantity"]
    assert quantity["system"] == UCUM
    assert quantity["code"] == ucum
    assert quantity["value"] == EXAMPLES[kind][metric]


def test_blood_pressure_is_a_panel_of_components_without_a_value():
    main = export(Kind.BLOOD_PRESSURE)[0]
    assert not any(key.startswith("value") for key in main)
    assert "dataAbsentReason" not in main
    assert [(codes(c["code"], LOINC), codes(c["code"], MDC), c["valueQuantity"]["value"])
            for c in main["component"]] == [
        (["8480-6"], ["150021"], 128),
        (["8462-4"], ["150022"], 82),
        (["8478-0"], ["150023"], 97),
    ]
    assert {c["valueQuantity"]["code"] for c in main["component"]} == {"mm[Hg]"}


@pytest.mark.parametrize(("taken_at", "expected"), [
    (datetime(2026, 11, 22, 8, 0, tzinfo=UTC), "2026-11-22T08:00:00Z"),
    # BST: 08:30 in London on 15 July is 07:30 UTC.
    (datetime(2026, 7, 15, 8, 30, tzinfo=timezone(timedelta(hours=1))), "2026-07-15T07:30:00Z"),
    (datetime(2026, 11, 22, 8, 0, 5, 250000, tzinfo=UTC), "2026-11-22T08:00:05.250Z"),
])
def test_effective_time_is_utc_with_z(taken_at, expected):
    for resource in export(Kind.TEMPERATURE, taken_at=taken_at):
        assert resource["effectiveDateTime"] == expected
        assert resource["issued"] == "2026-11-22T08:00:04Z"


@pytest.mark.parametrize(("kind", "mdc"), [
    (Kind.BLOOD_PRESSURE, "149546"),  # MDC_PULS_RATE_NON_INV: from the cuff
    (Kind.SPO2, "149530"),  # MDC_PULS_OXIM_PULS_RATE: from the oximeter
])
def test_pulse_rate_is_its_own_heart_rate_observation(kind, mdc):
    main, pulse = export(kind)
    assert pulse["id"] == f"{main['id']}-pulse" == pulse_observation_id(main["id"])
    assert codes(pulse["code"], LOINC) == ["8867-4"]
    assert codes(pulse["code"], MDC) == [mdc]
    assert pulse["valueQuantity"] == {"value": EXAMPLES[kind]["pulse_rate"], "unit": "/min",
                                      "system": UCUM, "code": "/min"}
    assert pulse["meta"]["profile"][0] == "http://hl7.org/fhir/StructureDefinition/heartrate"
    assert pulse["derivedFrom"] == [{"reference": f"Observation/{main['id']}"}]
    assert "8867-4" not in [code for c in main.get("component", [])
                            for code in codes(c["code"], LOINC)]
    for key in ("subject", "effectiveDateTime", "device", "extension", "category"):
        assert pulse[key] == main[key]


def test_ids_subject_device_and_gateway():
    main, pulse = export(Kind.BLOOD_PRESSURE)
    assert uuid.UUID(main["id"])
    assert main["identifier"] == [{"system": "urn:ietf:rfc:3986",
                                   "value": f"urn:uuid:{main['id']}"}]
    assert parse_observation_id(main["id"]) == (uuid.UUID(main["id"]), None)
    assert parse_observation_id(pulse["id"]) == (uuid.UUID(main["id"]), "pulse")
    assert main["subject"] == {"reference": f"Patient/{PATIENT}"}
    assert main["device"] == {"reference": "Device/phd-hub-0001.C47C8D6A3E21"}
    assert main["extension"] == [{
        "url": "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice",
        "valueReference": {"reference": "Device/phg-hub-0001"}}]


# -- What can be missing -----------------------------------------------------------------

def absent_reason(holder: dict[str, Any]) -> list[str]:
    assert not any(key.startswith("value") for key in holder)
    return codes(holder["dataAbsentReason"], DAR)


@pytest.mark.parametrize(("kind", "values", "flags", "loinc", "expected"), [
    # The cuff sent NaN for mean arterial pressure: a component with a reason.
    (Kind.BLOOD_PRESSURE, {"systolic": 128, "diastolic": 82}, ("mean_arterial_unavailable",),
     "8478-0", ["error"]),
    # The oximeter sent a special value for the pulse: a heart-rate Observation with a reason.
    (Kind.SPO2, {"spo2": 96}, ("pulse_rate_unavailable",), "8867-4", ["error"]),
    # A cuff that does not measure mean arterial pressure or pulse: nothing to say.
    (Kind.BLOOD_PRESSURE, {"systolic": 128, "diastolic": 82}, (), "8478-0", None),
    (Kind.BLOOD_PRESSURE, {"systolic": 128, "diastolic": 82}, (), "8867-4", None),
    (Kind.SPO2, {"spo2": 96}, (), "8867-4", None),
])
def test_missing_metric(kind, values, flags, loinc, expected):
    resources = export(kind, values, flags=flags)
    holders = [*resources, *(c for r in resources for c in r.get("component", []))]
    found = [h for h in holders if loinc in codes(h["code"], LOINC)]
    assert [absent_reason(h) for h in found] == ([expected] if expected else [])
    assert not any("unavailable" in n["text"] for r in resources for n in r.get("note", []))


def test_perfusion_index_is_a_component_coded_in_mdc_only():
    (main, _pulse) = export(Kind.SPO2)
    (component,) = main["component"]
    assert component["code"] == {"coding": [{"system": MDC, "code": "150448"}],
                                 "text": "Perfusion index"}
    assert component["valueQuantity"]["value"] == 2.5
    assert component["valueQuantity"]["code"] == "%"
    (unavailable, _pulse) = export(Kind.SPO2, {"spo2": 96, "pulse_rate": 88},
                                   flags=("perfusion_index_unavailable",))
    assert absent_reason(unavailable["component"][0]) == ["error"]


def test_a_required_metric_missing_from_a_stored_row_is_unknown_not_dropped():
    row = stored_row(wire_reading(Kind.WEIGHT, EXAMPLES[Kind.WEIGHT]))
    row["values"] = {}
    (main,) = [valid(o) for o in observations(row, patient_id=PATIENT)]
    assert absent_reason(main) == ["unknown"]


# -- Flags -> notes ----------------------------------------------------------------------

@pytest.mark.parametrize(("flags", "notes"), [
    ((), []),
    (("irregular_pulse", "body_movement"),
     ["Device reported: irregular_pulse", "Device reported: body_movement"]),
    (("device_time_invalid",),
     ["The device's clock could not be used (device_time_invalid): the time is when the "
      "hub received the reading from the device."]),
    (("device_clock_not_set", "early_estimate"),
     ["The device's clock could not be used (device_clock_not_set): the time is when the "
      "hub received the reading from the device.", "Device reported: early_estimate"]),
])
def test_flags_become_notes_on_every_observation_of_the_reading(flags, notes):
    for resource in export(Kind.SPO2, flags=flags):
        assert [n["text"] for n in resource.get("note", [])] == notes
        assert "interpretation" not in resource


def test_a_naive_time_is_refused():
    row = stored_row(wire_reading(Kind.WEIGHT, EXAMPLES[Kind.WEIGHT]))
    row["taken_at"] = datetime(2026, 11, 22, 8, 0)  # naive: the point of the test
    with pytest.raises(ValueError, match="naive"):
        observations(row, patient_id=PATIENT)


# -- Round trip from the wire ------------------------------------------------------------

def exported_values(kind: Kind, resources: list[dict[str, Any]]) -> dict[str, tuple[Any, str]]:
    """Metric name -> (value, UCUM code) read back from FHIR by each holder's MDC code."""
    from server.fhir.codes import CODES

    metric_of = {CODES[kind, name].mdc: name for name in METRIC_BY_NAME[kind]}
    out = {}
    for holder in [*resources, *(c for r in resources for c in r.get("component", []))]:
        if "valueQuantity" in holder:
            (mdc,) = codes(holder["code"], MDC)
            quantity = holder["valueQuantity"]
            assert quantity["system"] == UCUM
            out[metric_of[mdc]] = (quantity["value"], quantity["code"])
    return out


@pytest.mark.parametrize("kind", list(Kind))
def test_round_trip_of_every_kind_from_the_wire(kind):
    reading = wire_reading(kind, EXAMPLES[kind], flags=("validated_data",))
    resources = [valid(o) for o in observations(stored_row(reading), patient_id=PATIENT)]
    expected = {name: (value, METRIC_BY_NAME[kind][name].ucum)
                for name, value in reading.values.items()}
    assert exported_values(kind, resources) == expected
    assert {r["effectiveDateTime"] for r in resources} == {"2026-11-22T08:00:00Z"}
    assert {r["device"]["reference"] for r in resources} == {f"Device/{device_id(HUB, CUFF)}"}


# -- Patient -----------------------------------------------------------------------------

@pytest.mark.parametrize(("row", "expected"), [
    ({"id": 7, "nhs_number": "9434765919", "display_name": "Ada Lovelace",
      "date_of_birth": date(1950, 12, 10), "status": "active"},
     {"resourceType": "Patient", "id": "7",
      "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
      "active": True, "name": [{"text": "Ada Lovelace"}], "birthDate": "1950-12-10"}),
    ({"id": 8, "nhs_number": None, "display_name": "Test Patient", "date_of_birth": None,
      "status": "discharged"},
     {"resourceType": "Patient", "id": "8", "active": False, "name": [{"text": "Test Patient"}]}),
    ({"id": 9, "nhs_number": None, "display_name": "In Hospital", "date_of_birth": None,
      "status": "admitted"},
     {"resourceType": "Patient", "id": "9", "active": True, "name": [{"text": "In Hospital"}]}),
])
def test_patient(row, expected):
    assert valid(patient(row)) == expected


# -- Flag --------------------------------------------------------------------------------

OPENED = datetime(2026, 11, 22, 8, 1, tzinfo=UTC)
RESOLVED = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def alert_row(state: str, **changes: Any) -> dict[str, Any]:
    row = {"id": 501, "category": "clinical", "patient_id": PATIENT, "rule_id": "bp-high",
           "rule": {"id": "bp-high", "title": "High blood pressure"}, "severity": "amber",
           "state": state, "summary": "systolic 182 mmHg", "opened_at": OPENED,
           "resolved_at": RESOLVED if state in ("resolved", "auto_resolved") else None,
           "acknowledged_by": None, "acknowledged_at": None}
    return row | changes


@pytest.mark.parametrize(("state", "status", "end"), [
    ("open", "active", None),
    ("acknowledged", "active", None),
    ("resolved", "inactive", "2026-11-22T09:30:00Z"),
    ("auto_resolved", "inactive", "2026-11-22T09:30:00Z"),
])
def test_flag_status_and_period(state, status, end):
    resource = valid(flag(alert_row(state), evidence_ids=[]))
    assert resource["status"] == status
    assert resource["period"] == {"start": "2026-11-22T08:01:00Z",
                                  **({"end": end} if end else {})}
    assert resource["code"] == {"text": "High blood pressure: systolic 182 mmHg"}
    assert resource["subject"] == {"reference": f"Patient/{PATIENT}"}
    assert resource["category"][0]["coding"][0]["code"] == "clinical"
    assert resource["author"] == {"type": "Device", "display": "Homeward alert engine"}


def test_flag_evidence_priority_and_acknowledgement():
    reading = uuid.uuid4()
    row = alert_row("acknowledged", severity="red", acknowledged_by=12,
                    acknowledged_at=OPENED + timedelta(minutes=5),
                    summary="systolic <182> & rising")
    resource = valid(flag(row, evidence_ids=[reading, pulse_observation_id(reading), reading]))
    priority, *details = resource["extension"]
    assert priority["url"] == "http://hl7.org/fhir/StructureDefinition/flag-priority"
    assert priority["valueCodeableConcept"]["coding"][0]["code"] == "PH"
    assert details == [
        {"url": "http://hl7.org/fhir/StructureDefinition/flag-detail",
         "valueReference": {"reference": f"Observation/{reading}"}},
        {"url": "http://hl7.org/fhir/StructureDefinition/flag-detail",
         "valueReference": {"reference": f"Observation/{reading}-pulse"}},
    ]
    assert resource["text"]["status"] == "additional"
    assert "Acknowledged by clinician 12 at 2026-11-22T08:06:00Z." in resource["text"]["div"]
    assert "&lt;182&gt; &amp; rising" in resource["text"]["div"]  # escaped XHTML


def test_a_system_alert_is_not_a_flag():
    with pytest.raises(ValueError, match="not a clinical alert"):
        flag(alert_row("open", category="system", patient_id=None), evidence_ids=[])


# -- Device ------------------------------------------------------------------------------

def test_paired_device_has_bluetooth_identifier_phd_type_and_hub_parent():
    row = {"hub_id": HUB, "address": CUFF, "kind": "blood_pressure", "name": "A&D UA-651BLE",
           "paired_at": TAKEN, "removed_at": None}
    resource = valid(device(row))
    assert resource["id"] == device_id(HUB, CUFF) == "phd-hub-0001.C47C8D6A3E21"
    assert resource["identifier"] == [{
        "type": {"coding": [{
            "system": "http://hl7.org/fhir/uv/phd/CodeSystem/ContinuaDeviceIdentifiers",
            "code": "BTMAC", "display": "Bluetooth MAC address"}]},
        "system": "http://hl7.org/fhir/sid/eui-48/bluetooth", "value": "C4-7C-8D-6A-3E-21"}]
    assert resource["status"] == "active"
    assert codes(resource["type"], MDC) == ["65573"]
    assert codes(resource["specialization"][0]["systemType"], MDC) == ["528391"]
    assert resource["parent"] == {"reference": f"Device/{hub_device_id(HUB)}"}


@pytest.mark.parametrize(("kind", "specialization"), [
    ("spo2", ["528388"]), ("temperature", ["528392"]), ("weight", ["528399"]),
    ("glucose", ["528401"]), ("respiratory_rate", None), ("a_future_kind", None),
])
def test_device_specialization_per_kind(kind, specialization):
    resource = valid(device({"hub_id": HUB, "address": "SN-000123", "kind": kind,
                             "name": None, "paired_at": TAKEN, "removed_at": RESOLVED}))
    assert resource["status"] == "inactive"
    assert resource["serialNumber"] == "SN-000123"
    assert "identifier" not in resource
    assert [codes(s["systemType"], MDC) for s in resource.get("specialization", [])] == (
        [specialization] if specialization else [])


@pytest.mark.parametrize(("state", "reason"), [
    ("online", ["online"]), ("offline", ["offline"]), ("unknown", None)])
def test_hub_device_is_a_phg(state, reason):
    resource = valid(hub_device({"id": HUB, "state": state, "last_seen_at": TAKEN}))
    assert resource["id"] == "phg-hub-0001"
    assert resource["status"] == "active"
    assert codes(resource["type"], MDC) == ["531981"]
    assert [codes(r, "http://terminology.hl7.org/CodeSystem/device-status-reason")
            for r in resource.get("statusReason", [])] == ([reason] if reason else [])


@pytest.mark.parametrize(("hub", "address"), [
    ("hub_with_underscore", CUFF),  # "_" is no FHIR id character: digest
    ("h" * 64, CUFF),  # too long to be readable: digest
    (HUB, "serial/number with spaces"),
])
def test_device_ids_that_cannot_be_readable_are_digests(hub, address):
    assert re.fullmatch(r"phd--[0-9a-f]{32}", device_id(hub, address))
    assert FHIR_ID.fullmatch(hub_device_id(hub))


@given(pairs=st.lists(st.tuples(st.from_regex(HUB_ID_PATTERN, fullmatch=True),
                                st.one_of(st.text(min_size=1, max_size=64),
                                          st.just(CUFF), st.just(CUFF.lower()))),
                      min_size=1, max_size=20, unique=True))
def test_device_ids_are_fhir_ids_and_distinct(pairs):
    ids = [device_id(hub, address) for hub, address in pairs]
    assert all(FHIR_ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(pairs)
    assert ids == [device_id(hub, address) for hub, address in pairs]  # deterministic
    hubs = {hub for hub, _ in pairs}
    assert len({hub_device_id(h) for h in hubs}) == len(hubs)


# -- CareTeam, Bundle, OperationOutcome --------------------------------------------------

def test_care_team_of_contained_team_organisations():
    resource = valid(care_team(PATIENT, [
        ("dn-north", "District nursing North", "district_nursing", 1, "Northshire Community"),
        ("hf_team", "Heart failure", "heart_failure", 2, "City Hospital"),
    ]))
    assert resource["name"] == f"Care team of patient {PATIENT}"
    assert resource["subject"] == {"reference": f"Patient/{PATIENT}"}
    assert [(p["role"][0]["text"], p["member"]["reference"]) for p in resource["participant"]] \
        == [("district_nursing", "#team1"), ("heart_failure", "#team2")]
    assert [(o["id"], o["name"], o["partOf"]["reference"]) for o in resource["contained"]] == [
        ("team1", "District nursing North", "Organization/1"),
        ("team2", "Heart failure", "Organization/2")]
    assert valid(care_team(PATIENT, [])) == {
        "resourceType": "CareTeam", "id": str(PATIENT), "status": "active",
        "name": f"Care team of patient {PATIENT}", "subject": {"reference": f"Patient/{PATIENT}"}}


def test_searchset_bundle_with_links_and_matches():
    entries = [patient({"id": 7, "nhs_number": None, "display_name": "A", "status": "active"}),
               *export(Kind.BLOOD_PRESSURE)]
    bundle = valid(searchset(entries, self_url="https://h/fhir/r4/Observation?patient=7",
                             next_url="https://h/fhir/r4/Observation?patient=7&after=x",
                             total=3))
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 3
    assert bundle["link"] == [
        {"relation": "self", "url": "https://h/fhir/r4/Observation?patient=7"},
        {"relation": "next", "url": "https://h/fhir/r4/Observation?patient=7&after=x"}]
    assert [e["search"] for e in bundle["entry"]] == [{"mode": "match"}] * 3
    assert not any("fullUrl" in e for e in bundle["entry"])
    last = valid(searchset([], self_url="https://h/fhir/r4/Patient"))
    assert last == {"resourceType": "Bundle", "type": "searchset",
                    "link": [{"relation": "self", "url": "https://h/fhir/r4/Patient"}]}
    with_urls = valid(searchset(entries[:1], self_url="s", base_url="https://h/fhir/r4/"))
    assert with_urls["entry"][0]["fullUrl"] == "https://h/fhir/r4/Patient/7"


def test_operation_outcome():
    assert valid(operation_outcome("error", "not-found", "Patient/99 not found")) == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-found",
                   "diagnostics": "Patient/99 not found"}]}


def test_a_summary_that_starts_with_the_rules_title_is_not_repeated():
    row = alert_row("open", summary="High blood pressure: systolic 186 mmHg")
    resource = valid(flag(row, evidence_ids=[]))
    assert resource["code"] == {"text": "High blood pressure: systolic 186 mmHg"}
