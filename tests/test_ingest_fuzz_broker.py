"""A fuzz campaign through the real broker into the real ingest (issue 7, item 8).

Each test is one *kind* of adversarial input.  A hub logs in to a private
Mosquitto with its own password under the production ACL (so it can write only
its own topics) and publishes the kind's payloads at QoS 1; the real
``server.ingest.Ingest`` writes them into a real PostgreSQL (TimescaleDB when
installed, where many distinct days mean many chunks).  Every payload is built
so that the test knows, without asking the code under test, which of its items
are valid readings and how many are rejects.  After the kind:

(a) a good reading published next, by the fuzzing hub and by another hub, is
    stored within ``PROBE_SECONDS``;
(b) every reject is accounted for: the rows kept in ``quarantine`` (each with a
    non-empty reason) plus the rejects ``quarantine_hourly`` counted but did not
    keep (the per-hub quota) equal the rejects sent; the listing renders them all
    in bounded previews;
(c) nothing else is stored: ``reading`` holds exactly the valid readings sent and
    the probes, each once, at the time it was sent with; and no message reached
    the database only to be refused (no refusal, no poison path, no outage).

The seed is printed (shown with a failure) and replayable; the number of payloads
per kind is small by default so the file runs in under a minute on a shared
2-core machine.  The long campaign (10,000 payloads a kind)::

    HOMEWARD_FUZZ_EXAMPLES=10000 .venv/bin/pytest -p no:randomly -q -s -n 0 \\
        tests/test_ingest_fuzz_broker.py

and a failure replays with ``HOMEWARD_FUZZ_SEED=<the printed seed>``.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from homeward.kinds import METRICS, Kind
from homeward.wire import (
    DEFAULT_BOUNDS,
    MAX_BATCH,
    MAX_PAYLOAD_BYTES,
    MAX_READING_AGE,
    ReadingBounds,
    decode_readings,
    readings_topic,
    status_topic,
)
from server.ingest import Ingest, IngestConfig
from server.ingest_rows import Prepared, prepare
from server.ingest_writer import QuarantineQuota
from server.queries import recent_quarantine
from stack.services import MosquittoServer
from stack.services.mosquitto import default_acl
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("HOMEWARD_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
EXAMPLES = int(os.environ.get("HOMEWARD_FUZZ_EXAMPLES") or 250)
#: (a): how long a good reading published after a kind may take to be stored.
PROBE_SECONDS = 5.0

INGEST_USER = "homeward-ingest"
HUB, PROBE_HUB, OTHER_HUB = "hub-fuzz", "hub-probe", "hub-other"
PASSWORDS = {INGEST_USER: "ingest-pw", HUB: "fuzz-pw", PROBE_HUB: "probe-pw",
             OTHER_HUB: "other-pw"}
#: Every reject kept in full, so kept rows + counted-not-kept is simply the rejects.
KEEP_ALL = QuarantineQuota(rows=10**9, bytes=10**15)
#: Seconds a time is kept away from a bound it should fall either side of: more than
#: the delay between building a payload and the ingest receiving it.
MARGIN_S = 120


def kind_seed(kind: str) -> int:
    return (SEED + zlib.crc32(kind.encode())) % 2**32


def draw(strategy: st.SearchStrategy[Any], count: int, seed: int) -> list[Any]:
    """``count`` examples of ``strategy``, reproducible from ``seed`` (hypothesis's
    generation, without shrinking: the campaign checks what the broker and ingest did
    with them, after they were all sent)."""
    out: list[Any] = []

    @hypothesis_seed(seed)
    @settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(example: Any) -> None:
        out.append(example)

    collect()
    return out


# -- what a payload is meant to be -------------------------------------------------------

@dataclass
class Message:
    """One payload as published, with what must come of it."""

    topic: str
    payload: bytes
    #: The valid readings it carries: id -> the instant it was sent with.
    valid: dict[str, datetime] = field(default_factory=dict)
    rejects: int = 0
    #: Fragments the reasons of its rejects must contain (one a reject, in any order).
    reasons: list[str] = field(default_factory=list)


#: A payload built at publish time (times are relative to the moment it is sent).
Build = Callable[[datetime], Message]


def wire_time(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def good(now: datetime, *, kind: str = "spo2", values: dict[str, Any] | None = None,
         taken_at: datetime | None = None, **extra: Any) -> dict[str, Any]:
    when = taken_at or now - timedelta(seconds=1)
    return {"v": 1, "id": str(uuid.uuid4()), "kind": kind, "taken_at": wire_time(when),
            "device": "AA:BB:CC:DD:EE:0F",
            "values": values or {"spo2": 96, "pulse_rate": 72}, **extra}


def json_bytes(doc: Any) -> bytes:
    """JSON as the standard library writes it (orjson refuses integers past 64 bits)."""
    return json.dumps(doc, allow_nan=False).encode()


def instant(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["taken_at"])


def not_json(payload: bytes) -> bool:
    """Neither the standard library nor orjson reads it as JSON."""
    try:
        json.loads(payload.decode("utf-8"))
        return False
    except (UnicodeDecodeError, ValueError, RecursionError):
        pass
    try:
        orjson.loads(payload)
        return False
    except orjson.JSONDecodeError:
        return True


def whole(topic: str, payload: bytes, reason: str = "") -> Build:
    """A payload that is refused whole: one reject."""
    return lambda now: Message(topic, payload, rejects=1, reasons=[reason] if reason else [])


# -- strategies --------------------------------------------------------------------------

JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(10**30), 10**30)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=25)
NOT_STRING = JSON_VALUES.filter(lambda x: not isinstance(x, str))
KIND_VALUES = [k.value for k in Kind]
FIELDS = ("v", "id", "kind", "taken_at", "device", "values", "flags", "raw")


def values_strategy(kind: Kind) -> st.SearchStrategy[dict[str, Any]]:
    """Values any receiver must accept for ``kind``: inside its plausible ranges,
    bounds included, as JSON integers or floats."""
    def number(low: float, high: float) -> st.SearchStrategy[float | int]:
        return st.floats(low, high) | st.integers(int(low) + 1, int(high))
    if kind is Kind.BLOOD_PRESSURE:  # diastolic below systolic
        return st.fixed_dictionaries(
            {"systolic": number(60, 300), "diastolic": number(15, 59)},
            optional={"mean_arterial": number(15, 300), "pulse_rate": number(20, 300)})
    return st.fixed_dictionaries(
        {m.name: number(m.minimum, m.maximum) for m in METRICS[kind] if m.required},
        optional={m.name: number(m.minimum, m.maximum)
                  for m in METRICS[kind] if not m.required})


VALID_CONTENT = st.sampled_from(list(Kind)).flatmap(
    lambda k: st.tuples(st.just(k.value), values_strategy(k)))

#: One way to make a reading invalid whatever else it holds: (field, new value), a
#: missing required field (value ...), or a field the format does not know.
BAD_TIMES = st.one_of(
    st.integers(), st.floats(allow_nan=False, allow_infinity=False),  # epochs
    st.integers(0, 2**40).map(str),                                   # digits
    st.sampled_from(["2026-11-22T08:00:00", "2026-11-22 08:00:00Z", "2026-11-22",
                     "2026-13-45T25:61:61Z", "2026-02-30T00:00:00Z", "10000-01-01T00:00:00Z",
                     "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "now",
                     "2026-11-22T08:00:00\x00Z", ""]),
    st.none(), st.lists(st.integers(), max_size=3))
MUTATIONS = st.one_of(
    st.tuples(st.just("v"), st.sampled_from([True, False, 1.0, "1", 0, 2, None, [1]])),
    st.tuples(st.just("id"), NOT_STRING | st.just("") | st.just("not-a-uuid")),
    st.tuples(st.just("kind"), NOT_STRING | st.text(max_size=20).filter(
        lambda s: s not in KIND_VALUES) | st.just("spo2\x00")),
    st.tuples(st.just("taken_at"), BAD_TIMES),
    st.tuples(st.just("device"), NOT_STRING | st.just("") | st.text(min_size=65, max_size=80)
              | st.text(max_size=20).map(lambda s: s + "\x00")),
    st.tuples(st.just("values"), NOT_STRING.filter(lambda x: not isinstance(x, dict))
              | st.sampled_from([{"spo2": "96"}, {"spo2": True}, {"spo2": None},
                                 {"spo2": [96]}, {"spo2": 0}, {"spo2": 1e308}, {},
                                 {"spo2": 96, "weight": 80}, {"spo2\x00": 96}])),
    st.tuples(st.just("flags"), st.sampled_from(["irregular_pulse", {"a": "b"}, 1, True, None,
                                                 [""], [1], ["x\x00"], ["a" * 65]])),
    st.tuples(st.just("raw"), NOT_STRING.filter(lambda x: x is not None)
              | st.sampled_from(["0", "zz", "0x00", "00" * 65, ""])),
    st.tuples(st.sampled_from(["id", "kind", "taken_at", "device", "values"]), st.just(...)),
    st.tuples(st.text(min_size=1, max_size=12).filter(lambda s: s not in FIELDS),
              JSON_VALUES).map(lambda kv: ("+" + kv[0], kv[1])),
)


def sometimes_broken(one_in: int) -> st.SearchStrategy[tuple[str, Any] | None]:
    """A mutation for about 1 item in ``one_in``, else None.  (``st.none() | MUTATIONS``
    would not do: hypothesis flattens the branches, and MUTATIONS has ten.)"""
    return st.integers(1, one_in).flatmap(lambda n: MUTATIONS if n == 1 else st.none())


def mutate(item: dict[str, Any], mutation: tuple[str, Any]) -> dict[str, Any]:
    name, value = mutation
    out = dict(item)
    if name.startswith("+"):
        out[name[1:]] = value
    elif value is ...:
        del out[name]
    else:
        out[name] = value
    if name == "values" and item["kind"] != "spo2":
        out["kind"] = "spo2"  # the bad values above are spo2's
    return out


# -- kinds -------------------------------------------------------------------------------

def random_bytes(count: int, seed: int) -> list[Build]:
    """Random bytes that no JSON parser reads: each one reject."""
    payloads = draw(st.binary(max_size=2048).filter(not_json), count, seed)
    return [whole(readings_topic(HUB), p, "not JSON") for p in payloads]


def non_utf8(count: int, seed: int) -> list[Build]:
    """Invalid UTF-8 alone, inside JSON strings, and in a batch with good readings:
    the payload is not JSON (RFC 8259 section 8.1), one reject each, nothing stored."""
    bad_sequences = st.sampled_from([b"\xc3\x28", b"\xff", b"\xfe\xff", b"\xc0\xaf",
                                     b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80",
                                     b"\xe2\x82", b"\xef\xbb\xbf"])
    examples = draw(st.tuples(bad_sequences, st.integers(0, 3), st.binary(max_size=64)),
                    count, seed)

    def build(bad: bytes, shape: int, noise: bytes) -> Build:
        def at(now: datetime) -> Message:
            if bad == b"\xef\xbb\xbf":  # a byte order mark: valid UTF-8 but at the start
                payload = bad + (noise if shape == 0 else orjson.dumps(good(now)))
            elif shape == 0:
                payload = bad + noise
            elif shape == 1:  # a reading whose device holds the bad bytes
                payload = orjson.dumps(good(now, device="@")).replace(b'"@"', b'"' + bad + b'"')
            elif shape == 2:  # a batch of good readings with one bad item
                payload = (b"[" + orjson.dumps(good(now)) + b',{"device":"' + bad + b'"},'
                           + orjson.dumps(good(now)) + b"]")
            else:  # a byte order mark, or bad bytes, before valid JSON
                payload = bad + orjson.dumps(good(now))
            assert not_json(payload), payload
            return Message(readings_topic(HUB), payload, rejects=1, reasons=["not JSON"])
        return at
    return [build(*e) for e in examples]


def random_json(count: int, seed: int) -> list[Build]:
    """Any JSON document, and batches mixing good readings with readings broken in
    one field (numbers as strings, booleans, epochs, NUL bytes, unknown fields ...)."""
    mixed = st.lists(st.tuples(VALID_CONTENT, sometimes_broken(2)), min_size=1, max_size=12)
    examples = draw(st.one_of(st.tuples(st.just("any"), JSON_VALUES),
                              st.tuples(st.just("mixed"), mixed)), count, seed)

    def build(shape: str, doc: Any) -> Build:
        def at(now: datetime) -> Message:
            if shape == "any":
                # Both spellings of text: escaped (\\u00e9) and raw UTF-8.
                payload = json.dumps(doc, ensure_ascii=len(repr(doc)) % 2 == 0,
                                     allow_nan=False).encode()
                # An array is a batch, one reject an item (none when empty); anything
                # else, or an array over the batch limit, is one reject.
                rejects = len(doc) if isinstance(doc, list) and len(doc) <= MAX_BATCH else 1
                return Message(readings_topic(HUB), payload, rejects=rejects)
            items, valid = [], {}
            for (kind, values), mutation in doc:
                item = good(now, kind=kind, values=values)
                if mutation is None:
                    valid[item["id"]] = instant(item)
                    items.append(item)
                else:
                    items.append(mutate(item, mutation))
            return Message(readings_topic(HUB), json_bytes(items), valid=valid,
                           rejects=len(items) - len(valid))
        return at
    return [build(*e) for e in examples]


def findings(count: int, seed: int) -> list[Build]:
    """The cases of issue 7, each alone and as the middle item of a batch of three,
    repeated (the large ones only a few times) until ``count`` payloads."""
    del seed  # fixed cases; their ids are fresh each time
    topic = readings_topic(HUB)

    def item_case(reason: str, change: Callable[[datetime, dict[str, Any]], dict[str, Any]]
                  ) -> list[Build]:
        def alone(now: datetime) -> Message:
            return Message(topic, orjson.dumps(change(now, good(now))), rejects=1,
                           reasons=[reason])

        def in_batch(now: datetime) -> Message:
            first, last = good(now), good(now, kind="temperature",
                                          values={"body_temperature": 37.1})
            items = [first, change(now, good(now)), last]
            return Message(topic, orjson.dumps(items), rejects=1, reasons=[reason],
                           valid={first["id"]: instant(first), last["id"]: instant(last)})
        return [alone, in_batch]

    def setting(name: str, value: Any) -> Callable[[datetime, dict[str, Any]], dict[str, Any]]:
        return lambda now, item: {**item, name: value}

    cases: list[Build] = []
    for reason, change in [
        ("values.spo2", setting("values", {"spo2": "96", "pulse_rate": 72})),
        ("values.spo2", setting("values", {"spo2": True})),
        ("values.pulse_rate", setting("values", {"spo2": 96, "pulse_rate": False})),
        ("v:", setting("v", True)),
        ("v:", setting("v", 1.0)),
        ("v:", setting("v", "1")),
        ("taken_at", lambda now, item: {**item, "taken_at": int(now.timestamp())}),
        ("taken_at", lambda now, item: {**item, "taken_at": str(int(now.timestamp()))}),
        ("taken_at", lambda now, item: {**item, "taken_at": now.timestamp() * 1000}),
        ("older than the 400-day limit", setting("taken_at", "0001-01-01T00:00:00Z")),
        ("older than the 400-day limit", setting("taken_at", "1970-01-01T00:00:00Z")),
        ("out of range", setting("taken_at", "0001-01-01T00:00:00+01:00")),
        ("out of range", setting("taken_at", "9999-12-31T23:59:59-01:00")),
        ("taken_at", setting("taken_at", "10000-01-01T00:00:00Z")),
        ("in the future", setting("taken_at", "9999-12-31T23:59:59Z")),
        ("in the future", lambda now, item: {**item, "taken_at": wire_time(
            now + timedelta(minutes=10, seconds=MARGIN_S))}),
        ("taken_at", setting("taken_at", "2026-11-22T08:00:00")),  # no zone
        ("device", setting("device", "AA\x00BB")),
        ("flags", setting("flags", ["irregular\x00pulse"])),
        ("unknown metric", setting("values", {"spo2": 96, "pulse_rate\x00": 70})),
        ("kind", setting("kind", "spo2\x00")),
        ("outside plausible range", setting("values", {"spo2": 1e308})),
        ("outside plausible range", setting("values", {"spo2": -0.0})),
        ("Extra inputs", setting("patient", "someone else")),
        ("Extra inputs", setting("pat\x00ient", 1)),  # the reason names the field
    ]:
        cases += item_case(reason, change)

    def conflicts(now: datetime) -> Message:
        """One batch: a reading, then the same id at another time, with other values,
        an exact copy, and the copy with its values in another key order."""
        first = good(now, taken_at=now - timedelta(hours=1))
        items = [first, {**first, "taken_at": wire_time(now - timedelta(hours=2))},
                 {**first, "values": {"spo2": 91, "pulse_rate": 72}}, dict(first),
                 {**first, "values": {"pulse_rate": 72, "spo2": 96.0}}]
        return Message(topic, orjson.dumps(items), valid={first["id"]: instant(first)},
                       rejects=2, reasons=["conflict", "conflict"])

    pending_conflicts: list[dict[str, Any]] = []

    def stored_then(now: datetime) -> Message:
        first = good(now, taken_at=now - timedelta(hours=3))
        pending_conflicts.append(first)
        return Message(topic, orjson.dumps(first), valid={first["id"]: instant(first)})

    def conflicting_later(now: datetime) -> Message:
        first = pending_conflicts.pop(0)
        later = {**first, "taken_at": wire_time(instant(first) + timedelta(minutes=1))}
        return Message(topic, orjson.dumps([later, {**first, "device": "other"}]), rejects=2,
                       reasons=["conflict", "conflict"])

    cases += [conflicts, stored_then, conflicting_later]
    cases += [whole(topic, orjson.dumps(doc), "must be a JSON object or array")
              for doc in (42, "reading", None, True, 1.5)]
    cases += [
        lambda now: Message(topic, b"[]"),  # nothing to store, nothing to refuse
        whole(topic, b"[" * 2000 + b"]" * 2000, "not JSON"),  # deeper than a parser goes
        whole(topic, b'{"values": {"spo2": 1e400}}', "not JSON"),  # no double holds it
        whole(topic, b"", "not JSON"),
        whole(topic, b"\xc3\x28", "not JSON"),
        whole(status_topic(HUB), b"\xc3\x28", "invalid hub status"),
        whole(status_topic(HUB), b'{"state": "hacked"}', "invalid hub status"),
        whole(status_topic(HUB), b'{"state": "online", "ts": "\\u0000"}',
              "invalid hub status"),
    ]

    def deep_item(now: datetime) -> Message:
        nested: Any = 96
        for _ in range(300):
            nested = [nested]
        first, last = good(now), good(now)
        payload = json.dumps([first, good(now, values={"spo2": nested}), last])  # orjson: 254
        return Message(topic, payload.encode(),
                       valid={first["id"]: instant(first), last["id"]: instant(last)},
                       rejects=1, reasons=["values.spo2"])
    cases.append(deep_item)

    def oversized(now: datetime) -> Message:
        items = [good(now) for _ in range(MAX_BATCH + 1)]
        return Message(topic, orjson.dumps(items), rejects=1, reasons=["exceeds 5000"])

    def huge_device(now: datetime) -> Message:
        item = good(now, device="x" * (MAX_PAYLOAD_BYTES - 400))
        return Message(topic, orjson.dumps(item), rejects=1, reasons=["device"])

    def padded(extra: int) -> Build:
        """One good reading padded with spaces to the payload limit (+ ``extra``)."""
        def at(now: datetime) -> Message:
            item = good(now)
            body = orjson.dumps([item])
            payload = body[:-1] + b" " * (MAX_PAYLOAD_BYTES + extra - len(body)) + b"]"
            if extra <= 0:
                return Message(topic, payload, valid={item["id"]: instant(item)})
            return Message(topic, payload, rejects=1, reasons=["exceeds"])
        return at

    large = [oversized, huge_device, padded(0), padded(1)]
    out: list[Build] = []
    while len(out) < count:
        out += cases
    for _ in range(min(3, max(1, count // 1000))):
        out += large
    # A conflict sent later needs its first version sent (and stored) before it.
    return out


#: Where a time lies, in seconds from the moment of sending: (name, low, high, valid).
TIME_BANDS = [
    ("recent", -30 * 86400, 0, True),
    ("inside the age bound", -MAX_READING_AGE.total_seconds() + MARGIN_S,
     -MAX_READING_AGE.total_seconds() + 86400, True),
    ("outside the age bound", -MAX_READING_AGE.total_seconds() - 86400,
     -MAX_READING_AGE.total_seconds() - MARGIN_S, False),
    ("any day of the window", -MAX_READING_AGE.total_seconds() + MARGIN_S, 0, True),
    ("within the clock skew", 0, 600 - MARGIN_S, True),
    ("beyond the clock skew", 600 + MARGIN_S, 10**10, False),
    ("ancient", -2.0e10, -MAX_READING_AGE.total_seconds() - MARGIN_S, False),
]
ZONES = [0, 60, -60, 330, -690, 840, -720]


def timed_batches(count: int, seed: int, max_days: int | None) -> list[Build]:
    """Batches of mostly valid readings whose times go to the bounds and beyond, over
    many distinct days (many TimescaleDB chunks), in any zone; a few items broken."""
    mostly_valid = [i for i, b in enumerate(TIME_BANDS) for _ in range(3 if b[3] else 1)]
    band = st.sampled_from(mostly_valid).flatmap(
        lambda i: st.tuples(st.just(i), st.floats(TIME_BANDS[i][1], TIME_BANDS[i][2])))
    item = st.tuples(VALID_CONTENT, band, st.sampled_from(ZONES),
                     sometimes_broken(5))
    examples = draw(st.lists(item, min_size=1, max_size=80), count, seed)

    def backlog(now: datetime) -> Message:
        """A year offline: a weight a day for 399 days (58 weekly chunks, written in
        transactions of at most 32), all valid."""
        items = [good(now, kind="weight", values={"body_weight": 80.0},
                      taken_at=now - timedelta(days=day, hours=1)) for day in range(399)]
        if max_days is not None:
            return Message(readings_topic(HUB), orjson.dumps(items), rejects=len(items))
        return Message(readings_topic(HUB), orjson.dumps(items),
                       valid={i["id"]: instant(i) for i in items})

    def build(spec: list[Any]) -> Build:
        def at(now: datetime) -> Message:
            items, candidates = [], {}
            for (kind, values), (band_index, offset_s), zone, mutation in spec:
                valid_time = TIME_BANDS[band_index][3]
                try:
                    when = (now + timedelta(seconds=offset_s)).astimezone(
                        timezone(timedelta(minutes=zone)))
                    taken_at = when.isoformat()
                except OverflowError:  # before year 1 or after 9999: a string past it
                    taken_at, valid_time = ("0000-12-31T00:00:00Z" if offset_s < 0
                                            else "9999-12-31T23:59:59-14:00"), False
                one = {**good(now, kind=kind, values=values), "taken_at": taken_at}
                if mutation is not None:
                    one = mutate(one, mutation)
                elif valid_time:
                    candidates[one["id"]] = instant(one)
                items.append(one)
            rejects = len(items) - len(candidates)
            days = {t.astimezone(UTC).date() for t in candidates.values()}
            if max_days is not None and len(candidates) > 1 and len(days) > max_days:
                rejects, candidates = len(items), {}
            return Message(readings_topic(HUB), json_bytes(items), valid=candidates,
                           rejects=rejects)
        return at
    return [build(e) for e in examples] + [backlog]


def other_topics(count: int, seed: int) -> list[Build]:
    """Valid readings and garbage on topics the hub may not write: another hub's
    readings and status, its own config and acks, anything else.  The broker drops
    them (the ACL); nothing is stored, nothing quarantined."""
    hub_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z").filter(lambda h: h != HUB)
    own = {readings_topic(HUB), status_topic(HUB)}
    topics = st.one_of(
        hub_ids.map(readings_topic), hub_ids.map(status_topic), st.just(readings_topic(OTHER_HUB)),
        st.sampled_from([f"homeward/v1/hubs/{HUB}/{leaf}"
                         for leaf in ("config", "acks", "readings/x", "Readings", "")]),
        # MQTT topic text: no wildcards, no control characters, nothing unassigned
        # (a broker drops the connection of a client that sends those).
        st.text(st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn"),
                              blacklist_characters="+#"), min_size=1, max_size=60
                ).filter(lambda t: not t.startswith("$")),
    ).filter(lambda t: t not in own)
    examples = draw(st.tuples(topics, st.booleans(), st.binary(max_size=64)), count, seed)

    def build(topic: str, valid_payload: bool, noise: bytes) -> Build:
        return lambda now: Message(topic, orjson.dumps(good(now)) if valid_payload else noise)

    def control(now: datetime) -> Message:
        """A good reading on the hub's own topic, the same way: this one is stored."""
        item = good(now)
        return Message(readings_topic(HUB), orjson.dumps(item), valid={item["id"]: instant(item)})
    return [control if n % 10 == 0 else build(*e) for n, e in enumerate(examples)]


@dataclass(frozen=True)
class FuzzKind:
    build: Callable[[int, int], list[Build]]
    bounds: ReadingBounds = DEFAULT_BOUNDS
    quota: QuarantineQuota = KEEP_ALL
    #: Each payload from a connection of its own (the broker may close a connection
    #: that publishes where its ACL forbids, MQTT-3.3.5-2).
    own_connection_each: bool = False


#: The quota the random bytes run under: beyond 40 rejects an hour, 1 in 7 kept.
SMALL_QUOTA = QuarantineQuota(rows=40, bytes=10**15, sample_every=7, preview_bytes=16)

KINDS = {
    "random_bytes": FuzzKind(random_bytes, quota=SMALL_QUOTA),
    "non_utf8": FuzzKind(non_utf8),
    "random_json": FuzzKind(random_json),
    "findings": FuzzKind(findings),
    "extreme_times": FuzzKind(lambda n, s: timed_batches(n, s, None)),
    "many_days_capped": FuzzKind(lambda n, s: timed_batches(n, s, 16),
                              bounds=ReadingBounds(max_days_per_message=16)),
    "other_topics": FuzzKind(other_topics, own_connection_each=True),
}


# -- the broker, the hubs and the ingest ---------------------------------------------------

class Hub:
    """A hub's MQTT client: logged in with its own password (its client id is its
    username at our brokers), QoS 1, its own queue unbounded."""

    def __init__(self, port: int, username: str) -> None:
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=username, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(username, PASSWORDS[username])
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        connected = threading.Event()
        self.disconnects = 0
        self.client.on_connect = lambda c, u, f, rc, p: connected.set()

        def on_disconnect(*args: Any) -> None:
            self.disconnects += 1
        self.client.on_disconnect = on_disconnect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(10), f"{username} could not connect"

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(mosquitto_factory: Callable[..., MosquittoServer]) -> MosquittoServer:
    return mosquitto_factory(users=PASSWORDS, acl=default_acl((INGEST_USER,)))


def rows(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]


def stored_count(url: str) -> int:
    return int(rows(url, "SELECT count(*) FROM reading")[0][0])


def counted_rejects(url: str) -> tuple[int, int, int]:
    """(rejects counted, rows kept by the count, rows in quarantine), all hubs and hours."""
    counted, kept = rows(url, "SELECT COALESCE(sum(rejects), 0), COALESCE(sum(kept), 0)"
                              " FROM quarantine_hourly")[0]
    return int(counted), int(kept), int(rows(url, "SELECT count(*) FROM quarantine")[0][0])


def kept_under(quota: QuarantineQuota, rejects: int) -> int:
    """Rows one hub's ``rejects`` in one hour leave in quarantine (rows quota only):
    the first ``quota.rows``, then every ``sample_every``-th ordinal."""
    within = min(rejects, quota.rows)
    return within + len([n for n in range(quota.rows, rejects) if n % quota.sample_every == 0])


def storage(url: str) -> str:
    """What ``reading`` is: a TimescaleDB hypertable (with its chunks) or a plain table."""
    if rows(url, "SELECT to_regclass('timescaledb_information.chunks')") == [(None,)]:
        return "plain PostgreSQL"
    chunks = rows(url, "SELECT count(*) FROM timescaledb_information.chunks"
                       " WHERE hypertable_name = 'reading'")[0][0]
    return f"TimescaleDB, {chunks} chunks of reading"


def publish_alone(port: int, username: str, msg: Message) -> str:
    """Publish ``msg`` at QoS 1 from a new connection (driven here, no thread):
    'acknowledged' (for a topic the ACL forbids: and dropped) or 'disconnected' (the
    broker refused it by closing the connection, which MQTT-3.3.5-2 allows)."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=username, protocol=mqtt.MQTTv311)
    client.username_pw_set(username, PASSWORDS[username])
    state = {"connected": False, "gone": False}
    client.on_connect = lambda c, u, f, rc, p: state.update(connected=True)
    client.on_disconnect = lambda *args: state.update(gone=True)
    client.connect("127.0.0.1", port)
    deadline = time.monotonic() + 10
    try:
        while not state["connected"]:
            client.loop(0.01)
            assert time.monotonic() < deadline and not state["gone"], "could not connect"
        info = client.publish(msg.topic, msg.payload, qos=1)
        while not state["gone"]:
            client.loop(0.01)
            if info.rc == mqtt.MQTT_ERR_SUCCESS and info.is_published():
                return "acknowledged"
            assert time.monotonic() < deadline, "neither acknowledged nor refused"
        return "disconnected"
    finally:
        client.disconnect()


def probe(url: str, hub: Hub, hub_id: str) -> float:
    """Publish a good reading from ``hub_id``; seconds until it is stored (or fail)."""
    item = good(datetime.now(UTC))
    started = time.monotonic()
    hub.publish(readings_topic(hub_id), orjson.dumps(item)).wait_for_publish(PROBE_SECONDS)
    wait_for(lambda: rows(url, "SELECT 1 FROM reading WHERE id = %s", item["id"]),
             timeout=PROBE_SECONDS, step=0.02,
             what=f"a good reading from {hub_id} after the kind (seed {SEED})")
    return time.monotonic() - started


@pytest.mark.hazard("H-021")
@pytest.mark.parametrize("kind", list(KINDS))
def test_fuzz_through_the_broker_stores_the_valid_quarantines_the_rest_and_keeps_going(
        db_url: str, broker: MosquittoServer, kind: str) -> None:
    spec = KINDS[kind]
    print(f"fuzz seed {SEED} (replay: HOMEWARD_FUZZ_SEED={SEED}), kind {kind}, "
          f"{EXAMPLES} examples")
    t0 = time.monotonic()
    builds = spec.build(EXAMPLES, kind_seed(kind))
    generated = time.monotonic() - t0
    ingest = Ingest(IngestConfig(database_url=db_url, mqtt_port=broker.port,
                                 mqtt_username=INGEST_USER,
                                 mqtt_password=PASSWORDS[INGEST_USER], client_id=INGEST_USER,
                                 batch_ms=5, heartbeat_every_s=1.0, bounds=spec.bounds,
                                 quarantine_quota=spec.quota))
    ingest.start()
    # A kind sent from a connection per payload connects the hub (its client id is its
    # username: a second connection would take the session over) only for its probe.
    hub = None if spec.own_connection_each else Hub(broker.port, HUB)
    other = Hub(broker.port, PROBE_HUB)
    try:
        sent: list[Message] = []
        infos = []
        dropped: Counter[str] = Counter()
        t1 = time.monotonic()
        if spec.own_connection_each:
            for build in builds:
                msg = build(datetime.now(UTC))
                sent.append(msg)
                dropped[publish_alone(broker.port, HUB, msg)] += 1
        else:
            assert hub is not None
            for build in builds:
                msg = build(datetime.now(UTC))
                sent.append(msg)
                infos.append(hub.publish(msg.topic, msg.payload))
        for info in infos:
            info.wait_for_publish(60)
            assert info.is_published(), "the broker did not acknowledge a payload"
        published = time.monotonic() - t1
        valid = {k: v for m in sent for k, v in m.valid.items()}
        assert len(valid) == sum(len(m.valid) for m in sent), "ids must be unique"
        rejects = sum(m.rejects for m in sent)

        def settled() -> bool:
            counted, _, _ = counted_rejects(db_url)
            return stored_count(db_url) >= len(valid) and counted >= rejects
        wait_for(settled, timeout=30 + len(sent) / 50, step=0.2,
                 what=f"{len(valid)} readings stored and {rejects} rejects counted "
                      f"(now {stored_count(db_url)}, {counted_rejects(db_url)}; seed {SEED})")
        drained = time.monotonic() - t1
        # (a) the next good reading, from this hub and another, is stored in seconds
        hub = hub or Hub(broker.port, HUB)
        latencies = [probe(db_url, hub, HUB), probe(db_url, other, PROBE_HUB)]
        disconnects = hub.disconnects + other.disconnects
    finally:
        if hub is not None:
            hub.close()
        other.close()
        ingest.stop()
    assert disconnects == 0, "the broker dropped a hub's connection"
    print(f"{kind}: {len(sent)} payloads ({sum(len(m.payload) for m in sent) / 1e6:.1f} MB),"
          f" {len(valid)} valid readings, {rejects} rejects; generated in {generated:.1f} s,"
          f" published in {published:.1f} s, all written {drained:.1f} s after the first;"
          f" probes stored in {max(latencies):.2f} s; counters {ingest.counters.as_dict()}"
          + (f"; the broker {dict(dropped)}" if dropped else "") + f"; {storage(db_url)}")

    # (c) exactly the valid readings and the probes, each once, at their own time
    stored = rows(db_url, "SELECT id::text, taken_at, hub_id FROM reading")
    by_id = {rid: (at, hub_id) for rid, at, hub_id in stored}
    assert len(by_id) == len(stored), "a reading id stored twice"
    probes = {rid for rid, (_, hub_id) in by_id.items() if rid not in valid}
    assert len(probes) == 2, f"stored beyond the valid readings and 2 probes: {probes}"
    missing = set(valid) - set(by_id)
    assert not missing, f"{len(missing)} valid readings not stored (seed {SEED})"
    assert all(by_id[rid][0] == at for rid, at in valid.items()), "a time changed"
    assert {hub_id for _, hub_id in by_id.values()} <= {HUB, PROBE_HUB}
    # No reject reached the database to be refused there: all were caught on decoding.
    c = ingest.counters
    assert (c.refusals, c.suspects_set_aside, c.poison_quarantined, c.db_errors) == (0, 0, 0, 0)

    # (b) every reject is kept with a reason, or counted beyond the quota
    counted, kept, in_quarantine = counted_rejects(db_url)
    assert counted == rejects, f"rejects counted {counted}, sent {rejects} (seed {SEED})"
    assert kept == in_quarantine
    per_hour = rows(db_url, "SELECT rejects, kept FROM quarantine_hourly")
    assert [k for _, k in per_hour] == [kept_under(spec.quota, r) for r, _ in per_hour]
    assert rows(db_url, "SELECT count(*) FROM quarantine WHERE btrim(reason) = ''"
                        " OR hub_id IS DISTINCT FROM %s", HUB) == [(0,)]
    reasons = [r for (r,) in rows(db_url, "SELECT reason FROM quarantine")]
    if spec.quota == KEEP_ALL:
        for fragment in {f for m in sent for f in m.reasons}:
            wanted = sum(m.reasons.count(fragment) for m in sent)
            assert sum(fragment in r for r in reasons) >= wanted, fragment
    # The listing renders every kept reject, each in a bounded preview.
    with psycopg.connect(db_url) as conn:
        listed, before = 0, None
        while page := recent_quarantine(conn, limit=500, before_id=before):
            listed += len(page)
            before = page[-1]["id"]
            # 512 bytes of a payload, 512 characters (UTF-8: at most 4 bytes each) of an item
            assert all(len(r["payload_head"] or b"") <= 512
                       and len(r["item_head"] or b"") <= 4 * 512 for r in page)
    assert listed == in_quarantine


@pytest.mark.parametrize(("item", "reason"), [
    ({"device": "AA\x00BB"}, "device"),
    ({"flags": ["irregular\x00pulse"]}, "flags"),
    ({"flags": ["ok", "\x00"]}, "flags"),
])
def test_a_nul_byte_in_a_text_field_is_a_reject_of_its_item_not_a_database_refusal(
        item: dict[str, Any], reason: str) -> None:
    """PostgreSQL text cannot hold NUL: such an item reached COPY, which refused the
    whole transaction, and after three tries alone its whole message (the good
    readings too) was quarantined (found by this campaign's ``findings`` kind)."""
    now = datetime.now(UTC)
    batch = [good(now), {**good(now), **item}, good(now)]
    decoded = decode_readings(orjson.dumps(batch), now=now)
    assert [str(r.id) for r in decoded.readings] == [batch[0]["id"], batch[2]["id"]]
    [reject] = decoded.rejects
    assert reject.index == 1 and reason in reject.reason and "NUL" in reject.reason


def test_a_nul_byte_in_a_field_name_is_escaped_in_the_reason_not_refused_by_the_database(
        ) -> None:
    """A reject's reason names an unknown field as the payload spelled it; a NUL in it
    made PostgreSQL refuse the whole transaction (text cannot hold NUL), and after three
    tries alone the whole message, good readings too, was quarantined (found by this
    campaign's ``extreme_times`` kind)."""
    now = datetime.now(UTC)
    batch = [good(now), {**good(now), "pat\x00ient": 1}, good(now)]
    msg = prepare(Prepared(mid=1, qos=1, epoch=1, topic=readings_topic(HUB),
                           payload=orjson.dumps(batch), received_at=now))
    assert msg.readings == 2
    [(_, hub, _, index, reason, item, payload)] = msg.quarantine
    assert (hub, index) == (HUB, 1)
    assert "\x00" not in reason and "pat\\u0000ient" in reason and "Extra inputs" in reason
    assert item is None and payload is not None and b"\\u0000" in payload  # kept as bytes


def test_a_campaign_is_replayable_from_its_seed() -> None:
    first = [b(datetime(2026, 1, 1, tzinfo=UTC)).payload for b in random_bytes(20, 7)]
    again = [b(datetime(2026, 1, 1, tzinfo=UTC)).payload for b in random_bytes(20, 7)]
    assert first == again and len(set(first)) > 10


@pytest.fixture(autouse=True)
def _seed_in_report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    request.node.user_properties.append(("fuzz_seed", SEED))
