"""The wire format of DESIGN.md: readings, batches, topics, rejects."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeward.kinds import METRICS, Kind
from homeward.wire import (
    MAX_BATCH,
    MAX_DAYS_PER_MESSAGE,
    HubConfig,
    HubStatus,
    Reading,
    ReadingBounds,
    decode_readings,
    encode_readings,
    format_time,
    new_reading_id,
    parse_topic,
    readings_topic,
)

DESIGN_EXAMPLE = {
    "v": 1,
    "id": "0b6c6c1e-8f6c-4e5b-9a35-1d1f1a7f3a10",
    "kind": "blood_pressure",
    "taken_at": "2026-11-22T08:00:00Z",
    "device": "C4:7C:8D:6A:3E:21",
    "values": {"systolic": 128, "diastolic": 82, "mean_arterial": 97, "pulse_rate": 71},
    "flags": ["irregular_pulse"],
}


def _reading(**changes: object) -> dict[str, object]:
    return {**DESIGN_EXAMPLE, "id": str(uuid.uuid4()), **changes}


def test_design_md_example_round_trips() -> None:
    decoded = decode_readings(orjson.dumps(DESIGN_EXAMPLE))
    assert decoded.rejects == []
    (reading,) = decoded.readings
    assert reading.taken_at == datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    assert reading.values["systolic"] == 128
    assert orjson.loads(encode_readings([reading])) == [DESIGN_EXAMPLE]


def test_times_with_an_offset_are_stored_in_utc() -> None:
    (reading,) = decode_readings(orjson.dumps(_reading(taken_at="2026-06-01T09:00:00+01:00"))
                                 ).readings
    assert reading.taken_at == datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        (b"42", "must be a JSON object or array"),
        (orjson.dumps(_reading(taken_at="2026-11-22T08:00:00")), "timezone"),
        (orjson.dumps(_reading(kind="blood_sugar")), "kind"),
        (orjson.dumps(_reading(id="not-a-uuid")), "id"),
        (orjson.dumps(_reading(v=2)), "v"),
        (orjson.dumps(_reading(values={"systolic": 128})), "diastolic"),
        (orjson.dumps(_reading(values={"systolic": 1280, "diastolic": 82})), "outside plausible"),
        (orjson.dumps(_reading(values={"systolic": 80, "diastolic": 120})), "below systolic"),
        (orjson.dumps(_reading(values={"systolic": 128, "diastolic": 82, "bogus": 1})),
         "unknown metric"),
        (orjson.dumps(_reading(kind="temperature", values={"body_temperature": 98.6})),
         "outside plausible"),
        (orjson.dumps(_reading(device="")), "device"),
        (orjson.dumps(_reading(raw="zz")), "raw"),
        (orjson.dumps(_reading(extra_field=1)), "extra_field"),
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(payload: bytes, reason: str) -> None:
    decoded = decode_readings(payload)
    assert decoded.readings == []
    (reject,) = decoded.rejects
    assert reason in reject.reason


def test_one_bad_item_in_a_batch_costs_only_itself() -> None:
    good = [_reading(), _reading()]
    batch = [good[0], {"v": 1, "kind": "spo2"}, good[1]]
    decoded = decode_readings(orjson.dumps(batch))
    assert [str(r.id) for r in decoded.readings] == [g["id"] for g in good]
    assert [r.index for r in decoded.rejects] == [1]


@pytest.mark.hazard("H-019")
def test_future_readings_are_rejected_when_the_clock_is_given() -> None:
    now = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    future = (now + timedelta(hours=1)).isoformat()
    decoded = decode_readings(orjson.dumps(_reading(taken_at=future)), now=now)
    assert "future" in decoded.rejects[0].reason
    assert decode_readings(orjson.dumps(_reading(taken_at=future))).readings  # no clock: kept


def test_oversized_batches_are_refused_whole() -> None:
    decoded = decode_readings(orjson.dumps([_reading()] * (MAX_BATCH + 1)))
    assert decoded.readings == [] and "exceeds" in decoded.rejects[0].reason


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("homeward/v1/hubs/hub-7/readings", ("hub-7", "readings")),
        ("homeward/v1/hubs/h.1_x/status", ("h.1_x", "status")),
    ],
)
def test_topics_parse(topic: str, expected: tuple[str, str]) -> None:
    assert parse_topic(topic) == expected
    assert readings_topic("hub-7") == "homeward/v1/hubs/hub-7/readings"


@pytest.mark.parametrize("topic", ["homeward/v2/hubs/a/readings", "homeward/v1/hubs/+/readings",
                                   "homeward/v1/hubs/a/b/readings", "x"])
def test_other_topics_are_refused(topic: str) -> None:
    with pytest.raises(ValueError, match=r"topic|hub id"):
        parse_topic(topic)


def test_status_and_config_models() -> None:
    assert HubStatus.model_validate({"state": "offline"}).state == "offline"
    config = HubConfig.model_validate(
        {"devices": [{"address": "C4:7C:8D:6A:3E:21", "kind": "blood_pressure"}],
         "schedule": [{"kind": "blood_pressure", "at": "08:00"}]})
    assert config.devices[0].kind is Kind.BLOOD_PRESSURE


def test_every_kind_has_metrics_with_units() -> None:
    assert set(METRICS) == set(Kind)
    assert all(m.unit and m.ucum and m.minimum < m.maximum for ms in METRICS.values() for m in ms)


_json = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
_reading_like = st.fixed_dictionaries(
    {}, optional={k: _json | st.just(v) for k, v in DESIGN_EXAMPLE.items()}
)

FUZZ_EXAMPLES = int(os.environ.get("HOMEWARD_FUZZ_EXAMPLES", "300"))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.binary(max_size=512) | _json.map(orjson.dumps) | _reading_like.map(orjson.dumps)
       | st.lists(_reading_like, max_size=5).map(orjson.dumps))
def test_decode_never_raises_and_accounts_for_every_item(payload: bytes) -> None:
    """Fuzz: any bytes give readings and rejects, nothing else, and nothing is lost."""
    decoded = decode_readings(payload)
    try:
        doc = orjson.loads(payload)
        items = len(doc) if isinstance(doc, list) else 1
    except orjson.JSONDecodeError:
        items = 1
    assert len(decoded.readings) + len(decoded.rejects) == max(items, len(decoded.rejects))
    for reading in decoded.readings:
        assert isinstance(reading, Reading)


def test_reading_ids_are_time_ordered_uuid7() -> None:
    import time

    first = new_reading_id()
    time.sleep(0.002)
    second = new_reading_id()
    assert first.version == 7 and first.variant == uuid.RFC_4122
    assert first < second  # a later millisecond sorts later: the PK index appends
    assert len({new_reading_id() for _ in range(10_000)}) == 10_000


# -- a strict wire format (issue 7) ------------------------------------------------------

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _one_reject(item: dict[str, object], *, now: datetime | None = NOW) -> str:
    decoded = decode_readings(orjson.dumps(item), now=now)
    assert decoded.readings == [], f"{item} was accepted"
    (reject,) = decoded.rejects
    return reject.reason


@pytest.mark.parametrize("values", [
    {"systolic": "150", "diastolic": 82},
    {"systolic": 128, "diastolic": "82"},
    {"systolic": "1.5e2", "diastolic": 82},
])
def test_numbers_sent_as_strings_are_rejected(values: dict[str, object]) -> None:
    assert "valid number" in _one_reject(_reading(values=values))


@pytest.mark.parametrize(("changes", "reason"), [
    ({"values": {"spo2": True, "pulse_rate": 70}, "kind": "spo2"}, "valid number"),
    ({"values": {"spo2": 97, "pulse_rate": 70, "perfusion_index": True}, "kind": "spo2"},
     "valid number"),  # the old code stored 1.0
    ({"v": True}, "v"),
    ({"v": 1.0}, "v"),
])
def test_booleans_are_not_numbers(changes: dict[str, object], reason: str) -> None:
    assert reason in _one_reject(_reading(**changes))


@pytest.mark.parametrize("taken_at", [
    1_795_000_000,            # an integer epoch
    1_795_000_000.5,          # a float epoch
    "1795000000",             # an epoch as a string of digits
    "2026-11-22 08:00:00Z",   # a space for the T
    "2026-11-22T08:00Z",      # no seconds
    "2026-11-22",             # a date
    "2026-11-22T08:00:00",    # naive: no zone
    None,
])
def test_integer_epoch_taken_at_is_rejected(taken_at: object) -> None:
    assert "RFC 3339" in _one_reject(_reading(taken_at=taken_at))


@pytest.mark.parametrize("taken_at", ["2026-11-22T08:00:00Z", "2026-11-22t08:00:00z",
                                      "2026-11-22T08:00:00.123456+05:30",
                                      "2026-11-22T08:00:00-00:00"])
def test_rfc_3339_times_with_a_zone_are_accepted(taken_at: str) -> None:
    assert decode_readings(orjson.dumps(_reading(taken_at=taken_at)), now=NOW).readings


@pytest.mark.parametrize(("age", "accepted"), [
    (timedelta(days=399, hours=23), True),  # a year-long backlog drains
    (timedelta(days=400, minutes=1), False),
    (timedelta(days=365 * 20), False),
])
def test_taken_at_before_the_lower_bound_is_quarantined_with_a_reason(
        age: timedelta, accepted: bool) -> None:
    item = _reading(taken_at=format_time(NOW - age))
    decoded = decode_readings(orjson.dumps(item), now=NOW)
    assert bool(decoded.readings) is accepted
    if not accepted:
        assert "older than the 400-day limit" in decoded.rejects[0].reason
    tighter = ReadingBounds(max_age=timedelta(days=30))
    assert not decode_readings(orjson.dumps(item), now=NOW, bounds=tighter).readings


@pytest.mark.parametrize("taken_at", ["0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z"])
def test_0001_01_01_is_refused(taken_at: str) -> None:
    assert "older than" in _one_reject(_reading(taken_at=taken_at))


@pytest.mark.parametrize("taken_at", [
    "0001-01-01T00:00:00+01:00",   # year 0 in UTC: Python raised OverflowError
    "9999-12-31T23:59:59-01:00",   # year 10000 in UTC
    "10000-01-01T00:00:00Z",
    "2026-02-30T08:00:00Z",
])
def test_a_time_that_overflows_is_an_item_reject_and_the_rest_of_the_batch_is_kept(
        taken_at: str) -> None:
    good = _reading(taken_at="2026-11-22T08:00:00Z")
    for now in (NOW, None):  # with or without the receiver's clock: never raises
        decoded = decode_readings(orjson.dumps([good, _reading(taken_at=taken_at)]), now=now)
        assert [str(r.id) for r in decoded.readings] == [good["id"]]
        assert [r.index for r in decoded.rejects] == [1]


def test_a_message_over_the_distinct_days_limit_is_refused_whole_with_a_reason() -> None:
    day, limit = timedelta(days=1), 5
    bounds = ReadingBounds(max_days_per_message=limit)
    at_limit = [_reading(taken_at=format_time(NOW - n * day)) for n in range(limit)]
    assert len(decode_readings(orjson.dumps(at_limit), now=NOW, bounds=bounds).readings) == limit
    same_day = [_reading(taken_at=format_time(NOW - timedelta(minutes=n))) for n in range(600)]
    assert len(decode_readings(orjson.dumps(same_day), now=NOW, bounds=bounds).readings) == 600
    over: list[dict[str, object]] = [*at_limit, _reading(taken_at=format_time(NOW - limit * day)),
                                     {"not": "a reading"}]
    decoded = decode_readings(orjson.dumps(over), now=NOW, bounds=bounds)
    assert decoded.readings == []
    assert [r.index for r in decoded.rejects] == list(range(len(over)))
    assert all("spans 6 distinct UTC days" in r.reason for r in decoded.rejects[:-1])
    assert decoded.rejects[-1].item == {"not": "a reading"}  # its own reason stays
    assert [r.item["id"] for r in decoded.rejects[:-1]] == [i["id"] for i in over[:-1]]


def test_the_default_days_limit_never_refuses_a_message_the_age_bound_accepts() -> None:
    """A daily weight for the whole age window, in one message, with both partial days."""
    oldest = NOW - timedelta(days=400) + timedelta(minutes=1)
    days = [oldest + timedelta(days=n) for n in range(401)] + [NOW + timedelta(minutes=9)]
    late = datetime(2026, 11, 22, 23, 55, tzinfo=UTC)  # 10 minutes before midnight
    for now in (NOW, late):
        shift = now - NOW
        items = [_reading(taken_at=format_time(t + shift)) for t in days]
        decoded = decode_readings(orjson.dumps(items), now=now)
        assert decoded.rejects == [] and len(decoded.readings) == len(items)
    assert MAX_DAYS_PER_MESSAGE == 402
