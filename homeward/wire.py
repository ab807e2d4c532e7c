"""The MQTT wire format of DESIGN.md as typed, validating models.

Topics live under ``homeward/v1/hubs/{hub}/``; ``{hub}`` is the hub's id and
its MQTT username.  A readings payload is one reading object or a JSON array
of them.  :func:`decode_readings` never raises on bad input: it splits a
payload into valid readings and rejects (with the reason), so that one bad
item in a batch costs only itself.

The format is strict (docs/wire-format.md): values are JSON numbers, never
strings or booleans; ``v`` is the number 1; ``taken_at`` is an RFC 3339
string with a zone, never an epoch number; a time outside the receiver's
bounds (:class:`ReadingBounds`) or one that overflows is a reject of that
item, so nothing PostgreSQL could refuse ever reaches it.
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
    Strict,
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
#: A reading taken longer ago than this is refused.  400 days lets a hub that
#: was away (or offline) for a whole year drain its backlog, with a month to
#: spare; anything older is a wrong device clock (0001-01-01, 1970-01-01, a
#: cuff reset to 2005), not a measurement anyone will act on.
MAX_READING_AGE = timedelta(days=400)
#: One message may span at most this many distinct UTC days: a backstop on the
#: work one message can cost.  With TimescaleDB each chunk interval of
#: ``reading`` is a chunk, and creating one takes some 17 lock slots until COMMIT
#: (measured, server/ingest_chunks.py); 5,000 readings on 5,000 days asked for
#: ~85,000 slots of a default server's 12,800 and stopped the ingest.  The
#: writer now splits a message into transactions of at most 32 chunks
#: (server.ingest_chunks.MAX_CHUNKS_PER_TRANSACTION); this limit bounds how many
#: such transactions one message costs (402 days: 13 with 1-day chunks).  It is
#: the whole age window (400 days and the partial days at both ends), so a
#: message the age bound accepts is never refused for its days: a hub sends its
#: outbox oldest first in batches of 500 (edge/settings.py), and a patient who
#: takes one weight a day fills a batch with 500 days.  A message over it (only
#: possible with a larger age bound) is refused whole: each item quarantined with
#: the reason and named in the stored-ack, so the hub stops sending it.
MAX_DAYS_PER_MESSAGE = MAX_READING_AGE.days + 2
#: RFC 3339 section 5.6 ``date-time``: full date, ``T``, full time, fraction
#: optional, and a zone that is ``Z`` or a numeric offset (never absent).
_rfc3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
                      r"([Zz]|[+-][0-9]{2}:[0-9]{2})").fullmatch

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

    #: The number 1: strict, so ``true`` (which Python takes for 1) and ``1.0`` are refused.
    v: Annotated[int, Strict(), Field(ge=WIRE_VERSION, le=WIRE_VERSION)] = WIRE_VERSION
    id: uuid.UUID
    kind: Kind
    taken_at: AwareDatetime
    device: Annotated[str, Field(min_length=1, max_length=64)]
    #: Strict: a JSON number (an int is a float), never ``"150"`` nor ``true``.
    values: dict[str, Annotated[float, Strict()]]
    flags: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] = ()
    raw: Annotated[str, Field(pattern=r"^([0-9a-fA-F]{2}){1,64}$")] | None = None

    @field_validator("taken_at", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        """An RFC 3339 string with a zone; a datetime when built in Python (the edge).

        pydantic alone would take an epoch number (or a string of digits) and a
        space for the ``T``."""
        if (type(value) is str and _rfc3339(value) is not None) or isinstance(value, datetime):
            return value
        raise ValueError("taken_at must be an RFC 3339 date-time string with a timezone "
                         "(Z or an offset), e.g. 2026-11-22T08:00:00Z")

    @field_validator("device", "flags")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """PostgreSQL text cannot hold NUL: caught here, it is a reject of its item; let
        through, COPY refused the whole batch and the message was quarantined whole."""
        if "\x00" in (value if isinstance(value, str) else "".join(value)):
            raise ValueError("NUL characters (\\u0000) are not allowed in text")
        return value

    @field_validator("taken_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is in year 0 in UTC
            raise ValueError("taken_at is out of range in UTC") from None

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
class ReadingBounds:
    """The times a receiver accepts in one message (``now`` is its clock).

    Settings ``HOMEWARD_INGEST_MAX_READING_AGE_DAYS`` and
    ``HOMEWARD_INGEST_MAX_DAYS_PER_MESSAGE`` set the first two on the server.
    """

    max_age: timedelta = MAX_READING_AGE
    max_days_per_message: int = MAX_DAYS_PER_MESSAGE
    max_future_skew: timedelta = MAX_FUTURE_SKEW


DEFAULT_BOUNDS = ReadingBounds()


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


def decode_readings(payload: bytes, *, now: datetime | None = None,
                    bounds: ReadingBounds = DEFAULT_BOUNDS) -> DecodedPayload:
    """Decode a readings payload; never raises on bad input.

    ``now`` (timezone-aware) is the receiver's clock: with it, ``taken_at`` must
    lie within ``bounds`` (no older than ``max_age``, no further ahead than
    ``max_future_skew``).  Without it only the per-message days limit applies.
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
    where_of: list[int | None] = []
    rejects: list[Reject] = []
    latest = oldest = None
    if now is not None:
        latest, oldest = now + bounds.max_future_skew, now - bounds.max_age
    for index, item in enumerate(items):
        where = index if batch else None
        try:
            reading = Reading.model_validate(item)
        except ValidationError as err:
            rejects.append(Reject(where, _reason(err), item))
            continue
        except Exception as err:  # a validator bug must not stop the reader
            rejects.append(Reject(where, f"invalid reading: {err!r}", item))
            continue
        if latest is not None and reading.taken_at > latest:
            rejects.append(Reject(where, f"taken_at {format_time(reading.taken_at)} is in the "
                                         f"future (receiver clock {format_time(now)})", item))  # type: ignore[arg-type]
            continue
        if oldest is not None and reading.taken_at < oldest:
            rejects.append(Reject(where, f"taken_at {format_time(reading.taken_at)} is older "
                                         f"than the {bounds.max_age.days}-day limit "
                                         f"(receiver clock {format_time(now)})", item))  # type: ignore[arg-type]
            continue
        readings.append(reading)
        where_of.append(where)
    if len(readings) > 1:
        days = {r.taken_at.date() for r in readings}  # taken_at is in UTC
        if len(days) > bounds.max_days_per_message:
            reason = (f"message spans {len(days)} distinct UTC days, more than the "
                      f"{bounds.max_days_per_message} one message may carry (send a long "
                      f"backlog in batches of fewer days)")
            rejects += [Reject(where, reason, items[where or 0])
                        for where in where_of]
            rejects.sort(key=lambda r: r.index or 0)
            readings = []
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
