"""Turning one MQTT message into rows for the database: pure functions, no I/O.

The ingest's hot path.  A readings payload is decoded with
:func:`homeward.wire.decode_readings` (which never raises) and its valid
readings become lines of PostgreSQL's COPY text format, built with a few
string operations per reading, each with a digest of its content (the
idempotency check of :mod:`server.ingest_writer` compares digests, not
values); its rejects become quarantine rows.  A status
payload becomes one hub update.  Everything here runs on the MQTT network
thread while the writer thread waits on the database, so decoding overlaps
with writing.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from homeward.wire import (
    DEFAULT_BOUNDS,
    HubStatus,
    ReadingBounds,
    decode_readings,
    is_valid_hub_id,
)

#: Columns of the staging table, in the order of the COPY lines below.
STAGE_COLUMNS = ("id", "taken_at", "kind", "hub_id", "device", "values", "flags", "raw",
                 "received_at", "digest")

# COPY text format: backslash, tab, newline and carriage return must be escaped.
# https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"

#: A quarantine row: (received_at, hub_id, topic, item_index, reason, item_json, payload).
QuarantineRow = tuple[datetime, str | None, str, int | None, str, str | None, bytes | None]
#: A hub update: (state, last_status_json, last_status_at, last_seen_at, hub_id).
StatusRow = tuple[str, str, datetime, datetime, str]


@dataclass(slots=True)
class Prepared:
    """One MQTT message, decoded and ready to write; acknowledged after its commit."""

    mid: int
    qos: int
    epoch: int  # the MQTT connection it arrived on; a mid is only valid on it
    topic: str
    payload: bytes
    received_at: datetime
    arrived: float = field(default_factory=time.monotonic)
    readings: int = 0
    copy_data: bytes = b""
    quarantine: list[QuarantineRow] = field(default_factory=list)
    status: StatusRow | None = None
    hub: str | None = None
    #: Ids of the readings this message carried, stored or quarantined: named back to
    #: the hub on ``.../acks`` once committed (homeward.wire.StoredAck).
    ids: list[str] = field(default_factory=list)


def _array_literal(flags: tuple[str, ...]) -> str:
    if not flags:
        return "{}"
    quoted = ",".join('"' + f.replace("\\", "\\\\").replace('"', '\\"') + '"' for f in flags)
    return "{" + quoted + "}"


def _quarantine_item(received_at: datetime, hub: str | None, topic: str, index: int | None,
                     reason: str, item: Any) -> QuarantineRow:
    """Keep the offending item as jsonb when PostgreSQL can hold it, else as bytes.

    The reason may quote the input (a field's name from the payload), so a NUL in it,
    which PostgreSQL text cannot hold, is written as ``\\u0000``: left raw, the whole
    transaction was refused and the message quarantined whole after three tries."""
    reason = reason.replace("\x00", "\\u0000")
    if isinstance(item, bytes | bytearray | memoryview):
        return (received_at, hub, topic, index, reason, None, bytes(item))
    try:
        text = orjson.dumps(item)
    except (TypeError, orjson.JSONEncodeError):
        return (received_at, hub, topic, index, reason, None, repr(item).encode())
    if b"\\u0000" in text:  # jsonb refuses NUL characters
        return (received_at, hub, topic, index, reason, None, text)
    return (received_at, hub, topic, index, reason, text.decode(), None)


def prepare(msg: Prepared, bounds: ReadingBounds = DEFAULT_BOUNDS) -> Prepared:
    """Fill ``msg`` with its COPY lines, quarantine rows or hub update; never raises.

    ``bounds`` are the times accepted (homeward.wire.ReadingBounds, from settings).
    """
    topic = msg.topic
    parts = topic.split("/")
    hub = parts[3] if len(parts) == 5 else None
    if (hub is None or parts[0] != "homeward" or parts[1] != "v1" or parts[2] != "hubs"
            or not is_valid_hub_id(hub)):
        msg.quarantine.append(_quarantine_item(msg.received_at, None, topic, None,
                                               "unexpected topic", msg.payload))
        return msg
    leaf = parts[4]
    if leaf == "readings":
        _prepare_readings(msg, hub, bounds)
    elif leaf == "status":
        _prepare_status(msg, hub)
    else:
        msg.quarantine.append(_quarantine_item(msg.received_at, hub, topic, None,
                                               f"unexpected topic leaf {leaf!r}", msg.payload))
    return msg


def _prepare_readings(msg: Prepared, hub: str, bounds: ReadingBounds) -> None:
    received_at = msg.received_at
    decoded = decode_readings(msg.payload, now=received_at, bounds=bounds)
    msg.hub = hub
    msg.ids = [str(r.id) for r in decoded.readings]
    msg.ids += [i for i in (_item_id(j.item) for j in decoded.rejects) if i is not None]
    if decoded.readings:
        hub_field = "\t" + hub.translate(_COPY_ESCAPES) + "\t"
        tail = "\t" + received_at.isoformat() + "\t\\\\x"
        dumps = orjson.dumps
        blake2b = hashlib.blake2b
        lines = []
        for r in decoded.readings:
            # The reading's content but for its time, as COPY fields: kind, hub, device,
            # values (keys sorted, so a re-delivery in another key order is the same),
            # flags, raw.  Its digest is what the idempotency check compares.
            content = (f"{r.kind.value}{hub_field}{r.device.translate(_COPY_ESCAPES)}\t"
                       f"{dumps(r.values, option=orjson.OPT_SORT_KEYS).decode()}\t"
                       f"{_array_literal(r.flags).translate(_COPY_ESCAPES) if r.flags else '{}'}"
                       f"\t{r.raw if r.raw is not None else _NULL}")
            digest = blake2b(content.encode(), digest_size=16).hexdigest()
            lines.append(f"{r.id}\t{r.taken_at.isoformat()}\t{content}{tail}{digest}\n")
        msg.copy_data = "".join(lines).encode()
        msg.readings = len(lines)
    for reject in decoded.rejects:
        msg.quarantine.append(_quarantine_item(received_at, hub, msg.topic, reject.index,
                                               reject.reason, reject.item))


def _item_id(item: Any) -> str | None:
    """The ``id`` of a rejected item, when it has a plausible one (to confirm it too)."""
    if isinstance(item, dict):
        value = item.get("id")
        if isinstance(value, str) and 0 < len(value) <= 64:
            return value
    return None


def _prepare_status(msg: Prepared, hub: str) -> None:
    if not msg.payload:  # a retained status being cleared
        return
    try:
        status = HubStatus.model_validate_json(msg.payload)
    except ValidationError as err:
        reason = "; ".join(e["msg"] for e in err.errors(include_url=False)[:3])
        try:
            item: Any = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            item = msg.payload
        msg.quarantine.append(_quarantine_item(msg.received_at, hub, msg.topic, None,
                                               f"invalid hub status: {reason}", item))
        return
    # An offline status (the last will is just {"state": "offline"}) keeps only what it
    # says, so the writer can merge it over the last known devices, batteries and outbox
    # depth: the ones a nurse needs exactly when the hub has gone quiet.
    body = (status.model_dump_json(exclude_unset=True) if status.state == "offline"
            else status.model_dump_json(exclude_none=True))
    msg.status = (status.state, body, status.ts or msg.received_at, msg.received_at, hub)


def copy_escape(text: str) -> str:
    """Escape a value for one field of COPY's text format."""
    return text.translate(_COPY_ESCAPES)
