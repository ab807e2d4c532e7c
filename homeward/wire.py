"""The MQTT wire format of DESIGN.md as typed, validating models.

Topics live under ``homeward/v1/hubs/{hub}/``; ``{hub}`` is the hub's id and
its MQTT username.  A readings payload is one reading object or a JSON array
of them.  :func:`decode_readings` never raises on bad input: it splits a
payload into valid readings and rejects (with the reason), so that one bad
item in a batch costs only itself.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from homeward.kinds import Kind, check_values

WIRE_VERSION = 1
TOPIC_PREFIX = "homeward/v1"
HUB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_HUB_ID_RE = re.compile(HUB_ID_PATTERN)
#: A reading stamped further ahead of the receiver's clock than this is refused:
#: a device clock that is badly wrong must be corrected by the hub, not trusted.
MAX_FUTURE_SKEW = timedelta(minutes=10)
#: One MQTT message may carry at most this many readings (a week of 1 Hz data
#: drains in many messages, never one giant one).
MAX_BATCH = 5000
#: Bound on any payload we agree to parse (bytes).
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024

HubId = Annotated[str, Field(pattern=HUB_ID_PATTERN)]


def readings_topic(hub: str) -> str:
    return f"{TOPIC_PREFIX}/hubs/{hub}/readings"


def status_topic(hub: str) -> str:
    return f"{TOPIC_PREFIX}/hubs/{hub}/status"


def config_topic(hub: str) -> str:
    return f"{TOPIC_PREFIX}/hubs/{hub}/config"


def acks_topic(hub: str) -> str:
    """Server -> hub: the ids of readings committed (or quarantined), see StoredAck."""
    return f"{TOPIC_PREFIX}/hubs/{hub}/acks"


READINGS_SUBSCRIPTION = f"{TOPIC_PREFIX}/hubs/+/readings"
STATUS_SUBSCRIPTION = f"{TOPIC_PREFIX}/hubs/+/status"


def parse_topic(topic: str) -> tuple[str, str]:
    """Split ``homeward/v1/hubs/{hub}/{leaf}`` into ``(hub, leaf)``.

    Raises ValueError for any other topic.
    """
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "homeward" or parts[1] != "v1" or parts[2] != "hubs":
        raise ValueError(f"not a Homeward hub topic: {topic!r}")
    hub, leaf = parts[3], parts[4]
    if not _HUB_ID_RE.match(hub):
        raise ValueError(f"bad hub id in topic: {hub!r}")
    return hub, leaf


def is_valid_hub_id(hub: str) -> bool:
    return bool(_HUB_ID_RE.match(hub))


class Reading(BaseModel):
    """One reading as it travels from the edge to the server."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    id: uuid.UUID
    kind: Kind
    taken_at: AwareDatetime
    device: Annotated[str, Field(min_length=1, max_length=64)]
    values: dict[str, float]
    flags: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] = ()
    raw: Annotated[str, Field(pattern=r"^([0-9a-fA-F]{2}){1,64}$")] | None = None

    @field_validator("taken_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _plausible(self) -> Reading:
        problem = check_values(self.kind, self.values)
        if problem is not None:
            raise ValueError(problem)
        return self

    @field_serializer("taken_at")
    def _ser_time(self, value: datetime) -> str:
        return format_time(value)

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict of DESIGN.md (optional fields left out when empty)."""
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, millisecond precision when needed."""
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_reading_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562 §5.7): 48 bits of Unix milliseconds, then 74 random bits.

    Time-ordered ids keep the server's primary-key index appending rather than
    writing at random pages; the time they reveal is already in ``taken_at``.
    """
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # variant 10 (RFC 9562)
    return uuid.UUID(int=value)


@dataclass(frozen=True, slots=True)
class Reject:
    """An item of a payload that is not a valid reading, and why."""

    index: int | None  # position in a batch, None when the whole payload failed
    reason: str
    item: Any  # the decoded JSON item, or the raw bytes when JSON itself failed


@dataclass(frozen=True, slots=True)
class DecodedPayload:
    readings: list[Reading]
    rejects: list[Reject]


def _reason(err: ValidationError) -> str:
    parts = []
    for e in err.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in e["loc"])
        parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
    return "; ".join(parts)


def decode_readings(payload: bytes, *, now: datetime | None = None) -> DecodedPayload:
    """Decode a readings payload; never raises on bad input.

    ``now`` (timezone-aware) enables the future-skew check; pass the
    receiver's clock.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        return DecodedPayload([], [Reject(None, f"payload of {len(payload)} bytes exceeds "
                                                f"{MAX_PAYLOAD_BYTES}", payload[:256])])
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        return DecodedPayload([], [Reject(None, f"not JSON: {err}", payload)])
    items: list[Any]
    if isinstance(doc, list):
        if len(doc) > MAX_BATCH:
            return DecodedPayload([], [Reject(None, f"batch of {len(doc)} readings exceeds "
                                                    f"{MAX_BATCH}", payload[:256])])
        items, batch = doc, True
    elif isinstance(doc, dict):
        items, batch = [doc], False
    else:
        return DecodedPayload([], [Reject(None, "payload must be a JSON object or array", doc)])
    readings: list[Reading] = []
    rejects: list[Reject] = []
    limit = None if now is None else now + MAX_FUTURE_SKEW
    for index, item in enumerate(items):
        where = index if batch else None
        try:
            reading = Reading.model_validate(item)
        except ValidationError as err:
            rejects.append(Reject(where, _reason(err), item))
            continue
        if limit is not None and reading.taken_at > limit:
            rejects.append(Reject(where, f"taken_at {format_time(reading.taken_at)} is in the "
                                         f"future (receiver clock {format_time(now)})", item))  # type: ignore[arg-type]
            continue
        readings.append(reading)
    return DecodedPayload(readings, rejects)


def encode_readings(readings: Iterable[Reading]) -> bytes:
    """A batch payload (JSON array) for the readings topic."""
    return orjson.dumps([r.to_wire() for r in readings])


class DeviceState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    address: str
    kind: Kind | None = None
    battery: int | None = Field(default=None, ge=0, le=100)
    last_seen: AwareDatetime | None = None
    connected: bool | None = None


class HubStatus(BaseModel):
    """Retained on ``.../status``; the last will publishes ``{"state": "offline"}``."""

    model_config = ConfigDict(extra="ignore")

    state: Literal["online", "offline"]
    ts: AwareDatetime | None = None
    agent: str | None = None
    devices: list[DeviceState] = []
    outbox_depth: int | None = Field(default=None, ge=0)
    outbox_nearly_full: bool = False


class PairedDevice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    address: Annotated[str, Field(min_length=1, max_length=64)]
    kind: Kind
    name: str | None = None


class ScheduleSlot(BaseModel):
    """A reading the patient is expected to take: ``kind`` at local ``at`` (HH:MM)."""

    model_config = ConfigDict(extra="ignore")

    kind: Kind
    at: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    grace_minutes: int = Field(default=120, ge=0, le=24 * 60)


class HubConfig(BaseModel):
    """Retained on ``.../config``: what the hub should collect."""

    model_config = ConfigDict(extra="ignore")

    version: int = 1
    devices: list[PairedDevice] = []
    schedule: list[ScheduleSlot] = []


class StoredAck(BaseModel):
    """On ``.../acks`` (QoS 1, not retained): after its database commit the server
    names the readings of each message it received: stored (or already stored), or
    quarantined.  A hub that asks for these keeps a reading until it is named here,
    so a broker that crashes after its PUBACK but before saving loses nothing."""

    model_config = ConfigDict(extra="ignore")

    stored: list[Annotated[str, Field(max_length=64)]]
