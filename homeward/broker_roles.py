"""Who may do what at the MQTT broker: one role per kind of client (docs/broker.md).

The rights follow the wire format (DESIGN.md, :mod:`homeward.wire`), and nothing more:

- ``ingest`` reads every hub's readings and status and writes the stored-acks;
- ``config`` (the API and the admin commands) writes the hubs' retained configs;
- ``hub`` (one per hub, its username its hub id) writes its own readings and status
  and reads its own config and stored-acks;
- ``provisioner`` creates and removes hubs' credentials through Mosquitto's
  dynamic-security control topic.  That is the right to make any client with any
  rights, so it belongs to the admin tooling alone.

Each grant is an access (``read``: subscribe and receive; ``write``: publish) and a
topic filter, in which ``{hub}`` stands for the hub's id.  Brokers' own formats
(an ACL file, dynamic-security roles) are rendered from these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from homeward.wire import (
    HUB_ID_PATTERN,
    READINGS_SUBSCRIPTION,
    STATUS_SUBSCRIPTION,
    acks_topic,
    config_topic,
    readings_topic,
    status_topic,
)

#: Prefix of every server-side username; no hub id may start with it.
SERVER_USER_PREFIX = "homeward-"
#: Mosquitto's dynamic-security control topic (requests; responses below ``/response``).
DYNSEC_CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"

ANY_HUB = "+"


class Role(StrEnum):
    INGEST = "ingest"
    CONFIG = "config"
    HUB = "hub"
    PROVISIONER = "provisioner"


#: The username each server role logs in with by default (one user per process that
#: keeps a connection up: a second ingest in a $share group is homeward-ingest-2, ...).
DEFAULT_USERS: dict[Role, str] = {
    Role.INGEST: "homeward-ingest",
    Role.CONFIG: "homeward-api",
    Role.PROVISIONER: "homeward-provisioner",
}


@dataclass(frozen=True)
class Grant:
    access: Literal["read", "write"]
    #: A topic filter; ``{hub}`` is the hub's id (hub role only).
    topic: str
    #: Also allow the filter under a shared subscription (``$share/<group>/...``).
    shared: bool = False

    def for_hub(self, hub_id: str) -> Grant:
        return Grant(self.access, self.topic.replace("{hub}", hub_id), self.shared)


GRANTS: dict[Role, tuple[Grant, ...]] = {
    Role.INGEST: (
        Grant("read", READINGS_SUBSCRIPTION, shared=True),
        Grant("read", STATUS_SUBSCRIPTION, shared=True),
        Grant("write", acks_topic(ANY_HUB)),
    ),
    Role.CONFIG: (
        Grant("write", config_topic(ANY_HUB)),
    ),
    Role.HUB: (
        Grant("write", readings_topic("{hub}")),
        Grant("write", status_topic("{hub}")),
        Grant("read", config_topic("{hub}")),
        Grant("read", acks_topic("{hub}")),
    ),
    Role.PROVISIONER: (
        Grant("write", DYNSEC_CONTROL_TOPIC),
        Grant("read", f"{DYNSEC_CONTROL_TOPIC}/response"),
    ),
}


def hub_grants(hub_id: str) -> tuple[Grant, ...]:
    """The rights of one hub: its own four topics."""
    if not re.match(HUB_ID_PATTERN, hub_id):
        raise ValueError(f"not a hub id: {hub_id!r}")
    if hub_id.startswith(SERVER_USER_PREFIX):
        raise ValueError(f"a hub id may not start with {SERVER_USER_PREFIX!r}: {hub_id!r}")
    return tuple(g.for_hub(hub_id) for g in GRANTS[Role.HUB])
