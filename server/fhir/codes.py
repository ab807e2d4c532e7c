"""Code systems, codes and profiles of the FHIR R4 export (../shared/reference/fhir.md section 5).

LOINC and UCUM codes live with the metrics in :data:`homeward.kinds.METRICS`; this
module adds only what kinds.py does not carry: the MDC (ISO/IEEE 11073-10101)
code of each metric, the R4 vital-signs profile it conforms to, and the HL7 PHD
IG device codes.  MDC codes are partition x 65536 + term code; each one below was
checked by that arithmetic against the term codes of at least two independent
11073 nomenclature tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from homeward.kinds import METRICS, Kind

# -- Code systems and identifier systems --------------------------------------------------
LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
MDC: Final = "urn:iso:std:iso:11073:10101"
# https://hl7.org/fhir/R4/codesystem-observation-category.html
OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
# https://hl7.org/fhir/R4/codesystem-data-absent-reason.html ("error" is the parent of
# not-a-number, positive-infinity and negative-infinity)
DATA_ABSENT_REASON: Final = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
# UK Core: https://simplifier.net/hl7fhirukcorer4 (NHS number identifier system)
NHS_NUMBER: Final = "https://fhir.nhs.uk/Id/nhs-number"
# PHD IG PhdDevice, identifier slice btmacAddressIdentifier:
# https://hl7.org/fhir/uv/phd/StructureDefinition-PhdDevice.html
BLUETOOTH_EUI48: Final = "http://hl7.org/fhir/sid/eui-48/bluetooth"
CONTINUA_DEVICE_IDENTIFIERS: Final = (
    "http://hl7.org/fhir/uv/phd/CodeSystem/ContinuaDeviceIdentifiers")
# https://hl7.org/fhir/R4/codesystem-device-status-reason.html
DEVICE_STATUS_REASON: Final = "http://terminology.hl7.org/CodeSystem/device-status-reason"
# https://hl7.org/fhir/R4/codesystem-flag-category.html
FLAG_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/flag-category"
# https://hl7.org/fhir/R4/codesystem-flag-priority-code.html (IHE PCD alert priority)
FLAG_PRIORITY_CODES: Final = "http://hl7.org/fhir/flag-priority-code"
# https://hl7.org/fhir/R4/codesystem-task-code.html (approve, fulfill, abort, ...)
TASK_CODE: Final = "http://hl7.org/fhir/CodeSystem/task-code"
#: Identifier system for a URI value (our reading ids as urn:uuid:...).
URI: Final = "urn:ietf:rfc:3986"

# -- Extensions (all core R4) -------------------------------------------------------------
# https://hl7.org/fhir/R4/extension-flag-detail.html: Reference(Any) with context Flag
FLAG_DETAIL: Final = "http://hl7.org/fhir/StructureDefinition/flag-detail"
# https://hl7.org/fhir/R4/extension-flag-priority.html: CodeableConcept with context Flag
FLAG_PRIORITY: Final = "http://hl7.org/fhir/StructureDefinition/flag-priority"
# https://hl7.org/fhir/R4/extension-observation-gatewaydevice.html (PHD IG uses it 1..1)
GATEWAY_DEVICE: Final = "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"

# -- R4 vital-signs profiles (https://hl7.org/fhir/R4/observation-vitalsigns.html) ----------
VITAL_SIGNS_PROFILE: Final = "http://hl7.org/fhir/StructureDefinition/vitalsigns"


def profile_url(name: str) -> str:
    """The canonical URL of the R4 core profile ``name`` (e.g. ``bp``, ``heartrate``)."""
    return f"http://hl7.org/fhir/StructureDefinition/{name}"


@dataclass(frozen=True, slots=True)
class Coded:
    """How one measured quantity is coded in FHIR beyond its LOINC and UCUM codes.

    ``profile`` is the R4 vital-signs profile id (None: not a vital sign, or a
    component of a panel); ``own`` is the id suffix of a metric exported as an
    Observation of its own, derived from the reading's main one (the pulse rate);
    ``also_loinc`` are LOINC codes a profile requires besides ``Metric.loinc``,
    listed before it.
    """

    mdc: str
    text: str
    profile: str | None = None
    own: str | None = None
    also_loinc: tuple[str, ...] = ()


#: Id suffix of the heart-rate Observation derived from a reading's pulse rate.
PULSE: Final = "pulse"

#: The one table of MDC codes, per (kind, metric) of homeward.kinds.METRICS.  Pulse rate
#: has a different MDC code from a cuff (MDC_PULS_RATE_NON_INV) and from an oximeter
#: (MDC_PULS_OXIM_PULS_RATE); both are LOINC 8867-4 Heart rate (fhir.md 5.1).
CODES: Final[dict[tuple[Kind, str], Coded]] = {
    # MDC_PRESS_BLD_NONINV_SYS / _DIA / _MEAN: components of the bp panel
    (Kind.BLOOD_PRESSURE, "systolic"): Coded("150021", "Systolic blood pressure"),
    (Kind.BLOOD_PRESSURE, "diastolic"): Coded("150022", "Diastolic blood pressure"),
    (Kind.BLOOD_PRESSURE, "mean_arterial"): Coded("150023", "Mean blood pressure"),
    (Kind.BLOOD_PRESSURE, "pulse_rate"): Coded("149546", "Pulse rate", "heartrate", PULSE),
    # MDC_PULS_OXIM_SAT_O2.  The R4 oxygensat profile fixes LOINC 2708-6; 59408-5 (by
    # pulse oximetry, kinds.py) is the more specific code US Core also requires.
    (Kind.SPO2, "spo2"): Coded("150456", "Oxygen saturation", "oxygensat",
                               also_loinc=("2708-6",)),
    (Kind.SPO2, "pulse_rate"): Coded("149530", "Pulse rate", "heartrate", PULSE),
    # MDC_PULS_OXIM_PERF_REL = 2 x 65536 + 19376.  No LOINC in kinds.py: MDC only.
    (Kind.SPO2, "perfusion_index"): Coded("150448", "Perfusion index"),
    (Kind.TEMPERATURE, "body_temperature"): Coded("150364", "Body temperature", "bodytemp"),
    (Kind.WEIGHT, "body_weight"): Coded("188736", "Body weight", "bodyweight"),
    # MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD, matching LOINC 14743-9 "in Capillary blood by
    # Glucometer".  The wire does not carry the meter's sample type (plasma-calibrated
    # meters would be 160188).  Not a vital sign: no profile.
    (Kind.GLUCOSE, "blood_glucose"): Coded("160184", "Blood glucose"),
    (Kind.RESPIRATORY_RATE, "respiratory_rate"): Coded("151562", "Respiratory rate", "resprate"),
}


@dataclass(frozen=True, slots=True)
class Panel:
    """A kind exported as a panel: no value of its own, its metrics as components."""

    loinc: str
    mdc: str
    text: str
    profile: str


#: https://hl7.org/fhir/R4/bp.html: 85354-9 with systolic/diastolic components;
#: MDC_PRESS_BLD_NONINV 150020 as in the PHD IG blood-pressure example.
PANELS: Final[dict[Kind, Panel]] = {
    Kind.BLOOD_PRESSURE: Panel("85354-9", "150020", "Blood pressure panel", "bp"),
}

#: PHD IG PhdDevice.type: MDC_MOC_VMS_MDS_SIMP (a personal health device), and
#: PhgDevice.type: MDC_MOC_VMS_MDS_AHD (the gateway, our hub).
PHD_TYPE: Final = ("65573", "MDC_MOC_VMS_MDS_SIMP: personal health device")
PHG_TYPE: Final = ("531981", "MDC_MOC_VMS_MDS_AHD: personal health gateway")

#: PhdDevice.specialization.systemType: MDC_DEV_SPEC_PROFILE_* = 8 x 65536 + term code.
#: A respiratory rate is entered by hand, not sent by a PHD: no specialization.
PHD_SPECIALIZATION: Final[dict[Kind, tuple[str, str]]] = {
    Kind.BLOOD_PRESSURE: ("528391", "MDC_DEV_SPEC_PROFILE_BP: blood pressure monitor"),
    Kind.SPO2: ("528388", "MDC_DEV_SPEC_PROFILE_PULS_OXIM: pulse oximeter"),
    Kind.TEMPERATURE: ("528392", "MDC_DEV_SPEC_PROFILE_TEMP: thermometer"),
    Kind.WEIGHT: ("528399", "MDC_DEV_SPEC_PROFILE_SCALE: weighing scale"),
    Kind.GLUCOSE: ("528401", "MDC_DEV_SPEC_PROFILE_GLUCOSE: glucose meter"),
}

#: Alert severity -> flag-priority code (IHE PCD: low, medium, high priority).
FLAG_PRIORITY_BY_SEVERITY: Final[dict[str, tuple[str, str]]] = {
    "info": ("PL", "Low priority"),
    "amber": ("PM", "Medium priority"),
    "red": ("PH", "High priority"),
}


def _check_complete() -> None:
    """Every metric of kinds.py has its row here (a new metric must not export uncoded)."""
    missing = [(k, m.name) for k, ms in METRICS.items() for m in ms if (k, m.name) not in CODES]
    if missing:  # pragma: no cover - a programming error caught at import
        raise RuntimeError(f"server.fhir.codes.CODES lacks {missing}")


_check_complete()
