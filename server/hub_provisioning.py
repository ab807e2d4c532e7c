"""Provisioning and revoking a hub: its database record and its broker credentials together.

``provision`` records the hub (in an organisation) if it is new, then has the broker
make its login (``server.broker_credentials``) and returns the bundle the hub loads
(``homeward edge --bundle``): hub id, the broker as hubs reach it, its CA, the new
password.  The password is never stored here: the bundle is its only copy.

``revoke`` takes the credentials away at the broker first (which disconnects a
connected hub at once), then marks the hub revoked and ends its open enrolment.  If
the broker cannot be reached nothing changes, and the error says so: a hub is never
recorded as revoked while it can still log in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from homeward.provisioning import HubBundle, broker_url, parse_broker_url
from homeward.settings import Settings
from server import admin


class BrokerRefused(admin.AdminError):
    """The broker could not be reached, or refused the provisioner's command."""


def bundle_broker_url(settings: Settings) -> str:
    url = settings.hub_broker_url or broker_url(settings.mqtt_host, settings.mqtt_port,
                                                settings.mqtt_tls)
    try:
        parse_broker_url(url)
    except ValueError as err:
        raise admin.Invalid(f"HOMEWARD_HUB_BROKER_URL: {err}") from None
    return url


class NotProvisioner(admin.Conflict):
    """This process has no provisioner login (HOMEWARD_MQTT_PROVISIONER_PASSWORD)."""


def _require_provisioner(settings: Settings) -> None:
    if not settings.mqtt_provisioner_password:
        raise NotProvisioner("this process cannot make or revoke broker credentials: "
                             "HOMEWARD_MQTT_PROVISIONER_PASSWORD is not set (docs/admin.md)")


def _broker_errors() -> tuple[type[BaseException], ...]:
    from server.broker_dynsec import DynsecError

    return (ConnectionError, TimeoutError, OSError, DynsecError)


def provision(conn: psycopg.Connection[Any], *, hub_id: str, organisation_id: int | None,
              settings: Settings, replace: bool = False, ca_file: Path | None = None
              ) -> HubBundle:
    """Record the hub if new and give it broker credentials; its bundle.

    A hub that already has credentials is refused (:class:`admin.Conflict`) unless
    ``replace``: then its old password stops working and a hub connected with it is
    disconnected.  Provisioning a revoked hub again brings it back."""
    from server.broker_credentials import HubCredentialsExist, provision_hub_credentials

    _require_provisioner(settings)
    url = bundle_broker_url(settings)
    ca = ca_file or settings.mqtt_ca_file
    try:
        ca_pem = ca.read_text(encoding="ascii") if ca is not None else None
    except (OSError, UnicodeDecodeError) as err:
        raise admin.Invalid(f"cannot read the broker's CA {ca}: {err}") from None
    row = conn.execute("SELECT organisation_id FROM hub WHERE id = %s", (hub_id,)).fetchone()
    if row is None:
        admin.create_hub(conn, hub_id=hub_id, organisation_id=organisation_id)
    elif organisation_id is not None and row[0] not in (None, organisation_id):
        raise admin.NotFound(f"hub {hub_id!r} not found")  # another organisation's
    try:
        password = provision_hub_credentials(hub_id, replace=replace, settings=settings)
    except HubCredentialsExist as err:
        raise admin.Conflict(f"{err}; replace them (the old password stops working) with "
                             "--replace") from err
    except _broker_errors() as err:
        raise BrokerRefused(f"the broker did not make hub {hub_id}'s credentials: {err}"
                            ) from err
    with conn.transaction():
        conn.execute("UPDATE hub SET revoked_at = NULL, organisation_id ="
                     " COALESCE(organisation_id, %s) WHERE id = %s", (organisation_id, hub_id))
    return HubBundle(hub_id=hub_id, broker_url=url, password=password, ca_pem=ca_pem)


def revoke(conn: psycopg.Connection[Any], *, hub_id: str, settings: Settings,
           at: datetime | None = None) -> bool:
    """Take the hub's credentials away now, then record it revoked; whether it had any."""
    from server.broker_credentials import revoke_hub_credentials

    if conn.execute("SELECT 1 FROM hub WHERE id = %s", (hub_id,)).fetchone() is None:
        raise admin.NotFound(f"unknown hub {hub_id!r}")
    _require_provisioner(settings)
    try:
        had = revoke_hub_credentials(hub_id, settings=settings)
    except _broker_errors() as err:
        raise BrokerRefused(f"the broker did not revoke hub {hub_id}'s credentials, which "
                            f"still work: {err}") from err
    admin.revoke_hub(conn, hub_id=hub_id, at=at or datetime.now(UTC))
    return had
