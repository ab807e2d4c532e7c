"""A hub's broker credentials, made and taken away while the broker runs.

The interface ``homeward admin hub provision|revoke`` (and the admin API) call::

    password = provision_hub_credentials("hub-0042")   # -> str, shown once, never stored
    revoke_hub_credentials("hub-0042")                  # -> True (False: there were none)
    hub_credentials_exist("hub-0042")                   # -> bool

Each opens a short connection to the broker as the provisioner
(``HOMEWARD_MQTT_PROVISIONER_USERNAME``/``_PASSWORD``, with the process's
``HOMEWARD_MQTT_HOST``/``_PORT``/``_TLS``/``_CA_FILE``/``_CERT_FILE``/``_KEY_FILE``;
pass ``settings=`` to use others) and sends Mosquitto's dynamic-security commands:

- provision creates a role with the hub's own four topics (``homeward.broker_roles``)
  and a client whose username is the hub id.  The hub can connect at once.  A hub
  that already has credentials raises :class:`HubCredentialsExist` unless
  ``replace=True``, which revokes the old ones first (the old password is refused
  and a hub connected with it is disconnected);
- revoke deletes the client and its role.  The broker disconnects a connected hub
  at that moment, and refuses its password from then on.

Errors: :class:`ConnectionError` (broker unreachable, or the provisioner's login
refused), :class:`TimeoutError` (no answer), :class:`server.broker_dynsec.DynsecError`
(the broker refused a command).  The caller records the hub in the database and
audits the act; nothing here touches the database.
"""

from __future__ import annotations

from homeward.broker_roles import hub_grants
from homeward.settings import Settings, get_settings
from server.broker_dynsec import (
    DynsecControl,
    new_password,
    provision_commands,
    revoke_commands,
)

CLIENT_NOT_FOUND = "Client not found"
ROLE_NOT_FOUND = "Role not found"


class HubCredentialsExist(RuntimeError):
    """The hub already has broker credentials (``replace=True`` makes new ones)."""


def provision_hub_credentials(hub_id: str, *, replace: bool = False,
                              settings: Settings | None = None) -> str:
    """Create the hub's broker login and rights; return its new password."""
    hub_grants(hub_id)  # refuses ids that are not hub ids (wildcards, "homeward-...")
    password = new_password()
    with DynsecControl(settings or get_settings()) as control:
        if _exists(control, hub_id):
            if not replace:
                raise HubCredentialsExist(f"hub {hub_id!r} already has broker credentials")
            control.run(revoke_commands(hub_id),
                        tolerate=frozenset({CLIENT_NOT_FOUND, ROLE_NOT_FOUND}))
        else:  # a role left behind by an interrupted revoke would make createRole fail
            control.run(revoke_commands(hub_id)[1:], tolerate=frozenset({ROLE_NOT_FOUND}))
        control.run(provision_commands(hub_id, password))
    return password


def revoke_hub_credentials(hub_id: str, *, settings: Settings | None = None) -> bool:
    """Delete the hub's broker login and rights, disconnecting it now.  Idempotent:
    returns whether there was a login to delete."""
    hub_grants(hub_id)  # never a server user's login
    with DynsecControl(settings or get_settings()) as control:
        client, _ = control.run(revoke_commands(hub_id),
                                tolerate=frozenset({CLIENT_NOT_FOUND, ROLE_NOT_FOUND}))
    return client.get("error") != CLIENT_NOT_FOUND


def hub_credentials_exist(hub_id: str, *, settings: Settings | None = None) -> bool:
    with DynsecControl(settings or get_settings()) as control:
        return _exists(control, hub_id)


def _exists(control: DynsecControl, hub_id: str) -> bool:
    (found,) = control.run([{"command": "getClient", "username": hub_id}],
                           tolerate=frozenset({CLIENT_NOT_FOUND}))
    return found.get("error") != CLIENT_NOT_FOUND
