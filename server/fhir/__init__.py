"""FHIR R4 export: Homeward's stored rows as FHIR resources (JSON-ready dicts)."""

from .resources import (
    care_team,
    device,
    device_id,
    evidence_ids,
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

__all__ = [
    "care_team",
    "device",
    "device_id",
    "evidence_ids",
    "flag",
    "hub_device",
    "hub_device_id",
    "observations",
    "operation_outcome",
    "parse_observation_id",
    "patient",
    "pulse_observation_id",
    "searchset",
]
