"""Response models of the alert routes, so /openapi.json says what an alert holds."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Alert(BaseModel):
    """An alert as listed: its rule, evidence, state and where it is routed.  Times
    are RFC 3339 strings."""

    model_config = ConfigDict(extra="allow")

    id: int
    category: str = Field(description="'clinical' or 'system'")
    patient_id: int | None
    patient_name: str | None
    rule_id: str
    rule: dict[str, Any] = Field(description="the rule as loaded when it opened, with source")
    severity: str
    state: str = Field(description="open, acknowledged, resolved or auto_resolved")
    summary: str
    labels: dict[str, Any]
    team_id: str | None
    opened_at: str
    updated_at: str
    trigger_count: int
    count: int = Field(description="trigger_count, kept for older clients")
    last_triggered_at: str
    latest_reading: dict[str, Any] | None
    readings: list[dict[str, Any]] = Field(description="the readings that fired it")
    detail: dict[str, Any]
    acknowledged_at: str | None
    acknowledged_by: int | None
    ack_expires_at: str | None
    snoozed_until: str | None
    resolved_at: str | None
    resolved_by: int | None
    outcome: str | None
    route: dict[str, Any] | None
    escalation_policy: str | None
    escalation_level: int
    next_escalation_at: str | None
    inhibited_by: str | None


class AlertEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    at: str
    event: str
    actor: str
    clinician_id: int | None
    detail: dict[str, Any]


class NotificationRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    channel: str
    target: str | None
    team_id: str | None
    level: int | None
    reason: str | None
    state: str
    attempts: int
    created_at: str
    delivered_at: str | None
    last_error: str | None
    idempotency_key: str | None


class AlertDetail(Alert):
    """One alert with its whole history and every notification it caused."""

    events: list[AlertEvent]
    notifications: list[NotificationRecord]
