"""Each hub's retained configuration on ``homeward/v1/hubs/{hub}/config``.

The device table is the source of truth; :func:`publish_hub_config` publishes
the hub's current :class:`homeward.wire.HubConfig` (retained, QoS 1) so the
hub picks it up at once, or whenever it next connects.  Call it after
pairing or removing a device (``server.admin.pair_device`` /
``remove_device``).
"""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from homeward.settings import Settings, get_settings
from homeward.wire import HubConfig, PairedDevice, config_topic
from server.broker_dynsec import connect_client


def hub_config(conn: psycopg.Connection[Any], hub_id: str) -> HubConfig:
    """The hub's configuration: its paired (not removed) devices."""
    rows = conn.execute(
        "SELECT address, kind, name FROM device WHERE hub_id = %s AND removed_at IS NULL"
        " ORDER BY paired_at, address", (hub_id,)).fetchall()
    return HubConfig(devices=[PairedDevice(address=a, kind=k, name=n) for a, k, n in rows])


def publish_hub_config(conn: psycopg.Connection[Any], hub_id: str, *,
                       client: mqtt.Client | None = None, settings: Settings | None = None,
                       timeout: float = 10.0) -> HubConfig:
    """Publish the hub's config as a retained QoS 1 message; returns what was published.

    With ``client`` (a connected paho client with its loop running) it is
    used; otherwise a short-lived connection is made from ``settings``
    (default: the process settings), and closed once the broker has the message.
    Its broker user needs the ``config`` role (homeward.broker_roles): a publish
    the broker refuses raises PermissionError.
    """
    config = hub_config(conn, hub_id)
    payload = config.model_dump_json().encode()
    if client is not None:
        info = client.publish(config_topic(hub_id), payload, qos=1, retain=True)
        info.wait_for_publish(timeout)
        return config
    s = settings or get_settings()
    own = connect_client(s, s.mqtt_username, s.mqtt_password)
    connected = threading.Event()
    refusals: dict[int, str] = {}
    own.on_connect = lambda c, u, f, reason, p: connected.set() if not reason.is_failure else None
    own.on_publish = lambda c, u, mid, reason, p: (
        refusals.__setitem__(mid, str(reason)) if reason.is_failure else None)
    own.connect(s.mqtt_host, s.mqtt_port, keepalive=30)
    own.loop_start()
    try:
        if not connected.wait(timeout):
            raise TimeoutError(f"could not connect to MQTT {s.mqtt_host}:{s.mqtt_port}")
        info = own.publish(config_topic(hub_id), payload, qos=1, retain=True)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"the broker did not acknowledge {hub_id}'s config")
        if info.mid in refusals:
            raise PermissionError(f"the broker refused {s.mqtt_username}'s publish of "
                                  f"{hub_id}'s config: {refusals[info.mid]}")
    finally:
        own.disconnect()
        own.loop_stop()
    return config
