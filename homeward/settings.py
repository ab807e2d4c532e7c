"""Settings from the environment (``HOMEWARD_*``), one object per process.

Defaults are for development on one machine.  Outside development
(``HOMEWARD_ENV`` other than ``development``/``test``) placeholder secrets are
refused at start-up rather than discovered in production.

Any setting can instead be read from a file named by ``HOMEWARD_<NAME>_FILE``
(Docker and Kubernetes secrets: ``HOMEWARD_SECRET_KEY_FILE=/run/secrets/key``),
so that a secret never sits in the environment or in ``docker inspect``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "password", "dev"})


def variable_or_file(variable: str, environ: Mapping[str, str]) -> str | None:
    """``variable``'s value, or the text of the file ``<variable>_FILE`` names (its
    trailing newline cut), or None when neither is set.  Both set is refused (which one
    was meant?), as is a file that cannot be read: nothing starts on a guessed secret."""
    path = environ.get(f"{variable}_FILE")
    if path is None:
        return environ.get(variable)
    if variable in environ:
        raise ValueError(f"both {variable} and {variable}_FILE are set; set one")
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as e:
        raise ValueError(f"{variable}_FILE: cannot read {path}: {e.strerror}") from None


class FileEnvSettingsSource(PydanticBaseSettingsSource):
    """``HOMEWARD_<NAME>_FILE``: the value of ``HOMEWARD_<NAME>`` read from that file
    (:func:`variable_or_file`)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # all the work is in __call__

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.config.get("env_prefix", ""))
        fields = self.settings_cls.model_fields
        values: dict[str, Any] = {}
        for name in fields:
            if f"{name}_file" in fields:  # HOMEWARD_MQTT_CA_FILE is a setting of its own
                continue
            var = f"{prefix}{name}".upper()
            if f"{var}_FILE" in os.environ:  # else the environment source has it
                values[name] = variable_or_file(var, os.environ)
        return values


class EnvSettings(BaseSettings):
    """Settings from ``HOMEWARD_*`` variables or ``HOMEWARD_*_FILE`` files."""

    model_config = SettingsConfigDict(env_prefix="HOMEWARD_", extra="ignore")

    @classmethod
    def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, FileEnvSettingsSource(settings_cls),
                dotenv_settings, file_secret_settings)


class Settings(EnvSettings):

    env: Literal["development", "test", "production"] = "development"

    # PostgreSQL (a libpq connection string)
    database_url: str = "postgresql://homeward@127.0.0.1:5432/homeward"

    # MQTT broker
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    #: This process's broker user: each server role has its own with only its rights
    #: (homeward.broker_roles, docs/broker.md): homeward-ingest, homeward-api, ...
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    #: TLS to the broker (docs/broker.md): the CA the broker's certificate is checked
    #: against (absent: the system's), and a client certificate and key for a listener
    #: that requires one (``require_certificate``).
    mqtt_tls: bool = False
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    #: The login that creates and revokes hubs' broker credentials (server.broker_credentials):
    #: the admin commands' and the admin API's, never a worker's.
    mqtt_provisioner_username: str = "homeward-provisioner"
    mqtt_provisioner_password: str | None = None
    #: The broker as hubs reach it, written into provisioning bundles (``mqtts://host:8883``);
    #: default: mqtt_host, mqtt_port and mqtt_tls (docs/admin.md).
    hub_broker_url: str | None = None
    #: Client id of the ingest's persistent session; one id per ingest process.
    ingest_client_id: str = "homeward-ingest"
    #: Optional MQTT shared-subscription group for scaled-out ingest workers.
    ingest_share_group: str | None = None
    #: Readings written per database transaction, at most.
    ingest_batch_readings: int = Field(default=5000, ge=1)
    #: How long a batch may wait to fill before it is written (ms).
    ingest_batch_ms: int = Field(default=20, ge=0)
    #: A reading taken longer ago than this is quarantined (homeward.wire.MAX_READING_AGE:
    #: a year-long backlog drains, a device clock at 0001-01-01 or 1970 does not).
    ingest_max_reading_age_days: int = Field(default=400, ge=1)
    #: Distinct UTC days one message may span, else it is refused whole
    #: (homeward.wire.MAX_DAYS_PER_MESSAGE: the default age window, 400 + 2 days).
    ingest_max_days_per_message: int = Field(default=402, ge=1)
    #: Rejects kept in full per hub and hour; beyond either bound they are counted in
    #: quarantine_hourly and only 1 in ``ingest_quarantine_sample_every`` is kept, as a
    #: short preview (server.ingest_writer).
    ingest_quarantine_per_hub_hour: int = Field(default=1000, ge=0)
    ingest_quarantine_bytes_per_hub_hour: int = Field(default=8 * 1024 * 1024, ge=0)
    ingest_quarantine_sample_every: int = Field(default=100, ge=1)

    # HTTP API and dashboard
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    #: Secret that keys the dashboard's CSRF tokens (sessions live in the database).
    secret_key: str = "dev"  # noqa: S105 -- refused outside development
    #: The dashboard's address as people reach it (links in invitations, e-mails).
    dashboard_url: str = "http://127.0.0.1:8000"
    #: Largest request body the API reads (bytes); larger ones answer 413 unread.
    api_max_body_bytes: int = Field(default=1_048_576, ge=1)
    #: Live alert streams (SSE) one clinician may hold open at once; more answer 429.
    api_streams_per_clinician: int = Field(default=5, ge=1)
    #: Password checks (scrypt, 16 MiB each) run at once; further logins wait their turn.
    api_login_concurrency: int = Field(default=2, ge=1)
    #: Sign-in throttling (docs/security.md): after this many failed sign-ins for one
    #: username, or from one address, within the window, attempts answer 429.
    login_max_failures: int = Field(default=10, ge=1)
    login_failure_window_seconds: int = Field(default=15 * 60, ge=1)
    #: A dashboard session ends after this long unused, and this long after sign-in
    #: whatever happens (a shift; the old signed cookie's 12 hours).
    session_idle_seconds: int = Field(default=60 * 60, ge=60)
    session_absolute_seconds: int = Field(default=12 * 3600, ge=60)
    #: The session cookie's Secure flag; unset: when dashboard_url or the request is https.
    session_cookie_secure: bool | None = None
    #: The patient portal (docs/patient-portal.md): a sign-in code works this long, once;
    #: a patient's session ends after this long unused, and this long after sign-in.
    patient_code_seconds: int = Field(default=10 * 60, ge=60, le=3600)
    patient_session_idle_seconds: int = Field(default=30 * 60, ge=60)
    patient_session_absolute_seconds: int = Field(default=12 * 3600, ge=60)
    #: Development and the demo only (refused in production): e-mails to patients (sign-in
    #: codes, notices of new messages) are appended to this file (0600) instead of being
    #: queued for SMTP.
    patient_mail_file: Path | None = None
    #: /health degrades when the oldest reading waiting for evaluation is older (s).
    health_evaluation_backlog_seconds: float = Field(default=120.0, gt=0)
    #: /health degrades when an ingest has held a message unacknowledged this long (s).
    health_ingest_held_seconds: float = Field(default=60.0, gt=0)

    # Observability (docs/observability.md): each process serves Prometheus metrics on its
    # own address and port (port 0: not served), and the ingest's and the alert worker's
    # endpoints answer /healthz for an orchestrator's health check.
    ingest_metrics_host: str = "127.0.0.1"
    ingest_metrics_port: int = Field(default=9310, ge=0, le=65535)
    alerts_metrics_host: str = "127.0.0.1"
    alerts_metrics_port: int = Field(default=9311, ge=0, le=65535)
    api_metrics_host: str = "127.0.0.1"
    api_metrics_port: int = Field(default=9312, ge=0, le=65535)
    #: /healthz answers 503 when the worker's loop or heartbeat is older than this (s).
    health_worker_stale_seconds: float = Field(default=30.0, gt=0)
    #: "json": one JSON object a line (production); "console": for a person (development).
    log_format: Literal["json", "console"] = "console"
    log_level: str = "INFO"

    # Edge agent
    hub_id: str | None = None
    hub_password: str | None = None
    edge_state_dir: Path = Path(".homeward/edge")
    #: "bleak" uses the platform's Bluetooth; "sim" uses device_sim's virtual peripherals.
    ble_backend: Literal["bleak", "sim"] = "bleak"

    # Data lifecycle (server/retention.py, `homeward db retention`; docs/operations.md)
    #: Raw readings (8 years: adult health records, NHS Records Management Code of
    #: Practice; the same period as the TimescaleDB policy of migration 0050).
    retention_readings_days: int = Field(default=2922, ge=1)
    #: The clinical record around them: resolved alerts with their history, notes,
    #: status changes, closed rule settings and enrolments.
    retention_record_days: int = Field(default=2922, ge=1)
    #: Notifications sent or given up on, and every delivery attempt.
    retention_notifications_days: int = Field(default=400, ge=1)
    #: Quarantined payloads, their hourly counts, poison-message records, stopped
    #: ingests' heartbeats: operational, not clinical.
    retention_quarantine_days: int = Field(default=30, ge=1)
    #: The access audit.  How long to keep it is a legal decision for the data
    #: controller; the default (10 years) deliberately outlives the records it is
    #: about, so who saw a record can be answered for as long as the record exists.
    retention_audit_days: int = Field(default=3653, ge=1)
    #: Rows deleted per transaction at most (short locks, WAL in small steps).
    retention_batch_rows: int = Field(default=5000, ge=1)
    #: Key of the erasure reference (an HMAC of the NHS number); default: secret_key.
    erasure_reference_key: str | None = None

    # Demo / local state
    state_dir: Path = Path(".homeward")

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> Settings:
        if self.env == "production":
            if self.secret_key.lower() in PLACEHOLDER_SECRETS:
                raise ValueError("HOMEWARD_SECRET_KEY is a placeholder; set a real secret")
            if self.mqtt_password is not None and self.mqtt_password.lower() in PLACEHOLDER_SECRETS:
                raise ValueError("HOMEWARD_MQTT_PASSWORD is a placeholder; set a real secret")
            provisioner = self.mqtt_provisioner_password
            if provisioner is not None and provisioner.lower() in PLACEHOLDER_SECRETS:
                raise ValueError("HOMEWARD_MQTT_PROVISIONER_PASSWORD is a placeholder;"
                                 " set a real secret")
            if self.patient_mail_file is not None:
                raise ValueError("HOMEWARD_PATIENT_MAIL_FILE writes sign-in codes to a file;"
                                 " it is for development and the demo only")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
