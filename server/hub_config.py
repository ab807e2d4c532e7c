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
from paho.mqtt.enums import CallbackAPIVersion

from homeward.settings import Settings, get_settings
from homeward.wire import HubConfig, PairedDevice, config_topic


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
    """
    config = hub_config(conn, hub_id)
    payload = config.model_dump_json().encode()
    if client is not None:
        info = client.publish(config_topic(hub_id), payload, qos=1, retain=True)
        info.wait_for_publish(timeout)
        return config
    s = settings or get_settings()
    own = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if s.mqtt_username:
        own.username_pw_set(s.mqtt_username, s.mqtt_password)
    if s.mqtt_tls:
        own.tls_set(ca_certs=str(s.mqtt_ca_file) if s.mqtt_ca_file else None)
    connected = threading.Event()
    own.on_connect = lambda c, u, f, reason, p: connected.set() if not reason.is_failure else None
    own.connect(s.mqtt_host, s.mqtt_port, keepalive=30)
    own.loop_start()
    try:
        if not connected.wait(timeout):
            raise TimeoutError(f"could not connect to MQTT {s.mqtt_host}:{s.mqtt_port}")
        info = own.publish(config_topic(hub_id), payload, qos=1, retain=True)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"the broker did not acknowledge {hub_id}'s config")
    finally:
        own.disconnect()
        own.loop_stop()
    return config
