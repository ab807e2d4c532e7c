"""Settings of the edge agent (env ``HOMEWARD_EDGE_*``).

The hub's identity and broker login come from :class:`homeward.settings.Settings`
(``HOMEWARD_HUB_ID``, ``HOMEWARD_HUB_PASSWORD``, ``HOMEWARD_MQTT_*``,
``HOMEWARD_EDGE_STATE_DIR``, ``HOMEWARD_BLE_BACKEND``); what only the agent
needs lives here, so the shared settings stay small.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EdgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOMEWARD_EDGE_", extra="ignore")

    #: IANA zone of the home: device clocks show local wall time without a zone.
    timezone: str = "Europe/London"
    #: The outbox refuses new readings beyond this many (see docs/edge.md).
    outbox_max_readings: int = Field(default=1_000_000, ge=1)
    #: Status reports ``outbox_nearly_full`` from this fraction of the maximum.
    outbox_nearly_full_ratio: float = Field(default=0.9, gt=0, le=1)
    #: SQLite ``PRAGMA synchronous`` in WAL mode: FULL survives power loss.
    outbox_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    #: Readings per MQTT message when draining (the wire allows up to 5,000).
    batch_readings: int = Field(default=500, ge=1, le=5000)
    #: Latency budget for coalescing live readings: a batch short of ``batch_readings``
    #: waits at most this long for more (0: each goes at once).  HOMEWARD_EDGE_COALESCE_S.
    coalesce_s: float = Field(default=1.0, ge=0, le=10)
    #: Messages per second while draining a backlog (token bucket, 1 s burst).
    messages_per_second: float = Field(default=20.0, gt=0)
    #: Reading messages awaiting PUBACK at most (paho stalls at 65,535).
    max_inflight_messages: int = Field(default=20, ge=1, le=1000)
    #: Seconds between status publications (also published on every change).
    status_interval_s: float = Field(default=60.0, gt=0)
    #: Reconnect back-off: first delay, cap (seconds); each delay gets jitter.
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=60.0, gt=0)
    #: MQTT 5 session expiry: the broker keeps the hub's session this long.
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0)
    keepalive_s: int = Field(default=30, ge=5)
    #: Keep a reading after the broker's PUBACK until the server says it is stored
    #: (``.../acks``), and send it again if that has not come within
    #: ``stored_ack_timeout_s``: a broker that crashes after its PUBACK, before it
    #: saved the message, then loses nothing (see docs/wire-format.md).
    stored_acks: bool = True
    stored_ack_timeout_s: float = Field(default=30.0, gt=0)
