"""Mosquitto's dynamic-security plugin: its state file and its control topic.

The broker's clients and roles live in the plugin's JSON state file
(``plugin_opt_config_file``).  Before the broker first starts,
:func:`initial_state` writes one holding the server users and their roles
(:mod:`homeward.broker_roles`); while it runs, :class:`DynsecControl` sends
commands on ``$CONTROL/dynamic-security/v1`` as the provisioner, and the broker
applies them at once: a client deleted or disabled is disconnected on the spot
(docs/broker.md), and the plugin saves its file after every change.

Everything here but :class:`DynsecControl` is a pure function over dicts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import threading
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from homeward.broker_roles import DYNSEC_CONTROL_TOPIC, GRANTS, Grant, Role, hub_grants
from homeward.settings import Settings

RESPONSE_TOPIC = f"{DYNSEC_CONTROL_TOPIC}/response"
#: PBKDF2-SHA512 rounds, Mosquitto's own default.  Our passwords are random tokens of
#: 128 bits or more, which stretching cannot make stronger; a login stays cheap.
ITERATIONS = 101
#: Nothing is allowed unless a role allows it: publishing, subscribing, receiving.
DEFAULT_ACL_ACCESS = {"publishClientSend": False, "publishClientReceive": False,
                      "subscribe": False, "unsubscribe": True}

Command = dict[str, Any]


def hash_password(password: str, *, salt: bytes | None = None,
                  iterations: int = ITERATIONS) -> dict[str, Any]:
    """The plugin's stored form of a password (PBKDF2-HMAC-SHA512, 64 bytes, 12-byte salt)."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return {"password": base64.b64encode(digest).decode(),
            "salt": base64.b64encode(salt).decode(), "iterations": iterations}


def new_password() -> str:
    """A broker password: 144 random bits, URL-safe."""
    return secrets.token_urlsafe(18)


def hub_role_name(hub_id: str) -> str:
    return f"hub:{hub_id}"


def acls(grants: Iterable[Grant]) -> list[dict[str, Any]]:
    """A role's ACL entries: ``read`` is subscribe and receive, ``write`` is publish."""
    out: list[dict[str, Any]] = []
    for grant in grants:
        if grant.access == "write":
            out.append({"acltype": "publishClientSend", "topic": grant.topic, "allow": True})
            continue
        filters = [grant.topic] + ([f"$share/+/{grant.topic}"] if grant.shared else [])
        out += [{"acltype": "subscribePattern", "topic": f, "allow": True} for f in filters]
        out.append({"acltype": "publishClientReceive", "topic": grant.topic, "allow": True})
    return out


def server_role(role: Role) -> dict[str, Any]:
    return {"rolename": role.value, "acls": acls(GRANTS[role])}


def hub_role(hub_id: str) -> dict[str, Any]:
    """A role of the hub's own, with its topics spelt out (2.0's plugin has no ``%u``)."""
    return {"rolename": hub_role_name(hub_id), "acls": acls(hub_grants(hub_id))}


def client_entry(username: str, password: str, roles: Iterable[str]) -> dict[str, Any]:
    return {"username": username, **hash_password(password),
            "roles": [{"rolename": name} for name in roles]}


def initial_state(server_users: Mapping[str, tuple[str, Iterable[Role]]],
                  hubs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A state file with ``server_users`` (username -> (password, roles)), every server
    role, and ``hubs`` (hub id -> password), each hub with its own role."""
    hubs = hubs or {}
    roles = [server_role(r) for r in Role if r is not Role.HUB]
    roles += [hub_role(h) for h in hubs]
    clients = [client_entry(user, pw, [r.value for r in user_roles])
               for user, (pw, user_roles) in server_users.items()]
    clients += [client_entry(h, pw, [hub_role_name(h)]) for h, pw in hubs.items()]
    return {"clients": clients, "groups": [], "roles": roles,
            "defaultACLAccess": dict(DEFAULT_ACL_ACCESS)}


def merged(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """``existing`` with every client and role of ``wanted`` added or replaced, and its
    default access: the demo's users are set again while hubs provisioned since stay."""
    def by_name(items: Iterable[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
        return {item[key]: item for item in items}

    clients = by_name(existing.get("clients", []), "username")
    clients.update(by_name(wanted.get("clients", []), "username"))
    roles = by_name(existing.get("roles", []), "rolename")
    roles.update(by_name(wanted.get("roles", []), "rolename"))
    return {**existing, "clients": list(clients.values()), "roles": list(roles.values()),
            "groups": existing.get("groups", []),
            "defaultACLAccess": wanted.get("defaultACLAccess", DEFAULT_ACL_ACCESS)}


def write_state(path: Path, state: Mapping[str, Any]) -> Path:
    """Write the state file readable by its owner only (it holds password hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(state, out, indent=1)
    os.replace(tmp, path)
    return path


# -- commands on the control topic ------------------------------------------------------

def provision_commands(hub_id: str, password: str) -> list[Command]:
    role = hub_role(hub_id)
    return [{"command": "createRole", **role},
            {"command": "createClient", "username": hub_id, "password": password,
             "roles": [{"rolename": role["rolename"]}]}]


def revoke_commands(hub_id: str) -> list[Command]:
    """Delete the client (the broker disconnects it at once), then its role."""
    return [{"command": "deleteClient", "username": hub_id},
            {"command": "deleteRole", "rolename": hub_role_name(hub_id)}]


class DynsecError(RuntimeError):
    """The broker refused a command; ``error`` is its reason ("Client not found", ...)."""

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"dynamic security refused {command}: {error}")
        self.command = command
        self.error = error


def connect_client(settings: Settings, username: str | None, password: str | None, *,
                   client_id: str = "") -> mqtt.Client:
    """A paho MQTT 5 client (not connected) with the settings' TLS and this login."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    if username:
        client.username_pw_set(username, password)
    if settings.mqtt_tls:
        client.tls_set(ca_certs=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None,
                       certfile=str(settings.mqtt_cert_file) if settings.mqtt_cert_file else None,
                       keyfile=str(settings.mqtt_key_file) if settings.mqtt_key_file else None)
    return client


class DynsecControl:
    """A short-lived connection as the provisioner that runs commands and waits for the
    broker's answers (matched by correlation data).  Use as a context manager."""

    def __init__(self, settings: Settings, *, timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._client = connect_client(settings, settings.mqtt_provisioner_username,
                                      settings.mqtt_provisioner_password)
        self._ready = threading.Event()
        self._refused: str | None = None
        self._answers: dict[str, dict[str, Any]] = {}
        self._answered = threading.Condition()
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda c, u, mid, codes, p: self._on_subscribe(codes)
        self._client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            self._ready.set()
            return
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(self, codes: list[Any]) -> None:
        if any(code.is_failure for code in codes):
            self._refused = f"subscribe to {RESPONSE_TOPIC}: {codes[0]}"
        self._ready.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(msg.payload).get("responses", [])
        except ValueError:
            return
        with self._answered:
            for response in responses:
                key = response.get("correlationData")
                if isinstance(key, str):
                    self._answers[key] = response
            self._answered.notify_all()

    def __enter__(self) -> DynsecControl:
        s = self.settings
        self._client.connect(s.mqtt_host, s.mqtt_port, keepalive=30)
        self._client.loop_start()
        if not self._ready.wait(self.timeout) or self._refused:
            self.close()
            raise ConnectionError(f"cannot reach the broker's dynamic security at "
                                  f"{s.mqtt_host}:{s.mqtt_port} as "
                                  f"{s.mqtt_provisioner_username}: {self._refused or 'timeout'}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def run(self, commands: list[Command], *,
            tolerate: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        """Send ``commands`` in one message and return the broker's responses in order.

        A response with an error raises :class:`DynsecError`, unless its error is in
        ``tolerate`` (say ``"Client not found"`` for a revoke that may find nothing).
        The plugin runs the commands in order and does not stop at an error.
        """
        keys = [uuid.uuid4().hex for _ in commands]
        payload = {"commands": [{**c, "correlationData": k} for c, k in zip(commands, keys,
                                                                             strict=True)]}
        info = self._client.publish(DYNSEC_CONTROL_TOPIC, json.dumps(payload), qos=1)
        info.wait_for_publish(self.timeout)
        with self._answered:
            if not self._answered.wait_for(lambda: all(k in self._answers for k in keys),
                                           self.timeout):
                raise TimeoutError("the broker did not answer the dynamic-security commands")
            responses = [self._answers.pop(k) for k in keys]
        for response in responses:
            error = response.get("error")
            if error and error not in tolerate:
                raise DynsecError(str(response.get("command")), str(error))
        return responses
