"""Homeward's stored rows as FHIR R4 (4.0.1) resources: plain JSON-ready dicts.

Pure functions: no database, no clock, no I/O.  A row is a mapping with the
columns of its table (server/migrations/0001_core.sql, 0100_alerts.sql).  Codes
come from homeward.kinds (LOINC, UCUM) and server.fhir.codes (MDC, profiles);
see ../shared/reference/fhir.md section 5 for their sources.

Choices FHIR leaves open, made here once:

- A reading is one Observation with id ``str(reading.id)``; its pulse rate (from a
  cuff or an oximeter) is an Observation of its own, id ``{reading id}-pulse``,
  ``derivedFrom`` the main one, as the R4 heartrate profile and the PHD IG want
  (fhir.md 5.3).  Other extra metrics (mean arterial pressure, perfusion index) are
  components of the main Observation.
- Reading flags become ``note`` entries, not ``interpretation``: interpretation is
  bound to ObservationInterpretation (H, L, A... against a reference range), a
  clinical judgement, while our flags are what the device or the hub said about
  the measurement.  A clock flag becomes a note that the time is the hub's.
  ``{metric}_unavailable`` flags are not repeated as notes: they become the
  metric's dataAbsentReason.
- A metric is missing in one of two ways: the device sent a special value (NaN,
  NRes, +/-INF; the edge flags ``{metric}_unavailable`` and sends no number) ->
  dataAbsentReason ``error``, the parent of the PHD IG's codes for those values
  (the wire does not say which one it was); or the device does not measure it (a
  cuff without pulse, an oximeter without perfusion index) -> left out.  A required
  metric cannot be missing (homeward.kinds.check_values); if a stored row lacks one
  anyway it is exported with dataAbsentReason ``unknown`` rather than dropped.
- Device ids are derived from the hub id and the device address (:func:`device_id`),
  readable where they fit a FHIR id and a digest where they do not.
- A Flag's ``author`` is the alert engine that raised it (Flag.author is "who
  created the flag"), never the nurse who acknowledged it.  FHIR R4 has no element
  for an acknowledgement; it goes in the Flag's narrative (status ``additional``),
  and a Task (focus = the Flag, owner = the clinician) is its computable form.
"""

from __future__ import annotations

import copy
import hashlib
import html
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Literal

from homeward.kinds import METRICS, Kind, Metric
from homeward.wire import format_time

from . import codes as c

Resource = dict[str, Any]
Row = Mapping[str, Any]
#: (team_id, team_name, team_kind, organisation_id, organisation_name)
TeamRow = tuple[str, str, str, int, str]

_FHIR_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_BLE_ADDRESS: Final = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")
#: Flags meaning the device's own time was not used and ``taken_at`` is the time the hub
#: received the reading (edge/gatt/fields.py, edge/readings.py).
CLOCK_FLAGS: Final = frozenset({"device_time_invalid", "device_time_unknown",
                                "device_clock_not_set"})
ALERT_ENGINE: Final = {"type": "Device", "display": "Homeward alert engine"}


# -- ids and references -------------------------------------------------------------------

def _digest(*parts: str) -> str:
    """128 bits of SHA-256 over the parts (NUL-separated: NUL is in no stored text)."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def device_id(hub_id: str, address: str) -> str:
    """The FHIR id of a paired device: ``phd-{hub}.{address hex}`` when that is an id.

    Distinct (hub, address) pairs get distinct ids: a readable id always has a dot
    and a hub id never starts with ``-``, while a digest id (``phd--`` and 32 hex
    digits, for serial numbers and long or underscored hub ids) has no dot.
    """
    if _BLE_ADDRESS.fullmatch(address):
        readable = f"phd-{hub_id}.{address.replace(':', '')}"
        if _FHIR_ID.fullmatch(readable):
            return readable
    return f"phd--{_digest(hub_id, address)}"


def hub_device_id(hub_id: str) -> str:
    """The FHIR id of a hub's Device: ``phg-{hub}``, or ``phg--{digest}`` when that is no id."""
    readable = f"phg-{hub_id}"
    if _FHIR_ID.fullmatch(readable) and not hub_id.startswith("-"):
        return readable
    return f"phg--{_digest(hub_id)}"


def pulse_observation_id(reading_id: uuid.UUID | str) -> str:
    """The id of the heart-rate Observation derived from a reading's pulse rate."""
    return f"{reading_id}-{c.PULSE}"


def parse_observation_id(observation_id: str) -> tuple[uuid.UUID, str | None]:
    """(reading id, suffix of a derived Observation or None); ValueError if not ours."""
    head, suffix = observation_id[:36], observation_id[36:]
    own = {coded.own for coded in c.CODES.values() if coded.own}
    if suffix and (suffix[:1] != "-" or suffix[1:] not in own):
        raise ValueError(f"not a Homeward Observation id: {observation_id!r}")
    return uuid.UUID(head), suffix[1:] or None


def _ref(resource_type: str, resource_id: object, display: str | None = None) -> Resource:
    out: Resource = {"reference": f"{resource_type}/{resource_id}"}
    if display:
        out["display"] = display
    return out


def _instant(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z``; a naive time is refused, never taken as local."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: FHIR times need a zone")
    return format_time(value)


def _coding(system: str, code: str, display: str | None = None) -> Resource:
    out: Resource = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _concept(*codings: Resource, text: str | None = None) -> Resource:
    out: Resource = {"coding": list(codings)} if codings else {}
    if text:
        out["text"] = text
    return out


def _note(text: str, at: datetime | None = None) -> Resource:
    return {"time": _instant(at), "text": text} if at is not None else {"text": text}


# -- Patient ------------------------------------------------------------------------------

def patient(row: Row) -> Resource:
    """A ``patient`` row (id, nhs_number, display_name, date_of_birth, status)."""
    out: Resource = {"resourceType": "Patient", "id": str(row["id"])}
    if row.get("nhs_number"):
        out["identifier"] = [{"system": c.NHS_NUMBER, "value": row["nhs_number"]}]
    out["active"] = row["status"] != "discharged"
    if row.get("display_name"):
        out["name"] = [{"text": row["display_name"]}]
    if row.get("date_of_birth") is not None:
        out["birthDate"] = row["date_of_birth"].isoformat()
    return out


# -- Observation --------------------------------------------------------------------------

def _quantity(value: float, metric: Metric) -> Resource:
    return {"value": value, "unit": metric.unit, "system": c.UCUM, "code": metric.ucum}


def _absent(code: str) -> Resource:
    return _concept(_coding(c.DATA_ABSENT_REASON, code))


def _value(metric: Metric, values: Mapping[str, float], flags: Sequence[str]) -> Resource | None:
    """``valueQuantity``, or ``dataAbsentReason``, or None when the device does not measure it."""
    value = values.get(metric.name)
    if value is not None:
        return {"valueQuantity": _quantity(value, metric)}
    if f"{metric.name}_unavailable" in flags:
        return {"dataAbsentReason": _absent("error")}
    if metric.required:
        return {"dataAbsentReason": _absent("unknown")}
    return None


def _metric_code(kind: Kind, metric: Metric) -> Resource:
    coded = c.CODES[kind, metric.name]
    loinc = [*coded.also_loinc, *([metric.loinc] if metric.loinc else [])]
    return _concept(*(_coding(c.LOINC, code) for code in loinc), _coding(c.MDC, coded.mdc),
                    text=coded.text)


def _classification(profile: str | None) -> Resource:
    """meta.profile and category: vital signs with a profile, else point-of-care laboratory."""
    if profile is None:
        return {"category": [_concept(_coding(c.OBSERVATION_CATEGORY, "laboratory",
                                               "Laboratory"))]}
    return {"meta": {"profile": [c.profile_url(profile), c.VITAL_SIGNS_PROFILE]},
            "category": [_concept(_coding(c.OBSERVATION_CATEGORY, "vital-signs",
                                          "Vital Signs"))]}


def _flag_notes(flags: Sequence[str], represented: set[str]) -> list[Resource]:
    notes = []
    for flag in dict.fromkeys(flags):
        if flag in represented:
            continue
        if flag in CLOCK_FLAGS:
            notes.append(_note(f"The device's clock could not be used ({flag}): the time is "
                               "when the hub received the reading from the device."))
        else:
            notes.append(_note(f"Device reported: {flag}"))
    return notes


def _split(kind: Kind) -> tuple[Metric | None, list[Metric], list[Metric]]:
    """(main metric, or None for a panel; component metrics; metrics exported on their own)."""
    metrics = METRICS[kind]
    main = None if kind in c.PANELS else metrics[0]
    rest = [m for m in metrics if m is not main]
    own = [m for m in rest if c.CODES[kind, m.name].own]
    return main, [m for m in rest if not c.CODES[kind, m.name].own], own


def _shared(row: Row, patient_id: int, flags: Sequence[str], represented: set[str]) -> Resource:
    """Elements every Observation of one reading carries."""
    out: Resource = {
        "extension": [{"url": c.GATEWAY_DEVICE,
                       "valueReference": _ref("Device", hub_device_id(row["hub_id"]))}],
        "status": "final",
        "subject": _ref("Patient", patient_id),
        "effectiveDateTime": _instant(row["taken_at"]),
    }
    if row.get("received_at") is not None:
        out["issued"] = _instant(row["received_at"])
    out["device"] = _ref("Device", device_id(row["hub_id"], row["device"]))
    notes = _flag_notes(flags, represented)
    if notes:
        out["note"] = notes
    return out


def _code_of(kind: Kind, main_metric: Metric | None) -> tuple[str | None, Resource]:
    """(profile, code) of a reading's main Observation: its panel's or its main metric's."""
    panel = c.PANELS.get(kind)
    if panel is not None:
        return panel.profile, _concept(_coding(c.LOINC, panel.loinc),
                                       _coding(c.MDC, panel.mdc), text=panel.text)
    assert main_metric is not None  # a kind without a panel has a main metric (_split)
    return c.CODES[kind, main_metric.name].profile, _metric_code(kind, main_metric)


def _main(kind: Kind, main_id: str, shared: Resource, values: Mapping[str, float],
          flags: Sequence[str]) -> Resource:
    main_metric, component_metrics, _own = _split(kind)
    profile, code = _code_of(kind, main_metric)
    out: Resource = {
        "resourceType": "Observation",
        "id": main_id,
        **_classification(profile),
        "identifier": [{"system": c.URI, "value": f"urn:uuid:{main_id}"}],
        **shared,
        "code": code,
    }
    if main_metric is not None:  # required, so never None from _value
        out |= _value(main_metric, values, flags) or {"dataAbsentReason": _absent("unknown")}
    components = [{"code": _metric_code(kind, metric), **value}
                  for metric in component_metrics
                  if (value := _value(metric, values, flags)) is not None]
    if components:
        out["component"] = components
    return out


def _derived(kind: Kind, main_id: str, shared: Resource, values: Mapping[str, float],
             flags: Sequence[str]) -> list[Resource]:
    """The Observations of their own (pulse rate) derived from the reading's main one."""
    out = []
    for metric in _split(kind)[2]:
        value = _value(metric, values, flags)
        if value is None:
            continue
        coded = c.CODES[kind, metric.name]
        out.append({
            "resourceType": "Observation",
            "id": f"{main_id}-{coded.own}",
            **_classification(coded.profile),
            **copy.deepcopy(shared),
            "code": _metric_code(kind, metric),
            **value,
            "derivedFrom": [_ref("Observation", main_id)],
        })
    return out


def observations(row: Row, *, patient_id: int) -> list[Resource]:
    """A ``reading`` row as its Observations: the main one first, then any derived ones.

    Row keys: id, taken_at, kind, hub_id, device, values, flags, and received_at
    and committed_at (``meta.lastUpdated``) when known.  ``patient_id`` is the
    patient the reading is attributed to.
    """
    kind = Kind(row["kind"])
    values: Mapping[str, float] = row["values"]
    flags: Sequence[str] = tuple(row.get("flags") or ())
    main_id = str(row["id"])
    represented = {f"{m.name}_unavailable" for m in METRICS[kind] if m.name not in values}
    shared = _shared(row, patient_id, flags, represented)
    main = _main(kind, main_id, copy.deepcopy(shared), values, flags)
    out = [main, *_derived(kind, main_id, shared, values, flags)]
    if row.get("committed_at") is not None:
        for resource in out:
            _last_updated(resource, row["committed_at"])
    return out


def _last_updated(resource: Resource, at: datetime) -> None:
    """``meta.lastUpdated``: when the server stored (or last changed) the resource."""
    meta = resource.setdefault("meta", {})
    meta["lastUpdated"] = _instant(at)


# -- Device -------------------------------------------------------------------------------

def _eui48(address: str) -> str | None:
    """A BLE address as the PHD IG writes an EUI-48 (``C4-7C-8D-6A-3E-21``), else None."""
    return address.upper().replace(":", "-") if _BLE_ADDRESS.fullmatch(address) else None


def _kind(value: str) -> Kind | None:
    """The Kind named ``value``, or None for a kind this version does not know."""
    try:
        return Kind(value)
    except ValueError:
        return None


def _mdc_concept(code_and_text: tuple[str, str]) -> Resource:
    code, text = code_and_text
    return _concept(_coding(c.MDC, code), text=text)


def device(row: Row) -> Resource:
    """A ``device`` row (hub_id, address, kind, name, paired_at, removed_at): a PHD.

    Shaped after the PHD IG PhdDevice (BTMAC identifier, MDC type and
    specialization) without claiming that profile: we do not know the device's
    manufacturer, model or IEEE system id, which PhdDevice requires.  Unlike the
    PHD IG, ``parent`` names the hub (DESIGN.md: "Device (PHD model, hub as parent)").
    An address that is not a BLE address is the device's serial number.
    """
    address: str = row["address"]
    out: Resource = {"resourceType": "Device", "id": device_id(row["hub_id"], address)}
    eui48 = _eui48(address)
    if eui48 is not None:
        out["identifier"] = [{
            "type": _concept(_coding(c.CONTINUA_DEVICE_IDENTIFIERS, "BTMAC",
                                     "Bluetooth MAC address")),
            "system": c.BLUETOOTH_EUI48,
            "value": eui48,
        }]
    out["status"] = "inactive" if row.get("removed_at") is not None else "active"
    if eui48 is None:
        out["serialNumber"] = address
    if row.get("name"):
        out["deviceName"] = [{"name": row["name"], "type": "user-friendly-name"}]
    out["type"] = _mdc_concept(c.PHD_TYPE)
    kind = _kind(row["kind"])
    specialization = c.PHD_SPECIALIZATION.get(kind) if kind is not None else None
    if specialization is not None:
        out["specialization"] = [{"systemType": _mdc_concept(specialization)}]
    notes = [_note("Paired with the hub", row["paired_at"])] if row.get("paired_at") else []
    if row.get("removed_at") is not None:
        notes.append(_note("Removed from the hub", row["removed_at"]))
    if notes:
        out["note"] = notes
    out["parent"] = _ref("Device", hub_device_id(row["hub_id"]))
    return out


def hub_device(hub_row: Row) -> Resource:
    """A ``hub`` row (id, state, last_seen_at): the PHG, parent of its paired devices.

    ``status`` is ``active``: a hub that is offline is still in service (R4
    ``inactive`` means lost or retired); whether it is online goes in
    ``statusReason``.  The hub id is its identifier, with no system: no public
    naming system exists for it.
    """
    hub_id: str = hub_row["id"]
    out: Resource = {"resourceType": "Device", "id": hub_device_id(hub_id),
                     "identifier": [{"value": hub_id}], "status": "active"}
    state = hub_row.get("state")
    if state in ("online", "offline"):
        out["statusReason"] = [_concept(_coding(c.DEVICE_STATUS_REASON, state,
                                                state.capitalize()))]
    out["type"] = _mdc_concept(c.PHG_TYPE)
    if hub_row.get("last_seen_at") is not None:
        out["note"] = [_note("Last heard from", hub_row["last_seen_at"])]
    return out


# -- Flag ---------------------------------------------------------------------------------

def evidence_ids(readings: Iterable[Mapping[str, Any]]) -> list[str]:
    """The Observation ids of an alert's readings (``alert.readings``: id, kind, values):
    each reading's main Observation and those derived from it (its pulse rate)."""
    out: list[str] = []
    for item in readings:
        if not isinstance(item, Mapping) or "id" not in item:
            continue
        out.append(str(item["id"]))
        kind = _kind(str(item.get("kind")))
        values = item.get("values")
        if kind is None or not isinstance(values, Mapping):
            continue
        out += [f"{item['id']}-{c.CODES[kind, m.name].own}" for m in _split(kind)[2]
                if m.name in values]
    return out


def _narrative(paragraphs: Iterable[str], status: str) -> Resource:
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return {"status": status, "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'}


def _acknowledgement(alert_row: Row) -> str | None:
    by, at = alert_row.get("acknowledged_by"), alert_row.get("acknowledged_at")
    if by is None and at is None:
        return None
    who = f" by clinician {by}" if by is not None else ""
    when = f" at {_instant(at)}" if at is not None else ""
    return f"Acknowledged{who}{when}."


def flag(alert_row: Row, *, evidence_ids: Iterable[str | uuid.UUID]) -> Resource:
    """An ``alert`` row as a Flag on its patient; ``evidence_ids`` are Observation ids.

    ``status`` is active while the alert is open or acknowledged, inactive once
    resolved.  Severity goes in the flag-priority extension, the evidence in one
    flag-detail extension per Observation, the acknowledgement in the narrative
    (module docstring).  A system alert (no patient) is not a Flag: ValueError.
    """
    if alert_row["category"] != "clinical" or alert_row.get("patient_id") is None:
        raise ValueError(f"alert {alert_row['id']} is not a clinical alert on a patient")
    rule = alert_row.get("rule") or {}
    title = rule.get("title") or alert_row["rule_id"]
    summary = alert_row.get("summary")
    # an engine's summary usually starts with the rule's title already
    text = (summary if summary and summary.startswith(title)
            else f"{title}: {summary}" if summary else title)
    severity = alert_row["severity"]
    ack = _acknowledgement(alert_row)
    extensions: list[Resource] = []
    if severity in c.FLAG_PRIORITY_BY_SEVERITY:
        code, display = c.FLAG_PRIORITY_BY_SEVERITY[severity]
        extensions.append({"url": c.FLAG_PRIORITY, "valueCodeableConcept": _concept(
            _coding(c.FLAG_PRIORITY_CODES, code, display), text=severity)})
    extensions += [{"url": c.FLAG_DETAIL, "valueReference": _ref("Observation", evidence)}
                   for evidence in dict.fromkeys(str(e) for e in evidence_ids)]
    period: Resource = {"start": _instant(alert_row["opened_at"])}
    if alert_row.get("resolved_at") is not None:
        period["end"] = _instant(alert_row["resolved_at"])
    paragraphs = [text, f"Severity {severity}; {alert_row['state'].replace('_', ' ')}."]
    out: Resource = {
        "resourceType": "Flag",
        "id": str(alert_row["id"]),
        "text": _narrative([*paragraphs, *([ack] if ack else [])],
                           "additional" if ack else "generated"),
        "extension": extensions,
        "status": "active" if alert_row["state"] in ("open", "acknowledged") else "inactive",
        "category": [_concept(_coding(c.FLAG_CATEGORY, "clinical", "Clinical"))],
        "code": _concept(text=text),
        "subject": _ref("Patient", alert_row["patient_id"]),
        "period": period,
        "author": dict(ALERT_ENGINE),
    }
    if alert_row.get("updated_at") is not None:
        _last_updated(out, alert_row["updated_at"])
    return out


# -- CareTeam -----------------------------------------------------------------------------

def care_team(patient_id: int, teams: Sequence[TeamRow]) -> Resource:
    """The patient's care team: each team a contained Organization, part of its organisation.

    A team is not a resource we serve, so it is contained (and referenced as
    ``#team{n}``); its organisation is referenced as ``Organization/{id}``.
    """
    contained, participants = [], []
    for n, (team_id, team_name, team_kind, organisation_id, organisation_name) in enumerate(
            teams, start=1):
        local = f"team{n}"
        contained.append({
            "resourceType": "Organization", "id": local,
            "identifier": [{"value": team_id}],
            "name": team_name,
            "partOf": _ref("Organization", organisation_id, organisation_name),
        })
        participants.append({"role": [_concept(text=team_kind)],
                             "member": {"reference": f"#{local}", "display": team_name}})
    out: Resource = {"resourceType": "CareTeam", "id": str(patient_id)}
    if contained:
        out["contained"] = contained
    out |= {"status": "active", "name": f"Care team of patient {patient_id}",
            "subject": _ref("Patient", patient_id)}
    if participants:
        out["participant"] = participants
    return out


# -- Bundle and OperationOutcome ----------------------------------------------------------

def searchset(entries: Iterable[Resource], *, self_url: str, next_url: str | None = None,
              total: int | None = None, base_url: str | None = None) -> Resource:
    """A searchset Bundle of ``entries`` (all matches), linked to ``self_url`` and ``next_url``.

    Entries carry no ``fullUrl`` unless ``base_url`` (the server's FHIR base, e.g.
    ``https://host/fhir/r4``) is given: R4 does not require one, but clients
    resolve references against it.
    """
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    out: Resource = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        out["total"] = total
    out["link"] = links
    items = []
    for resource in entries:
        item: Resource = {}
        if base_url is not None:
            item["fullUrl"] = f"{base_url.rstrip('/')}/{resource['resourceType']}/{resource['id']}"
        items.append(item | {"resource": resource, "search": {"mode": "match"}})
    if items:
        out["entry"] = items
    return out


Severity = Literal["fatal", "error", "warning", "information"]


def operation_outcome(severity: Severity, code: str, diagnostics: str) -> Resource:
    """One issue; ``code`` from http://hl7.org/fhir/issue-type (e.g. not-found, invalid)."""
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]}


# -- Task and Communication (working together, issue 9) ---------------------------------

#: task.state -> Task.status (http://hl7.org/fhir/task-status)
TASK_STATUS: Final = {"requested": "requested", "claimed": "accepted",
                      "completed": "completed", "declined": "rejected",
                      "cancelled": "cancelled"}
#: handover.state -> Task.status
HANDOVER_STATUS: Final = {"offered": "requested", "accepted": "completed",
                          "declined": "rejected", "expired": "cancelled"}


def _team_ref(team_id: str | None, name: str | None) -> Resource | None:
    """A team as a logical reference: teams are not resources this server serves (each
    is a contained Organization of the CareTeam, identified by its id the same way)."""
    if team_id is None:
        return None
    out: Resource = {"type": "Organization", "identifier": {"value": team_id}}
    if name:
        out["display"] = name
    return out


def _who(clinician_id: int | None, name: str | None) -> Resource | None:
    if clinician_id is None:
        return None
    return {"type": "Practitioner", "identifier": {"value": f"clinician-{clinician_id}"},
            **({"display": name} if name else {})}


def _drop_none(resource: Resource) -> Resource:
    return {k: v for k, v in resource.items() if v is not None and v != [] and v != {}}


def task(row: Row) -> Resource:
    """A ``task`` row (with team_name, requested_team_name, requested_by_name,
    claimed_by_name) as a Task: a team asked for an action on a patient."""
    execution: Resource = {}
    if row.get("claimed_at") is not None:
        execution["start"] = _instant(row["claimed_at"])
    if row.get("closed_at") is not None:
        execution["end"] = _instant(row["closed_at"])
    notes = [_note(row["detail"])] if row.get("detail") else []
    if row.get("close_note"):
        notes.append(_note(row["close_note"], row.get("closed_at")))
    return _drop_none({
        "resourceType": "Task",
        "id": f"task-{row['id']}",
        "status": TASK_STATUS[row["state"]],
        "intent": "order",
        "priority": row["priority"],
        "code": _concept(_coding(c.TASK_CODE, "fulfill", "Fulfill the focal request")),
        "description": row["title"],
        "focus": _ref("Flag", row["alert_id"]) if row.get("alert_id") else None,
        "for": _ref("Patient", row["patient_id"]),
        "executionPeriod": execution or None,
        "authoredOn": _instant(row["requested_at"]),
        "requester": _who(row.get("requested_by"), row.get("requested_by_name")),
        "owner": _team_ref(row["team_id"], row.get("team_name")),
        "restriction": {"period": {"end": _instant(row["due_at"])}},
        "note": notes,
    })


def handover_task(row: Row) -> Resource:
    """A ``handover`` row (with from_team_name, to_team_name) as a Task: the receiving
    team asked to take over an alert (focus: its Flag) or the lead for a patient (focus:
    the CareTeam), the SBAR note as four notes."""
    sbar = row.get("note") or {}
    notes = [_note(f"{part.capitalize()}: {sbar[part]}") for part in
             ("situation", "background", "assessment", "recommendation") if sbar.get(part)]
    if row.get("decline_reason"):
        notes.append(_note(f"Declined: {row['decline_reason']}", row.get("decided_at")))
    focus = (_ref("Flag", row["alert_id"]) if row["kind"] == "alert"
             else _ref("CareTeam", row["patient_id"]))
    business = ("escalated at the receiving team"
                if row.get("escalated_at") is not None and row["state"] == "offered" else None)
    return _drop_none({
        "resourceType": "Task",
        "id": f"handover-{row['id']}",
        "status": HANDOVER_STATUS[row["state"]],
        "businessStatus": _concept(text=business) if business else None,
        "intent": "proposal",
        "code": _concept(text="Hand-over of an alert" if row["kind"] == "alert"
                         else "Hand-over of lead responsibility"),
        "focus": focus,
        "for": _ref("Patient", row["patient_id"]),
        "authoredOn": _instant(row["offered_at"]),
        "lastModified": _instant(row.get("decided_at") or row.get("escalated_at")
                                 or row["offered_at"]),
        "requester": _team_ref(row["from_team"], row.get("from_team_name")),
        "owner": _team_ref(row["to_team"], row.get("to_team_name")),
        "restriction": {"period": {"end": _instant(row["respond_by"])}},
        "note": notes,
    })


def communication(row: Row) -> Resource:
    """A ``patient_message`` row (with author_name, team_name) as a Communication
    between the patient and a team on their care team."""
    team = _team_ref(row.get("team_id"), row.get("team_name"))
    clinician = _who(row.get("clinician_id"), row.get("author_name"))
    to_patient = row["direction"] == "to_patient"
    patient_ref = _ref("Patient", row["patient_id"])
    notes = []
    if row.get("needs_confirmation"):
        notes.append(_note("The patient was asked to confirm it."))
    if row.get("confirmed_at") is not None:
        notes.append(_note("Confirmed by the patient.", row["confirmed_at"]))
    return _drop_none({
        "resourceType": "Communication",
        "id": f"message-{row['id']}",
        "inResponseTo": ([_ref("Communication", f"message-{row['reply_to']}")]
                         if row.get("reply_to") else None),
        "status": "completed",
        "subject": patient_ref,
        "about": [_ref("Flag", row["alert_id"])] if row.get("alert_id") else None,
        "sent": _instant(row["sent_at"]),
        "received": _instant(row["read_at"]) if row.get("read_at") else None,
        "recipient": [patient_ref] if to_patient else ([team] if team else None),
        "sender": (clinician or team) if to_patient else patient_ref,
        "payload": [{"contentString": row["body"]}],
        "note": notes,
    })
